/**
 * EWC1 handshake: the data channel's authentication and key agreement on a
 * connected TCP socket (LAN, punched, or after the relay's pairing preamble).
 *
 *   C→S ClientHello   "EWC1" | u8 idLen | id | clientNonce (32) | clientEph (32, X25519)
 *   S→C ServerHello   serverNonce (32) | serverEph (32) | serverConfirm (32)
 *   C→S ClientConfirm clientConfirm (32)
 *
 * The session key behind `id` is a fresh random secret per peer session, handed
 * over the libp2p connection (Noise-authenticated to the peer's Ed25519 identity,
 * behind the pnet PSK when one is configured): only that peer can compute the
 * confirms, so the channel inherits libp2p's authentication without
 * certificates. The ephemeral X25519 exchange gives each connection forward
 * secrecy (a leaked session key does not open recorded traffic), as TLS
 * psk_dhe_ke did. Fresh nonces and ephemerals on both sides make a replayed
 * ClientHello or ClientConfirm useless. Every read is byte-capped and the whole
 * handshake runs under one deadline.
 */
import { createHash, createHmac, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import type net from 'node:net';
import { ChannelError } from './errors.js';
import { EwcSocket, type RecordErrorReason } from './ewc-codec.js';
import { readSocketPrefix } from './wire.js';

export const EWC_MAGIC = Buffer.from('EWC1', 'ascii');
const NONCE = 32;
const EPH = 32;
const MAC = 32;
export const MAX_ID_BYTES = 64;
const SERVER_HELLO = NONCE + EPH + MAC;
/** DER prefix of an X25519 SubjectPublicKeyInfo: the raw 32-byte key follows. */
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** The session credential, exchanged over `/edgeway/channel/1.0.0`. */
export interface PskCredential {
  /** Identity (hex), names the session on the server. */
  readonly id: string;
  readonly key: Buffer;
}

export type HandshakeFailure = 'timeout' | 'closed' | 'garbled' | 'unknown-id' | 'bad-confirm' | 'bad-key';

export interface EwcHooks {
  /** A handshake failed (count it; the socket is already destroyed). */
  onHandshakeFailure?(reason: HandshakeFailure): void;
  /** A record stream was rejected after the handshake. */
  onRecordError?(reason: RecordErrorReason): void;
}

/** Keys of one connection, both directions, plus the confirm key. */
export interface EwcSecrets {
  c2sKey: Buffer; c2sIv: Buffer;
  s2cKey: Buffer; s2cIv: Buffer;
  ck: Buffer;
}

class HandshakeError extends ChannelError {
  constructor(readonly reason: HandshakeFailure, message: string, cause?: unknown) {
    super('ERR_CHANNEL_HANDSHAKE', `channel handshake failed: ${message}`, cause === undefined ? undefined : { cause });
  }
}

/** HKDF-SHA256 over ikm = key | shared, salt = clientNonce | serverNonce; one call per output. */
export function deriveSecrets(key: Buffer, shared: Buffer, clientNonce: Buffer, serverNonce: Buffer): EwcSecrets {
  const ikm = Buffer.concat([key, shared]);
  const salt = Buffer.concat([clientNonce, serverNonce]);
  const x = (info: string, len: number): Buffer => Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info, 'ascii'), len));
  return {
    c2sKey: x('ewc1 c2s key', 16), c2sIv: x('ewc1 c2s iv', 12),
    s2cKey: x('ewc1 s2c key', 16), s2cIv: x('ewc1 s2c iv', 12),
    ck: x('ewc1 confirm', 32),
  };
}

/** th = SHA-256(ClientHello | serverNonce | serverEph). */
export function transcriptHash(clientHello: Buffer, serverNonce: Buffer, serverEph: Buffer): Buffer {
  return createHash('sha256').update(clientHello).update(serverNonce).update(serverEph).digest();
}

export function confirmMac(ck: Buffer, who: 'server' | 'client', th: Buffer): Buffer {
  return createHmac('sha256', ck).update(who, 'ascii').update(th).digest();
}

export function encodeClientHello(id: string, nonce: Buffer, eph: Buffer): Buffer {
  const idb = Buffer.from(id, 'ascii');
  if (idb.length === 0 || idb.length > MAX_ID_BYTES) throw new RangeError(`credential id of ${idb.length} bytes`);
  return Buffer.concat([EWC_MAGIC, Buffer.from([idb.length]), idb, nonce, eph]);
}

/** Parse a ClientHello prefix; undefined = need more bytes; throws on garbage (checked as early as possible). */
export function decodeClientHello(b: Buffer): { value: { id: string; nonce: Buffer; eph: Buffer; bytes: Buffer }; used: number } | undefined {
  const magic = b.subarray(0, Math.min(b.length, EWC_MAGIC.length));
  if (!magic.equals(EWC_MAGIC.subarray(0, magic.length))) throw new HandshakeError('garbled', 'not an EWC1 hello');
  if (b.length < 5) return undefined;
  const idLen = b[4]!;
  if (idLen === 0 || idLen > MAX_ID_BYTES) throw new HandshakeError('garbled', `id length ${idLen}`);
  const used = 5 + idLen + NONCE + EPH;
  if (b.length < used) return undefined;
  const idb = b.subarray(5, 5 + idLen);
  for (const c of idb) if (c < 0x21 || c > 0x7e) throw new HandshakeError('garbled', 'id is not printable ASCII');
  return {
    value: { id: idb.toString('ascii'), nonce: b.subarray(5 + idLen, 5 + idLen + NONCE), eph: b.subarray(5 + idLen + NONCE, used), bytes: Buffer.from(b.subarray(0, used)) },
    used,
  };
}

