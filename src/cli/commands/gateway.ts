import { daemonHelp, daemonOptions, EXIT_OK, EXIT_RUNTIME, stopSignal, type Command } from '../command.js';
import { configFromArgs, createLogger, createSources } from '../runtime.js';
import { CatalogStore } from '../../catalog/store.js';
import type { Snapshot } from '../../catalog/types.js';
import { createRegistry } from '../../metrics/registry.js';
import { startMetricsServer, type MetricsServer } from '../../metrics/server.js';
import { memoPlanFor } from '../../plan/memo.js';

export const gatewayCommand: Command = {
  name: 'gateway',
  summary: 'run the ingress gateway (Istio Gateway/VirtualService, Gateway API; HTTP, HTTPS, HTTP/2, gRPC, TLS, TCP)',
  help: `Usage: edgeway gateway --config FILE [options]

Serves the Istio Gateways whose selector matches gateway.labels and the Gateway API
Gateways of class gateway.gatewayClassName, with their VirtualServices/HTTPRoutes,
on the addresses picked by gateway.addresses (default: every non-loopback address).
Backends are catalog services; endpoints in other LANs go through the tunnel when
tunnel.enabled (this process then is a tunnel peer of its own). Its catalog is
never persisted (it holds TLS Secrets). Runs until SIGINT/SIGTERM.

Options:
${daemonHelp}`,
  options: daemonOptions,
  async run(values) {
    const config = await configFromArgs(values);
    const logger = createLogger(config.log.level);
    const stopRequested = stopSignal();
    const registry = createRegistry();
    const store = new CatalogStore({ logger, registry });
    let metrics: MetricsServer | undefined;
    if (config.metrics.listen) {
      metrics = await startMetricsServer(registry, config.metrics.listen);
      metrics.addReadiness({ name: 'catalog', check: () => store.readiness() });
      logger.info({ listen: `${metrics.address.address}:${metrics.address.port}` }, 'metrics listening');
    }
    const sources = await createSources(config, store, logger, { ingress: true });
    if (sources.length === 0) {
      logger.error('no source enabled: set sources.static.paths or sources.kubernetes.enabled');
      await metrics?.close();
      return EXIT_RUNTIME;
    }
    const tunnel = config.tunnel.enabled ? await (await import('../../tunnel/part.js')).createTunnelPart({ config, logger, registry, store }) : undefined;
    if (tunnel) await tunnel.start();
    const { EdgeGateway } = await import('../../gateway/gateway.js');
    const gateway = new EdgeGateway({ config, logger, registry, planFor: memoPlanFor(config, 'nftables'), remoteDialer: () => tunnel?.remoteDialer() });
    metrics?.addReadiness({ name: 'gateway', check: () => gateway.readiness() });

    // Snapshots are applied one at a time, newest last; a burst collapses into one apply.
    let pending: Snapshot | undefined;
    let running: Promise<void> | undefined;
    const applyLoop = async (): Promise<void> => {
      while (pending) {
        const s = pending;
        pending = undefined;
        await gateway.apply(s).catch((err: unknown) => logger.error({ err: String(err) }, 'gateway apply failed'));
      }
      running = undefined;
    };
    store.on('snapshot', (s) => { pending = s; running ??= applyLoop(); });
    for (const s of sources) await s.start().catch((err: unknown) => logger.error({ source: s.name, err: String(err) }, 'source failed to start'));
    logger.info({ nodeName: config.nodeName, addresses: config.gateway.addresses }, 'edgeway gateway started');

    logger.info({ signal: await stopRequested }, 'stopping');
    for (const s of sources) await s.stop();
    await running;
    await gateway.stop();
    await tunnel?.stop();
    await store.close();
    await metrics?.close();
    logger.info('stopped');
    return EXIT_OK;
  },
};
