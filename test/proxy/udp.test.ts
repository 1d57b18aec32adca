// UDP through the proxy on loopback. Clients use *connected* sockets, which drop
// datagrams from any other source: a reply arriving proves it came from the
// address the client sent to (the proxy's listener), as a service address must.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { Registry } from 'prom-client';
import { UserspaceProxy } from '../../src/proxy/proxy.js';
import { silentLogger } from '../../src/util/log.js';
import { ep, freePort, servicePort, startBackends, stopBackends, until, type Backend } from './util.js';

let backends: Backend[] = [];
const proxies: UserspaceProxy[] = [];
beforeAll(async () => { backends = await startBackends(['a', 'b', 'c'], true); });
afterAll(async () => { await stopBackends(backends); });
afterEach(async () => { for (const p of proxies.splice(0)) await p.close(); });

async function udpProxy(opts: { udpSessionIdleMs?: number; maxUdpSessions?: number } = {}) {
  const registry = new Registry();
  const proxy = new UserspaceProxy({ logger: silentLogger(), registry, ...opts });
  proxies.push(proxy);
  const port = await freePort();
  const r = await proxy.apply([servicePort({ protocol: 'UDP', port: 53, userspacePort: port, policy: { kind: 'roundRobin' }, endpoints: backends.map((b) => ep('127.0.0.1', b.port)) })]);
  expect(r.failed).toEqual([]);
  return { proxy, port, registry };
}

/** A connected client socket with a request/reply helper (bounded by a timeout). */
async function client(port: number) {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.connect(port, '127.0.0.1', resolve));
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  s.on('message', (m) => { queue.push(m.toString()); wake?.(); });
  return {
    ask: async (payload: string, timeoutMs = 2_000): Promise<string> => {
      s.send(payload);
      const end = Date.now() + timeoutMs;
      while (queue.length === 0) {
        if (Date.now() > end) throw new Error('udp reply timeout');
        await new Promise<void>((r) => { wake = r; setTimeout(r, 50); });
      }
      return queue.shift()!;
    },
    close: () => s.close(),
  };
}

describe('UDP proxy', () => {
  it('concurrent clients: replies from the service address, one endpoint per session, sessions spread', async () => {
    const { proxy, port } = await udpProxy();
    const clients = await Promise.all(Array.from({ length: 24 }, () => client(port)));
    try {
      const owners = await Promise.all(clients.map(async (c, i) => {
        const ids = new Set<string>();
        for (let j = 0; j < 10; j++) {
          const r = await c.ask(`ping-${i}-${j}`);
          const [id, body] = r.split(' ');
          expect(body).toBe(`ping-${i}-${j}`);
          ids.add(id!);
        }
        expect(ids.size).toBe(1);
        return [...ids][0]!;
      }));
      const per: Record<string, number> = {};
      for (const o of owners) per[o] = (per[o] ?? 0) + 1;
      expect(per).toEqual({ a: 8, b: 8, c: 8 });
      expect(proxy.activeUdpSessions).toBe(24);
    } finally {
      for (const c of clients) c.close();
    }
  });

  it('idle sessions are closed by the sweep', async () => {
    const { proxy, port } = await udpProxy({ udpSessionIdleMs: 150 });
    const c = await client(port);
    try {
      await c.ask('x');
      expect(proxy.activeUdpSessions).toBe(1);
      await until(() => proxy.activeUdpSessions === 0, 'session swept', 3_000);
      expect((await c.ask('y')).endsWith(' y')).toBe(true); // a new session serves it
    } finally {
      c.close();
    }
  });

  it('session cap: datagrams of clients past the cap are dropped and counted', async () => {
    const { port, registry } = await udpProxy({ maxUdpSessions: 2 });
    const cs = await Promise.all([client(port), client(port), client(port)]);
    try {
      await cs[0]!.ask('1');
      await cs[1]!.ask('2');
      await expect(cs[2]!.ask('3', 300)).rejects.toThrow(/timeout/);
      const drops = (await registry.getSingleMetric('edgeway_proxy_drops_total')!.get()).values.find((v) => v.labels.reason === 'udp_session_limit');
      expect(drops?.value).toBeGreaterThanOrEqual(1);
    } finally {
      for (const c of cs) c.close();
    }
  });
});
