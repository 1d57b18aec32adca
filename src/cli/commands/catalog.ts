import { configHelp, configOptions, EXIT_OK, type Command } from '../command.js';
import { configFromArgs, createLogger, loadCatalogOnce } from '../runtime.js';
import type { Snapshot } from '../../catalog/types.js';

function table(snap: Snapshot): string {
  const lines = [`# ${snap.services.length} services, ${snap.nodes.length} nodes (revision ${snap.revision})`];
  for (const s of snap.services) {
    const ports = s.ports.map((p) => `${p.port}/${p.protocol}${p.name ? `(${p.name})` : ''}`).join(',');
    const ips = s.headless ? 'headless' : s.clusterIPs.join(',') || '-';
    const eps = s.endpoints.map((e) => `${e.ip}${e.nodeName ? `@${e.nodeName}` : ''}${e.ready ? '' : e.serving ? '(terminating)' : '(not-ready)'}`).join(' ');
    const pol = [s.lbPolicy ? s.lbPolicy.kind : '', s.sessionAffinity.kind === 'ClientIP' ? `affinity=${s.sessionAffinity.timeoutSeconds}s` : ''].filter(Boolean).join(' ');
    lines.push(`${s.key}\t${ips}\t${ports}\t${eps || '(no endpoints)'}${pol ? `\t${pol}` : ''}`);
  }
  for (const n of snap.nodes) lines.push(`node ${n.name}\t${n.addresses.map((a) => a.address).join(',')}${n.peerId ? `\t${n.peerId}` : ''}`);
  return lines.join('\n');
}

export const catalogCommand: Command = {
  name: 'catalog',
  summary: 'print the catalog the configured sources give',
  help: `Usage: edgeway catalog --config FILE [--json]

Lists the configured sources once, waits until they have synced, and prints the
catalog (services, ports, cluster IPs, endpoints, nodes, policies).

Options:
${configHelp}
      --json              print the snapshot as JSON`,
  options: { ...configOptions, json: { type: 'boolean' } },
  async run(values) {
    const config = await configFromArgs(values);
    const logger = createLogger(config.log.level === 'info' ? 'warn' : config.log.level);
    const { snapshot } = await loadCatalogOnce(config, logger);
    process.stdout.write(values.json ? `${JSON.stringify(snapshot, null, 2)}\n` : `${table(snapshot)}\n`);
    return EXIT_OK;
  },
};
