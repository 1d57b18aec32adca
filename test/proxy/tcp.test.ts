// Real sockets on loopback: the proxy in this process, identity-echo backends as
// child processes (test/helpers/fixtures/echo-server.mjs). IP plan: clients pick
// source addresses in 127.0.0.0/8 (127.0.0.11…) to act as distinct client IPs;
// cluster addresses (10.96.0.0/16) are only labels here, never dialled.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { Registry } from 'prom-client';
import { UserspaceProxy } from '../../src/proxy/proxy.js';
import type { RemoteDialer } from '../../src/proxy/remote-dialer.js';
import { silentLogger } from '../../src/util/log.js';
import type { PlannedPolicy } from '../../src/plan/types.js';
import { echoThrough, ep, freePort, servicePort, startBackends, stopBackends, until, whoami, type Backend } from './util.js';

let backends: Backend[] = [];
const proxies: UserspaceProxy[] = [];

beforeAll(async () => { backends = await startBackends(['a', 'b', 'c']); });
afterAll(async () => { await stopBackends(backends); });
afterEach(async () => { for (const p of proxies.splice(0)) await p.close(); });

async function proxyFor(policy: PlannedPolicy, opts: Partial<ConstructorParameters<typeof UserspaceProxy>[0]> = {}, endpoints = backends.map((b) => ep('127.0.0.1', b.port))) {
  const registry = new Registry();
  const proxy = new UserspaceProxy({ logger: silentLogger(), registry, listenHost: '127.0.0.1', ...opts });
  proxies.push(proxy);
  const port = await freePort();
  const r = await proxy.apply([servicePort({ userspacePort: port, endpoints, policy })]);
  expect(r.failed).toEqual([]);
  return { proxy, port, registry };
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values ?? []).filter((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val)).reduce((a, v) => a + v.value, 0);
}

function tally(ids: string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const id of ids) c[id] = (c[id] ?? 0) + 1;
  return c;
}

describe('policies through the TCP proxy', () => {
  it('round robin: 300 connections, 100 per endpoint', async () => {
    const { port } = await proxyFor({ kind: 'roundRobin' });
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) ids.push(await whoami(port));
    expect(tally(ids)).toEqual({ a: 100, b: 100, c: 100 });
  });

  it('random: 300 connections within bounds', async () => {
    const { port } = await proxyFor({ kind: 'random' });
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) ids.push(await whoami(port));
    const c = tally(ids);
    for (const id of ['a', 'b', 'c']) { expect(c[id]).toBeGreaterThan(60); expect(c[id]).toBeLessThan(140); }
  });

  it.each([
    { name: 'ClientIP affinity', policy: { kind: 'clientIp', timeoutSeconds: 60 } as PlannedPolicy },
    { name: 'source-IP consistent hash', policy: { kind: 'consistentHash', key: { type: 'sourceIp' } } as PlannedPolicy },
  ])('$name: each client IP sticks to one endpoint, clients spread', async ({ policy }) => {
    const { proxy, port } = await proxyFor(policy);
    const seen = new Set<string>();
    for (let c = 11; c < 31; c++) {
      const ids = new Set<string>();
      for (let i = 0; i < 5; i++) {
        ids.add(await whoami(port, { localAddress: `127.0.0.${c}` }));
        // Sequential clients: the previous flow is released first (else the load bound may move a key).
        await until(() => proxy.activeFlows === 0, 'flow released');
      }
      expect(ids.size).toBe(1);
      seen.add([...ids][0]!);
    }
    expect(seen.size).toBeGreaterThanOrEqual(2);
  });

  it('least request prefers the idle endpoint', async () => {
    const { proxy, port } = await proxyFor({ kind: 'leastRequest' }, {}, backends.slice(0, 2).map((b) => ep('127.0.0.1', b.port)));
    const settled = (): Promise<void> => until(() => proxy.activeFlows === held.filter((h) => !h.destroyed).length, 'flows settled');
    const held: net.Socket[] = [];
    const holdOne = (): Promise<string> => new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      held.push(s);
      s.on('connect', () => s.write('whoami\n'));
      s.once('data', (d) => resolve(d.toString().trim()));
      s.on('error', reject);
    });
    try {
      const first = await holdOne();
      // Endpoint `first` has one open flow, the other none: every new flow goes to the other.
      for (let i = 0; i < 5; i++) { expect(await whoami(port)).not.toBe(first); await settled(); }
      const second = await holdOne();
      expect(second).not.toBe(first);
      held[1]!.destroy();
      await settled();
      for (let i = 0; i < 3; i++) { expect(await whoami(port)).toBe(second); await settled(); }
    } finally {
      for (const s of held) s.destroy();
    }
  });
});

