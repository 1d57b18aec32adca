/**
 * The sync loop (kube-proxy's bounded-frequency runner, slimmed): plans arrive via
 * `update()`; bursts are coalesced into one sync no sooner than `minIntervalMs`
 * after the previous one; the first sync, and every sync after a failure or a
 * detected drift, is a full transaction; the others send only the diff against a
 * shadow of what the kernel holds, kept per service port (incremental.ts) so an
 * incremental sync compiles and compares only the ports that changed. Failures retry with backoff. Nothing is written
 * before the first plan arrives (the caller feeds plans only once the catalog has
 * synced or a persisted snapshot is served).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../../util/log.js';
import { Backoff } from '../../util/backoff.js';
import type { Plan } from '../../plan/types.js';
import { summarize, summaryDrift } from './compile.js';
import { fullTransaction, type Transaction } from './transaction.js';
import { RulesetTracker } from './incremental.js';
import type { NftExecutor } from './executor.js';

export interface NftSyncerOptions {
  readonly executor: NftExecutor;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly minIntervalMs?: number;
  /** 0 disables the periodic drift check (call checkDrift() by hand). */
  readonly driftCheckIntervalMs?: number;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /**
   * Every Nth drift check is deep (rule and element counts, a full listing that
   * costs seconds at 10k services); the others only check that our table and
   * chains exist. Small tables (< deepBelowElements) are always checked deeply.
   */
  readonly deepCheckEvery?: number;
  readonly deepBelowElements?: number;
}

export type SyncKind = 'full' | 'incremental';

export interface SyncResult {
  readonly kind: SyncKind;
  readonly commands: number;
  readonly ms: number;
}

export class NftSyncer {
  private plan: Plan | undefined;
  private dirty = false;
  /** The shadow: what the kernel holds (valid once a full sync succeeded and needFull is false). */
  private readonly shadow = new RulesetTracker();
  private shadowValid = false;
  /** Bumped on every successful sync (drift checks discard listings that raced one). */
  private generation = 0;
  private needFull = true;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private driftTimer: NodeJS.Timeout | undefined;
  private lastEnd = 0;
  private retryAt = 0;
  private stopped = false;
  private driftChecks = 0;
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private readonly minIntervalMs: number;
  /** Revision of the last plan written to the kernel (undefined until the first success). */
  appliedRevision: number | undefined;
  lastResult: SyncResult | undefined;
  private readonly m: { duration: Histogram; syncs: Counter; drift: Counter; ports: Gauge };

  constructor(private readonly opts: NftSyncerOptions) {
    this.log = opts.logger.child({ subsystem: 'dataplane', mode: 'nftables' });
    this.minIntervalMs = opts.minIntervalMs ?? 250;
    this.backoff = new Backoff(opts.backoffMinMs ?? 500, opts.backoffMaxMs ?? 30_000);
    const r = opts.registry;
    this.m = {
      duration: new Histogram({
        name: 'edgeway_dataplane_sync_duration_seconds', help: 'Time to apply one nftables transaction', labelNames: ['kind'],
        buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [r],
      }),
      syncs: new Counter({ name: 'edgeway_dataplane_syncs_total', help: 'nftables syncs by kind and result', labelNames: ['kind', 'result'], registers: [r] }),
      drift: new Counter({ name: 'edgeway_dataplane_drift_repairs_total', help: 'Drift detected in table inet edgeway (forces a full sync)', registers: [r] }),
      ports: new Gauge({ name: 'edgeway_dataplane_service_ports', help: 'Service ports in the applied plan, by target', labelNames: ['target'], registers: [r] }),
    };
  }

  /** Start the periodic drift check. */
  start(): void {
    const every = this.opts.driftCheckIntervalMs ?? 30_000;
    if (every > 0) {
      this.driftTimer = setInterval(() => { void this.checkDrift().catch((err: unknown) => this.log.warn({ err: String(err) }, 'drift check failed')); }, every);
      this.driftTimer.unref();
    }
  }

  /** Hand over the newest plan; the sync happens later (coalesced). */
  update(plan: Plan): void {
    this.plan = plan;
    this.dirty = true;
    this.schedule();
  }

