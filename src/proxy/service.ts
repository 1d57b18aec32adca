/**
 * Per service port state: the planned service port, its balancer and bound metrics,
 * and the endpoint dial with bounded retries on the next endpoint.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { PlannedEndpoint, PlannedServicePort } from '../plan/types.js';
import type { RemoteDialer } from './remote-dialer.js';
import { createBalancer, needsHttp, samePolicy, type Balancer, type BalancerOptions, type PickInput } from './balancer.js';
import { ProxyError } from './errors.js';
import type { ProxyMetrics, ServiceMetrics } from './metrics.js';

/** `ip:port` (IPv6 bracketed): the balancer key of an endpoint. */
export function endpointKey(ep: PlannedEndpoint): string {
  return ep.family === 6 ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
}

export interface DialSettings {
  /** Per attempt. */
  readonly connectTimeoutMs: number;
  /** Attempts per flow, each on a different endpoint (1 = no retry). */
  readonly maxConnectAttempts: number;
  readonly remoteDialer?: RemoteDialer;
}

export interface Dialed<T> {
  readonly conn: T;
  readonly key: string;
  readonly endpoint: PlannedEndpoint;
  /** Give the endpoint's load back (to the balancer that picked it, even if replaced since). Call once. */
  readonly release: () => void;
}

export class ServiceRuntime {
  sp: PlannedServicePort;
  balancer: Balancer;
  readonly metrics: ServiceMetrics;
  private keys: string[] = [];

  constructor(sp: PlannedServicePort, metrics: ProxyMetrics, private readonly balancerOpts: BalancerOptions = {}) {
    this.sp = sp;
    this.metrics = metrics.forService(sp.id, sp.protocol.toLowerCase());
    this.balancer = createBalancer(sp.policy, balancerOpts);
    this.setEndpoints(sp);
  }

  /** Take a new plan for the same service port; keeps balancer state when the policy is unchanged. Idempotent. */
  update(sp: PlannedServicePort): void {
    if (!samePolicy(sp.policy, this.sp.policy)) this.balancer = createBalancer(sp.policy, this.balancerOpts);
    this.sp = sp;
    this.setEndpoints(sp);
  }

  /** Stop publishing this service's series (its listener is gone). */
  dispose(metrics: ProxyMetrics): void {
    metrics.unbind(this.metrics);
  }

  get http(): boolean {
    return this.sp.protocol === 'TCP' && needsHttp(this.sp.policy);
  }

  private setEndpoints(sp: PlannedServicePort): void {
    this.keys = sp.endpoints.map(endpointKey);
    this.balancer.setEndpoints(this.keys);
  }

