// The userspace proxy with accelerated forwarding (src/native): the same TCP
// behaviour through splice and sockmap as through the Node pump, and the path that
// carried each flow counted. Real sockets on loopback; identity-echo backends.
// Needs the native addon (CI builds it; there a missing addon fails, not skips).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { UserspaceProxy } from '../../src/proxy/proxy.js';
import { Accelerators } from '../../src/native/accelerator.js';
import type { ForwarderKind } from '../../src/native/forwarder.js';
import { silentLogger } from '../../src/util/log.js';
import { kernelSkipReason } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';
import { echoThrough, ep, freePort, servicePort, startBackends, stopBackends, until, whoami, type Backend } from './util.js';

const probe = kernelSkipReason() === undefined ? new Accelerators({}) : undefined;
const kinds = (['splice', 'sockmap'] as const).filter((k) => probe?.status.find((s) => s.kind === k)?.available);
const why = probe?.status.find((s) => s.kind === 'splice')?.reason ?? 'native addon not built';
probe?.close();
const skip = requirement('accelerated proxy tests', kernelSkipReason(), kinds.length === 0 ? why : undefined);

// An empty parameter list would register no test at all (vitest: "No test suite
// found"): say why instead.
if (skip) describe.skip(`proxy through an accelerator: ${skip}`, () => { it('needs splice or sockmap', () => undefined); });

describe.each(skip ? [] : kinds as ForwarderKind[])('proxy through %s', (kind) => {
  let backends: Backend[] = [];
  let accel: Accelerators;
  let registry: Registry;
  let proxy: UserspaceProxy;
  let port = 0;

  beforeAll(async () => {
    backends = await startBackends(['a', 'b']);
    registry = new Registry();
    accel = new Accelerators({ registry });
    proxy = new UserspaceProxy({ logger: silentLogger(), registry, listenHost: '127.0.0.1', forwarder: accel.pick(kind) });
    port = await freePort();
    await proxy.apply([servicePort({ userspacePort: port, endpoints: backends.map((b) => ep('127.0.0.1', b.port)), policy: { kind: 'roundRobin' } })]);
  });
  afterAll(async () => {
    await proxy?.close();
    accel?.close();
    await stopBackends(backends);
  });
  afterEach(async () => { await until(() => proxy.activeFlows === 0, 'flows closed'); });

  const sum = async (name: string, label: string): Promise<number> => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
    return (m?.values ?? []).filter((v) => v.labels[label] === kind).reduce((a, v) => a + v.value, 0);
  };
  /**
   * Flows this accelerator took, plus those it handed down at hand-over: sockmap
   * refuses a socket whose FIN already arrived (a short request sent with its FIN),
   * and that flow goes to splice — counted as a fallback from sockmap.
   */
  const carried = async (): Promise<number> =>
    (await sum('edgeway_dataplane_forwarded_connections_total', 'kind')) + (await sum('edgeway_dataplane_forward_fallbacks_total', 'from'));

  it.each([0, 1, 65_537, 16 << 20])('echo of %i random bytes (sha256), carried by the accelerator', async (size) => {
    const before = await carried();
    const payload = randomBytes(size);
    const back = await echoThrough(port, payload);
    expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
    await until(() => proxy.activeFlows === 0, 'flow closed');
    expect(await carried()).toBe(before + 1);
  });

  it('round robin still picks per connection', async () => {
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push(await whoami(port));
    expect(ids.sort()).toEqual(['a', 'a', 'a', 'b', 'b', 'b']);
  });

  it('half-close from the endpoint side: the client keeps sending after the endpoint FIN', async () => {
    let received = 0;
    let sawEnd = false;
    const srv = net.createServer({ allowHalfOpen: true }, (s) => {
      s.end('banner\n');
      s.on('data', (d) => { received += d.length; });
      s.on('end', () => { sawEnd = true; });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const p2 = await freePort();
    await proxy.apply([
      servicePort({ userspacePort: port, endpoints: backends.map((b) => ep('127.0.0.1', b.port)), policy: { kind: 'roundRobin' } }),
      servicePort({ name: 'hc', userspacePort: p2, endpoints: [ep('127.0.0.1', (srv.address() as net.AddressInfo).port)], policy: { kind: 'random' } }),
    ]);
    try {
      const c = net.connect({ host: '127.0.0.1', port: p2, allowHalfOpen: true });
      const got = await new Promise<string>((resolve) => { let b = ''; c.on('data', (d) => { b += d; }); c.on('end', () => resolve(b)); });
      expect(got).toBe('banner\n');
      c.end(randomBytes(1 << 20));
      await until(() => sawEnd, 'endpoint sees the client FIN', 10_000);
      expect(received).toBe(1 << 20);
      c.destroy();
    } finally {
      srv.close();
    }
  });
});
