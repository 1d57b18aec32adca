/**
 * The data plane inside `edgeway agent`: snapshots → plan → nftables sync loop.
 * `mode: auto` runs nftables when `nft` is runnable (ebpf builds on the same
 * ruleset); `iptables` is served by the iptables data plane and `none` writes
 * nothing, so this part is absent for both. Kernel state is kept on stop: traffic
 * keeps flowing across agent restarts and the next start resyncs in full.
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
import { CliNftExecutor, type NftExecutor } from './nftables/executor.js';
import type { ResolvedMode } from './mode.js';
import { EbpfDataplane, type SocketLbLifecycle } from './ebpf/combined.js';

export { planOptions } from '../plan/memo.js';

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
}

export interface DataplanePart {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly readiness: { readonly name: string; check(): { ready: boolean; detail?: string } };
  readonly syncer: NftSyncer;
}

async function nftRunnable(): Promise<boolean> {
  try {
    await promisify(execFile)('nft', ['--version'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

export async function createDataplanePart(ctx: DataplanePartContext, executor?: NftExecutor): Promise<DataplanePart | undefined> {
  const { config, logger, registry, store } = ctx;
  const mode = config.dataplane.mode;
  const log = logger.child({ subsystem: 'dataplane' });
  if (ctx.mode ? ctx.mode.base !== 'nftables' : mode === 'none' || mode === 'iptables') return undefined;
  if (mode === 'auto' && !ctx.mode && !executor && !(await nftRunnable())) {
    log.error('dataplane.mode auto: nft is not runnable; no kernel data plane (run `edgeway doctor`)');
    return undefined;
  }
  const planFor = ctx.planFor ?? memoPlanFor(config, 'nftables');
  const syncer = new NftSyncer({
    executor: executor ?? new CliNftExecutor(),
    logger,
    registry,
    minIntervalMs: config.dataplane.minSyncIntervalMs,
    driftCheckIntervalMs: config.dataplane.driftCheckIntervalMs,
  });
  // Socket-LB (mode ebpf / auto on a capable host) rides on the same plans. nftables
  // stays authoritative; socket-LB failures only degrade (counted) and are retried
  // on the drift timer. Plans are applied one at a time, newest only.
  let ebpf: EbpfDataplane | undefined;
  let pending: Plan | undefined;
  let chain: Promise<void> = Promise.resolve();
  let reconcileTimer: NodeJS.Timeout | undefined;
  if (ctx.mode?.socketLb && ctx.socketLb) {
    const lb = await ctx.socketLb();
    ebpf = new EbpfDataplane({
      // The nftables syncer has its own loop; socket-LB follows the same plans.
      base: { apply: async () => undefined, reconcile: async () => undefined, cleanup: async () => undefined },
      socketLb: lb,
      registry,
      logger,
    });
  }
  const applyLb = (plan: Plan): void => {
    if (!ebpf) return;
    const first = pending === undefined;
    pending = plan;
    if (!first) return;
    chain = chain.then(async () => {
      const p = pending;
      pending = undefined;
      if (p) await ebpf!.apply(p);
    });
  };
  const onSnapshot = (snap: Snapshot): void => {
    // Revision 0 is the empty placeholder before any source synced: never written.
    if (snap.revision === 0) return;
    const plan = planFor(snap);
    syncer.update(plan);
    applyLb(plan);
  };
  return {
    name: 'dataplane-nftables',
    syncer,
    async start() {
      if (ebpf) {
        await ebpf.start();
        reconcileTimer = setInterval(() => { chain = chain.then(() => ebpf!.reconcile()); }, Math.max(1000, config.dataplane.driftCheckIntervalMs));
        reconcileTimer.unref();
      }
      store.on('snapshot', onSnapshot);
      onSnapshot(store.snapshot);
      syncer.start();
      log.info({ mode: ctx.mode?.reasons ?? mode, socketLb: !!ebpf }, 'nftables data plane started');
    },
    async stop() {
      store.off('snapshot', onSnapshot);
      if (reconcileTimer) clearInterval(reconcileTimer);
      await syncer.stop();
      await chain;
      await ebpf?.stop();
    },
    readiness: {
      name: 'dataplane',
      check: () => (syncer.appliedRevision !== undefined
        ? { ready: true, detail: `nftables revision ${syncer.appliedRevision}${ebpf ? `; socket-LB ${ebpf.socketLbActive ? 'active' : 'degraded (nftables serves)'}` : ''}` }
        : { ready: false, detail: 'nftables not applied yet' }),
    },
  };
}
