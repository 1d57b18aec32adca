/**
 * Backends of the gateway: every route destination is a catalog service port, and
 * its endpoints, policy and endpoint classes come from the plan (plan/build.ts), so
 * the gateway decides "which endpoint, local or through the tunnel" exactly as the
 * agent's proxy does. Endpoint choice is the proxy's `ServiceRuntime` (balancers
 * with DestinationRule policies); remote endpoints are dialled through the tunnel's
 * RemoteDialer. HTTP/1.1 backends get a keep-alive pool per endpoint, HTTP/2 ones
 * (gRPC, h2c) one multiplexed session per endpoint.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { Plan, PlannedEndpoint, PlannedServicePort } from '../plan/types.js';
import type { Snapshot } from '../catalog/types.js';
import { endpointKey, openStream, ServiceRuntime, type DialSettings } from '../proxy/service.js';
import type { ProxyMetrics } from '../proxy/metrics.js';
import type { RemoteDialer } from '../proxy/remote-dialer.js';
import { endpointAgent } from '../proxy/agent.js';
import type { ResolvedDestination } from './types.js';

export interface UpstreamSettings {
  readonly connectTimeoutMs: number;
  readonly maxConnectAttempts: number;
  readonly maxIdlePerEndpoint: number;
  readonly remoteDialer: () => RemoteDialer | undefined;
}

/** A service port the gateway may send to, with its runtime and backend protocol. */
export interface Backend {
  readonly rt: ServiceRuntime;
  /** Backend speaks HTTP/2 (appProtocol grpc/http2/kubernetes.io/h2c, or a port name grpc*, http2*, h2c*). */
  readonly h2: boolean;
}

const H2_APP = new Set(['grpc', 'http2', 'h2c', 'kubernetes.io/h2c', 'grpc-web']);

function isH2(portName: string, appProtocol: string | undefined): boolean {
  if (appProtocol) return H2_APP.has(appProtocol.toLowerCase());
  return /^(grpc|http2|h2c)(-|$)/.test(portName);
}

export class Upstreams {
  private readonly backends = new Map<string, Backend>();
  private readonly agents = new Map<string, http.Agent>();
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();

  constructor(private readonly metrics: ProxyMetrics, private readonly settings: UpstreamSettings) {}

  get dial(): DialSettings {
    const remote = this.settings.remoteDialer();
    return { connectTimeoutMs: this.settings.connectTimeoutMs, maxConnectAttempts: this.settings.maxConnectAttempts, ...(remote ? { remoteDialer: remote } : {}) };
  }

  /**
   * Take a new plan for the service ports routes use (`wanted`: `ns/name:port/TCP`;
   * only those get runtimes and metric series, however large the catalog): keep
   * runtimes (balancer state) of kept service ports, drop pools of endpoints gone.
   * Idempotent.
   */
  apply(plan: Plan, snapshot: Snapshot, wanted: ReadonlySet<string>): void {
    const app = new Map<string, string | undefined>();
    for (const s of snapshot.services) for (const p of s.ports) app.set(`${s.key}:${p.port}/${p.protocol}`, p.appProtocol);
    const seen = new Set<string>();
    const keys = new Set<string>();
    for (const sp of plan.servicePorts) {
      if (sp.protocol !== 'TCP' || !wanted.has(sp.id)) continue;
      seen.add(sp.id);
      const b = this.backends.get(sp.id);
      if (b) b.rt.update(sp);
      else this.backends.set(sp.id, { rt: new ServiceRuntime(sp, this.metrics), h2: isH2(sp.portName, app.get(sp.id)) });
      for (const ep of sp.endpoints) keys.add(poolKey(sp, ep));
    }
    for (const [id, b] of this.backends) if (!seen.has(id)) { b.rt.dispose(this.metrics); this.backends.delete(id); }
    for (const [k, a] of this.agents) if (!keys.has(k)) { a.destroy(); this.agents.delete(k); }
    for (const [k, s] of this.sessions) if (!keys.has(k)) { s.close(); this.sessions.delete(k); }
  }

  backend(d: ResolvedDestination): Backend | undefined {
    return this.backends.get(`${d.serviceKey}:${d.port}/TCP`);
  }

  /** Keep-alive agent for one endpoint; remote endpoints' "sockets" are tunnel streams. */
  agent(sp: PlannedServicePort, ep: PlannedEndpoint): http.Agent {
    const key = poolKey(sp, ep);
    let a = this.agents.get(key);
    if (!a) {
      a = endpointAgent(ep, sp, this.settings.remoteDialer, this.settings.connectTimeoutMs, this.settings.maxIdlePerEndpoint);
      this.agents.set(key, a);
    }
    return a;
  }

  /** The HTTP/2 session to an endpoint (h2c prior knowledge), opened on first use. */
  async session(sp: PlannedServicePort, ep: PlannedEndpoint): Promise<http2.ClientHttp2Session> {
    const key = poolKey(sp, ep);
    const s = this.sessions.get(key);
    if (s && !s.closed && !s.destroyed) return s;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.settings.connectTimeoutMs);
    try {
      const stream = await openStream(ep, sp, this.settings.remoteDialer(), ac.signal);
      const again = this.sessions.get(key);
      if (again && !again.closed && !again.destroyed) { stream.destroy(); return again; }
      const sess = http2.connect(`http://${endpointKey(ep)}`, { createConnection: () => stream });
      sess.on('error', () => undefined); // surfaced on its streams; the session is dropped on close
      sess.once('close', () => { if (this.sessions.get(key) === sess) this.sessions.delete(key); });
      sess.once('goaway', () => { if (this.sessions.get(key) === sess) this.sessions.delete(key); });
      sess.unref();
      this.sessions.set(key, sess);
      return sess;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    for (const s of this.sessions.values()) s.destroy();
    for (const b of this.backends.values()) b.rt.dispose(this.metrics);
    this.agents.clear();
    this.sessions.clear();
    this.backends.clear();
  }
}

function poolKey(sp: PlannedServicePort, ep: PlannedEndpoint): string {
  return ep.class === 'remote' ? `${ep.nodeName ?? ''}/${sp.serviceKey}:${sp.port}/${endpointKey(ep)}` : endpointKey(ep);
}