/** A fresh X25519 key pair: the private KeyObject and the raw 32-byte public key. */
export function ephemeral(): { priv: KeyObject; pub: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return { priv: privateKey, pub: Buffer.from(der.subarray(der.length - EPH)) };
}

/** X25519(own private, peer raw public). OpenSSL rejects low-order points (all-zero result). */
export function x25519(priv: KeyObject, peerPub: Buffer): Buffer {
  try {
    const publicKey = createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, peerPub]), format: 'der', type: 'spki' });
    return diffieHellman({ privateKey: priv, publicKey });
  } catch (err) {
    throw new HandshakeError('bad-key', 'peer ephemeral key rejected', err);
  }
}

function fixed(n: number): (b: Buffer) => { value: Buffer; used: number } | undefined {
  return (b) => (b.length >= n ? { value: Buffer.from(b.subarray(0, n)), used: n } : undefined);
}

/** Run `body` under one deadline; any failure destroys `raw`, is classified and reported. */
async function guarded<T>(raw: net.Socket, timeoutMs: number, hooks: EwcHooks | undefined, body: (remaining: () => number) => Promise<T>): Promise<T> {
  raw.setNoDelay(true);
  const deadline = Date.now() + timeoutMs;
  // readSocketPrefix needs a positive timeout; the deadline check below names the cause.
  const remaining = (): number => Math.max(1, deadline - Date.now());
  try {
    return await body(remaining);
  } catch (err) {
    raw.destroy();
    const e = err instanceof HandshakeError ? err
      : Date.now() >= deadline || /no prefix within/.test(String((err as Error).message)) ? new HandshakeError('timeout', `no handshake within ${timeoutMs} ms`, err)
      : raw.readableEnded || /ended before/.test(String((err as Error).message)) ? new HandshakeError('closed', 'connection closed', err)
      : new HandshakeError('garbled', (err as Error).message, err);
    hooks?.onHandshakeFailure?.(e.reason);
    throw e;
  }
}

/** Client side on a connected socket: resolves with the record stream once the server proved the key. */
export function ewcClient(raw: net.Socket, cred: PskCredential, timeoutMs: number, hooks?: EwcHooks): Promise<EwcSocket> {
  return guarded(raw, timeoutMs, hooks, async (remaining) => {
    const nonce = randomBytes(NONCE);
    const eph = ephemeral();
    const hello = encodeClientHello(cred.id, nonce, eph.pub);
    raw.write(hello);
    const sh = await readSocketPrefix(raw, fixed(SERVER_HELLO), { maxBytes: SERVER_HELLO, timeoutMs: remaining() });
    const serverNonce = sh.subarray(0, NONCE);
    const serverEph = sh.subarray(NONCE, NONCE + EPH);
    const s = deriveSecrets(cred.key, x25519(eph.priv, serverEph), nonce, serverNonce);
    const th = transcriptHash(hello, serverNonce, serverEph);
    if (!timingSafeEqual(confirmMac(s.ck, 'server', th), sh.subarray(NONCE + EPH))) throw new HandshakeError('bad-confirm', 'server confirm does not match (wrong key)');
    raw.write(confirmMac(s.ck, 'client', th));
    return new EwcSocket(raw, { tx: { key: s.c2sKey, iv: s.c2sIv }, rx: { key: s.s2cKey, iv: s.s2cIv }, ...(hooks?.onRecordError ? { onRecordError: hooks.onRecordError } : {}) });
  });
}

/**
 * Server side: `lookup(id)` returns the session key (undefined: unknown id, the
 * handshake fails). Resolves only after the client's confirm verified.
 */
export function ewcServer(raw: net.Socket, lookup: (id: string) => Buffer | undefined, timeoutMs: number, hooks?: EwcHooks): Promise<{ socket: EwcSocket; id: string }> {
  return guarded(raw, timeoutMs, hooks, async (remaining) => {
    const ch = await readSocketPrefix(raw, decodeClientHello, { maxBytes: 5 + MAX_ID_BYTES + NONCE + EPH, timeoutMs: remaining() });
    const key = lookup(ch.id);
    if (!key) throw new HandshakeError('unknown-id', 'unknown credential id');
    const nonce = randomBytes(NONCE);
    const eph = ephemeral();
    const s = deriveSecrets(key, x25519(eph.priv, ch.eph), ch.nonce, nonce);
    const th = transcriptHash(ch.bytes, nonce, eph.pub);
    raw.write(Buffer.concat([nonce, eph.pub, confirmMac(s.ck, 'server', th)]));
    const cc = await readSocketPrefix(raw, fixed(MAC), { maxBytes: MAC, timeoutMs: remaining() });
    if (!timingSafeEqual(confirmMac(s.ck, 'client', th), cc)) throw new HandshakeError('bad-confirm', 'client confirm does not match');
    const socket = new EwcSocket(raw, { tx: { key: s.s2cKey, iv: s.s2cIv }, rx: { key: s.c2sKey, iv: s.c2sIv }, ...(hooks?.onRecordError ? { onRecordError: hooks.onRecordError } : {}) });
    return { socket, id: ch.id };
  });
}
