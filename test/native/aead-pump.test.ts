/**
 * The native EWC1 record pump (native/src/aead-pump.cc through NativeAeadForwarder)
 * against the reference codec (test/helpers/ewc1-codec.mjs, node:crypto) over real
 * loopback TCP sockets. Layout of every case:
 *
 *   plainPeer ── plain ═[pump]═ cipher ── cipherPeer
 *   (test, plaintext)          (test, EWC1 records via the reference codec)
 *
 * The pump's tx direction (plain → cipher) is opened by cipherPeer with txKey/txIv,
 * its rx direction is sealed by cipherPeer with rxKey/rxIv. Payloads are seeded
 * random bytes checked by sha256. scripts/ci-asan.sh runs this file under ASan/UBSan.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { NativeAeadForwarder, prepareCipherHandover, type AeadState } from '../../src/native/aead-forwarder.js';
import { loadNative } from '../../src/native/addon.js';
import { Accelerators } from '../../src/native/accelerator.js';
import type { NativeAddon, NativePool } from '../../src/native/addon.js';
import { ForwardCancelledError, ForwardError, HandoverError } from '../../src/native/errors.js';
import { NativeEngine } from '../../src/native/native-forwarders.js';
import { isFdExhausted } from '../../src/proxy/service.js';
import { Ewc1Opener, Ewc1Sealer } from '../helpers/ewc1-codec.mjs';
import { prng } from '../helpers/prng.js';
import { requirement } from '../helpers/skip.js';

const native = loadNative();
const skip = requirement('EWC1 record pump', native.addonReason, native.addon?.aeadReason ?? undefined);
const MIB = 1 << 20;

function bytes(seed: number, n: number): Buffer {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}
const flip = (b: Buffer, i: number, mask: number): void => { b.writeUInt8(b.readUInt8(i) ^ mask, i); };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function keys(seed: number, seqs: { txSeq?: number; rxSeq?: number } = {}): AeadState {
  return { txKey: bytes(seed, 16), txIv: bytes(seed + 1, 12), txSeq: seqs.txSeq ?? 0, rxKey: bytes(seed + 2, 16), rxIv: bytes(seed + 3, 12), rxSeq: seqs.rxSeq ?? 0 };
}

interface Collected { data: Buffer; ended: boolean; error?: string; codecError?: string }

/** Everything a peer receives (through `opener` when given) until its socket closes. */
function collect(sock: net.Socket, opener?: Ewc1Opener): { done: Promise<Collected>; ended: Promise<void>; length: () => number } {
  const chunks: Buffer[] = [];
  let length = 0;
  const out: Collected = { data: Buffer.alloc(0), ended: false };
  let endedResolve!: () => void;
  const ended = new Promise<void>((r) => { endedResolve = r; });
  sock.on('data', (d: Buffer) => {
    try {
      for (const p of opener ? opener.push(d) : [d]) { chunks.push(p); length += p.length; }
    } catch (err) {
      out.codecError = (err as Error).message;
      sock.destroy();
    }
  });
  sock.on('end', () => {
    try { opener?.finish(); out.ended = true; } catch (err) { out.codecError = (err as Error).message; }
    endedResolve();
  });
  sock.on('error', (err: NodeJS.ErrnoException) => { out.error = err.code ?? err.message; });
  const done = new Promise<Collected>((resolve) => sock.on('close', () => { out.data = Buffer.concat(chunks); resolve(out); }));
  return { done, ended, length: () => length };
}

/** A connected pair whose server end Node never read (pauseOnConnect), as the pump requires. */
async function tcpPair(): Promise<{ peer: net.Socket; handed: net.Socket }> {
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const peer = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  peer.on('error', () => undefined); // resets are expected in failure cases; collect() records them
  const handed = await accepted;
  await new Promise<void>((r) => (peer.connecting ? peer.once('connect', () => r()) : r()));
  server.close();
  return { peer, handed };
}

async function rig(): Promise<{ plainPeer: net.Socket; plain: net.Socket; cipherPeer: net.Socket; cipher: net.Socket }> {
  const p = await tcpPair();
  const c = await tcpPair();
  return { plainPeer: p.peer, plain: p.handed, cipherPeer: c.peer, cipher: c.handed };
}

function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 5);
    };
    tick();
  });
}

