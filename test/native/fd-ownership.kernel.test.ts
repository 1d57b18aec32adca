/**
 * Who owns a natively forwarded pair's sockets (native/src/pool.h): the pool. Node's
 * fds are closed at the hand-over, so a pair costs the process the pool's two fds
 * (+ the two pipes of splice) — not four, which capped one agent near 4,900 flows
 * under the 20,000 fd limit (issue 17, soak). And since Node no longer holds the
 * sockets, the pool itself must reset both on an error: the peer of a side that
 * reset sees ECONNRESET, never a clean EOF that would pass a cut stream for a whole one.
 *
 * Every mode runs through the real forwarder on loopback sockets in this process:
 *
 *   a (test) ── [proxy side] ═ splice | sockmap ═ [upstream] ── b (test, backend)
 *   a (test, plain peer) ── plain ═ aead pump ═ cipher ── b (test, EWC1 peer)
 *
 * Payloads are seeded (test/helpers/prng.ts) and checked by sha256. Root: the sockmap
 * program (the other modes need only the addon).
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accelerators } from '../../src/native/accelerator.js';
import type { AeadState } from '../../src/native/aead-forwarder.js';
import { ForwardError } from '../../src/native/errors.js';
import { connectPaused, type ForwardResult } from '../../src/native/forwarder.js';
import { fdCounts, waitFor, withTimeout } from '../dataplane/forward-harness.js';
import { Ewc1Opener, Ewc1Sealer } from '../helpers/ewc1-codec.mjs';
import { kernelSkipReason } from '../helpers/netns.js';
import { seededBytes } from '../helpers/prng.js';
import { requirement } from '../helpers/skip.js';

type Mode = 'splice' | 'sockmap' | 'aead';
const accel = new Accelerators();
afterAll(() => accel.close());

// fds one held-open pair adds to this process: the test's own two peers (a, b) and
// what the forwarder keeps — the pool's two socket fds, + two pipes (4 fds) for splice.
const PEERS = 2;
const KEPT: Record<Mode, { fds: number; pipes: number }> = {
  splice: { fds: 2 + 4, pipes: 4 },
  sockmap: { fds: 2, pipes: 0 },
  aead: { fds: 2, pipes: 0 },
};
const N = 40;

function skipOf(mode: Mode): string | undefined {
  const why = mode === 'aead' ? accel.aeadReason : accel.status.find((s) => s.kind === mode)?.reason;
  const kernel = mode === 'sockmap' ? kernelSkipReason() : undefined;
  return requirement(`${mode} fd ownership`, kernel, why);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** One forwarded flow: `a` and `b` are the test's ends; b's bytes go through the EWC1 codec in aead mode. */
interface Flow {
  a: net.Socket;
  b: net.Socket;
  /** Plaintext `b` received so far, in order. */
  fromB: () => Buffer;
  writeB: (data: Buffer) => void;
  endB: () => void;
  result: Promise<ForwardResult>;
}

const bytesSeen = (sock: net.Socket, decode: (d: Buffer) => Buffer[] = (d) => [d]): (() => Buffer) => {
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => { for (const p of decode(d)) chunks.push(p); });
  return () => Buffer.concat(chunks);
};

/** Opens flows of one mode; `close()` ends every listener and socket it made. */
class Rig {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly accepted: net.Socket[] = [];
  private backend?: net.Server;
  private proxy?: net.Server;
  private seed = 1;

  constructor(private readonly mode: Mode) {}

  private track(s: net.Socket): net.Socket {
    this.sockets.add(s);
    s.on('error', () => undefined); // asserted where it matters
    s.once('close', () => this.sockets.delete(s));
    return s;
  }

  private async listen(srv: net.Server): Promise<number> {
    this.servers.push(srv);
    await new Promise<void>((r) => srv.listen({ port: 0, host: '127.0.0.1', backlog: 1024 }, r));
    return (srv.address() as net.AddressInfo).port;
  }

  /** A connected pair whose server end Node never read (pauseOnConnect): [test's end, handed end]. */
  private async pausedPair(): Promise<[net.Socket, net.Socket]> {
    const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
    const port = await this.listen(srv);
    const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
    const peer = this.track(net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }));
    const handed = this.track(await accepted);
    await new Promise<void>((r) => (peer.connecting ? peer.once('connect', () => r()) : r()));
    srv.close(); // stops listening now; its callback would wait for the pair to end
    return [peer, handed];
  }

  async open(): Promise<Flow> {
    if (this.mode === 'aead') return this.openAead();
    const fwd = accel.get(this.mode)!;
    if (!this.backend) {
      this.backend = net.createServer({ allowHalfOpen: true }, (s) => { this.accepted.push(this.track(s)); });
      await this.listen(this.backend);
    }
    const backendPort = (this.backend.address() as net.AddressInfo).port;
    const [a, client] = await this.pausedPair();
    const up = this.track(await connectPaused({ host: '127.0.0.1', port: backendPort }));
    await waitFor(() => this.accepted.length > 0, 10_000, 'backend accept');
    const b = this.accepted.shift()!;
    const result = fwd.forward(client, up);
    result.catch(() => undefined);
    return { a, b, fromB: bytesSeen(b), writeB: (d) => b.write(d), endB: () => b.end(), result };
  }

  private async openAead(): Promise<Flow> {
    const fwd = accel.aead()!;
    const [a, plain] = await this.pausedPair();
    const [b, cipher] = await this.pausedPair();
    const seed = this.seed++ * 10;
    const st: AeadState = { txKey: seededBytes(seed, 16), txIv: seededBytes(seed + 1, 12), txSeq: 0, rxKey: seededBytes(seed + 2, 16), rxIv: seededBytes(seed + 3, 12), rxSeq: 0 };
    const opener = new Ewc1Opener(st.txKey, st.txIv);
    const sealer = new Ewc1Sealer(st.rxKey, st.rxIv);
    const result = fwd.forward(plain, cipher, st);
    result.catch(() => undefined);
    return {
      a, b, result,
      fromB: bytesSeen(b, (d) => opener.push(d)),
      writeB: (d) => { for (const r of sealer.records(d)) b.write(r); },
      endB: () => b.end(sealer.end()),
    };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((srv) => new Promise<void>((r) => (srv.listening ? srv.close(() => r()) : r()))));
    this.servers.length = 0;
  }
}

