/**
 * Plain Node streams: `pipe()` both ways. Works everywhere; the baseline every
 * accelerator falls back to. Needs `allowHalfOpen: true` on both sockets (else a
 * half-close ends in ECONNRESET).
 */
import type net from 'node:net';
import { ForwardCancelledError, ForwardError } from './errors.js';
import { resetSocket, type ForwardOptions, type ForwardResult, type Forwarder } from './forwarder.js';

export class NodeStreamsForwarder implements Forwarder {
  readonly kind = 'node' as const;

  forward(client: net.Socket, upstream: net.Socket, opts: ForwardOptions = {}): Promise<ForwardResult> {
    return new Promise((resolve, reject) => {
      let bytesIn = 0;
      let bytesOut = 0;
      let closed = 0;
      let settled = false;
      const settle = (err?: Error): void => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve({ kind: 'node', bytesIn, bytesOut });
      };
      const fail = (err: Error & { code?: string }): void => {
        // One side failed: the other one sees a reset too (as a kernel NAT would show it).
        resetSocket(client);
        resetSocket(upstream);
        settle(new ForwardError('node', err.message, bytesIn, bytesOut, err.code, { cause: err }));
      };
      const onAbort = (): void => {
        client.destroy();
        upstream.destroy();
        settle(new ForwardCancelledError('node', bytesIn, bytesOut));
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      client.on('data', (d: Buffer) => { bytesIn += d.length; });
      upstream.on('data', (d: Buffer) => { bytesOut += d.length; });
      client.on('error', fail);
      upstream.on('error', fail);
      const onClose = (): void => {
        // Both sockets close on their own once read side ended and write side
        // finished (autoDestroy), i.e. after both half-closes went through.
        if (++closed === 2) settle();
      };
      client.once('close', onClose);
      upstream.once('close', onClose);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }
}
