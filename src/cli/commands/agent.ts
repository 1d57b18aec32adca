import { daemonHelp, daemonOptions, EXIT_OK, stopSignal, type Command } from '../command.js';
import { configFromArgs, createLogger, createSources } from '../runtime.js';
import { CatalogStore } from '../../catalog/store.js';
import { loadSnapshot, snapshotPath } from '../../catalog/persist.js';
import { createRegistry } from '../../metrics/registry.js';
import { startMetricsServer, type MetricsServer } from '../../metrics/server.js';
import { agentParts, type AgentWiring } from '../parts.js';
import { Interrupted, Lifecycle } from '../lifecycle.js';
import { AgentError } from '../errors.js';
import { access, constants, mkdir } from 'node:fs/promises';
import type { Config } from '../../config/schema.js';
import type { Logger } from '../../util/log.js';
import type { Source } from '../../sources/source.js';
import { resolveMode } from '../../dataplane/mode.js';
import { memoPlanFor } from '../../plan/memo.js';

export const agentCommand: Command = {
  name: 'agent',
  summary: 'run the node agent (catalog, DNS, data plane, proxy, tunnel, metrics)',
  help: `Usage: edgeway agent --config FILE [options]

Runs the node agent until SIGINT/SIGTERM. Serves the persisted catalog when the
sources are unreachable at start, and says so in logs, /readyz and metrics.
When a part cannot start (state dir unusable, socket-LB not loadable in mode
ebpf, DNS address in use, tunnel port in use) everything started so far is
stopped in reverse order and the agent exits 1 with the reason. SIGINT/SIGTERM
during start-up stops what started and exits 0.

Options:
${daemonHelp}`,
  options: daemonOptions,
  async run(values) {
    const config = await configFromArgs(values);
    const logger = createLogger(config.log.level);
    // First thing: a SIGTERM from here on stops what started so far (never the default kill).
    const life = new Lifecycle({ logger, stopRequested: stopSignal() });
    try {
      const outcome = await startAgent(config, logger, life);
      if (outcome instanceof Interrupted) {
        logger.info({ signal: outcome.signal }, 'stopping (signal during start-up)');
        await life.stopAll();
        logger.info('stopped');
        return EXIT_OK;
      }
    } catch (err) {
      // Half started is not started: release everything, newest first, then exit 1 with the reason.
      const code = (err as { code?: unknown; cause?: { code?: unknown } }).code ?? (err as { cause?: { code?: unknown } }).cause?.code;
      logger.error({ err: errorText(err), code }, 'agent start failed; stopping what started');
      await life.stopAll();
      throw err;
    }
    logger.info({ signal: await life.untilStopped() }, 'stopping');
    await life.stopAll();
    logger.info('stopped');
    return EXIT_OK;
  },
};

/** The state dir must be a directory we can write (identity, persisted catalog, tunnel state). */
async function ensureStateDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await access(dir, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new AgentError('ERR_STATE_DIR', `stateDir ${dir} is not a usable directory: ${errorText(err)}`, { cause: err });
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Every start-up step, each registered with `life` for the way back. Throws the first failure. */
async function startAgent(config: Config, logger: Logger, life: Lifecycle): Promise<Interrupted | undefined> {
  const mode = await life.step('data-plane mode', () => resolveMode(config));
  if (mode instanceof Interrupted) return mode;
  if (mode.error) {
    logger.error({ reasons: mode.reasons }, mode.error);
    throw new Error(mode.error);
  }
  logger.info({ base: mode.base, socketLb: mode.socketLb, reasons: mode.reasons }, 'data-plane mode');
  await ensureStateDir(config.stateDir);
  const planFor = memoPlanFor(config, mode.base === 'iptables' ? 'iptables' : 'nftables');
  const registry = createRegistry();
  const store = new CatalogStore({ logger, registry, stateDir: config.stateDir });
  life.push('catalog', () => store.close());
  logger.info({ nodeName: config.nodeName, stateDir: config.stateDir, mode: config.dataplane.mode }, 'edgeway agent starting');

  const persisted = await loadSnapshot(config.stateDir);
  if (persisted.kind === 'loaded') {
    store.usePersisted(persisted.snapshot);
    logger.warn({ file: snapshotPath(config.stateDir), builtAt: persisted.snapshot.builtAt }, 'serving the persisted catalog until the sources sync');
  } else if (persisted.kind === 'invalid') {
    logger.error({ file: snapshotPath(config.stateDir), reason: persisted.reason }, 'persisted catalog unusable; ignored');
  }

  let metrics: MetricsServer | undefined;
  if (config.metrics.listen) {
    const m = await life.step('metrics', () => startMetricsServer(registry, config.metrics.listen));
    if (m instanceof Interrupted) return m;
    metrics = m;
    life.push('metrics', () => m.close());
    m.addReadiness({ name: 'catalog', check: () => store.readiness() });
    logger.info({ listen: `${m.address.address}:${m.address.port}` }, 'metrics listening');
  }

  const sources: Source[] = await createSources(config, store, logger);
  if (sources.length === 0) throw new Error('no source enabled: set sources.static.paths or sources.kubernetes.enabled');
  for (const s of sources) {
    life.push(`source ${s.name}`, () => s.stop());
    // A source that cannot start now (API down) retries on its own; the agent keeps serving.
    const r = await life.step(`source ${s.name}`, () => s.start().catch((err: unknown) => logger.error({ source: s.name, err: String(err) }, 'source failed to start')));
    if (r instanceof Interrupted) return r;
  }

  // The Kubernetes source can publish facts about this node (the tunnel's peer id).
  const kube = sources.find((s): s is Source & { annotateNode(n: string, k: string, v: string): Promise<void> } => 'annotateNode' in s);
  const annotateNode = kube ? (key: string, value: string): Promise<void> => kube.annotateNode(config.nodeName, key, value) : undefined;
  const ctx = { config, logger, registry, store, mode, planFor, ...(annotateNode ? { annotateNode } : {}) };
  const wiring: AgentWiring = {};
  for (const factory of agentParts) {
    const part = await life.step('part', () => factory(ctx, wiring));
    if (part instanceof Interrupted) return part;
    if (!part) continue;
    // Pushed before start(): a start that throws or is interrupted half-way is stopped too.
    life.push(part.name, () => part.stop());
    const started = await life.step(part.name, () => part.start().catch((err: unknown) => {
      throw new Error(`${part.name}: ${errorText(err)}`, { cause: err });
    }));
    if (started instanceof Interrupted) return started;
    if (part.readiness) metrics?.addReadiness(part.readiness);
    logger.debug({ part: part.name }, 'part started');
  }
  return undefined;
}
