/**
 * The data plane inside `edgeway agent`: snapshots → plan → the sync engine
 * (sync-engine.ts), which opens the proxy's userspace listeners before it writes
 * the rules that point at them, in every mode:
 * - `nftables` (and `auto` when nft runs): table inet edgeway, through NftSyncer;
 * - `ebpf`: the same, plus socket-LB maps written from the same plans;
 * - `iptables`: REDIRECT chains into the proxy (iptables-restore --noflush);
 * - `none`: no part at all.
 * Kernel state is kept on stop (see README.md: traffic the kernel serves keeps
 * flowing across agent restarts; the next start resyncs in full).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { CatalogStore } from '../catalog/store.js';
import type { Snapshot } from '../catalog/types.js';
import type { Logger } from '../util/log.js';
import type { Plan } from '../plan/types.js';
import { memoPlanFor, type PlanFor } from '../plan/memo.js';
import { NftSyncer } from './nftables/sync.js';
import type { NftExecutor } from './nftables/executor.js';
import { createNftExecutor } from './nftables/inprocess-executor.js';
import type { ResolvedMode } from './mode.js';
import { EbpfDataplane, type SocketLbLifecycle } from './ebpf/combined.js';
import { IptablesDataplane } from './iptables/dataplane.js';
import type { Exec } from './iptables/exec.js';
import { SyncEngine, type RuleBackend, type UserspaceListeners } from './sync-engine.js';
import { DataplaneError } from './errors.js';

export { planOptions } from '../plan/memo.js';
export type { UserspaceListeners } from './sync-engine.js';

export interface DataplanePartContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly store: CatalogStore;
  /** The resolved mode (agent); absent = taken from the config without probing. */
  readonly mode?: ResolvedMode;
  /** The shared per-snapshot plan (agent); absent = built here. */
  readonly planFor?: PlanFor;
  /** Builds the socket-LB controller when the mode enables it (agent: SocketLb). */
  readonly socketLb?: () => Promise<SocketLbLifecycle>;
  /** The proxy's listeners: opened before the rules that point at them. */
  readonly listeners?: UserspaceListeners;
  /** Process boundary for iptables-save/restore (tests run it in a namespace). */
  readonly iptablesExec?: Exec;
}

export interface DataplanePart {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly readiness: { readonly name: string; check(): { ready: boolean; detail?: string } };
  /** The nftables syncer (nftables and ebpf modes). */
  readonly syncer?: NftSyncer;
  /** Resolves when the sync in progress and any queued one are done (tests). */
  settled(): Promise<void>;
}

