/**
 * One compliance suite, run against every forwarding path: Node streams, splice,
 * sockmap, and the addon-absent pick (what the agent uses without the addon).
 * Real sockets on 127.0.0.1 in this process (no namespace needed: the sockmap
 * program is attached to our own map and sees only the sockets we insert).
 *
 * CI (root, toolchain installed by .ci/run) must run every path: there a missing
 * accelerator fails instead of skipping.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accelerators } from '../../src/native/accelerator.js';
import { ForwardCancelledError, ForwardError } from '../../src/native/errors.js';
import type { Forwarder, ForwardResult } from '../../src/native/forwarder.js';
import { kernelSkipReason } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';
import { fdCounts, ForwardHarness, receiveAll, sendRandom, sha256, waitFor, withTimeout } from './forward-harness.js';

const accel = new Accelerators();
const absent = new Accelerators({ native: { addonReason: 'simulated: addon absent' } });
interface Path { name: string; forwarder?: Forwarder; skip?: string }
function path(name: string, forwarder: Forwarder | undefined, why: string | undefined): Path {
  if (forwarder) return { name, forwarder };
  return { name, skip: requirement(`${name} forwarder`, why ?? 'unavailable') };
}
const statusOf = (k: string): string | undefined => accel.status.find((s) => s.kind === k)?.reason;

// Accelerated paths run as the proxy runs them: the kind first, with the per-connection
// fallback (a FIN that arrives before the hand-over makes the kernel refuse the
// sockmap insert; that connection goes to splice and must still complete).
const pick = (k: 'splice' | 'sockmap'): Forwarder | undefined => (accel.get(k) ? accel.pick(k) : undefined);
const paths: Path[] = [
  path('node', accel.get('node'), undefined),
  path('splice', pick('splice'), statusOf('splice')),
  kernelSkipReason() ? { name: 'sockmap', skip: kernelSkipReason() } : path('sockmap', pick('sockmap'), statusOf('sockmap')),
  path('addon-absent', absent.pick('auto'), undefined),
];

afterAll(() => { accel.close(); absent.close(); });

describe.each(paths)('forwarder compliance: $name', ({ name, forwarder, skip }) => {
  let h: ForwardHarness;
  let before: { fds: number; pipes: number };

  beforeAll(async () => {
    if (!forwarder) return;
    before = fdCounts();
    h = new ForwardHarness(forwarder);
    await h.start();
  });
  afterAll(async () => {
    if (!forwarder) return;
    await h.close();
    // Two listening sockets were added after `before`; everything else must be gone.
    await waitFor(() => { const c = fdCounts(); return c.fds <= before.fds && c.pipes <= before.pipes; }, 10_000, 'fds and pipes back to start')
      .catch((err: Error) => { throw new Error(`${err.message}: before ${JSON.stringify(before)}, now ${JSON.stringify(fdCounts())}`); });
  });

  async function exchange(up: number, down: number): Promise<ForwardResult> {
    const n = h.results.length;
    const got = new Promise<{ bytes: number; sha256: string; sent: string }>((resolve, reject) => {
      h.onBackend = (s) => {
        const recv = receiveAll(s);
        const sent = sendRandom(s, down);
        Promise.all([recv, sent]).then(([r, sent]) => resolve({ ...r, sent }), reject);
      };
    });
    const c = await h.connect();
    const [clientRecv, clientSent, backend] = await Promise.all([receiveAll(c), sendRandom(c, up), got]);
    expect(backend.bytes).toBe(up);
    expect(backend.sha256).toBe(clientSent);
    expect(clientRecv.bytes).toBe(down);
    expect(clientRecv.sha256).toBe(backend.sent);
    c.destroy();
    const r = await withTimeout(h.results[n]!, 10_000, 'forward result');
    expect([r.bytesIn, r.bytesOut]).toEqual([up, down]);
    return r;
  }

  it.skipIf(skip)('carries random payloads both ways intact (sha256)', async () => {
    for (const [up, down] of [[1, 0], [0, 1], [65_537, 3], [3 << 20, 5 << 20]] as const) await exchange(up, down);
  });

  it.skipIf(skip)('carries 256 MiB both ways at once intact (sha256)', async () => {
    const r = await exchange(256 << 20, 256 << 20);
    expect(r.kind).toBe(name === 'addon-absent' ? 'node' : name);
  }, 120_000);

  it.skipIf(skip)('propagates a client half-close; the backend still answers after it', async () => {
    const n = h.results.length;
    h.onBackend = (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      s.once('end', () => s.end(Buffer.concat([Buffer.from('after-end:'), ...chunks])));
    };
    const c = await h.connect();
    const recv = receiveAll(c);
    c.end('ping');
    const r = await withTimeout(recv, 10_000, 'reply after half-close');
    expect(r.sha256).toBe(sha256(Buffer.from('after-end:ping')));
    await withTimeout(h.results[n]!, 10_000, 'forward result');
  });

  it.skipIf(skip)('propagates a backend half-close; the client still sends after it', async () => {
    const n = h.results.length;
    const backendGot = new Promise<string>((resolve) => {
      h.onBackend = (s) => {
        const chunks: Buffer[] = [];
        s.on('data', (d: Buffer) => chunks.push(d));
        s.once('end', () => resolve(Buffer.concat(chunks).toString()));
        s.end('bye');
      };
    });
    const c = await h.connect();
    const recv = receiveAll(c);
    expect((await withTimeout(recv, 10_000, 'backend FIN')).bytes).toBe(3);
    c.end('late data');
    expect(await withTimeout(backendGot, 10_000, 'data after backend half-close')).toBe('late data');
    await withTimeout(h.results[n]!, 10_000, 'forward result');
  });

  it.skipIf(skip).each(['client', 'backend'] as const)('a %s reset reaches the other side and fails the forward', async (who) => {
    const n = h.results.length;
    const backendSock = new Promise<net.Socket>((resolve) => { h.onBackend = (s) => { s.write('hello'); resolve(s); }; });
    const c = await h.connect();
    await new Promise<void>((r) => c.once('data', () => r()));
    const b = await backendSock;
    const [victim, other] = who === 'client' ? [c, b] : [b, c];
    const otherClosed = new Promise<void>((r) => other.once('close', () => r()));
    victim.resetAndDestroy();
    await withTimeout(otherClosed, 10_000, 'other side closed');
    await expect(withTimeout(h.results[n]!, 10_000, 'forward result')).rejects.toBeInstanceOf(ForwardError);
  });

  it.skipIf(skip)('serves 1,000 concurrent pairs', async () => {
    const N = 1000;
    const n0 = h.results.length;
    h.onBackend = (s) => s.pipe(s);
    let release!: () => void;
    const barrier = new Promise<void>((r) => { release = r; });
    let echoed = 0;
    const one = async (i: number): Promise<void> => {
      const c = await h.connect();
      const msg = Buffer.from(`pair-${i}-`.padEnd(1024, String.fromCharCode(97 + (i % 26))));
      const recv = receiveAll(c);
      c.write(msg);
      await new Promise<void>((resolve) => { let got = 0; c.on('data', (d: Buffer) => { got += d.length; if (got >= msg.length) resolve(); }); });
      echoed++;
      await barrier;
      c.end();
      const r = await recv;
      expect(r.sha256).toBe(sha256(msg));
    };
    const all: Promise<void>[] = [];
    for (let i = 0; i < N; i++) {
      all.push(one(i));
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 5)); // stay under the accept backlog
    }
    await waitFor(() => echoed === N, 60_000, `${N} pairs echoing (have ${echoed})`);
    if (name === 'splice' || name === 'sockmap') expect(accel.nativeActive).toBe(N);
    release();
    await withTimeout(Promise.all(all), 60_000, 'all pairs closed');
    const results = await withTimeout(Promise.all(h.results.slice(n0)), 30_000, 'all forward results');
    expect(results).toHaveLength(N);
    for (const r of results) expect([r.bytesIn, r.bytesOut]).toEqual([1024, 1024]);
    // The client writes before the hand-over but never FINs early: no fallback needed.
    expect(new Set(results.map((r) => r.kind))).toEqual(new Set([name === 'addon-absent' ? 'node' : name]));
  }, 120_000);
});

describe.each(paths.filter((p) => p.name !== 'addon-absent'))('forwarder cancellation: $name', ({ name, forwarder, skip }) => {
  it.skipIf(skip)('an aborted forward closes both sockets and rejects with ForwardCancelledError', async () => {
    const h = new ForwardHarness(forwarder!);
    await h.start();
    try {
      const ac = new AbortController();
      h.signal = ac.signal;
      // The ends are allowHalfOpen: a closed proxy side shows as FIN ('end') or reset ('close').
      const ended = (s: net.Socket): Promise<void> => new Promise<void>((r) => { s.once('end', () => r()); s.once('close', () => r()); s.resume(); });
      const backendClosed = new Promise<void>((resolve) => { h.onBackend = (s) => { s.write('hi'); void ended(s).then(resolve); }; });
      const c = await h.connect();
      await new Promise<void>((r) => c.once('data', () => r()));
      const clientClosed = ended(c);
      ac.abort();
      await expect(withTimeout(h.results[0]!, 10_000, 'forward result')).rejects.toBeInstanceOf(ForwardCancelledError);
      await withTimeout(Promise.all([clientClosed, backendClosed]), 10_000, `${name}: both ends closed`);
    } finally {
      await h.close();
    }
  });
});

describe.skipIf(kernelSkipReason() ?? (accel.get('splice') ? undefined : statusOf('splice')))('Accelerators.close() with pairs in flight', () => {
  it('cancels them, closes their sockets and stops the threads', async () => {
    const own = new Accelerators();
    const h = new ForwardHarness(own.pick('auto'));
    await h.start();
    try {
      h.onBackend = (s) => { s.write('hi'); };
      const clients = await Promise.all(Array.from({ length: 10 }, () => h.connect()));
      await Promise.all(clients.map((c) => new Promise<void>((r) => c.once('data', () => r()))));
      expect(own.nativeActive).toBe(10);
      const closed = Promise.all(clients.map((c) => new Promise<void>((r) => { c.once('end', () => r()); c.once('close', () => r()); })));
      own.close();
      const settled = await withTimeout(Promise.allSettled(h.results), 10_000, 'results');
      for (const r of settled) expect(r.status === 'rejected' && r.reason instanceof ForwardCancelledError).toBe(true);
      await withTimeout(closed, 10_000, 'clients closed');
      expect(own.nativeActive).toBe(0);
    } finally {
      own.close();
      await h.close();
    }
  });
});
