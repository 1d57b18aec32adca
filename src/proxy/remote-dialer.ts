/**
 * The seam between the userspace proxy (which owns the ingress listeners and the
 * endpoint choice) and the tunnel (which reaches endpoints on nodes in other LANs).
 * The proxy dials `local`/`routable` endpoints itself and hands `remote` ones to a
 * RemoteDialer; the tunnel implements it. Absent tunnel → remote endpoints fail fast.
 */
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { ForwardOptions, ForwardResult } from '../native/forwarder.js';
import type { Protocol } from '../catalog/types.js';

export interface RemoteTarget {
  /** Node that hosts the endpoint (the far agent checks it is itself). */
  readonly nodeName: string;
  readonly protocol: Protocol;
  /** Service `namespace/name` and service port, for the far side's check and metrics. */
  readonly serviceKey: string;
  readonly servicePort: number;
  readonly ip: string;
  readonly port: number;
}

/** A UDP flow through the tunnel: datagrams keep their boundaries. */
export interface DatagramSession {
  send(datagram: Uint8Array): void;
  onMessage(cb: (datagram: Uint8Array) => void): void;
  onClose(cb: (err?: Error) => void): void;
  close(): void;
}

/**
 * A remote stream that a native forwarder can carry together with the client
 * socket (the tunnel's data channel with the addon's EWC1 record pump). The client
 * must never have been read by Node (accelerated path: pauseOnConnect).
 * `forwardNative` returns undefined when it cannot (nothing changed: pump as
 * usual); otherwise the flow is the forwarder's and both sockets are destroyed
 * when the promise settles.
 */
export interface NativeForwardable {
  forwardNative?(client: Socket, opts: ForwardOptions): Promise<ForwardResult> | undefined;
}

export interface RemoteDialer {
  /**
   * Open a byte stream to a TCP endpoint on another node (half-close supported).
   * Ownership: the stream keeps each written chunk by reference until it is on the
   * wire, past the write callback; a writer hands over buffers it never reuses
   * (a reused read buffer is copied first, fast-read.ts `copyChunks`). The write
   * callback fires once the stream's own write buffer is empty (backpressure).
   */
  dialStream(target: RemoteTarget, signal?: AbortSignal): Promise<Duplex>;
  /** Open a datagram session to a UDP endpoint on another node. */
  openDatagramSession(target: RemoteTarget, signal?: AbortSignal): Promise<DatagramSession>;
}
