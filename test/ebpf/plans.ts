/** Plan builders for socket-LB tests (plans are built directly; plan/build.ts is not needed). */
import type { PlannedEndpoint, PlannedPolicy, PlannedServicePort, PlannedTarget, Plan } from '../../src/plan/types.js';

export function ep(ip: string, port: number, cls: PlannedEndpoint['class'] = 'local'): PlannedEndpoint {
  return { ip, family: ip.includes(':') ? 6 : 4, port, class: cls, ready: true };
}

export function svcPort(
  name: string,
  clusterIPs: string[],
  port: number,
  endpoints: PlannedEndpoint[],
  opts: { protocol?: 'TCP' | 'UDP' | 'SCTP'; policy?: PlannedPolicy; target?: PlannedTarget } = {},
): PlannedServicePort {
  const protocol = opts.protocol ?? 'TCP';
  return {
    id: `default/${name}:${port}/${protocol}`,
    serviceKey: `default/${name}`,
    namespace: 'default',
    name,
    portName: '',
    protocol,
    port,
    clusterIPs,
    endpoints,
    policy: opts.policy ?? { kind: 'random' },
    target: opts.target ?? 'kernel',
  };
}

export function plan(...servicePorts: PlannedServicePort[]): Plan {
  return { nodeName: 'node-a', revision: 1, servicePorts: [...servicePorts].sort((a, b) => a.id.localeCompare(b.id)), userspacePortExhausted: [] };
}
