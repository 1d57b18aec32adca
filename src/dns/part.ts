/**
 * The DNS agent part: builds the zone from each catalog snapshot (the persisted
 * one too, when the agent starts offline), creates the dummy interface for the
 * node DNS address, and serves UDP and TCP on `dns.listen`.
 *
 * A listen failure (address not there yet, port busy) is retried with backoff in
 * the background; the agent keeps running and /readyz says why DNS is not ready.
 */
import type { Snapshot } from '../catalog/types.js';
import type { Config } from '../config/schema.js';
import type { Registry } from '../metrics/registry.js';
import type { ReadinessCheck } from '../metrics/server.js';
import { Backoff, sleep } from '../util/backoff.js';
import type { Logger } from '../util/log.js';
import { DnsInterface } from './interface.js';
import { Forwarder } from './forwarder.js';
import { DnsMetrics } from './metrics.js';
import { DnsServer } from './server.js';
import { batchAddon } from './udp-batch.js';
import { chooseUpstreams } from './upstreams.js';
import { Zone, type ZoneOptions } from './zone.js';
import { DnsListenError } from './errors.js';
import { availableParallelism } from 'node:os';
import { reusePort } from './reuse-port.js';
import { loadNative } from '../native/addon.js';
import { DnsWorkers } from './workers.js';

export interface DnsPartDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly store: { readonly snapshot: Snapshot; on(e: 'snapshot', f: (s: Snapshot) => void): unknown; off(e: 'snapshot', f: (s: Snapshot) => void): unknown };
}

export interface DnsPart {
  readonly name: 'dns';
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly readiness: ReadinessCheck;
  /** The server (main thread) or the worker pool, once bound. */
  readonly server: DnsServer | DnsWorkers | undefined;
}

/**
 * Threads to serve with; 1 = the main thread. More than one needs a shared UDP
 * port (reuse-port.ts); without it, the main thread. `auto`: the main thread when
 * UDP is batched — measured here (bench/results/dns.md) one batched thread answers
 * ~2× dnsmasq's queries per CPU-second, while two workers on two cores spent ~1.5×
 * the CPU per query (smaller batches, a cache each) for no more throughput on a
 * box whose cores are shared with the pods; with dgram only, one per core.
 */
export function dnsWorkerCount(setting: 'auto' | number, batched: boolean, cores: number = availableParallelism()): number {
  if (setting !== 'auto') return setting;
  return batched ? 1 : Math.max(1, cores);
}

