/**
 * EWC1 (the data channel's handshake and records) on real loopback TCP sockets:
 * seeded random bytes both ways at once (sha256), half-close in both orders,
 * tampering, truncation, bytes after END, bad handshakes, and the known-answer
 * vectors the native pump is tested against too (fixtures/ewc1-vectors.json).
 *
 * IP plan: 127.0.0.1 only, port 0.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ChannelError } from '../../src/tunnel/channel/errors.js';
import { EwcSocket, MAX_RECORD_PLAINTEXT, openRecord, sealRecord, type DirectionKeys, type RecordErrorReason } from '../../src/tunnel/channel/ewc-codec.js';
import { confirmMac, deriveSecrets, ewcClient, ewcServer, transcriptHash, type HandshakeFailure } from '../../src/tunnel/channel/ewc-handshake.js';
import { prng, seededBytes } from '../helpers/prng.js';
import { LoopbackPairs } from './helpers.js';

interface Vectors {
  records: { key: string; iv: string; seq: number; plaintextAscii: string; record: string }[];
  handshake: Record<string, string> & { transcript: Record<string, string> };
}
const vectors = JSON.parse(readFileSync(new URL('./fixtures/ewc1-vectors.json', import.meta.url), 'utf8')) as Vectors;

const seeded = seededBytes;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const pairs = new LoopbackPairs();
afterEach(() => pairs.closeAll());
const tcpPair = (): Promise<[net.Socket, net.Socket]> => pairs.pair();

const cred = { id: randomBytes(16).toString('hex'), key: randomBytes(32) };

/** Handshaken EWC1 pair; failures and record errors are collected. */
async function ewcPair(): Promise<{ client: EwcSocket; server: EwcSocket; recErrors: RecordErrorReason[] }> {
  const [c, s] = await tcpPair();
  const recErrors: RecordErrorReason[] = [];
  const hooks = { onRecordError: (r: RecordErrorReason) => recErrors.push(r) };
  const [client, { socket: server, id }] = await Promise.all([
    ewcClient(c, cred, 5000, hooks),
    ewcServer(s, (x) => (x === cred.id ? cred.key : undefined), 5000, hooks),
  ]);
  expect(id).toBe(cred.id);
  return { client, server, recErrors };
}

/** Everything a readable delivers until 'end' (resolves) or 'error' (resolves with the error). */
function collect(d: EwcSocket): Promise<{ data: Buffer; err?: Error }> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    d.on('data', (c: Buffer) => got.push(c));
    d.on('end', () => resolve({ data: Buffer.concat(got) }));
    d.on('error', (err) => resolve({ data: Buffer.concat(got), err }));
  });
}

/** Write `payload` in seeded chunk sizes (1 B .. 200 KiB), honouring backpressure, then end(). */
async function writeAll(d: EwcSocket, payload: Buffer, seed: number): Promise<void> {
  const r = prng(seed);
  for (let off = 0; off < payload.length;) {
    const n = Math.min(payload.length - off, 1 + Math.floor(r() * (r() < 0.5 ? 512 : 200_000)));
    if (!d.write(payload.subarray(off, off + n))) await new Promise((res) => d.once('drain', res));
    off += n;
  }
  d.end();
}

function bigIntNonce(iv: Buffer, seq: number): Buffer {
  const n = Buffer.from(iv);
  n.writeBigUInt64BE(n.readBigUInt64BE(4) ^ BigInt(seq), 4);
  return n;
}

describe('EWC1 known answers (shared with the native pump)', () => {
  it.each(vectors.records.map((v) => [`seq ${v.seq}, ${v.plaintextAscii.length} B`, v] as const))('record %s', (_name, v) => {
    const k: DirectionKeys = { key: Buffer.from(v.key, 'hex'), iv: Buffer.from(v.iv, 'hex') };
    const rec = Buffer.concat(sealRecord(k, v.seq, [Buffer.from(v.plaintextAscii, 'ascii')]));
    expect(rec.toString('hex')).toBe(v.record);
    // Independent check of the nonce rule and the AAD: plain node:crypto with a BigInt nonce.
    const d = createDecipheriv('aes-128-gcm', k.key, bigIntNonce(k.iv, v.seq));
    d.setAAD(rec.subarray(0, 4));
    d.setAuthTag(rec.subarray(rec.length - 16));
    const plain = Buffer.concat([d.update(rec.subarray(4, rec.length - 16)), d.final()]);
    expect(plain.toString('ascii')).toBe(v.plaintextAscii);
    expect(rec.readUInt32BE(0)).toBe(rec.length - 4);
    expect(openRecord(k, v.seq, rec).toString('ascii')).toBe(v.plaintextAscii);
    expect(() => openRecord(k, v.seq + 1, rec)).toThrow(ChannelError);
  });

  it('handshake derivation and confirms', () => {
    const h = vectors.handshake;
    const s = deriveSecrets(Buffer.from(h.key!, 'hex'), Buffer.from(h.shared!, 'hex'), Buffer.from(h.clientNonce!, 'hex'), Buffer.from(h.serverNonce!, 'hex'));
    expect({ c2sKey: s.c2sKey.toString('hex'), c2sIv: s.c2sIv.toString('hex'), s2cKey: s.s2cKey.toString('hex'), s2cIv: s.s2cIv.toString('hex'), ck: s.ck.toString('hex') })
      .toEqual({ c2sKey: h.c2sKey, c2sIv: h.c2sIv, s2cKey: h.s2cKey, s2cIv: h.s2cIv, ck: h.ck });
    const t = h.transcript;
    const th = transcriptHash(Buffer.from(t.clientHelloAscii!, 'ascii'), Buffer.from(h.serverNonce!, 'hex'), Buffer.from(t.serverEph!, 'hex'));
    expect(th.toString('hex')).toBe(t.th);
    expect(confirmMac(s.ck, 'server', th).toString('hex')).toBe(t.serverConfirm);
    expect(confirmMac(s.ck, 'client', th).toString('hex')).toBe(t.clientConfirm);
  });
});