describe('TCP proxy behaviour', () => {
  it.each([0, 1, 65_537, 1 << 20])('echo of %i random bytes through the proxy (sha256)', async (size) => {
    const { port } = await proxyFor({ kind: 'roundRobin' });
    const payload = randomBytes(size);
    const back = await echoThrough(port, payload);
    expect(back.length).toBe(size);
    expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
  });

  it('backpressure with small chunks: a stalled endpoint resumes and every byte arrives', async () => {
    // The endpoint reads nothing for a while, so the proxy's writes back up while it
    // reads small chunks (1 KiB, one per tick); then the endpoint drains everything.
    let received = 0;
    const total = 6 << 20;
    const srv = net.createServer((s) => {
      s.pause();
      setTimeout(() => s.resume(), 800);
      s.on('data', (d) => { received += d.length; });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = await proxyFor({ kind: 'random' }, {}, [ep('127.0.0.1', (srv.address() as net.AddressInfo).port)]);
    const c = net.connect({ host: '127.0.0.1', port });
    try {
      await new Promise<void>((r) => c.once('connect', () => r()));
      const chunk = randomBytes(1024);
      for (let sent = 0; sent < total; sent += chunk.length) {
        if (!c.write(chunk)) await new Promise((r) => c.once('drain', r));
        else await new Promise((r) => setImmediate(r));
      }
      await until(() => received === total, `all ${total} bytes at the endpoint (got ${received})`, 20_000);
    } finally {
      c.destroy();
      srv.close();
    }
  }, 30_000);

  it('half-close from the endpoint side: client keeps sending after the endpoint FIN', async () => {
    let received = 0;
    let serverSawEnd = false;
    const srv = net.createServer({ allowHalfOpen: true }, (s) => {
      s.end('banner\n'); // FIN first, then keep reading
      s.on('data', (d) => { received += d.length; });
      s.on('end', () => { serverSawEnd = true; });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const { port } = await proxyFor({ kind: 'random' }, {}, [ep('127.0.0.1', (srv.address() as net.AddressInfo).port)]);
      const c = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      const got = await new Promise<string>((resolve) => { let b = ''; c.on('data', (d) => { b += d; }); c.on('end', () => resolve(b)); });
      expect(got).toBe('banner\n');
      c.end(randomBytes(1 << 20));
      await until(() => serverSawEnd, 'endpoint sees the client FIN');
      expect(received).toBe(1 << 20);
      c.destroy();
    } finally {
      srv.close();
    }
  });

  it('a dead endpoint is skipped by retry; retries are counted', async () => {
    const dead = await freePort();
    const { port, registry } = await proxyFor({ kind: 'roundRobin' }, {}, [ep('127.0.0.1', dead), ep('127.0.0.1', backends[0]!.port)]);
    for (let i = 0; i < 10; i++) expect(await whoami(port)).toBe('a');
    expect(await metric(registry, 'edgeway_proxy_retries_total')).toBeGreaterThanOrEqual(5);
    expect(await metric(registry, 'edgeway_proxy_connections_total', { result: 'ok' })).toBe(10);
  });

  it('all endpoints dead: the client gets a reset, counted as connect_failed', async () => {
    const { port, registry } = await proxyFor({ kind: 'random' }, {}, [ep('127.0.0.1', await freePort())]);
    await expect(whoami(port)).rejects.toThrow(/ECONNRESET|EPIPE|closed/);
    expect(await metric(registry, 'edgeway_proxy_connections_total', { result: 'connect_failed' })).toBe(1);
  });

  it('connect timeout on a hung remote endpoint, then retry on a local one', async () => {
    const hung: RemoteDialer = {
      dialStream: (_t, signal) => new Promise<Duplex>((_resolve, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted')))),
      openDatagramSession: () => Promise.reject(new Error('unused')),
    };
    const { port, registry } = await proxyFor({ kind: 'roundRobin' }, { remoteDialer: hung, connectTimeoutMs: 150 },
      [ep('10.244.9.9', 80, { class: 'remote', nodeName: 'far' }), ep('127.0.0.1', backends[1]!.port)]);
    const t0 = Date.now();
    expect(await whoami(port)).toBe('b');
    expect(await whoami(port)).toBe('b');
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(await metric(registry, 'edgeway_proxy_retries_total')).toBeGreaterThanOrEqual(1);
  });

  it('remote endpoints without a tunnel fail fast and are counted', async () => {
    const { port, registry } = await proxyFor({ kind: 'random' }, {}, [ep('10.244.9.9', 80, { class: 'remote', nodeName: 'far' })]);
    await expect(whoami(port, { timeoutMs: 1_000 })).rejects.toThrow();
    expect(await metric(registry, 'edgeway_proxy_drops_total', { reason: 'remote_unavailable' })).toBe(1);
  });

  it('idle timeout closes a silent flow', async () => {
    const { proxy, port, registry } = await proxyFor({ kind: 'random' }, { idleTimeoutMs: 200 });
    const s = net.connect({ host: '127.0.0.1', port });
    const closedAt = await new Promise<number>((resolve) => { s.on('close', () => resolve(Date.now())); s.on('error', () => undefined); });
    expect(closedAt).toBeGreaterThan(0);
    await until(() => proxy.activeFlows === 0, 'flow released');
    expect(await metric(registry, 'edgeway_proxy_drops_total', { reason: 'idle_timeout' })).toBe(1);
  });

  it('connection limit: flows past maxFlows are reset and counted', async () => {
    const { proxy, port, registry } = await proxyFor({ kind: 'random' }, { maxFlows: 2 });
    const held = [net.connect({ host: '127.0.0.1', port }), net.connect({ host: '127.0.0.1', port })];
    try {
      await until(() => proxy.activeFlows === 2, 'two flows open');
      await expect(whoami(port, { timeoutMs: 1_000 })).rejects.toThrow();
      expect(await metric(registry, 'edgeway_proxy_drops_total', { reason: 'limit' })).toBe(1);
    } finally {
      for (const s of held) s.destroy();
    }
    await until(() => proxy.activeFlows === 0, 'flows released');
    expect(await whoami(port)).toMatch(/^[abc]$/);
  });

  it('apply is idempotent, updates endpoints in place and closes removed listeners', async () => {
    const registry = new Registry();
    const proxy = new UserspaceProxy({ logger: silentLogger(), registry, listenHost: '127.0.0.1' });
    proxies.push(proxy);
    const port = await freePort();
    const spA = servicePort({ userspacePort: port, endpoints: [ep('127.0.0.1', backends[0]!.port)] });
    expect((await proxy.apply([spA])).listeners).toBe(1);
    expect((await proxy.apply([spA])).listeners).toBe(1);
    expect(await whoami(port)).toBe('a');
    await proxy.apply([{ ...spA, endpoints: [ep('127.0.0.1', backends[2]!.port)] }]);
    expect(await whoami(port)).toBe('c');
    expect((await proxy.apply([])).listeners).toBe(0);
    await expect(whoami(port, { timeoutMs: 1_000 })).rejects.toThrow(/ECONNREFUSED/);
  });

  it('one listener for all services routed by original destination (resolver seam)', async () => {
    const registry = new Registry();
    const sharedPort = await freePort();
    // Stand-in for SO_ORIGINAL_DST: the client's source address encodes which cluster IP it "dialled".
    const resolver = { originalDst: (s: net.Socket) => (s.remoteAddress === '127.0.0.21' ? { address: '10.96.0.21', port: 80 } : s.remoteAddress === '127.0.0.22' ? { address: '10.96.0.22', port: 80 } : undefined) };
    const proxy = new UserspaceProxy({ logger: silentLogger(), registry, listenHost: '127.0.0.1', originalDst: { port: sharedPort, host: '127.0.0.1', resolver } });
    proxies.push(proxy);
    await proxy.apply([
      servicePort({ name: 's1', userspacePort: await freePort(), clusterIPs: ['10.96.0.21'], endpoints: [ep('127.0.0.1', backends[0]!.port)] }),
      servicePort({ name: 's2', userspacePort: await freePort(), clusterIPs: ['10.96.0.22'], endpoints: [ep('127.0.0.1', backends[1]!.port)] }),
    ]);
    expect(await whoami(sharedPort, { localAddress: '127.0.0.21' })).toBe('a');
    expect(await whoami(sharedPort, { localAddress: '127.0.0.22' })).toBe('b');
    await expect(whoami(sharedPort, { localAddress: '127.0.0.23', timeoutMs: 1_000 })).rejects.toThrow();
    expect(await metric(registry, 'edgeway_proxy_drops_total', { reason: 'unknown_destination' })).toBe(1);
  });
});