describe.skipIf(skip)('EWC1 record pump (native)', { timeout: 120_000 }, () => {
  const engine = skip ? undefined : new NativeEngine(native.addon!, { threads: 2 });
  const fwd = engine ? new NativeAeadForwarder(engine) : undefined;
  afterAll(() => engine?.close());

  it.each([
    ['empty', 0],
    ['1 byte', 1],
    ['65535 bytes', 65535],
    ['65536 bytes (one full record)', 65536],
    ['65537 bytes', 65537],
    ['8 MiB', 8 * MIB],
  ])('%s both directions at once, sha256 equal', async (_name, size) => {
    const r = await rig();
    const st = keys(size + 11);
    const a = bytes(size + 1, size);
    const b = bytes(size + 2, size);
    const gotPlain = collect(r.plainPeer);
    const gotCipher = collect(r.cipherPeer, new Ewc1Opener(st.txKey, st.txIv));
    const done = fwd!.forward(r.plain, r.cipher, st);
    r.plainPeer.end(a);
    const sealer = new Ewc1Sealer(st.rxKey, st.rxIv);
    r.cipherPeer.end(Buffer.concat([...sealer.records(b), sealer.end()]));
    expect(await done).toEqual({ kind: 'aead', bytesIn: size, bytesOut: size });
    const [p, c] = await Promise.all([gotPlain.done, gotCipher.done]);
    expect({ ended: p.ended, error: p.error, sha: sha(p.data) }).toEqual({ ended: true, error: undefined, sha: sha(b) });
    expect({ ended: c.ended, codec: c.codecError, sha: sha(c.data) }).toEqual({ ended: true, codec: undefined, sha: sha(a) });
    expect(r.plain.destroyed && r.cipher.destroyed).toBe(true);
  });

  it('records are the spec known-answer vectors (shared with the channel codec)', async () => {
    const key = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
    const iv = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaab', 'hex');
    const text = Buffer.from('edgeway EWC1 known-answer record');
    const cases = [
      { seq: 0, plain: text, record: '00000030cfe25fde09e84a2acf2ff6316679de0f24800e69ed644aca573003fe21e2fdcc9b6d71d186b83202ddf67cfd336896e9' },
      { seq: 4328719365, plain: text, record: '00000030183581d3f6ea861a0c0a26a31fcb10a7c6a9f54b57b3c8ecfeddb9e86d4e3ce03f79db640b0518e8cb1a6db07111cd0c' },
      { seq: 1, plain: Buffer.alloc(0), record: '00000010f1c240c1830b0285f556fc088e3899af' },
    ];
    for (const v of cases) {
      const r = await rig();
      const raw = collect(r.cipherPeer);
      const st = { ...keys(7, { txSeq: v.seq }), txKey: key, txIv: iv };
      const done = fwd!.forward(r.plain, r.cipher, st);
      r.plainPeer.end(v.plain);
      await raw.ended;
      r.cipherPeer.end(new Ewc1Sealer(st.rxKey, st.rxIv).end());
      await done;
      const got = (await raw.done).data.toString('hex');
      expect(got.slice(0, v.record.length), `seq ${v.seq}`).toBe(v.record);
      // Then END at the next seq (none after an empty first record: that was END).
      const end = v.plain.length ? new Ewc1Sealer(key, iv, v.seq + 1).end().toString('hex') : '';
      expect(got.slice(v.record.length)).toBe(end);
    }
  });

  it.each(['plain side first', 'cipher side first'])('half-close, %s: the other direction keeps flowing', async (order) => {
    const r = await rig();
    const st = keys(order.length);
    const a = bytes(101, 300_000);
    const b = bytes(102, 300_000);
    const gotPlain = collect(r.plainPeer);
    const gotCipher = collect(r.cipherPeer, new Ewc1Opener(st.txKey, st.txIv));
    const done = fwd!.forward(r.plain, r.cipher, st);
    const sealer = new Ewc1Sealer(st.rxKey, st.rxIv);
    if (order === 'plain side first') {
      r.plainPeer.end(a);
      await gotCipher.ended; // END then EOF arrived: the pump half-closed the cipher side
      r.cipherPeer.end(Buffer.concat([...sealer.records(b, 10_000), sealer.end()]));
    } else {
      r.cipherPeer.end(Buffer.concat([...sealer.records(b, 10_000), sealer.end()]));
      await gotPlain.ended; // the peer's END became a FIN on the plain side
      r.plainPeer.end(a);
    }
    expect(await done).toEqual({ kind: 'aead', bytesIn: a.length, bytesOut: b.length });
    const [p, c] = await Promise.all([gotPlain.done, gotCipher.done]);
    expect([sha(p.data), sha(c.data), p.ended, c.ended, c.codecError]).toEqual([sha(b), sha(a), true, true, undefined]);
  });

  // rxInitial: cipher bytes JS read before the hand-over, split at awkward places.
  it.each([
    ['two whole records and half of the third', 0, (all: Buffer, lens: number[]) => lens[0]! + lens[1]! + Math.floor(lens[2]! / 2)],
    ['a partial header', 0, () => 2],
    ['everything including END', 0, (all: Buffer) => all.length],
    ['whole records after one JS opened itself (rxSeq 1)', 1, (_all: Buffer, lens: number[]) => lens[1]! + lens[2]!],
  ])('rxInitial holding %s', async (_name, jsRecords, split) => {
    const r = await rig();
    const st = keys(55, { rxSeq: jsRecords });
    const b = bytes(103, 200_000);
    const sealer = new Ewc1Sealer(st.rxKey, st.rxIv);
    const recs = [...sealer.records(b, 50_000), sealer.end()];
    const skipped = recs.slice(0, jsRecords); // opened by "JS" before the hand-over
    const rest = Buffer.concat(recs.slice(jsRecords));
    const cut = split(rest, recs.slice(jsRecords).map((x) => x.length));
    const gotPlain = collect(r.plainPeer);
    const gotCipher = collect(r.cipherPeer, new Ewc1Opener(st.txKey, st.txIv));
    const done = fwd!.forward(r.plain, r.cipher, { ...st, rxInitial: rest.subarray(0, cut) });
    r.cipherPeer.end(rest.subarray(cut));
    r.plainPeer.end();
    const want = b.subarray(skipped.length * 50_000);
    expect(await done).toEqual({ kind: 'aead', bytesIn: 0, bytesOut: want.length });
    const p = await gotPlain.done;
    await gotCipher.done;
    expect([sha(p.data), p.ended]).toEqual([sha(want), true]);
  });

  it('prepareCipherHandover returns what Node buffered after JS read a record itself', async () => {
    const r = await rig();
    const st = keys(77);
    // Small records: a paused socket buffers only up to its highWaterMark (16 KiB on Node 20).
    const size = 1000;
    const b = bytes(104, 250_000);
    const sealer = new Ewc1Sealer(st.rxKey, st.rxIv);
    const recs = [...sealer.records(b, size), sealer.end()];
    const first = Buffer.concat(recs.slice(0, 3));
    const partial = recs[3]!.subarray(0, 500);
    r.cipherPeer.write(Buffer.concat([first, partial]));
    // JS side of the channel: read the first record (the "status") itself.
    const onReadable = (): void => undefined;
    r.cipher.on('readable', onReadable);
    await until(() => r.cipher.readableLength >= first.length + partial.length, 'buffered cipher bytes');
    r.cipher.off('readable', onReadable);
    const status = r.cipher.read(recs[0]!.length) as Buffer;
    const opener = new Ewc1Opener(st.rxKey, st.rxIv);
    expect(sha(Buffer.concat(opener.push(status)))).toBe(sha(b.subarray(0, size)));
    const rxInitial = prepareCipherHandover(r.cipher);
    expect(rxInitial.length).toBe(first.length + partial.length - recs[0]!.length);
    const gotPlain = collect(r.plainPeer);
    collect(r.cipherPeer);
    const done = fwd!.forward(r.plain, r.cipher, { ...st, rxSeq: 1, rxInitial });
    r.cipherPeer.end(Buffer.concat([recs[3]!.subarray(500), ...recs.slice(4)]));
    r.plainPeer.end();
    expect(await done).toMatchObject({ bytesOut: b.length - size });
    expect(sha((await gotPlain.done).data)).toBe(sha(b.subarray(size)));
  });

  // Each case: what cipherPeer sends, and how many plaintext bytes may reach plainPeer
  // (only records authenticated before the bad one). After a valid END the plain
  // stream is whole and ended cleanly; what follows END still fails the pair.
  const rec = 65_536;
  it.each([
    ['a tampered ciphertext byte in record 2', (s: Ewc1Sealer, b: Buffer) => { const r = s.records(b); flip(r[1]!, 4 + 100, 1); return [...r, s.end()]; }, rec],
    ['a tampered tag', (s: Ewc1Sealer, b: Buffer) => { const r = s.records(b); flip(r[1]!, r[1]!.length - 1, 0x80); return [...r, s.end()]; }, rec],
    ['a tampered header (length changes the AAD)', (s: Ewc1Sealer, b: Buffer) => { const r = s.records(b); flip(r[1]!, 3, 1); return r; }, rec],
    ['records reordered', (s: Ewc1Sealer, b: Buffer) => { const r = s.records(b); return [r[1]!, r[0]!]; }, 0],
    ['oversize header (16 + 65537)', () => { const h = Buffer.alloc(4 + 100); h.writeUInt32BE(16 + 65537); return [h]; }, 0],
    ['undersize header (15)', () => { const h = Buffer.alloc(4 + 15); h.writeUInt32BE(15); return [h]; }, 0],
    ['truncation: EOF without END', (s: Ewc1Sealer, b: Buffer) => s.records(b), 3 * rec],
    ['truncation: EOF inside a record', (s: Ewc1Sealer, b: Buffer) => { const r = s.records(b); return [r[0]!, r[1]!.subarray(0, 5000)]; }, rec],
    ['bytes after END', (s: Ewc1Sealer, b: Buffer) => [...s.records(b), s.end(), Buffer.from([0])], 3 * rec],
  ])('%s → EBADMSG, nothing unauthenticated written', async (_name, build, allowed) => {
    const r = await rig();
    const st = keys(99);
    const b = bytes(105, 3 * rec);
    const gotPlain = collect(r.plainPeer);
    const opener = new Ewc1Opener(st.txKey, st.txIv);
    const gotCipher = collect(r.cipherPeer, opener);
    const done = fwd!.forward(r.plain, r.cipher, st);
    r.cipherPeer.end(Buffer.concat(build(new Ewc1Sealer(st.rxKey, st.rxIv), b)));
    const err = await done.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ForwardError);
    expect((err as ForwardError).errno).toBe('EBADMSG');
    // The pump resets the plain side (SO_LINGER 0), but a Node peer may report that
    // RST as EOF: libuv turns POLLHUP after a partial read into EOF. So the plain
    // peer's end is not asserted; what it received must be authenticated bytes only.
    const p = await Promise.race([gotPlain.done, gotPlain.ended.then(() => { r.plainPeer.destroy(); return gotPlain.done; })]);
    expect(p.data.length).toBeLessThanOrEqual(allowed);
    expect(sha(p.data)).toBe(sha(b.subarray(0, p.data.length)));
    const c = await gotCipher.done;
    expect(opener.ended).toBe(false);
    expect(c.ended).toBe(false);
  });

  it('bad arguments throw TypeError and leave the sockets usable', async () => {
    const r = await rig();
    const st = keys(3);
    const bad: [string, Partial<Record<keyof AeadState, unknown>>][] = [
      ['txKey of 15 bytes', { txKey: Buffer.alloc(15) }],
      ['rxKey a string', { rxKey: 'k'.repeat(16) }],
      ['txIv of 16 bytes', { txIv: Buffer.alloc(16) }],
      ['rxIv missing', { rxIv: undefined }],
      ['txSeq negative', { txSeq: -1 }],
      ['txSeq 2^53', { txSeq: 2 ** 53 }],
      ['rxSeq fractional', { rxSeq: 1.5 }],
      ['rxSeq NaN', { rxSeq: Number.NaN }],
      ['rxInitial a string', { rxInitial: 'abc' }],
    ];
    for (const [name, patch] of bad) {
      const e = await fwd!.forward(r.plain, r.cipher, { ...st, ...patch } as AeadState).then(() => undefined, (x: unknown) => x);
      expect(e, name).toBeInstanceOf(TypeError);
    }
    expect(engine!.active).toBe(0);
    const gotPlain = collect(r.plainPeer);
    collect(r.cipherPeer);
    const done = fwd!.forward(r.plain, r.cipher, st);
    const s = new Ewc1Sealer(st.rxKey, st.rxIv);
    r.cipherPeer.end(Buffer.concat([s.record(Buffer.from('still works')), s.end()]));
    r.plainPeer.end();
    await done;
    expect((await gotPlain.done).data.toString()).toBe('still works');
  });

  it('cancel: ForwardCancelledError, the cipher peer never sees END', async () => {
    const r = await rig();
    const st = keys(4);
    const ac = new AbortController();
    const gotPlain = collect(r.plainPeer);
    const opener = new Ewc1Opener(st.txKey, st.txIv);
    const gotCipher = collect(r.cipherPeer, opener);
    const done = fwd!.forward(r.plain, r.cipher, st, { signal: ac.signal });
    r.plainPeer.write(bytes(106, 100_000));
    await until(() => gotCipher.length() === 100_000, 'plaintext through the pump');
    ac.abort();
    await expect(done).rejects.toBeInstanceOf(ForwardCancelledError);
    // The cipher peer never sees END: a reset (or an EOF the codec rejects), never a clean end.
    const c = await gotCipher.done;
    expect([c.ended, opener.ended, c.data.length]).toEqual([false, false, 100_000]);
    r.plainPeer.destroy();
    expect((await gotPlain.done).data.length).toBe(0);
  });
});

