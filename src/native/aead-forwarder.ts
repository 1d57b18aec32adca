/**
 * The EWC1 record pump (the data channel's record layer, AES-128-GCM records of up
 * to 64 KiB) on the addon's epoll pool: plaintext on one TCP socket, EWC1 records on
 * another, no JS per byte. The handshake and the first records (request header,
 * status) stay in JS (src/tunnel/channel/); the bulk bytes of a flow come here.
 *
 * Record format, nonce and END semantics: the EWC1 section of src/native/README.md.
 * The native pump and the JS codec are byte-identical.
 */
import type net from 'node:net';
import type { AeadPairParams } from './addon.js';
import { HandoverError } from './errors.js';
import type { ForwardOptions, ForwardResult } from './forwarder.js';
import { stopReading, type NativeEngine } from './native-forwarders.js';

/**
 * Keys and sequence numbers of one connection after the handshake (and after the
 * records JS sent/received itself): exactly what the addon's aeadPair takes.
 */
export type AeadState = AeadPairParams;

export interface AeadForwarder {
  readonly kind: 'aead';
  /**
   * Same contract as Forwarder.forward (both JS sockets destroyed at the hand-over),
   * plain ↔ EWC1 records on `cipher`. `bytesIn` counts plaintext plain → cipher,
   * `bytesOut` plaintext cipher → plain. Rejects with ForwardError (errno EBADMSG on
   * an authentication or framing error, the socket errno otherwise), HandoverError
   * (nothing moved, sockets untouched) or ForwardCancelledError.
   *
   * Preconditions: Node never read `plain` (pauseOnConnect / connectPaused); `cipher`
   * went through `prepareCipherHandover` (its result is `state.rxInitial`) and has no
   * writes queued in Node (wait for the last write's callback).
   */
  forward(plain: net.Socket, cipher: net.Socket, state: AeadState, opts?: ForwardOptions): Promise<ForwardResult>;
}

/**
 * The record pump on the addon's epoll pool (native/src/aead-pump.cc): completion
 * and ownership as for splice (the pool owns both sockets from the hand-over, when
 * the engine destroys the JS sockets; on an error or cancel the pool resets both, so
 * the peers never see a clean end).
 */
export class NativeAeadForwarder implements AeadForwarder {
  readonly kind = 'aead' as const;
  constructor(private readonly engine: NativeEngine) {}

  /** Why this forwarder cannot work here (old addon, OpenSSL not resolvable), or undefined. */
  get unavailableReason(): string | undefined {
    return this.engine.aeadReason;
  }

  forward(plain: net.Socket, cipher: net.Socket, state: AeadState, opts: ForwardOptions = {}): Promise<ForwardResult> {
    return this.engine.startAead(plain, cipher, state, opts);
  }
}

/**
 * Prepare a cipher socket JS has read from (the handshake, the status record) for
 * the pump: stop libuv reading it and return the bytes Node had already buffered,
 * to be passed as `AeadState.rxInitial`.
 *
 * Precondition: no 'data' / 'readable' listeners left on the socket (a read here
 * would hand them these bytes too) and no encoding set. Call it synchronously
 * before `forward` (no I/O may run in between).
 */
export function prepareCipherHandover(sock: net.Socket): Buffer {
  if (sock.readableEncoding) throw new HandoverError('aead', 'cipher socket has an encoding set: its buffered bytes are not recoverable');
  if (sock.listenerCount('data') > 0 || sock.listenerCount('readable') > 0) {
    throw new HandoverError('aead', "cipher socket still has 'data' or 'readable' listeners");
  }
  stopReading(sock);
  const chunks: Buffer[] = [];
  // Bounded: a paused socket holds at most about a highWaterMark of bytes.
  for (let i = 0; i < 4096 && sock.readableLength > 0; i++) {
    const chunk = sock.read() as Buffer | null;
    if (chunk === null) break;
    chunks.push(chunk);
  }
  // read() may have started libuv reading again (Socket._read); no I/O ran since.
  stopReading(sock);
  return Buffer.concat(chunks);
}
