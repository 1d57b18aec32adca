// The proxy agent part: listeners opened and pruned by the data plane's sync
// engine (open keeps the previous ones, prune closes them), and stop(): listeners
// closed at once, flows in progress given their deadline, then cut.
// IP plan: everything on 127.0.0.1 (backends: identity-echo children; the cluster
// IP 10.96.0.10 is data only, never dialled).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { Registry } from 'prom-client';
import { createProxyPart } from '../../src/proxy/part.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { silentLogger } from '../../src/util/log.js';
import { ep, freePort, roundTrip, seededBytes, servicePort, sha, startBackends, stopBackends, until, whoami, type Backend } from './util.js';

let backends: Backend[] = [];
beforeAll(async () => { backends = await startBackends(['a', 'b']); });
afterAll(async () => { await stopBackends(backends); });

function config(): Config {
  return { ...configSchema.parse({ dataplane: { mode: 'nftables', minSyncIntervalMs: 0 } }), nodeName: 'n1' };
}

describe('proxy agent part', () => {
  it('open() adds listeners and keeps the previous ones; prune() closes what the plan no longer names', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const part = await createProxyPart({ listenHost: '127.0.0.1' })({ config: config(), logger: silentLogger(), registry: new Registry() });
    try {
      expect(part.readiness.check().ready).toBe(false);
      const plan1 = { servicePorts: [servicePort({ name: 'one', userspacePort: p1, endpoints: [ep('127.0.0.1', backends[0]!.port)] })] };
      const plan2 = { servicePorts: [servicePort({ name: 'two', userspacePort: p2, endpoints: [ep('127.0.0.1', backends[1]!.port)] })] };
      expect(await part.listeners.open(plan1)).toEqual({ failed: [] });
      expect(part.readiness.check().ready).toBe(true);
      expect(await whoami(p1)).toBe('a');
      await part.listeners.open(plan2);
      // Rules of plan 1 may still point at p1 until the data plane wrote plan 2.
      expect(await whoami(p1)).toBe('a');
      expect(await whoami(p2)).toBe('b');
      await part.listeners.prune(plan2);
      await expect(whoami(p1, { timeoutMs: 1_000 })).rejects.toThrow(/ECONNREFUSED/);
      expect(await whoami(p2)).toBe('b');
    } finally {
      await part.stop();
    }
    await expect(whoami(p2, { timeoutMs: 1_000 })).rejects.toThrow(/ECONNREFUSED/);
  });

  it('a port held by another process is reported failed (and retried by the caller), the others serve', async () => {
    const [busy, ok] = [await freePort(), await freePort()];
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(busy, '127.0.0.1', r));
    const part = await createProxyPart({ listenHost: '127.0.0.1' })({ config: config(), logger: silentLogger(), registry: new Registry() });
    try {
      const plan = { servicePorts: [
        servicePort({ name: 'held', userspacePort: busy, endpoints: [ep('127.0.0.1', backends[0]!.port)] }),
        servicePort({ name: 'free', userspacePort: ok, endpoints: [ep('127.0.0.1', backends[1]!.port)] }),
      ] };
      expect(await part.listeners.open(plan)).toEqual({ failed: ['default/held:80/TCP'] });
      expect(part.readiness.check().detail).toContain('default/held:80/TCP');
      expect(await whoami(ok)).toBe('b');
    } finally {
      await part.stop();
      await new Promise((r) => holder.close(r));
    }
  });

  it('stop() closes the listeners at once, lets a flow in progress go on until the deadline, then cuts it', async () => {
    const port = await freePort();
    const part = await createProxyPart({ listenHost: '127.0.0.1', closeDeadlineMs: 1_500 })({ config: config(), logger: silentLogger(), registry: new Registry() });
    await part.listeners.open({ servicePorts: [servicePort({ userspacePort: port, endpoints: [ep('127.0.0.1', backends[0]!.port)] })] });
    const sock = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((r, j) => { sock.once('connect', () => r()); sock.once('error', j); });
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('error', () => undefined); // the cut is a reset
    const first = seededBytes(1, 64 * 1024);
    expect(sha(await roundTrip(sock, first))).toBe(sha(first));
    expect(part.proxy.activeFlows).toBe(1);

    const stopped = part.stop();
    // New connections are refused from the start of stop()...
    await expect(whoami(port, { timeoutMs: 1_000 })).rejects.toThrow(/ECONNREFUSED/);
    // ...while the flow in progress still carries bytes, intact.
    const second = seededBytes(2, 256 * 1024);
    expect(sha(await roundTrip(sock, second))).toBe(sha(second));
    await stopped;
    await closed;
    expect(part.proxy.activeFlows).toBe(0);
  });

  it('stop() returns as soon as the last flow ends before the deadline', async () => {
    const port = await freePort();
    // A deadline far beyond the test timeout: only the flow's own end can let stop() return.
    const part = await createProxyPart({ listenHost: '127.0.0.1', closeDeadlineMs: 600_000 })({ config: config(), logger: silentLogger(), registry: new Registry() });
    await part.listeners.open({ servicePorts: [servicePort({ userspacePort: port, endpoints: [ep('127.0.0.1', backends[1]!.port)] })] });
    const sock = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((r, j) => { sock.once('connect', () => r()); sock.once('error', j); });
    const payload = seededBytes(3, 32 * 1024);
    expect(sha(await roundTrip(sock, payload))).toBe(sha(payload));
    let done = false;
    const stopped = part.stop().then(() => { done = true; });
    await until(() => part.proxy.activeFlows === 1, 'flow open');
    expect(done).toBe(false);
    sock.end();
    await stopped;
    expect(part.proxy.activeFlows).toBe(0);
  }, 20_000);
});
