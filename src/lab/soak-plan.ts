/**
 * The soak's catalog and configs (pure): three services whose only endpoints run on
 * b1 (LAN B), reached from a1 (LAN A) through the tunnel. Addresses: topology.ts.
 *   echo 10.96.0.40:80 → b1:8080 (TCP echo) · udp 10.96.0.41:53/UDP → b1:8053 · web 10.96.0.42:80 → b1:8081 (HTTP)
 */
import { join } from 'node:path';
import { IP } from './topology.js';
import { labCatalogYaml, type LabService } from './catalog-yaml.js';

export type SoakHost = 'a1' | 'b1' | 'relay';
export const PORT = 20006;
export const METRICS_PORT = 9464;
export const SVC = { echo: '10.96.0.40', udp: '10.96.0.41', web: '10.96.0.42' } as const;

export function soakCatalog(): string {
  const svc = (name: string, clusterIP: string, port: number, targetPort: number, protocol: 'TCP' | 'UDP'): LabService => ({ name, namespace: 'soak', clusterIP, port, targetPort, protocol, on: 'b1' });
  return labCatalogYaml(['a1', 'b1'], [svc('echo', SVC.echo, 80, 8080, 'TCP'), svc('udp', SVC.udp, 53, 8053, 'UDP'), svc('web', SVC.web, 80, 8081, 'TCP')]);
}

/**
 * Agent or relay config (the object the CLI reads as JSON). The flow limits are
 * raised above `maxFlows` so that the fd limit, not a configured cap, is what the
 * flows past the hold meet.
 */
export function soakConfig(h: SoakHost, dir: string, maxFlows: number, accelerator: 'auto' | 'off' = 'auto'): object {
  const common = {
    nodeName: h,
    stateDir: join(dir, h),
    log: { level: 'warn' },
    metrics: { listen: `127.0.0.1:${METRICS_PORT}` },
    sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')], pollMs: 2000 } },
    dns: { enabled: false },
  };
  const psk = { path: join(dir, 'swarm.key') };
  if (h === 'relay') return { ...common, dataplane: { mode: 'none' }, tunnel: { listenPort: PORT, psk, channel: { maxRelayPairs: maxFlows + 1000 } } };
  return {
    ...common,
    dataplane: { mode: 'nftables', minSyncIntervalMs: 50 },
    accelerator: { mode: accelerator },
    // Short UDP idle times: the churn's sessions are gone by the time the counts are
    // compared. A flow refused at the fd limit is reset by the proxy after at most
    // the connect timeout (10 s: a busy box during the ramp): inside the load
    // generator's 20 s, which counts a flow still unanswered then as a hang.
    proxy: { connectTimeoutMs: 10_000, maxFlows: maxFlows + 1000, udpSessionIdleMs: 2000 },
    tunnel: {
      listenPort: PORT, directDialTimeoutMs: 1000, psk, maxFlows: maxFlows + 1000, udpIdleTimeoutMs: 2000,
      relayNodes: [{ nodeName: 'relay', advertiseAddress: [`${IP.relay}:${PORT}`] }],
    },
  };
}
