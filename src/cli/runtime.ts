/**
 * Composition helpers shared by commands: config loading with overrides, building
 * the catalog store and its sources. Only composition code lives here.
 */
import { loadConfig, type ConfigOverrides } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { CatalogStore } from '../catalog/store.js';
import type { Snapshot } from '../catalog/types.js';
import { StaticSource } from '../sources/static.js';
import type { Source } from '../sources/source.js';
import { createLogger, type Logger } from '../util/log.js';
import { createRegistry, type Registry } from '../metrics/registry.js';
import { optString, requireString } from './command.js';

export async function configFromArgs(values: Record<string, unknown>, extra: ConfigOverrides = {}): Promise<Config> {
  const file = requireString(values, 'config');
  const overrides: ConfigOverrides = { ...extra };
  const nodeName = optString(values, 'node-name');
  const stateDir = optString(values, 'state-dir');
  const logLevel = optString(values, 'log-level');
  // '' is meaningful here (disables the listener), so it is not optString.
  if (typeof values['metrics-listen'] === 'string') overrides.metricsListen = values['metrics-listen'];
  if (nodeName) overrides.nodeName = nodeName;
  if (stateDir) overrides.stateDir = stateDir;
  if (logLevel) overrides.logLevel = logLevel;
  return loadConfig(file, overrides);
}

/** Build the sources the config enables, each with its own sink on `store`. */
export async function createSources(config: Config, store: CatalogStore, logger: Logger, opts: { ingress?: boolean } = {}): Promise<Source[]> {
  const ingress = opts.ingress ?? false;
  const sources: Source[] = [];
  const filterMode = config.serviceFilter.mode;
  if (config.sources.static.paths.length > 0) {
    sources.push(new StaticSource(store.sink('static'), { paths: config.sources.static.paths, pollMs: config.sources.static.pollMs, filterMode, logger, ingress }));
  }
  const k = config.sources.kubernetes;
  if (k.enabled) {
    // Loaded only when enabled: the client library costs ~0.3-1.5 s of start-up.
    const { KubernetesSource } = await import('../sources/kubernetes.js');
    sources.push(new KubernetesSource(store.sink('kubernetes'), {
      kubeconfig: k.kubeconfig, apiServer: k.apiServer, filterMode, logger, minBackoffMs: k.minBackoffMs, maxBackoffMs: k.maxBackoffMs, ingress,
    }));
  }
  return sources;
}

/**
 * One-shot catalog for `catalog` and `render`: start the sources, wait until every
 * one has synced (or `timeoutMs`), stop them, and return the snapshot. Nothing is
 * persisted. Throws with the sources' states when they do not sync in time.
 */
export async function loadCatalogOnce(config: Config, logger: Logger, timeoutMs = 15_000): Promise<{ snapshot: Snapshot; registry: Registry }> {
  const registry = createRegistry({ defaultMetrics: false });
  const store = new CatalogStore({ logger, registry, coalesceMs: 0 });
  const sources = await createSources(config, store, logger);
  if (sources.length === 0) throw new Error('no source enabled: set sources.static.paths or sources.kubernetes.enabled');
  try {
    for (const s of sources) {
      if (s instanceof StaticSource) await s.refresh(true);
      else await s.start();
    }
    const deadline = Date.now() + timeoutMs;
    while (!store.synced && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!store.synced) {
      const states = store.sourceStates().map((s) => `${s.name}=${s.state}${s.detail ? ` (${s.detail})` : ''}`).join(', ');
      throw new Error(`sources did not sync within ${timeoutMs} ms: ${states}`);
    }
    store.flush();
    return { snapshot: store.snapshot, registry };
  } finally {
    for (const s of sources) await s.stop();
    await store.close();
  }
}

export { createLogger };
