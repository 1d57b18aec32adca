/**
 * The userspace proxy: listeners for every planned service port whose target is
 * `userspace`, on its `userspacePort` (TCP and/or UDP per the port's protocol), and
 * optionally one shared TCP listener that routes by original destination.
 *
 * `apply(servicePorts)` is idempotent: listeners are opened for new ports, closed
 * for gone ones, and kept (with endpoints/policy updated in place) for the rest;
 * flows in progress are never cut by an update. A listener that fails to bind is
 * reported and tried again on the next apply.
 */
import type { Forwarder } from '../native/forwarder.js';
import net from 'node:net';
import { setMaxListeners } from 'node:events';
import type { Logger } from '../util/log.js';
import type { Registry } from '../metrics/registry.js';
import type { PlannedServicePort } from '../plan/types.js';
import type { RemoteDialer } from './remote-dialer.js';
import type { BalancerOptions } from './balancer.js';
import { ProxyError } from './errors.js';
import { HttpPath } from './http.js';
import { BufferPool } from './fast-read.js';
import { ProxyMetrics } from './metrics.js';
import { clusterAddrKey, type OriginalDstResolver } from './original-dst.js';
import { endpointKey, isFdExhausted, ServiceRuntime } from './service.js';
import { fdProbe, fdWarner, handleTcp, type FlowGate, type TcpSettings } from './tcp.js';
import { UdpListener, type UdpSettings } from './udp.js';

export interface UserspaceProxyOptions {
  readonly logger: Logger;
  readonly registry: Registry;
  /** Reaches `remote` endpoints; absent → those flows fail fast (counted as remote_unavailable). */
  readonly remoteDialer?: RemoteDialer;
  /** TCP listen address; default '::' (dual stack), falling back to 0.0.0.0 without IPv6. */
  readonly listenHost?: string;
  readonly connectTimeoutMs?: number;
  /** Attempts per flow on distinct endpoints (default 3). */
  readonly maxConnectAttempts?: number;
  /** TCP flow idle timeout (default 1 h; 0 = none). */
  readonly idleTimeoutMs?: number;
  /** UDP session idle timeout (default 30 s). */
  readonly udpSessionIdleMs?: number;
  /**
   * TCP flows open at once, proxy-wide. Default 9,000: a flow holds two fds and the
   * process hard limit here is 20,000 (PITFALLS.md), leaving room for the rest.
   */
  readonly maxFlows?: number;
  /** UDP sessions open at once, proxy-wide (each holds one fd). Default 4,096. */
  readonly maxUdpSessions?: number;
  /** Label series by service (default true; off for large clusters). */
  readonly perServiceLabels?: boolean;
  /** One TCP listener for every service, routed by original destination. */
  readonly originalDst?: { readonly port: number; readonly host?: string; readonly resolver: OriginalDstResolver };
  readonly balancer?: BalancerOptions;
  /**
   * 256 KiB read buffers for socket-to-socket TCP flows (two per flow), pooled:
   * memory is bounded by this count (default 128 = 32 MiB); flows past it use
   * ordinary stream reads. 0 disables.
   */
  readonly readBuffers?: number;
  /** Accelerated forwarding for socket-to-socket TCP flows (splice/sockmap; see tcp.ts). */
  readonly forwarder?: Forwarder;
  /** How long `close()` lets TCP flows in progress finish before cutting them (default 5 s). */
  readonly closeDeadlineMs?: number;
}

export interface ApplyResult {
  /** Listening sockets now open (TCP servers + UDP sockets). */
  readonly listeners: number;
  /** `id` of service ports whose listener could not be opened (retried next apply). */
  readonly failed: readonly string[];
}

interface Entry {
  rt: ServiceRuntime;
  tcp?: net.Server;
  http?: HttpPath;
  udp?: UdpListener;
}

class Gate implements FlowGate {
  open = 0;
  private idle: (() => void)[] = [];
  constructor(private readonly max: number) {}
  tryOpen(): boolean {
    if (this.open >= this.max) return false;
    this.open++;
    return true;
  }
  close(): void {
    this.open--;
    if (this.open === 0) for (const f of this.idle.splice(0)) f();
  }
  /** Resolves when no flow is open, or after `ms` (whichever comes first). */
  drained(ms: number): Promise<void> {
    if (this.open === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void { clearTimeout(t); resolve(); }
      this.idle.push(done);
    });
  }
}

