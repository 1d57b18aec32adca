/**
 * The raw TCP path: one accepted client socket → one endpoint stream, bytes pumped
 * both ways (pump.ts). The client socket arrives paused (`pauseOnConnect`), so its
 * bytes stay in the kernel until an endpoint is connected.
 */
import { closeSync, openSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../util/log.js';
import { ProxyError } from './errors.js';
import type { ConnectionResult, DropReason, ServiceMetrics } from './metrics.js';
import { pump } from './pump.js';
import { adoptWithBuffer, ReadSink, type BufferPool } from './fast-read.js';
import { connectTcp, isFdExhausted, openStream, type DialSettings, type ServiceRuntime } from './service.js';
import type { Forwarder } from '../native/forwarder.js';
import type { NativeForwardable } from './remote-dialer.js';

export interface TcpSettings extends DialSettings {
  /** Close a flow after this long without a byte either way (0 = never). */
  readonly idleTimeoutMs: number;
  /** Large read buffers for socket-to-socket flows (fast-read.ts); none = stream reads. */
  readonly readBuffers?: BufferPool;
  /**
   * Accelerated forwarding (splice / sockmap, native) for socket-to-socket
   * flows; per connection it falls back to a slower path when one refuses. Tunnel
   * streams (remote endpoints) always use the pump. No idle timeout on this path.
   */
  readonly forwarder?: Forwarder;
  /** Aborted when the proxy closes and its drain deadline has passed: every flow ends at once. */
  readonly shutdown?: AbortSignal;
  /** Rate-limited warning when a dial fails for lack of fds (fdWarner). */
  readonly warnFdExhausted?: (where: string) => void;
}

/** Per shutdown signal: the flows to end when it aborts (one abort listener per signal, not per flow). */
const shutdownSets = new WeakMap<AbortSignal, Set<() => void>>();

/**
 * Run `end` once `s.shutdown` aborts (at once when it already has). Returns the
 * unregister, to call when the flow is over or `end` no longer applies. Flows
 * register in a Set behind one listener per signal: an EventTarget listener added
 * and removed per connection is a measurable share of a short flow's cost.
 */
export function onShutdown(s: Pick<TcpSettings, 'shutdown'>, end: () => void): () => void {
  const sig = s.shutdown;
  if (!sig) return () => undefined;
  if (sig.aborted) { queueMicrotask(end); return () => undefined; }
  let set = shutdownSets.get(sig);
  if (!set) {
    const flows = new Set<() => void>();
    shutdownSets.set(sig, flows);
    sig.addEventListener('abort', () => { for (const f of [...flows]) f(); flows.clear(); }, { once: true });
    set = flows;
  }
  // A wrapper per registration: the same `end` may be registered by two flows.
  const entry = (): void => end();
  set.add(entry);
  const flows = set;
  return () => { flows.delete(entry); };
}

/** Admission of flows against the proxy-wide limit. */
export interface FlowGate {
  tryOpen(): boolean;
  close(): void;
}

export function failureOf(err: unknown): { result: ConnectionResult; drop: DropReason } {
  if (err instanceof ProxyError) {
    if (err.code === 'ERR_PROXY_NO_ENDPOINTS') return { result: 'no_endpoints', drop: 'no_endpoints' };
    if (err.code === 'ERR_PROXY_NO_REMOTE_DIALER') return { result: 'remote_unavailable', drop: 'remote_unavailable' };
  }
  if (isFdExhausted(err)) return { result: 'connect_failed', drop: 'emfile' };
  return { result: 'connect_failed', drop: 'connect_failed' };
}

/**
 * Out of fds: warn at most once per `everyMs` (the drop counter has every case).
 * One limiter per proxy (no module state), handed to the flows in TcpSettings.
 */
export function fdWarner(log: Logger, everyMs = 10_000): (where: string) => void {
  let last = 0;
  return (where) => {
    const now = Date.now();
    if (now - last < everyMs) return;
    last = now;
    log.warn({ where, code: 'EMFILE' }, 'file descriptors exhausted; new flows are refused until some close');
  };
}

/**
 * At the fd limit libuv accepts pending connections and closes them at once (its
 * reserve-fd trick) without telling anyone: those refusals never reach JS, so no
 * accept error counts them. A probe (open and close /dev/null) finds the condition
 * itself; `onExhausted` counts it at most once per `windowMs` (so the counter stays
 * "seconds at the limit"). Probing every 100 ms, not every second: with 2 fds per
 * forwarded flow a burst can sit at the limit for well under a second, and a 1 s
 * probe missed a whole burst of refusals in CI. Returns the stop function.
 */
export function fdProbe(onExhausted: () => void, everyMs = 100, windowMs = 1000): () => void {
  let lastCounted = -Infinity;
  const t = setInterval(() => {
    try {
      closeSync(openSync('/dev/null', 'r'));
    } catch (err) {
      const now = Date.now();
      if (isFdExhausted(err) && now - lastCounted >= windowMs) {
        lastCounted = now;
        onExhausted();
      }
    }
  }, everyMs);
  t.unref();
  return () => clearInterval(t);
}

/** Admit a new flow against the limit (counted and reset when over it); on success the flow is active. */
export function admit(gate: FlowGate, m: ServiceMetrics, client: Socket): boolean {
  if (!gate.tryOpen()) {
    m.result('limit');
    m.drop('limit');
    client.resetAndDestroy();
    return false;
  }
  m.activeFlows.inc();
  return true;
}

/** Proxy one accepted client connection. Never throws; every outcome is counted. */
export function handleTcp(rt: ServiceRuntime, accepted: Socket, s: TcpSettings, gate: FlowGate, log: Logger): void {
  const m = rt.metrics;
  if (!admit(gate, m, accepted)) return;
  if (s.forwarder) { handleForwarded(rt, accepted, s, s.forwarder, gate, log); return; }
  // Large-buffer reads when the pool has two buffers for this flow.
  const pool = s.readBuffers;
  const bufA = pool?.take();
  const bufB = bufA ? pool!.take() : undefined;
  let client = accepted;
  let sinks: { client: ReadSink; endpoint: ReadSink } | undefined;
  if (bufA && bufB) {
    const cs = new ReadSink();
    const adopted: Socket | undefined = adoptWithBuffer(accepted, cs.onread(bufA, () => adopted));
    if (adopted) { client = adopted; sinks = { client: cs, endpoint: new ReadSink() }; }
  }
  if (!sinks) {
    if (bufA) pool!.give(bufA);
    if (bufB) pool!.give(bufB);
  }
  // Destroying the client (the socket that owns the handle now) ends the flow on
  // every path: the pump takes the endpoint down with it, a dial finds it closed.
  client.once('close', onShutdown(s, () => client.destroy()));
  // Only after both sockets are closed: until then a handle may still read into them.
  const returnBuffers = (): void => { if (sinks) { pool!.give(bufA!); pool!.give(bufB!); } };
  let upstreamRef: Socket | undefined;
  const upstreamOnread = sinks ? sinks.endpoint.onread(bufB!, () => upstreamRef) : undefined;
  // Errors before the pump owns the socket (client reset while dialling) end here.
  const early = (): void => { client.destroy(); };
  client.on('error', early);
  const sp = rt.sp;
  rt.dial(rt.inputFor(client), s, async (ep, signal) => {
    // Remote endpoints are tunnel streams: no onread there, the endpoint side uses stream reads.
    const st = await openStream(ep, sp, s.remoteDialer, signal, ep.class === 'remote' ? undefined : upstreamOnread);
    if (ep.class !== 'remote') upstreamRef = st as Socket;
    return st;
  }).then(
    (d) => {
      client.off('error', early);
      m.result('ok');
      // A tunnel stream keeps what it is given by reference (remote-dialer.ts): the
      // client's reused read buffer is copied once per read on its way in.
      if (sinks && d.endpoint.class === 'remote') sinks.client.copyChunks = true;
      pump(client, d.conn, {
        toEndpoint: (n) => { m.toEndpoint += n; },
        toClient: (n) => { m.toClient += n; },
        done: (err, reason) => {
          returnBuffers();
          d.release();
          gate.close();
          m.activeFlows.dec();
          if (reason === 'idle_timeout') m.drop('idle_timeout');
          if (err && log.isLevelEnabled('debug')) log.debug({ service: sp.id, endpoint: d.key, err: err.message }, 'flow ended with error');
        },
      }, s.idleTimeoutMs, sinks ? { client: sinks.client, ...(upstreamRef ? { endpoint: sinks.endpoint } : {}) } : {});
    },
    (err: unknown) => {
      const f = failureOf(err);
      m.result(f.result);
      m.drop(f.drop);
      gate.close();
      m.activeFlows.dec();
      if (f.drop === 'emfile') s.warnFdExhausted?.('connect');
      else if (log.isLevelEnabled('debug')) log.debug({ service: sp.id, err: String(err) }, 'no endpoint reachable');
      // A reset tells the client at once, as a refused connection would.
      if (!client.destroyed) client.resetAndDestroy();
      if (client.closed) returnBuffers();
      else client.once('close', returnBuffers);
    },
  );
}

/**
 * The accelerated path: the client arrives paused and the endpoint is dialled
 * paused, so neither socket has been read by Node and the forwarder (splice,
 * sockmap) can take both fds. A remote endpoint (tunnel stream) goes through pump().
 */
function handleForwarded(rt: ServiceRuntime, client: Socket, s: TcpSettings, forwarder: Forwarder, gate: FlowGate, log: Logger): void {
  const m = rt.metrics;
  const sp = rt.sp;
  const early = (): void => { client.destroy(); };
  client.on('error', early);
  // Until the forwarder owns the sockets, a shutdown destroys the client; after the
  // handover the forwarder's own signal ends the flow (never close an fd under it).
  const untrack = onShutdown(s, () => client.destroy());
  const finish = (err?: Error): void => {
    untrack();
    gate.close();
    m.activeFlows.dec();
    if (err && log.isLevelEnabled('debug')) log.debug({ service: sp.id, err: err.message }, 'flow ended with error');
  };
  rt.dial<Duplex>(rt.inputFor(client), s, (ep, signal) => (ep.class === 'remote'
    ? openStream(ep, sp, s.remoteDialer, signal)
    : connectTcp(ep.ip, ep.port, signal, undefined, true))).then(
    (d) => {
      client.off('error', early);
      m.result('ok');
      const conn = d.conn;
      if (d.endpoint.class === 'remote') {
        // The tunnel's data channel with the addon's record pump takes the paused client as is.
        const nf = conn as Duplex & NativeForwardable;
        const native = client.destroyed ? undefined : nf.forwardNative?.(client, s.shutdown ? { signal: s.shutdown } : {});
        if (native) {
          untrack();
          native.then(
            (r) => { m.toEndpoint += r.bytesIn; m.toClient += r.bytesOut; d.release(); finish(); },
            (err: unknown) => {
              // At the fd limit the pool's hand-over is where the flow is refused.
              if (isFdExhausted(err)) { m.drop('emfile'); s.warnFdExhausted?.('handover'); }
              d.release();
              finish(err instanceof Error ? err : new Error(String(err)));
            },
          );
          return;
        }
        pump(client, conn, {
          toEndpoint: (n) => { m.toEndpoint += n; },
          toClient: (n) => { m.toClient += n; },
          done: (err) => { d.release(); finish(err); },
        }, s.idleTimeoutMs, {});
        return;
      }
      if (client.destroyed) { (conn as Socket).destroy(); d.release(); finish(); return; }
      untrack();
      forwarder.forward(client, conn as Socket, s.shutdown ? { signal: s.shutdown } : {}).then(
        (r) => { m.toEndpoint += r.bytesIn; m.toClient += r.bytesOut; d.release(); finish(); },
        (err: unknown) => { d.release(); finish(err instanceof Error ? err : new Error(String(err))); },
      );
    },
    (err: unknown) => {
      const f = failureOf(err);
      m.result(f.result);
      m.drop(f.drop);
      finish();
      if (f.drop === 'emfile') s.warnFdExhausted?.('connect');
      else if (log.isLevelEnabled('debug')) log.debug({ service: sp.id, err: String(err) }, 'no endpoint reachable');
      if (!client.destroyed) client.resetAndDestroy();
    },
  );
}
