/**
 * Start-up and shutdown of a daemon as one stack: everything that is started is
 * pushed with its stop, and everything is stopped in reverse order — after a
 * normal SIGTERM, after a start that threw, and after a SIGTERM that came during
 * start-up. Each step is bounded in time, so the process always ends.
 */
import type { Logger } from '../util/log.js';

/** The signal that interrupted a start, as a value (not an error). */
export class Interrupted {
  constructor(readonly signal: string) {}
}

export interface LifecycleOptions {
  readonly logger: Logger;
  /** Resolves with the signal name at SIGINT/SIGTERM (command.ts stopSignal). */
  readonly stopRequested: Promise<string>;
  /** How long an interrupted start may take to settle before its part is stopped anyway. */
  readonly startGraceMs?: number;
  /** Bound of each stop; a stop that takes longer is logged and left behind. */
  readonly stopTimeoutMs?: number;
}

export class Lifecycle {
  private readonly started: { name: string; stop: () => Promise<void> }[] = [];
  private signal: string | undefined;
  private readonly interrupted: Promise<Interrupted>;

  constructor(private readonly opts: LifecycleOptions) {
    this.interrupted = opts.stopRequested.then((s) => { this.signal = s; return new Interrupted(s); });
  }

  /** The signal received so far, if any. */
  get stopSignal(): string | undefined {
    return this.signal;
  }

  /** Wait for the stop request (the daemon's normal life). */
  async untilStopped(): Promise<string> {
    return (await this.interrupted).signal;
  }

  /**
   * Run one start-up step. Resolves with its value, or with Interrupted when a stop
   * signal came first (the step is then given `startGraceMs` to settle, so that
   * what it started can be stopped). Rejects with the step's error.
   */
  async step<T>(what: string, run: () => Promise<T>): Promise<T | Interrupted> {
    if (this.signal) return new Interrupted(this.signal);
    const p = run();
    const first = await Promise.race([p, this.interrupted]);
    if (!(first instanceof Interrupted)) return first;
    this.opts.logger.info({ step: what, signal: first.signal }, 'stop requested during start-up; waiting for this step to settle');
    const grace = this.opts.startGraceMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([p.catch(() => undefined), new Promise((r) => { timer = setTimeout(r, grace); })]);
    clearTimeout(timer);
    return first;
  }

  /** Register how to release something that is (or may be, half) started. */
  push(name: string, stop: () => Promise<void>): void {
    this.started.push({ name, stop });
  }

  /** Stop everything pushed, newest first, each bounded; never throws. */
  async stopAll(): Promise<void> {
    const log = this.opts.logger;
    const bound = this.opts.stopTimeoutMs ?? 15_000;
    for (const { name, stop } of this.started.splice(0).reverse()) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), bound); });
      try {
        const r = await Promise.race([stop().then(() => 'ok' as const), timeout]);
        if (r === 'timeout') log.error({ part: name, timeoutMs: bound }, 'stop did not finish in time; going on');
        else log.info({ part: name }, 'released');
      } catch (err) {
        log.error({ part: name, err: String(err) }, 'stop failed');
      } finally {
        clearTimeout(timer);
      }
    }
  }
}