export class UserspaceProxy {
  readonly metrics: ProxyMetrics;
  private readonly log: Logger;
  private readonly tcpSettings: TcpSettings;
  private readonly udpSettings: UdpSettings;
  private readonly flows: Gate;
  private readonly udpSessions: Gate;
  /** By `PROTO/userspacePort`. */
  private readonly entries = new Map<string, Entry>();
  /** By cluster `ip|port` (TCP), for the original-destination listener. */
  private byCluster = new Map<string, Entry>();
  private shared: net.Server | undefined;
  private host: string;
  private lastEmfileLog = 0;
  private readonly stopFdProbe: () => void;
  /** Aborted by close() once the drain deadline has passed: ends every TCP flow. */
  private readonly shutdown = new AbortController();
  private closing = false;

  constructor(private readonly opts: UserspaceProxyOptions) {
    this.log = opts.logger;
    this.metrics = new ProxyMetrics(opts.registry, opts.perServiceLabels ?? true);
    const dial = {
      connectTimeoutMs: opts.connectTimeoutMs ?? 3_000,
      maxConnectAttempts: opts.maxConnectAttempts ?? 3,
      ...(opts.remoteDialer ? { remoteDialer: opts.remoteDialer } : {}),
    };
    const nbuf = opts.readBuffers ?? 128;
    this.tcpSettings = {
      ...dial,
      idleTimeoutMs: opts.idleTimeoutMs ?? 3_600_000,
      ...(nbuf > 0 && !opts.forwarder ? { readBuffers: new BufferPool(256 * 1024, nbuf) } : {}),
      ...(opts.forwarder ? { forwarder: opts.forwarder } : {}),
      shutdown: this.shutdown.signal,
      warnFdExhausted: fdWarner(this.log),
    };
    // One abort listener per open flow: up to maxFlows of them.
    setMaxListeners(0, this.shutdown.signal);
    this.udpSettings = { ...dial, sessionIdleMs: opts.udpSessionIdleMs ?? 30_000 };
    this.flows = new Gate(opts.maxFlows ?? 9_000);
    this.udpSessions = new Gate(opts.maxUdpSessions ?? 4_096);
    this.host = opts.listenHost ?? '::';
    // Out of fds, refused connections are invisible (libuv drops them): count the
    // seconds at the limit instead, and warn (rate-limited) as a failed dial does.
    this.stopFdProbe = fdProbe(() => {
      this.metrics.fdExhausted.inc();
      this.tcpSettings.warnFdExhausted?.('accept');
    });
  }

  /** TCP flows open now (for tests and readiness). */
  get activeFlows(): number {
    return this.flows.open;
  }

  get activeUdpSessions(): number {
    return this.udpSessions.open;
  }

  /**
   * Serve exactly the userspace service ports of `servicePorts`. With `keepOthers`,
   * listeners of ports no longer named stay open (closed by a later apply without
   * it): the data plane opens new listeners before its rules point at them and
   * closes old ones only after its rules stopped pointing at them. Idempotent.
   */
  async apply(servicePorts: readonly PlannedServicePort[], opts: { keepOthers?: boolean } = {}): Promise<ApplyResult> {
    if (this.shutdown.signal.aborted || this.closing) return { listeners: 0, failed: [] };
    const wanted = new Map<string, PlannedServicePort>();
    for (const sp of servicePorts) {
      if (sp.target !== 'userspace' || sp.userspacePort === undefined) continue;
      if (sp.protocol === 'SCTP') continue; // SCTP has no userspace path; the plan rejects it
      wanted.set(`${sp.protocol}/${sp.userspacePort}`, sp);
    }
    for (const [k, e] of this.entries) {
      const w = wanted.get(k);
      // A port now planned for another service port is replaced at once either way.
      if (w ? w.id !== e.rt.sp.id : !opts.keepOthers) this.closeEntry(k, e);
    }
    const failed: string[] = [];
    for (const [k, sp] of wanted) {
      const e = this.entries.get(k);
      if (e) {
        e.rt.update(sp);
        e.http?.prune(new Set(sp.endpoints.map(endpointKey)));
        continue;
      }
      const entry: Entry = { rt: new ServiceRuntime(sp, this.metrics, this.opts.balancer) };
      try {
        if (sp.protocol === 'TCP') entry.tcp = await this.listenTcp(sp.userspacePort!, (sock) => this.dispatch(entry, sock));
        else {
          entry.udp = new UdpListener(sp.userspacePort!, () => entry.rt, this.udpSettings, this.udpSessions, this.log);
          await entry.udp.listen();
        }
        this.entries.set(k, entry);
      } catch (err) {
        entry.rt.dispose(this.metrics);
        failed.push(sp.id);
        this.log.error({ service: sp.id, port: sp.userspacePort, err: (err as Error).message }, 'proxy listener failed; retried on next sync');
      }
    }
    this.byCluster = new Map();
    for (const e of this.entries.values()) {
      if (e.rt.sp.protocol !== 'TCP') continue;
      for (const ip of e.rt.sp.clusterIPs) this.byCluster.set(clusterAddrKey(ip, e.rt.sp.port), e);
    }
    if (this.opts.originalDst && !this.shared) {
      const od = this.opts.originalDst;
      this.shared = await this.listenTcp(od.port, (sock) => this.dispatchByOriginalDst(sock, od.resolver), od.host);
    }
    let listeners = this.shared ? 1 : 0;
    for (const e of this.entries.values()) listeners += (e.tcp ? 1 : 0) + (e.udp?.socketCount ?? 0);
    this.metrics.listeners.set(listeners);
    return { listeners, failed };
  }