describe('EWC1 record stream', () => {
  it('seeded random bytes both ways at once arrive intact (sha256)', async () => {
    const { client, server } = await ewcPair();
    const up = seeded(1, 3 * 1024 * 1024 + 17);
    const down = seeded(2, 2 * 1024 * 1024 + 5);
    const gotUp = collect(server);
    const gotDown = collect(client);
    await Promise.all([writeAll(client, up, 11), writeAll(server, down, 12)]);
    const [u, d] = await Promise.all([gotUp, gotDown]);
    expect(u.err).toBeUndefined();
    expect(d.err).toBeUndefined();
    expect(sha(u.data)).toBe(sha(up));
    expect(sha(d.data)).toBe(sha(down));
    // Large records: far fewer than one per write (the writes above are often tiny).
    expect(client.raw.bytesWritten).toBeLessThan(up.length + 20 * Math.ceil(up.length / 1024));
  }, 60_000);

  it.each([['client ends first'], ['server ends first']])('half-close: %s, the other direction keeps flowing', async (order) => {
    const { client, server } = await ewcPair();
    const [first, second] = order === 'client ends first' ? [client, server] : [server, client];
    const firstGot = collect(first);
    const secondGot = collect(second);
    first.end(seeded(3, 1000));
    // `second` sees 'end' (authenticated END) while it can still write.
    await new Promise((r) => second.once('end', r));
    const late = seeded(4, 300_000);
    await writeAll(second, late, 13);
    const [a, b] = await Promise.all([firstGot, secondGot]);
    expect(sha(a.data)).toBe(sha(late));
    expect(sha(b.data)).toBe(sha(seeded(3, 1000)));
    await Promise.all([client, server].map((s) => (s.closed ? undefined : new Promise((r) => s.once('close', r)))));
    expect(client.errored ?? server.errored).toBeNull();
  }, 30_000);

  /** A raw sender speaking records by hand into a receiving EwcSocket. */
  async function rawSender(): Promise<{ raw: net.Socket; rx: EwcSocket; k: DirectionKeys; recErrors: RecordErrorReason[] }> {
    const [c, s] = await tcpPair();
    const k = { key: randomBytes(16), iv: randomBytes(12) };
    const recErrors: RecordErrorReason[] = [];
    const rx = new EwcSocket(s, { tx: { key: randomBytes(16), iv: randomBytes(12) }, rx: k, onRecordError: (r) => recErrors.push(r) });
    return { raw: c, rx, k, recErrors };
  }

  it('a tampered record is rejected and none of its bytes are delivered', async () => {
    const { raw, rx, k, recErrors } = await rawSender();
    const good = seeded(5, 5000);
    const bad = seeded(6, MAX_RECORD_PLAINTEXT);
    const r1 = Buffer.concat(sealRecord(k, 1, [bad]));
    r1.writeUInt8(r1.readUInt8(4 + 1234) ^ 0x01, 4 + 1234);
    const got = collect(rx);
    raw.write(Buffer.concat([...sealRecord(k, 0, [good]), r1]));
    const { data, err } = await got;
    expect(err).toBeInstanceOf(ChannelError);
    expect((err as ChannelError).code).toBe('ERR_CHANNEL_RECORD');
    expect(sha(data)).toBe(sha(good));
    expect(recErrors).toEqual(['tag']);
  });

  it.each([
    ['EOF without END (truncation)', 'truncated', (k: DirectionKeys) => [Buffer.concat(sealRecord(k, 0, [seeded(7, 100)]))]],
    ['length below the tag', 'length', (k: DirectionKeys) => [Buffer.concat(sealRecord(k, 0, [seeded(7, 100)])), Buffer.from([0, 0, 0, 15])]],
    ['length over 64 KiB + tag', 'length', (k: DirectionKeys) => [Buffer.concat(sealRecord(k, 0, [seeded(7, 100)])), Buffer.from([0, 1, 0, 17])]],
    ['bytes after END', 'after-end', (k: DirectionKeys) => [Buffer.concat([...sealRecord(k, 0, [seeded(7, 100)]), ...sealRecord(k, 1, []), Buffer.from([0])])]],
    ['a replayed record (wrong sequence)', 'tag', (k: DirectionKeys) => { const r = Buffer.concat(sealRecord(k, 0, [seeded(7, 100)])); return [r, r]; }],
  ] as const)('%s → error, counted, no end', async (_name, reason, records) => {
    const { raw, rx, k, recErrors } = await rawSender();
    const got = collect(rx);
    for (const r of records(k)) raw.write(r);
    raw.end();
    const { data, err } = await got;
    expect(err).toBeInstanceOf(ChannelError);
    expect(rx.readableEnded).toBe(false);
    expect(sha(data)).toBe(sha(seeded(7, 100)));
    expect(recErrors).toEqual([reason]);
  });
});