/** One mode's rules plus its lifecycle. */
interface ModeRules extends RuleBackend {
  readonly label: string;
  readonly syncer?: NftSyncer;
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function nftRunnable(): Promise<boolean> {
  try {
    await promisify(execFile)('nft', ['--version'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

function baseMode(ctx: DataplanePartContext): 'nftables' | 'iptables' | 'none' | 'auto' {
  if (ctx.mode) return ctx.mode.base;
  const m = ctx.config.dataplane.mode;
  return m === 'ebpf' ? 'nftables' : m;
}

export async function createDataplanePart(ctx: DataplanePartContext, executor?: NftExecutor): Promise<DataplanePart | undefined> {
  const { config, logger, store } = ctx;
  const log = logger.child({ subsystem: 'dataplane' });
  const base = baseMode(ctx);
  if (base === 'none') return undefined;
  if (base === 'auto' && !executor && !(await nftRunnable())) {
    log.error('dataplane.mode auto: nft is not runnable; no kernel data plane (run `edgeway doctor`)');
    return undefined;
  }
  const planFor = ctx.planFor ?? memoPlanFor(config, base === 'iptables' ? 'iptables' : 'nftables');
  const rules = base === 'iptables' ? iptablesRules(ctx, log) : await nftRules(ctx, log, executor);
  const engine = new SyncEngine({ rules, ...(ctx.listeners ? { listeners: ctx.listeners } : {}), logger: log, minIntervalMs: config.dataplane.minSyncIntervalMs });
  const onSnapshot = (snap: Snapshot): void => {
    // Revision 0 is the empty placeholder before any source synced: never written.
    if (snap.revision === 0) return;
    engine.update(planFor(snap));
  };
  return {
    name: `dataplane-${rules.label}`,
    ...(rules.syncer ? { syncer: rules.syncer } : {}),
    async start() {
      await rules.start();
      store.on('snapshot', onSnapshot);
      onSnapshot(store.snapshot);
      log.info({ rules: rules.label, mode: ctx.mode?.reasons ?? config.dataplane.mode, userspace: !!ctx.listeners }, 'data plane started');
    },
    async stop() {
      store.off('snapshot', onSnapshot);
      await engine.stop();
      await rules.stop();
    },
    settled: () => engine.settled(),
    readiness: { name: 'dataplane', check: () => engine.readiness() },
  };
}

/** nftables, with socket-LB on top when the mode enables it. */
async function nftRules(ctx: DataplanePartContext, log: Logger, executor?: NftExecutor): Promise<ModeRules> {
  const { config, logger, registry } = ctx;
  const syncer = new NftSyncer({
    // libnftables in-process when edgeway_nft.node loads; the nft CLI otherwise (logged once).
    executor: executor ?? createNftExecutor({ logger }).executor,
    logger,
    registry,
    // The engine paces the plans; the syncer paces its own retries and drift repairs.
    minIntervalMs: config.dataplane.minSyncIntervalMs,
    driftCheckIntervalMs: config.dataplane.driftCheckIntervalMs,
  });
  // socket-LB rides on the same plans. nftables stays authoritative; socket-LB
  // failures degrade (counted) and are retried on the reconcile timer, except
  // that a required socket-LB (mode ebpf) that cannot start fails the start.
  let ebpf: EbpfDataplane | undefined;
  if (ctx.mode?.socketLb && ctx.socketLb) {
    ebpf = new EbpfDataplane({
      base: { apply: async () => undefined, reconcile: async () => undefined, cleanup: async () => undefined },
      socketLb: await ctx.socketLb(),
      registry,
      logger,
    });
  }
  let lbChain: Promise<void> = Promise.resolve();
  let reconcileTimer: NodeJS.Timeout | undefined;
  return {
    label: 'nftables',
    syncer,
    async start() {
      if (ebpf) {
        await ebpf.start();
        if (!ebpf.socketLbActive && ctx.mode?.configured === 'ebpf') {
          await ebpf.stop().catch(() => undefined);
          throw new DataplaneError('ERR_SOCKET_LB_START', 'dataplane.mode ebpf: socket-LB could not be loaded (see the log above; `edgeway doctor --config`)');
        }
        reconcileTimer = setInterval(() => { lbChain = lbChain.then(() => ebpf!.reconcile()); }, Math.max(1000, config.dataplane.driftCheckIntervalMs));
        reconcileTimer.unref();
      }
      syncer.start();
    },
    async apply(plan: Plan) {
      syncer.update(plan);
      await syncer.flush();
      if (ebpf) {
        const e = ebpf;
        lbChain = lbChain.then(() => e.apply(plan));
        await lbChain;
      }
      return syncer.appliedRevision === plan.revision;
    },
    async stop() {
      if (reconcileTimer) clearInterval(reconcileTimer);
      await syncer.stop();
      await lbChain;
      await ebpf?.stop();
    },
    readiness: () => (syncer.appliedRevision !== undefined
      ? { ready: true, detail: `nftables revision ${syncer.appliedRevision}${ebpf ? `; socket-LB ${ebpf.socketLbActive ? 'active' : 'degraded (nftables serves)'}` : ''}` }
      : { ready: false, detail: 'nftables not applied yet' }),
  };
}

/** iptables mode: REDIRECT chains into the proxy, with a periodic drift check. */
function iptablesRules(ctx: DataplanePartContext, log: Logger): ModeRules {
  const { config, registry } = ctx;
  const ipt = new IptablesDataplane({ logger: log, registry, backend: config.proxy.iptablesBackend, ...(ctx.iptablesExec ? { exec: ctx.iptablesExec } : {}) });
  let applied: number | undefined;
  let busy: Promise<unknown> = Promise.resolve();
  let driftTimer: NodeJS.Timeout | undefined;
  return {
    label: 'iptables',
    async start() {
      driftTimer = setInterval(() => {
        if (applied === undefined) return;
        busy = busy.then(() => ipt.reconcile()).catch((err: unknown) => log.error({ err: String(err) }, 'iptables drift check failed'));
      }, config.dataplane.driftCheckIntervalMs);
      driftTimer.unref();
    },
    async apply(plan: Plan) {
      // One writer at a time: a drift repair never interleaves with a sync.
      const run = busy.then(() => ipt.apply(plan));
      busy = run.catch(() => undefined);
      await run;
      applied = plan.revision;
      return true;
    },
    async stop() {
      if (driftTimer) clearInterval(driftTimer);
      await busy;
    },
    readiness: () => (applied !== undefined ? { ready: true, detail: `iptables revision ${applied} (${ipt.backendName ?? '?'})` } : { ready: false, detail: 'iptables not applied yet' }),
  };
}
