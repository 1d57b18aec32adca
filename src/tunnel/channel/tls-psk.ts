/**
 * TLS 1.3 with an external pre-shared key (Node's `tls`, OpenSSL): the channel's
 * encryption and authentication. The key is a fresh random secret per peer
 * session, handed over the libp2p connection (Noise-authenticated to the peer's
 * Ed25519 identity, and behind the pnet PSK when one is configured), so only that
 * peer can complete the handshake: the channel inherits libp2p's authentication
 * without a certificate. psk_dhe_ke (OpenSSL's default with a PSK) adds an ECDHE
 * exchange, so a leaked session key does not open recorded traffic.
 *
 * AES-128-GCM-SHA256: the TLS 1.3 suite whose hash matches the external PSK
 * (OpenSSL binds external PSKs to SHA-256); AES-NI makes it the fastest here.
 */
import tls from 'node:tls';
import type net from 'node:net';
import { ChannelError } from './errors.js';

const TLS_OPTS = { ciphers: 'TLS_AES_128_GCM_SHA256', minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
let serverContext: tls.SecureContext | undefined;

export interface PskCredential {
  /** PSK identity (hex), names the session on the server. */
  readonly id: string;
  readonly key: Buffer;
}

function handshake(s: tls.TLSSocket, raw: net.Socket, event: 'secure' | 'secureConnect', timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error): void => {
      clearTimeout(timer);
      s.destroy();
      raw.destroy();
      reject(new ChannelError('ERR_CHANNEL_HANDSHAKE', `channel handshake failed: ${err.message}`, { cause: err }));
    };
    const timer = setTimeout(() => fail(new Error(`no handshake within ${timeoutMs} ms`)), timeoutMs);
    s.once('error', fail);
    s.once(event, () => {
      clearTimeout(timer);
      s.off('error', fail);
      resolve(s);
    });
  });
}

/** Client side of a channel connection on a connected socket (any path: LAN, punched, relayed). */
export function tlsClient(raw: net.Socket, cred: PskCredential, timeoutMs: number): Promise<tls.TLSSocket> {
  raw.setNoDelay(true);
  const s = tls.connect({
    // Half-close: the TLS socket takes allowHalfOpen from `raw` (always made with it).
    socket: raw, ...TLS_OPTS,
    pskCallback: () => ({ psk: cred.key, identity: cred.id }),
    // No certificate: the PSK is the authentication.
    checkServerIdentity: () => undefined,
  });
  return handshake(s, raw, 'secureConnect', timeoutMs);
}

/**
 * Server side: `lookup(identity)` returns the session key (or undefined: the
 * handshake fails). Resolves with the socket and the identity it proved.
 */
export async function tlsServer(raw: net.Socket, lookup: (id: string) => Buffer | undefined, timeoutMs: number): Promise<{ socket: tls.TLSSocket; id: string }> {
  raw.setNoDelay(true);
  serverContext ??= tls.createSecureContext(TLS_OPTS);
  let id = '';
  const s = new tls.TLSSocket(raw, {
    isServer: true, secureContext: serverContext,
    pskCallback: (_sock: tls.TLSSocket, identity: string) => {
      const key = lookup(identity);
      if (key) id = identity;
      return key ?? null;
    },
  } as tls.TLSSocketOptions);
  await handshake(s, raw, 'secure', timeoutMs);
  if (!id) { s.destroy(); throw new ChannelError('ERR_CHANNEL_HANDSHAKE', 'channel handshake without a known identity'); }
  return { socket: s, id };
}