describe('EWC1 close before the first record', () => {
  it('EOF before any record: closed, not counted as a bad record stream; one byte of a header is', async () => {
    for (const [bytes, want] of [[Buffer.alloc(0), []], [Buffer.from([0]), ['truncated']]] as const) {
      const [c, s] = await tcpPair();
      const recErrors: RecordErrorReason[] = [];
      const rx = new EwcSocket(s, { tx: { key: randomBytes(16), iv: randomBytes(12) }, rx: { key: randomBytes(16), iv: randomBytes(12) }, onRecordError: (r) => recErrors.push(r) });
      const got = collect(rx);
      c.end(bytes);
      const { data, err } = await got;
      expect(err).toBeInstanceOf(ChannelError);
      expect(data.length).toBe(0);
      expect(recErrors).toEqual(want);
    }
  });
});

describe('EWC1 handshake failures', () => {
  async function failing(run: (c: net.Socket, s: net.Socket, failures: HandshakeFailure[]) => Promise<unknown>[]): Promise<{ results: PromiseSettledResult<unknown>[]; failures: HandshakeFailure[] }> {
    const [c, s] = await tcpPair();
    const failures: HandshakeFailure[] = [];
    const results = await Promise.allSettled(run(c, s, failures));
    return { results, failures };
  }
  const lookup = (x: string): Buffer | undefined => (x === cred.id ? cred.key : undefined);

  it('wrong key: both sides fail, the server never accepts', async () => {
    const { results, failures } = await failing((c, s, f) => [
      ewcClient(c, { id: cred.id, key: randomBytes(32) }, 5000, { onHandshakeFailure: (r) => f.push(r) }),
      ewcServer(s, lookup, 5000, { onHandshakeFailure: (r) => f.push(r) }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(failures).toContain('bad-confirm');
  });

  it('unknown id', async () => {
    const { results, failures } = await failing((c, s, f) => [
      ewcClient(c, { id: 'ab'.repeat(16), key: cred.key }, 5000),
      ewcServer(s, lookup, 5000, { onHandshakeFailure: (r) => f.push(r) }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(failures).toEqual(['unknown-id']);
  });

  it.each([
    ['garbled magic', Buffer.from('GET / HTTP/1.1\r\n\r\n'), 'garbled'],
    ['id length over 64', Buffer.concat([Buffer.from('EWC1'), Buffer.from([65]), randomBytes(200)]), 'garbled'],
    ['short hello then EOF', Buffer.from('EWC1\x20abc'), 'closed'],
  ] as const)('%s → %s', async (_name, bytes, reason) => {
    const { results, failures } = await failing((c, s, f) => {
      c.end(bytes);
      c.resume();
      return [ewcServer(s, lookup, 5000, { onHandshakeFailure: (r) => f.push(r) })];
    });
    expect(results[0]!.status).toBe('rejected');
    expect(failures).toEqual([reason]);
  });

  it('silence → timeout', async () => {
    const { results, failures } = await failing((_c, s, f) => [ewcServer(s, lookup, 300, { onHandshakeFailure: (r) => f.push(r) })]);
    expect(results[0]!.status).toBe('rejected');
    expect(failures).toEqual(['timeout']);
  });

  it('a replayed ClientHello and ClientConfirm do not open a connection', async () => {
    // Record a genuine client's flight through a tap.
    const [c1, s1] = await tcpPair();
    const flight: Buffer[] = [];
    const tap = new Promise<void>((resolve) => {
      s1.on('data', (b: Buffer) => { flight.push(b); if (Buffer.concat(flight).length >= 5 + 32 + 64 + 32) resolve(); });
    });
    // The tapped "server" answers with a real server on a second pair, relaying bytes.
    const [c2, s2] = await tcpPair();
    s1.on('data', (b: Buffer) => c2.write(b));
    c2.on('data', (b: Buffer) => s1.write(b));
    const accepted = ewcServer(s2, lookup, 5000);
    const client = await ewcClient(c1, cred, 5000);
    await tap;
    (await accepted).socket.destroy();
    client.destroy();
    // Replay both client messages on a fresh connection.
    const failures: HandshakeFailure[] = [];
    const [c3, s3] = await tcpPair();
    const replay = ewcServer(s3, lookup, 5000, { onHandshakeFailure: (r) => failures.push(r) });
    c3.write(Buffer.concat(flight));
    c3.resume();
    await expect(replay).rejects.toThrow(/confirm/);
    expect(failures).toEqual(['bad-confirm']);
  });
});
