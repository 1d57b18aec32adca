// The heavier TCP proxy checks (64 MiB echo, 1,000 concurrent connections with the fd
// count back to its start). Real sockets on loopback, no root needed; they sit in the
// kernel project (run serially) to keep the unit suite within its time budget.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { UserspaceProxy } from '../../src/proxy/proxy.js';
import { silentLogger } from '../../src/util/log.js';
import { echoThrough, ep, fdCount, freePort, servicePort, startBackends, stopBackends, until, whoami, type Backend } from './util.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('TCP proxy under load', () => {
  let backends: Backend[] = [];
  let proxy: UserspaceProxy;
  let port = 0;
  beforeAll(async () => {
    backends = await startBackends(['a', 'b', 'c']);
    proxy = new UserspaceProxy({ logger: silentLogger(), registry: new Registry(), listenHost: '127.0.0.1' });
    port = await freePort();
    await proxy.apply([servicePort({ userspacePort: port, policy: { kind: 'roundRobin' }, endpoints: backends.map((b) => ep('127.0.0.1', b.port)) })]);
  });
  afterAll(async () => { await proxy.close(); await stopBackends(backends); });

  it.each([4 << 20, 64 << 20])('echo of %i random bytes (sha256 both ways, half-close)', async (size) => {
    const payload = randomBytes(size);
    const back = await echoThrough(port, payload);
    expect(back.length).toBe(size);
    expect(sha(back)).toBe(sha(payload));
  }, 60_000);

  it('1,000 concurrent connections all complete and the fd count returns to its start', async () => {
    // Warm up lazily created handles (timers, pipes) so they do not count as leaks.
    await whoami(port);
    await until(() => proxy.activeFlows === 0, 'warm-up flow closed');
    const before = fdCount();
    const payload = randomBytes(4096);
    const results = await Promise.all(Array.from({ length: 1000 }, () => echoThrough(port, payload)));
    for (const r of results) expect(sha(r)).toBe(sha(payload));
    await until(() => proxy.activeFlows === 0, 'all flows closed', 10_000);
    await until(() => fdCount() <= before, `fd count back to ${before} (now ${fdCount()})`, 10_000);
  }, 60_000);
});