/** Build the DNS part; undefined when `dns.enabled` is false. */
export async function createDnsPart(deps: DnsPartDeps): Promise<DnsPart | undefined> {
  const cfg = deps.config.dns;
  if (!cfg.enabled) return undefined;
  const log = deps.logger.child({ subsystem: 'dns' });
  const zopts: ZoneOptions = { domain: deps.config.clusterDomain, ttl: cfg.ttl, negativeTtl: cfg.negativeTtl };
  const choice = await chooseUpstreams(cfg.upstreams, cfg.listen, cfg.resolvConf);
  if (choice.refused.length) log.error({ refused: choice.refused, from: choice.from }, 'upstreams that are our own listen addresses refused (forwarding loop)');
  if (choice.upstreams.length === 0) log.warn({ from: choice.from }, 'no upstream DNS server: names outside the cluster get SERVFAIL');
  let server: DnsServer | DnsWorkers | undefined;
  const metrics: DnsMetrics = new DnsMetrics(deps.registry, {
    cacheEntries: (): number => (server instanceof DnsWorkers ? server.cacheEntries : forwarder.cache.size),
    tcpConnections: (): number => server?.tcpConnections ?? 0,
    pull: async (): Promise<void> => { if (server instanceof DnsWorkers) await server.pull(); },
  });
  const forwarder: Forwarder = new Forwarder({ upstreams: choice.upstreams, timeoutMs: cfg.upstreamTimeoutMs, cacheSize: cfg.cacheSize, metrics });
  const iface = new DnsInterface(cfg.interface, cfg.listen);
  // Batched UDP when the addon has it; dgram otherwise (the plain path).
  const batch = batchAddon(loadNative().addon);
  let workers = dnsWorkerCount(cfg.workers, batch !== undefined);
  const reuse = workers > 1 ? reusePort() : undefined;
  if (reuse && !reuse.ok) {
    log.warn({ workers, reason: reuse.reason }, 'dns worker threads need a shared UDP port: serving on the main thread');
    workers = 1;
  }
  // With workers, each builds its own zone from the snapshots posted to it.
  let zone = workers > 1 ? undefined : Zone.of(deps.store.snapshot, zopts);
  const onSnapshot = (s: Snapshot): void => {
    const t0 = performance.now();
    if (workers > 1) {
      // Before the workers serve, the start path posts the newest snapshot itself.
      if (server instanceof DnsWorkers) server.setSnapshot(s);
    } else {
      zone = Zone.of(s, zopts);
      if (server instanceof DnsServer) server.setZone(zone);
    }
    log.debug({ revision: s.revision, origin: s.origin, services: s.services.length, ms: Math.round(performance.now() - t0) }, 'dns zone swapped');
  };
  const abort = new AbortController();
  let state = 'starting';
  let loop: Promise<void> | undefined;
  /** A failure of the first bind that retrying cannot fix: start() throws it. */
  let fatal: Error | undefined;

  const bind = async (): Promise<void> => {
    const backoff = new Backoff(500, 30_000);
    while (!abort.signal.aborted) {
      try {
        const added = await iface.ensure();
        if (added.length) log.info({ interface: cfg.interface, type: iface.kind, addresses: added }, 'dns interface ready');
        const startRevision = deps.store.snapshot.revision;
        const s = workers > 1
          ? new DnsWorkers({
            count: workers, listen: cfg.listen, snapshot: deps.store.snapshot, zone: zopts, upstreams: choice.upstreams,
            upstreamTimeoutMs: cfg.upstreamTimeoutMs, cacheSize: cfg.cacheSize, maxTcpConnections: cfg.maxTcpConnections,
            logger: deps.logger, metrics, openUdpFd: reuse?.ok ? reuse.openUdpFd : undefined, batch: batch !== undefined,
          })
          : new DnsServer({ listen: cfg.listen, zone: zone ??= Zone.of(deps.store.snapshot, zopts), forwarder, logger: deps.logger, metrics, maxTcpConnections: cfg.maxTcpConnections, batch });
        await s.start();
        if (abort.signal.aborted) { await s.stop(); return; }
        server = s;
        // A snapshot may have arrived while binding (onSnapshot kept `zone` current).
        if (s instanceof DnsWorkers) { if (deps.store.snapshot.revision !== startRevision) s.setSnapshot(deps.store.snapshot); } else if (zone) s.setZone(zone);
        state = 'serving';
        log.info({
          listen: s.addresses().map((a) => `${a.proto}://${a.address}:${a.port}`), workers, reusePort: reuse?.ok ? reuse.how : undefined, udp: batch ? 'batched' : 'dgram',
          upstreams: choice.upstreams.map((u) => `${u.host}:${u.port}`), from: choice.from,
        }, 'dns serving');
        return;
      } catch (err) {
        // Another process holding the DNS address at start is a setup error, not a
        // transient state: the agent must not run half-started (it stops and exits 1).
        if (backoff.attempts === 0 && isAddressInUse(err)) { fatal = err as Error; state = `not serving: ${fatal.message}`; return; }
        state = `not serving: ${String((err as Error).message ?? err)}`;
        log.error({ err: String(err) }, 'dns cannot start; retrying');
        await sleep(backoff.next(), abort.signal).catch(() => undefined);
      }
    }
  };

  return {
    name: 'dns',
    get server() { return server; },
    readiness: { name: 'dns', check: () => ({ ready: server !== undefined, detail: state }) },
    async start() {
      deps.store.on('snapshot', onSnapshot);
      // The first attempt is awaited so a working setup is serving when start() returns.
      loop = bind();
      await Promise.race([loop, sleep(2000)]);
      if (fatal) throw fatal;
    },
    async stop() {
      abort.abort();
      deps.store.off('snapshot', onSnapshot);
      await loop;
      await server?.stop();
      server = undefined;
      await iface.remove().catch((err: unknown) => log.error({ err: String(err) }, 'dns interface removal failed'));
    },
  };
}

function isAddressInUse(err: unknown): boolean {
  return err instanceof DnsListenError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE';
}
