/**
 * The EWC1 record pump (the data channel's record layer, AES-128-GCM records of up
 * to 64 KiB) on the addon's epoll pool: plaintext on one TCP socket, EWC1 records on
 * another, no JS per byte. The handshake and the first records (request header,
 * status) stay in JS (src/tunnel/channel/); the bulk bytes of a flow come here.
 *
 * Record format, nonce and END semantics: /edgeway EWC1 spec (src/native/README.md).
 * The native pump and the JS codec are byte-identical.
 */
import type net from 'node:net';
import type { ForwardOptions, ForwardResult } from './forwarder.js';

/** Keys and sequence numbers of one connection after the handshake (and after the records JS sent/received itself). */
export interface AeadState {
  /** plain → cipher direction (encrypt): AES-128 key (16 B), iv base (12 B), next record's seq. */
  txKey: Buffer;
  txIv: Buffer;
  txSeq: number;
  /** cipher → plain direction (decrypt). */
  rxKey: Buffer;
  rxIv: Buffer;
  rxSeq: number;
  /** Cipher bytes JS already read from the cipher socket (part of a record or whole records): processed first. */
  rxInitial?: Buffer;
}

export interface AeadForwarder {
  readonly kind: 'aead';
  /**
   * Same contract as Forwarder.forward (both sockets destroyed when it settles),
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
