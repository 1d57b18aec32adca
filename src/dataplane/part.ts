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
import { buildPlan, type PlanMode } from '../plan/build.js';
import { NftSyncer } from './nftables/sync.js';
import { CliNftExecutor, type NftExecutor } from './nftables/executor.js';

export interface DataplanePartContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly store: CatalogStore;
}

export interface DataplanePart {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly readiness: { readonly name: string; check(): { ready: boolean; detail?: string } };
  readonly syncer: NftSyncer;
}

/** The plan options for a config (shared by the agent and `render`). */
export function planOptions(config: Config, mode: PlanMode): Parameters<typeof buildPlan>[1] {
  return { nodeName: config.nodeName, routableCIDRs: config.dataplane.routableCIDRs, userspacePorts: config.dataplane.userspacePorts, mode };
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
  if (mode === 'none' || mode === 'iptables') return undefined;
  if (mode === 'auto' && !executor && !(await nftRunnable())) {
    log.error('dataplane.mode auto: nft is not runnable; no kernel data plane (run `edgeway doctor`)');
    return undefined;
  }
  const syncer = new NftSyncer({
    executor: executor ?? new CliNftExecutor(),
    logger,
    registry,
    minIntervalMs: config.dataplane.minSyncIntervalMs,
    driftCheckIntervalMs: config.dataplane.driftCheckIntervalMs,
  });
  const onSnapshot = (snap: Snapshot): void => {
    // Revision 0 is the empty placeholder before any source synced: never written.
    if (snap.revision === 0) return;
    syncer.update(buildPlan(snap, planOptions(config, 'nftables')));
  };
  return {
    name: 'dataplane-nftables',
    syncer,
    async start() {
      store.on('snapshot', onSnapshot);
      onSnapshot(store.snapshot);
      syncer.start();
      log.info({ mode: mode === 'auto' ? 'nftables (auto)' : mode }, 'nftables data plane started');
    },
    async stop() {
      store.off('snapshot', onSnapshot);
      await syncer.stop();
    },
    readiness: {
      name: 'dataplane',
      check: () => (syncer.appliedRevision !== undefined
        ? { ready: true, detail: `nftables revision ${syncer.appliedRevision}` }
        : { ready: false, detail: 'nftables not applied yet' }),
    },
  };
}
