/** Shared bits of the tunnel tests: a snapshot builder and free ports. */
import net from 'node:net';
import { SNAPSHOT_VERSION, type Endpoint, type Node, type Service, type Snapshot } from '../../src/catalog/types.js';

export function endpoint(ip: string, nodeName: string, port: number, proto: 'TCP' | 'UDP' = 'TCP', name = 'p'): Endpoint {
  return { ip, family: ip.includes(':') ? 6 : 4, nodeName, ready: true, serving: true, terminating: false, zoneHints: [], ports: [{ name, protocol: proto, port }] };
}

export function service(ns: string, name: string, port: number, eps: Endpoint[], proto: 'TCP' | 'UDP' = 'TCP', targetPort: number | string = port): Service {
  return {
    namespace: ns, name, key: `${ns}/${name}`, type: 'ClusterIP', clusterIPs: ['10.96.0.1'], headless: false,
    ports: [{ name: 'p', protocol: proto, port, targetPort }], sessionAffinity: { kind: 'None' }, internalTrafficPolicy: 'Cluster', endpoints: eps,
  };
}

export function snapshot(services: Service[], nodes: Node[]): Snapshot {
  return { version: SNAPSHOT_VERSION, revision: 1, builtAt: new Date().toISOString(), origin: 'live', services, nodes };
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * Connected loopback TCP pairs (both ends half-open capable); `closeAll()` (in
 * afterEach) destroys every socket and server made. `pauseOnConnect`: the
 * accepted end arrives paused and unread, as for the native forwarders.
 */
export class LoopbackPairs {
  private readonly socks: net.Socket[] = [];
  private readonly servers: net.Server[] = [];

  async pair(opts: { pauseOnConnect?: boolean } = {}): Promise<[net.Socket, net.Socket]> {
    const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: opts.pauseOnConnect ?? false });
    this.servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
    const c = net.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, allowHalfOpen: true });
    await new Promise<void>((r, j) => { c.once('connect', r); c.once('error', j); });
    const s = await accepted;
    this.socks.push(c, s);
    return [c, s];
  }

  closeAll(): void {
    for (const s of this.socks.splice(0)) s.destroy();
    for (const s of this.servers.splice(0)) s.close();
  }
}
