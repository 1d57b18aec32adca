import { configHelp, configOptions, EXIT_OK, optString, type Command } from '../command.js';
import { configFromArgs, createLogger } from '../runtime.js';
import { createRegistry } from '../../metrics/registry.js';
import { startMetricsServer, type MetricsServer } from '../../metrics/server.js';
import { startRelayServer } from '../../tunnel/relay-server.js';

export const relayCommand: Command = {
  name: 'relay',
  summary: 'run a relay (tunnel rendezvous + circuit relay v2)',
  help: `Usage: edgeway relay --config FILE [options]

Runs a circuit-relay-v2 server for agents in other LANs (no 128 KiB / 2 min
limits unless tunnel.relayServer sets them) and the rendezvous where agents find
each other's peer ids by node name. Listens on tunnel.listenPort (20006); uses
tunnel.psk.path when set; the identity lives in stateDir. Runs until SIGINT/SIGTERM.

Options:
${configHelp}
      --metrics-listen ADDR   override metrics.listen (host:port, '' disables)`,
  options: { ...configOptions, 'metrics-listen': { type: 'string' } },
  async run(values) {
    const metricsListen = typeof values['metrics-listen'] === 'string' ? values['metrics-listen'] : undefined;
    const config = await configFromArgs(values, metricsListen !== undefined ? { metricsListen } : {});
    const logger = createLogger(config.log.level);
    const registry = createRegistry();
    const relay = await startRelayServer(config, logger, registry);
    let metrics: MetricsServer | undefined;
    const listen = optString({ l: config.metrics.listen }, 'l');
    if (listen) metrics = await startMetricsServer(registry, listen);
    // One line on stdout for scripts: the relay's peer id and addresses.
    process.stdout.write(`relay ${relay.peerId} ${relay.node.getMultiaddrs().map(String).join(' ')}\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await relay.stop();
    await metrics?.close();
    return EXIT_OK;
  },
};
