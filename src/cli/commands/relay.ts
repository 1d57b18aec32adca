import { daemonHelp, daemonOptions, EXIT_OK, stopSignal, type Command } from '../command.js';
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
${daemonHelp}`,
  options: daemonOptions,
  async run(values) {
    const config = await configFromArgs(values);
    const stopped = stopSignal();
    const logger = createLogger(config.log.level);
    const registry = createRegistry();
    const relay = await startRelayServer(config, logger, registry);
    let metrics: MetricsServer | undefined;
    if (config.metrics.listen) metrics = await startMetricsServer(registry, config.metrics.listen);
    // One line on stdout for scripts: the relay's peer id and addresses.
    process.stdout.write(`relay ${relay.peerId} ${relay.node.getMultiaddrs().map(String).join(' ')}\n`);
    await stopped;
    await relay.stop();
    await metrics?.close();
    return EXIT_OK;
  },
};
