/**
 * DNS served by worker threads: `count` workers, each with its own UDP socket on
 * every listen address, sharing the port through SO_REUSEPORT (reuse-port.ts), so
 * the kernel spreads queries over all cores. The first worker also serves TCP.
 * The main thread only posts snapshots, hands out sockets (addon path), gathers
 * counters at scrape time into the registered DnsMetrics, and restarts a worker
 * that died (with backoff). The same surface as DnsServer where the part uses it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Snapshot } from '../catalog/types.js';
import { packageRoot } from '../native/addon.js';
import { Backoff } from '../util/backoff.js';
import type { Logger } from '../util/log.js';
import { DnsListenError, DnsWorkerError } from './errors.js';
import type { DnsCounters, DnsMetrics } from './metrics.js';
import type { BoundAddress } from './server.js';
import { slimSnapshot, type DnsServeSettings, type FromWorker, type ToWorker, type WorkerInit } from './worker-protocol.js';

export interface DnsWorkersOptions extends DnsServeSettings {
  readonly count: number;
  readonly listen: readonly string[];
  readonly snapshot: Snapshot;
  readonly logger: Logger;
  /** Where the workers' counters are merged (the registered one). */
  readonly metrics: DnsMetrics;
  /** Makes a SO_REUSEPORT UDP socket (addon); absent: dgram's reusePort option. */
  readonly openUdpFd?: (host: string, port: number) => number;
  /** Serve UDP in batches through the native addon (each worker loads it). */
  readonly batch?: boolean;
  /** The worker script (tests); default dist/dns/worker.js. */
  readonly script?: string;
}

/** Counters of a worker asked for but not answered within this time are skipped for that scrape. */
const COUNTERS_TIMEOUT_MS = 2000;
/** A worker that does not end this long after `stop` is terminated. */
const STOP_TIMEOUT_MS = 5000;

/**
 * The compiled worker entry: next to this module when running from dist/, else
 * dist/ of the package (tests run the TypeScript sources, a worker needs JS).
 */
export function workerScript(): string {
  const here = fileURLToPath(import.meta.url);
  const beside = here.replace(/\.ts$/, '.js').replace(/workers\.js$/, 'worker.js');
  if (here.endsWith('.js') && existsSync(beside)) return beside;
  const built = join(packageRoot(), 'dist', 'dns', 'worker.js');
  if (existsSync(built)) return built;
  throw new DnsWorkerError(`DNS worker script missing (${built}): run npm run build`);
}

interface Slot {
  readonly index: number;
  worker: Worker | undefined;
  /** Totals of earlier incarnations of this slot (a restarted worker counts from 0). */
  retired: DnsCounters[];
  last: DnsCounters | undefined;
  backoff: Backoff;
}

export class DnsWorkers {
  private readonly slots: Slot[] = [];
  private readonly log: Logger;
  private readonly script: string;
  private snapshot: Snapshot;
  /** Listen addresses with the ports the first worker bound (what the others and restarts use). */
  private listen: readonly string[];
  private bound: BoundAddress[] = [];
  private stopping = false;
  private nextId = 1;
  private readonly waits = new Map<number, (c: DnsCounters | undefined) => void>();

  constructor(private readonly opts: DnsWorkersOptions) {
    this.log = opts.logger.child({ subsystem: 'dns' });
    this.script = opts.script ?? workerScript();
    this.snapshot = slimSnapshot(opts.snapshot);
    this.listen = opts.listen;
  }

  get count(): number {
    return this.slots.length;
  }

  /** Open DNS-over-TCP connections as of the last scrape (the first worker serves TCP). */
  get tcpConnections(): number {
    return this.slots[0]?.last?.tcpConnections ?? 0;
  }

  /** Entries in all workers' caches as of the last scrape. */
  get cacheEntries(): number {
    return this.slots.reduce((n, s) => n + (s.last?.cacheEntries ?? 0), 0);
  }

  /** Queries each worker answered, as of the last pull (tests: which worker answered). */
  workerQueries(): number[] {
    return this.slots.map((s) => (s.last ? s.last.queries.reduce((a, b) => a + b, 0) : 0));
  }

  addresses(): BoundAddress[] {
    return [...this.bound];
  }