  /** TCP port a service port's listener is bound to (tests; 0 = userspacePort 0 picked by the kernel). */
  boundPort(protocol: 'TCP' | 'UDP', userspacePort: number): number | undefined {
    const e = this.entries.get(`${protocol}/${userspacePort}`);
    const a = e?.tcp?.address();
    return a && typeof a === 'object' ? a.port : e?.udp ? userspacePort : undefined;
  }

  /**
   * Close every listener at once (and every UDP session), let the TCP flows in
   * progress finish for up to `deadlineMs` (default `closeDeadlineMs`), then end
   * the rest (reset, or the forwarder's cancel). Resolves when no flow is open, or
   * at most one more second after the deadline if a flow does not go away.
   * The proxy serves nothing afterwards.
   */
  async close(deadlineMs = this.opts.closeDeadlineMs ?? 5_000): Promise<void> {
    this.closing = true;
    this.stopFdProbe();
    for (const [k, e] of this.entries) this.closeEntry(k, e);
    if (this.shared) { this.shared.close(); this.shared = undefined; }
    this.metrics.listeners.set(0);
    if (this.flows.open > 0) this.log.info({ flows: this.flows.open, deadlineMs }, 'proxy closing: waiting for flows to finish');
    await this.flows.drained(deadlineMs);
    if (this.flows.open > 0) this.log.warn({ flows: this.flows.open }, 'proxy closing: flows still open at the deadline; ending them');
    this.shutdown.abort();
    await this.flows.drained(1_000);
  }

  private closeEntry(k: string, e: Entry): void {
    e.tcp?.close();
    e.http?.close();
    e.udp?.close();
    e.rt.dispose(this.metrics);
    this.entries.delete(k);
  }

  private dispatch(e: Entry, sock: net.Socket): void {
    if (e.rt.http) {
      e.http ??= new HttpPath(() => e.rt, this.tcpSettings, this.log);
      e.http.accept(sock, this.flows);
    } else handleTcp(e.rt, sock, this.tcpSettings, this.flows, this.log);
  }

  private dispatchByOriginalDst(sock: net.Socket, resolver: OriginalDstResolver): void {
    const dst = resolver.originalDst(sock);
    const e = dst && this.byCluster.get(clusterAddrKey(dst.address, dst.port));
    if (!e) {
      this.metrics.drops.labels('', 'unknown_destination').inc();
      sock.resetAndDestroy();
      return;
    }
    this.dispatch(e, sock);
  }

  private async listenTcp(port: number, onConn: (s: net.Socket) => void, host = this.host): Promise<net.Server> {
    const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, onConn);
    const tryListen = (h: string): Promise<void> => new Promise((resolve, reject) => {
      const onErr = (e: Error): void => reject(e);
      srv.once('error', onErr);
      srv.listen({ port, host: h, ipv6Only: false, backlog: 4096 }, () => { srv.off('error', onErr); resolve(); });
    });
    try {
      await tryListen(host);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (host === '::' && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
        this.host = '0.0.0.0';
        await tryListen('0.0.0.0');
      } else throw new ProxyError('ERR_PROXY_LISTEN', `listen ${host}:${port}: ${(err as Error).message}`, { cause: err });
    }
    // Accept errors. At the fd limit libuv normally hides EMFILE: it closes its
    // reserve fd, accepts and drops the pending connections, and reports nothing
    // (nothing spins). What reaches here (EMFILE without the reserve, ENFILE,
    // ENOBUFS…) is counted and warned at most once per 10 s; the server keeps serving.
    // EMFILE seen when dialling an endpoint is counted in tcp.ts.
    srv.on('error', (err: NodeJS.ErrnoException) => {
      this.metrics.acceptErrors.labels(err.code ?? 'unknown').inc();
      if (isFdExhausted(err)) this.metrics.drops.labels('', 'emfile').inc();
      const now = Date.now();
      if (now - this.lastEmfileLog > 10_000) {
        this.lastEmfileLog = now;
        this.log.warn({ port, code: err.code, flows: this.flows.open }, 'accept failed (file descriptors exhausted?)');
      }
    });
    return srv;
  }
}