// The addon is a process boundary: a fake one stands for builds without the pump
// (or without a usable OpenSSL). The channel must get a HandoverError (keep the JS
// codec), with the sockets untouched.
describe('EWC1 record pump unavailable', () => {
  class PoolWithoutPump implements NativePool {
    readonly active = 0;
    splice(): number { throw new Error('unused'); }
    sockmap(): number { throw new Error('unused'); }
    cancel(): void {}
    close(): void {}
  }
  class PoolNoCrypto extends PoolWithoutPump {
    aeadPair(): number { throw Object.assign(new Error('aeadPair: Operation not supported'), { errno: 95 }); }
  }
  const fake = (pool: new () => NativePool, aeadReason: string | null | undefined): NativeAddon =>
    ({ abi: 2, aeadReason, Pool: pool, SockmapLink: class {}, getOriginalDst: () => null }) as unknown as NativeAddon;

  it.each([
    ['addon built before the pump', fake(PoolWithoutPump, undefined), /rebuild/],
    ['OpenSSL not resolvable', fake(PoolNoCrypto, 'OpenSSL EVP symbols not found'), /OpenSSL EVP symbols not found/],
  ])('%s: HandoverError, sockets untouched', async (_name, addon, reason) => {
    const engine = new NativeEngine(addon);
    const fwd = new NativeAeadForwarder(engine);
    expect(fwd.unavailableReason).toMatch(reason);
    const r = await rig();
    const err = await fwd.forward(r.plain, r.cipher, keys(1)).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(HandoverError);
    expect((err as Error).message).toMatch(reason);
    expect([r.plain.destroyed, r.cipher.destroyed]).toEqual([false, false]);
    for (const x of Object.values(r)) x.destroy();
  });

  // At the fd limit the pool's dup() fails: a HandoverError naming EMFILE, which the
  // proxy counts as an fd-exhaustion drop (isFdExhausted), sockets untouched.
  it('EMFILE from the pool: HandoverError with errno EMFILE, counted as fd exhaustion', async () => {
    class PoolAtFdLimit extends PoolWithoutPump {
      aeadPair(): number { throw Object.assign(new Error('aeadPair: Too many open files'), { errno: 24, code: 'ERR_NATIVE_ERRNO' }); }
    }
    const fwd = new NativeAeadForwarder(new NativeEngine(fake(PoolAtFdLimit, null)));
    const r = await rig();
    const err = await fwd.forward(r.plain, r.cipher, keys(2)).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(HandoverError);
    expect([(err as HandoverError).errno, isFdExhausted(err)]).toEqual(['EMFILE', true]);
    expect([r.plain.destroyed, r.cipher.destroyed]).toEqual([false, false]);
    for (const x of Object.values(r)) x.destroy();
  });

  it('Accelerators.aead() is undefined without the addon, and says why', () => {
    const accel = new Accelerators({ native: { addonReason: 'not built' } });
    expect([accel.aead(), accel.aeadReason]).toEqual([undefined, 'native addon not loaded']);
  });
});