  /** Start every worker; the first one binds (port 0 resolved), the others join its ports. Rejects with its error. */
  async start(): Promise<void> {
    try {
      const first = this.slot(0);
      this.bound = await this.spawn(first);
      const udp = this.bound.filter((a) => a.proto === 'udp');
      this.listen = udp.map((a) => (a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`));
      const rest = Array.from({ length: this.opts.count - 1 }, (_, i) => this.slot(i + 1));
      await Promise.all(rest.map((s) => this.spawn(s)));
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Post a new catalog snapshot to every worker (each swaps its zone atomically). */
  setSnapshot(s: Snapshot): void {
    this.snapshot = slimSnapshot(s);
    for (const slot of this.slots) slot.worker?.postMessage({ t: 'snapshot', snapshot: this.snapshot } satisfies ToWorker);
  }

  /** Fetch every worker's counters and merge them into the registered metrics (scrape time). */
  async pull(): Promise<void> {
    await Promise.all(this.slots.map(async (slot) => {
      const w = slot.worker;
      if (!w) return;
      const id = this.nextId++;
      const c = await new Promise<DnsCounters | undefined>((resolve) => {
        const t = setTimeout(() => { this.waits.delete(id); resolve(undefined); }, COUNTERS_TIMEOUT_MS);
        this.waits.set(id, (x) => { clearTimeout(t); resolve(x); });
        w.postMessage({ t: 'counters', id } satisfies ToWorker);
      });
      if (c) slot.last = c;
    }));
    this.opts.metrics.merge(this.slots.flatMap((s) => [...s.retired, ...(s.last ? [s.last] : [])]));
  }

  /** Stop every worker (each closes its sockets and ends); idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.slots.map(async (slot) => {
      const w = slot.worker;
      if (!w) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => { this.log.warn({ worker: slot.index }, 'dns worker did not end: terminated'); void w.terminate(); }, STOP_TIMEOUT_MS);
        w.once('exit', () => { clearTimeout(t); resolve(); });
        w.postMessage({ t: 'stop' } satisfies ToWorker);
      });
    }));
  }

  private slot(index: number): Slot {
    const s: Slot = { index, worker: undefined, retired: [], last: undefined, backoff: new Backoff(500, 30_000) };
    this.slots[index] = s;
    return s;
  }

  /** Start the worker of `slot`; resolves with its bound addresses once it serves. */
  private spawn(slot: Slot): Promise<BoundAddress[]> {
    const init: WorkerInit = {
      index: slot.index, listen: this.listen, tcp: slot.index === 0, fdFromMain: this.opts.openUdpFd !== undefined, batch: this.opts.batch ?? false,
      snapshot: this.snapshot, zone: this.opts.zone, upstreams: this.opts.upstreams, upstreamTimeoutMs: this.opts.upstreamTimeoutMs,
      cacheSize: this.opts.cacheSize, maxTcpConnections: this.opts.maxTcpConnections, logLevel: this.log.level,
    };
    const w = new Worker(this.script, { workerData: init, stdout: false, stderr: false });
    slot.worker = w;
    return new Promise((resolve, reject) => {
      let ready = false;
      w.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'ready': ready = true; slot.backoff.reset(); resolve([...m.addresses]); return;
          case 'failed': reject(new DnsListenError(this.listen.join(','), Object.assign(new Error(m.message), { code: m.errno ?? m.code }))); return;
          case 'openUdp': this.openUdp(w, m.id, m.host, m.port); return;
          case 'counters': this.waits.get(m.id)?.(m.counters); this.waits.delete(m.id); return;
          case 'stopped': return;
        }
      });
      w.on('error', (err) => this.log.error({ worker: slot.index, err: String(err) }, 'dns worker failed'));
      w.on('exit', (code) => {
        if (slot.worker === w) slot.worker = undefined;
        if (!ready) { reject(new DnsWorkerError(`dns worker ${slot.index} ended before serving (exit code ${code})`)); return; }
        if (this.stopping) return;
        // Died while serving: keep its counts, restart it on the same ports after a pause.
        if (slot.last) slot.retired.push({ ...slot.last, latency: [] });
        slot.last = undefined;
        const delay = slot.backoff.next();
        this.log.error({ worker: slot.index, code, restartInMs: delay }, 'dns worker ended; restarting');
        setTimeout(() => {
          if (this.stopping) return;
          this.spawn(slot).catch((err: unknown) => this.log.error({ worker: slot.index, err: String(err) }, 'dns worker restart failed'));
        }, delay).unref();
      });
    });
  }

  private openUdp(w: Worker, id: number, host: string, port: number): void {
    try {
      const fd = this.opts.openUdpFd!(host, port);
      w.postMessage({ t: 'fd', id, fd } satisfies ToWorker);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      w.postMessage({ t: 'fd', id, error: e.message, code: e.code } satisfies ToWorker);
    }
  }
}
