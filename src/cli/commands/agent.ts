import { daemonHelp, daemonOptions, EXIT_OK, EXIT_RUNTIME, stopSignal, type Command } from '../command.js';
import { configFromArgs, createLogger, createSources } from '../runtime.js';
import { CatalogStore } from '../../catalog/store.js';
import { loadSnapshot, snapshotPath } from '../../catalog/persist.js';
import { createRegistry } from '../../metrics/registry.js';
import { startMetricsServer, type MetricsServer } from '../../metrics/server.js';
import { agentParts, type AgentPart } from '../parts.js';
import type { Source } from '../../sources/source.js';
import { resolveMode } from '../../dataplane/mode.js';
import { memoPlanFor } from '../../plan/memo.js';

export const agentCommand: Command = {
  name: 'agent',
  summary: 'run the node agent (catalog, DNS, data plane, proxy, tunnel, metrics)',
  help: `Usage: edgeway agent --config FILE [options]

Runs the node agent until SIGINT/SIGTERM. Serves the persisted catalog when the
sources are unreachable at start, and says so in logs, /readyz and metrics.

Options:
${daemonHelp}`,
  options: daemonOptions,
  async run(values) {
    const config = await configFromArgs(values);
    const logger = createLogger(config.log.level);
    const stopRequested = stopSignal();
    const mode = await resolveMode(config);
    if (mode.error) {
      logger.error({ reasons: mode.reasons }, mode.error);
      return EXIT_RUNTIME;
    }
    logger.info({ base: mode.base, socketLb: mode.socketLb, reasons: mode.reasons }, 'data-plane mode');
    const planFor = memoPlanFor(config, mode.base === 'iptables' ? 'iptables' : 'nftables');
    const registry = createRegistry();
    const store = new CatalogStore({ logger, registry, stateDir: config.stateDir });
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
      metrics = await startMetricsServer(registry, config.metrics.listen);
      metrics.addReadiness({ name: 'catalog', check: () => store.readiness() });
      logger.info({ listen: `${metrics.address.address}:${metrics.address.port}` }, 'metrics listening');
    }

    const sources: Source[] = await createSources(config, store, logger);
    if (sources.length === 0) {
      logger.error('no source enabled: set sources.static.paths or sources.kubernetes.enabled');
      await metrics?.close();
      return EXIT_RUNTIME;
    }
    for (const s of sources) {
      // A source that cannot start now (API down) retries on its own; the agent keeps serving.
      await s.start().catch((err: unknown) => logger.error({ source: s.name, err: String(err) }, 'source failed to start'));
    }

    // The Kubernetes source can publish facts about this node (the tunnel's peer id).
    const kube = sources.find((s): s is Source & { annotateNode(n: string, k: string, v: string): Promise<void> } => 'annotateNode' in s);
    const annotateNode = kube ? (key: string, value: string): Promise<void> => kube.annotateNode(config.nodeName, key, value) : undefined;
    const parts: AgentPart[] = [];
    for (const factory of agentParts) {
      const part = await factory({ config, logger, registry, store, mode, planFor, ...(annotateNode ? { annotateNode } : {}) });
      if (!part) continue;
      await part.start();
      parts.push(part);
      if (part.readiness) metrics?.addReadiness(part.readiness);
    }

    logger.info({ signal: await stopRequested }, 'stopping');
    for (const p of parts.reverse()) await p.stop().catch((err: unknown) => logger.error({ part: p.name, err: String(err) }, 'stop failed'));
    for (const s of sources) await s.stop();
    await store.close();
    await metrics?.close();
    logger.info('stopped');
    return EXIT_OK;
  },
};