/** Both directions carry seeded bytes (sha256 checked); the flow stays open. */
async function exchange(f: Flow, seed: number, size = 3000): Promise<void> {
  const up = seededBytes(seed, size);
  const down = seededBytes(seed + 1, size);
  const fromA = bytesSeen(f.a);
  const gotUp = f.fromB().length;
  f.a.write(up);
  f.writeB(down);
  await waitFor(() => f.fromB().length >= gotUp + size && fromA().length >= size, 10_000, 'bytes both ways');
  expect(sha(f.fromB().subarray(gotUp))).toBe(sha(up));
  expect(sha(fromA())).toBe(sha(down));
}

const modes: Mode[] = ['splice', 'sockmap', 'aead'];

describe.each(modes)('%s: a forwarded pair costs the pool\'s fds only', (mode) => {
  const skip = skipOf(mode);
  let rig: Rig;
  beforeAll(() => { rig = new Rig(mode); });
  afterAll(async () => { await rig?.close(); });

  it.skipIf(skip)(`${N} held-open pairs: ${PEERS} + ${KEPT[mode].fds} fds each, back to the baseline after`, async () => {
    // Warm-up: whatever the first flow creates lazily (pool threads, listeners) is in the baseline.
    const warm = await rig.open();
    await exchange(warm, 7);
    warm.a.end();
    warm.endB();
    await withTimeout(warm.result, 10_000, 'warm-up flow');
    await new Promise((r) => setTimeout(r, 50));
    const before = fdCounts();

    const flows: Flow[] = [];
    for (let i = 0; i < N; i++) {
      const f = await rig.open();
      await exchange(f, 100 + 2 * i);
      flows.push(f);
    }
    const want = { fds: before.fds + N * (PEERS + KEPT[mode].fds), pipes: before.pipes + N * KEPT[mode].pipes };
    await waitFor(() => { const c = fdCounts(); return c.fds === want.fds && c.pipes === want.pipes; }, 10_000, `${mode} fds`)
      .catch((err: Error) => { throw new Error(`${err.message}: before ${JSON.stringify(before)}, want ${JSON.stringify(want)}, now ${JSON.stringify(fdCounts())}`); });
    // Node's copies are gone from the JS side too.
    expect(accel.nativeActive).toBe(N);

    for (const f of flows) { f.a.end(); f.endB(); }
    const results = await withTimeout(Promise.all(flows.map((f) => f.result)), 30_000, 'all flows done');
    for (const r of results) expect(r).toEqual({ kind: mode, bytesIn: 3000, bytesOut: 3000 });
    for (const f of flows) { f.a.destroy(); f.b.destroy(); }
    await waitFor(() => { const c = fdCounts(); return c.fds <= before.fds && c.pipes <= before.pipes; }, 10_000, 'fds back to the baseline')
      .catch((err: Error) => { throw new Error(`${err.message}: before ${JSON.stringify(before)}, now ${JSON.stringify(fdCounts())}`); });
    expect(accel.nativeActive).toBe(0);
  });

  it.skipIf(skip).each(['a', 'b'] as const)('%s resets mid-flow: the pool resets the other side (ECONNRESET, no clean EOF)', async (victim) => {
    const f = await rig.open();
    await exchange(f, 900);
    const [v, other] = victim === 'a' ? [f.a, f.b] : [f.b, f.a];
    const seen = { eof: false, error: undefined as string | undefined };
    other.on('end', () => { seen.eof = true; });
    other.on('error', (e: NodeJS.ErrnoException) => { seen.error = e.code; });
    // allowHalfOpen: a FIN shows as 'end' without 'close'; either ends the wait.
    const closed = new Promise<void>((r) => { other.once('close', () => r()); other.once('end', () => r()); });
    v.resetAndDestroy();
    await withTimeout(closed, 10_000, 'other side closed');
    expect(seen).toEqual({ eof: false, error: 'ECONNRESET' });
    const err = await withTimeout(f.result.then(() => undefined, (e: unknown) => e), 10_000, 'forward result');
    expect(err).toBeInstanceOf(ForwardError);
  });
});
