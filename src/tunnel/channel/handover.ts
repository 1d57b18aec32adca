/**
 * Hand a flow's bulk bytes to the addon's EWC1 record pump (src/native/
 * aead-forwarder.ts): after the header/status exchange in JS, the plaintext socket
 * (the proxy's client, or the far side's backend) and the channel connection's raw
 * TCP socket go to the epoll pool with the codec state, and no JS runs per byte.
 *
 * Order matters, and each step is synchronous where the pump needs it to be:
 * 1. nothing of ours is still queued on the raw socket (the status / header records
 *    are written), so the pump's first record has the next sequence number;
 * 2. the codec stops reading (`detach`), and the raw socket's libuv reads stop
 *    (`prepareCipherHandover`): every cipher byte JS holds, decoded or not, is
 *    accounted for — undecoded bytes go to the pump as `rxInitial`, decoded
 *    plaintext nobody read yet is written to the plain socket first;
 * 3. `forward` takes both fds. From then on the pump owns both sockets.
 * A flow that cannot be handed over (the far END already arrived, a socket is
 * closing) stays on the JS codec: `tryHandOver` says so before anything changed.
 */
import type net from 'node:net';
import type { AeadForwarder } from '../../native/aead-forwarder.js';
import { prepareCipherHandover } from '../../native/aead-forwarder.js';
import { resetSocket, type ForwardOptions, type ForwardResult } from '../../native/forwarder.js';
import type { EwcSocket } from './ewc-codec.js';

/** The native pump when the agent's accelerator has it, else undefined (the JS codec carries the flow). */
export type AeadSource = () => AeadForwarder | undefined;

/** Resolves once everything written to `sock` so far reached the kernel. */
function flushed(sock: net.Socket): Promise<void> {
  if (sock.writableLength === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    sock.write(Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * Move `plain` ⇄ `ewc` to the native pump, or undefined (nothing changed: the
 * caller keeps the JS codec) when the flow is not in a state the pump can take
 * — the far END already arrived, a side is closing, a write is in flight. The
 * promise is the flow's: it settles when the pump is done (the pump owns both
 * connections from the hand-over, when the JS sockets are destroyed; it resets
 * both on an error), so the peers see a reset, never a clean end with bytes missing.
 */
export function tryHandOver(plain: net.Socket, ewc: EwcSocket, fwd: AeadForwarder, opts: ForwardOptions = {}): Promise<ForwardResult> | undefined {
  const raw = ewc.raw;
  if (ewc.destroyed || ewc.remoteEnded || ewc.writableEnded || ewc.writableLength > 0) return undefined;
  if (plain.destroyed || plain.writableEnded || raw.destroyed || raw.writableEnded) return undefined;
  // Synchronously: from here on no byte of the connection reaches the codec.
  const st = ewc.detach();
  return (async () => {
    try {
      // Our last records (header / status) are in the kernel before the pump writes its first.
      await flushed(raw);
      if (st.plain.length > 0) {
        plain.write(st.plain.length === 1 ? st.plain[0]! : Buffer.concat(st.plain));
        await flushed(plain);
      }
      const early = prepareCipherHandover(raw);
      const rxInitial = st.rxInitial.length === 0 ? early : Buffer.concat([st.rxInitial, early]);
      return await fwd.forward(plain, raw, { txKey: st.txKey, txIv: st.txIv, txSeq: st.txSeq, rxKey: st.rxKey, rxIv: st.rxIv, rxSeq: st.rxSeq, rxInitial }, opts);
    } catch (err) {
      // Before the hand-over (a failed flush, EMFILE for the pool's fds) the sockets
      // are still Node's: reset them, as the doc above promises — a FIN would end
      // the client's flow as if it were complete. After it they are destroyed already.
      resetSocket(raw);
      resetSocket(plain);
      throw err;
    }
  })();
}
