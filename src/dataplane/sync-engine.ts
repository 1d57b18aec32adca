/**
 * The one data-plane sync engine: every plan goes, in this order, to
 *   1. the userspace listeners (the proxy opens the ports the plan names, keeping
 *      the previous ones),
 *   2. the rules (nftables, + socket-LB maps, or iptables) — some of which point at
 *      those ports,
 *   3. the userspace listeners again, closing what the plan no longer names — only
 *      once the rules no longer point there.
 * So no rule ever redirects to a port nobody listens on yet (the client would get
 * a reset), whatever the mode. Newest plan only: bursts are coalesced, two steps
 * start at least `minIntervalMs` apart, a failed step is retried with backoff.
 */
import type { Logger } from '../util/log.js';
import type { Plan } from '../plan/types.js';
import { Backoff } from '../util/backoff.js';

/** The proxy's side (structurally; the data plane does not import the proxy). */
export interface UserspaceListeners {
  /** Listen on every userspace port of `plan`; listeners of the previous plan stay open. Idempotent. */
  open(plan: Plan): Promise<{ readonly failed: readonly string[] }>;
  /** Close the listeners `plan` no longer names. Idempotent. */
  prune(plan: Plan): Promise<void>;
}

/** Rules that lead service traffic somewhere; one per mode. */
export interface RuleBackend {
  /**
   * Make the kernel hold `plan`. Resolves true once it does; false when the
   * backend keeps retrying by itself (nftables); throws to have the engine retry.
   */
  apply(plan: Plan): Promise<boolean>;
  /** Ready state for /readyz. */
  readiness(): { ready: boolean; detail?: string };
}

export interface SyncEngineOptions {
  readonly rules: RuleBackend;
  readonly listeners?: UserspaceListeners;
  readonly logger: Logger;
  readonly minIntervalMs: number;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
}

export class SyncEngine {
  private pending: Plan | undefined;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private lastStart = 0;
  private stopped = false;
  private readonly backoff: Backoff;
  /** Ports whose listener failed in the last step (retried). */
  private listenerFailures: readonly string[] = [];
  private lastError: string | undefined;

  constructor(private readonly opts: SyncEngineOptions) {
    this.backoff = new Backoff(opts.backoffMinMs ?? 500, opts.backoffMaxMs ?? 30_000);
  }

  /** Hand over the newest plan; applied later (coalesced). */
  update(plan: Plan): void {
    if (this.stopped) return;
    this.pending = plan;
    // A newer plan after a failed listener retry goes at once; after a failed rule write it waits out the backoff.
    if (this.retryTimer && !this.lastError) { clearTimeout(this.retryTimer); this.retryTimer = undefined; }
    this.schedule(0);
  }

  /** Resolves when no step is running or scheduled, apart from a retry after a failure (tests). */
  async settled(): Promise<void> {
    for (let i = 0; i < 1000 && (this.running || this.timer); i++) {
      if (this.running) await this.running;
      else await new Promise((r) => setTimeout(r, 10));
    }
  }

  readiness(): { ready: boolean; detail?: string } {
    const r = this.opts.rules.readiness();
    const notes = [r.detail, this.listenerFailures.length ? `listeners failed: ${this.listenerFailures.join(', ')}` : '', this.lastError ? `last sync failed: ${this.lastError}` : '']
      .filter(Boolean).join('; ');
    return notes ? { ready: r.ready, detail: notes } : { ready: r.ready };
  }

  /** Stop scheduling; waits for a step in progress. Kernel state and listeners are left as they are. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.timer = undefined;
    this.retryTimer = undefined;
    await this.running;
  }

  private schedule(extraDelayMs: number): void {
    if (this.stopped || this.running || this.timer || this.retryTimer || !this.pending) return;
    const delay = Math.max(extraDelayMs, this.lastStart + this.opts.minIntervalMs - Date.now(), 0);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.step().finally(() => {
        this.running = undefined;
        this.schedule(0);
      });
    }, delay);
  }

  private async step(): Promise<void> {
    const plan = this.pending;
    if (!plan || this.stopped) return;
    this.pending = undefined;
    this.lastStart = Date.now();
    const log = this.opts.logger;
    try {
      const l = this.opts.listeners;
      if (l) {
        const { failed } = await l.open(plan);
        this.listenerFailures = failed;
      }
      const applied = await this.opts.rules.apply(plan);
      if (applied && l) await l.prune(plan);
      this.lastError = undefined;
      if (this.listenerFailures.length > 0) this.retry(plan, 'listeners failed');
      else this.backoff.reset();
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      log.error({ revision: plan.revision, err: this.lastError, code: (err as { code?: string }).code }, 'data-plane sync failed; retrying');
      this.retry(plan, this.lastError);
    }
  }

  /** Try `plan` again after a backoff unless a newer plan is already waiting. */
  private retry(plan: Plan, why: string): void {
    this.pending ??= plan;
    const delay = this.backoff.next();
    this.opts.logger.debug({ revision: plan.revision, why, retryInMs: delay }, 'data-plane sync retry scheduled');
    if (this.retryTimer) clearTimeout(this.retryTimer);
    // Until it fires, schedule() waits (a newer plan, too, goes after the backoff).
    this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.schedule(0); }, delay);
  }
}