  /**
   * Pick an endpoint and open a connection to it; on failure try the next pick
   * (excluding endpoints already tried), at most `maxConnectAttempts` times.
   * The chosen endpoint is `acquire`d; the caller must `release(key)` at the end.
   */
  async dial<T>(input: PickInput, settings: DialSettings, open: (ep: PlannedEndpoint, signal: AbortSignal) => Promise<T>): Promise<Dialed<T>> {
    const tried = new Set<string>();
    let lastErr: Error | undefined;
    const bal = this.balancer;
    for (let attempt = 0; attempt < settings.maxConnectAttempts; attempt++) {
      const idx = bal.pick(tried.size ? { ...input, exclude: tried } : input);
      if (idx === undefined) break;
      const ep = this.sp.endpoints[idx]!;
      const key = this.keys[idx]!;
      if (attempt > 0) this.metrics.retry();
      bal.acquire(key);
      const t0 = performance.now();
      // A plain timer per attempt, cleared on success (AbortSignal.timeout's timer lingers until it fires).
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), settings.connectTimeoutMs);
      try {
        const conn = await open(ep, ac.signal);
        clearTimeout(timer);
        this.metrics.connected((performance.now() - t0) / 1000);
        return { conn, key, endpoint: ep, release: () => bal.release(key) };
      } catch (err) {
        clearTimeout(timer);
        bal.release(key);
        lastErr = err as Error;
        tried.add(key);
        // Out of file descriptors: another endpoint will not help.
        if (isFdExhausted(err)) break;
        if (err instanceof ProxyError && err.code === 'ERR_PROXY_NO_REMOTE_DIALER' && this.sp.endpoints.every((e) => e.class === 'remote')) break;
      }
    }
    if (lastErr) throw lastErr;
    throw new ProxyError('ERR_PROXY_NO_ENDPOINTS', `service ${this.sp.id} has no endpoint`);
  }

  /**
   * Whether the policy reads the client's address (ClientIP affinity, source-IP hash).
   * Other policies never ask for it: `remoteAddress` costs a getpeername(2) per
   * connection on the new-connection hot path.
   */
  get needsClientIp(): boolean {
    const p = this.sp.policy;
    return p.kind === 'clientIp' || (p.kind === 'consistentHash' && p.key.type === 'sourceIp');
  }

  /** Pick input for a connection from `peer` (its address read only when the policy uses it). */
  inputFor(peer: { readonly remoteAddress?: string | undefined }, hashKey?: string): PickInput {
    return this.input(this.needsClientIp ? clientIpOf(peer.remoteAddress) : '', hashKey);
  }

  /** Pick input for a client: the source IP is also the hash key of a source-IP hash policy. */
  input(clientIp: string, hashKey?: string): PickInput {
    const p = this.sp.policy;
    if (p.kind === 'consistentHash' && p.key.type === 'sourceIp') return { clientIp, hashKey: clientIp };
    return hashKey === undefined ? { clientIp } : { clientIp, hashKey };
  }
}

/** TCP connect to a local/routable endpoint (or through the remote dialer), honouring `signal` as the connect timeout. */
export function openStream(ep: PlannedEndpoint, sp: PlannedServicePort, remote: RemoteDialer | undefined, signal: AbortSignal, onread?: net.OnReadOpts): Promise<Duplex> {
  if (ep.class === 'remote') {
    if (!remote) return Promise.reject(new ProxyError('ERR_PROXY_NO_REMOTE_DIALER', `endpoint ${ep.ip} is on node ${ep.nodeName ?? '?'} in another LAN and no tunnel is running`));
    return remote.dialStream({ nodeName: ep.nodeName ?? '', protocol: 'TCP', serviceKey: sp.serviceKey, servicePort: sp.port, ip: ep.ip, port: ep.port }, signal);
  }
  return connectTcp(ep.ip, ep.port, signal, onread);
}

/**
 * Connect to an endpoint. `paused`: Node never starts reading the socket (paused
 * before 'connect'), so an accelerator can take its fd over (src/native).
 */
export function connectTcp(host: string, port: number, signal: AbortSignal, onread?: net.OnReadOpts, paused = false): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true, noDelay: true, ...(onread ? { onread } : {}) });
    if (paused) s.pause();
    const onAbort = (): void => {
      s.destroy();
      reject(new ProxyError('ERR_PROXY_CONNECT_TIMEOUT', `connect to ${host}:${port} timed out`));
    };
    const onError = (e: Error): void => {
      signal.removeEventListener('abort', onAbort);
      reject(Object.assign(new ProxyError('ERR_PROXY_CONNECT', `connect to ${host}:${port}: ${e.message}`, { cause: e }), { errno: (e as NodeJS.ErrnoException).code }));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    s.once('error', onError);
    s.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      s.off('error', onError);
      resolve(s);
    });
  });
}

/** EMFILE/ENFILE anywhere in the error or its cause. */
export function isFdExhausted(err: unknown): boolean {
  for (let e = err as { code?: unknown; errno?: unknown; cause?: unknown } | undefined, i = 0; e && i < 4; e = e.cause as typeof e, i++) {
    if (e.code === 'EMFILE' || e.code === 'ENFILE' || e.errno === 'EMFILE' || e.errno === 'ENFILE') return true;
  }
  return false;
}

/** Client address as a bare IP (IPv4-mapped IPv6 unwrapped), the key of affinity and source-IP hashing. */
export function clientIpOf(addr: string | undefined): string {
  if (!addr) return '';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}