  /** Force the next sync to be full (e.g. after an external change). */
  requestFull(): void {
    this.needFull = true;
    this.dirty = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.timer || this.running || !this.plan) return;
    const now = Date.now();
    const delay = Math.max(0, this.lastEnd + this.minIntervalMs - now, this.retryAt - now);
    this.timer = setTimeout(() => { this.timer = undefined; void this.runOnce(); }, delay);
  }

  /** Run a sync now if one is pending (tests, shutdown); resolves when the kernel has it. */
  async flush(): Promise<void> {
    if (this.timer) { clearTimeout(this.timer); this.timer = undefined; }
    if (this.running) await this.running;
    if (this.dirty) await this.runOnce();
  }

  private runOnce(): Promise<void> {
    this.running = this.sync().finally(() => {
      this.running = undefined;
      this.lastEnd = Date.now();
      if (this.dirty) this.schedule();
    });
    return this.running;
  }

  private async sync(): Promise<void> {
    const plan = this.plan;
    if (!plan || !this.dirty) return;
    this.dirty = false;
    const kind: SyncKind = this.needFull || !this.shadowValid ? 'full' : 'incremental';
    const start = process.hrtime.bigint();
    try {
      let tx: Transaction;
      if (kind === 'full') {
        this.shadowValid = false;
        this.shadow.reset(plan);
        const existing = await this.opts.executor.inspect({ deep: false });
        tx = fullTransaction(this.shadow.ruleset(), existing ? [...existing.chains.keys()] : []);
      } else {
        // The shadow moves ahead of the kernel here; a failure below forces a full sync.
        this.shadowValid = false;
        tx = this.shadow.advance(plan);
      }
      if (tx.commands.length || tx.declare.length) await this.opts.executor.run(tx);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      this.shadowValid = true;
      this.generation++;
      this.needFull = false;
      this.retryAt = 0;
      this.backoff.reset();
      this.appliedRevision = plan.revision;
      this.lastResult = { kind, commands: tx.commands.length, ms };
      this.m.duration.observe({ kind }, ms / 1000);
      this.m.syncs.inc({ kind, result: 'ok' });
      for (const t of ['kernel', 'userspace', 'reject'] as const) this.m.ports.set({ target: t }, plan.servicePorts.filter((p) => p.target === t).length);
      this.log.debug({ kind, revision: plan.revision, commands: tx.commands.length, ms: Math.round(ms * 10) / 10 }, 'nftables synced');
    } catch (err) {
      this.m.syncs.inc({ kind, result: 'error' });
      this.needFull = true;
      this.dirty = true;
      const delay = this.backoff.next();
      this.retryAt = Date.now() + delay;
      this.log.error({ err: String(err), code: (err as { code?: string }).code, kind, retryInMs: delay }, 'nftables sync failed; retrying with a full sync');
    }
  }

  /** Compare the kernel with the shadow; on drift force a full sync. Returns the differences found. */
  async checkDrift(opts: { deep?: boolean } = {}): Promise<string[]> {
    if (!this.shadowValid || this.running || this.needFull) return [];
    const want = summarize(this.shadow.ruleset());
    const elements = [...want.elements.values()].reduce((a, b) => a + b, 0);
    const deep = opts.deep ?? (elements < (this.opts.deepBelowElements ?? 20_000) || this.driftChecks % (this.opts.deepCheckEvery ?? 10) === 0);
    this.driftChecks++;
    const generation = this.generation;
    const got = await this.opts.executor.inspect({ deep, elements });
    // A sync that ran meanwhile makes this listing stale: judge it next time.
    if (generation !== this.generation || this.running || this.needFull) return [];
    const diff = summaryDrift(want, got);
    if (diff.length) {
      this.m.drift.inc();
      this.log.warn({ differences: diff.slice(0, 5), total: diff.length }, 'table inet edgeway drifted; full resync');
      this.requestFull();
    }
    return diff;
  }

  /** Stop timers (kernel state is kept so traffic keeps flowing across restarts). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.driftTimer) clearInterval(this.driftTimer);
    this.timer = undefined;
    if (this.running) await this.running;
  }
}
