/**
 * iptables mode: the plan's userspace service ports are redirected to the proxy by
 * our own nat chain; ports with no endpoints are rejected by our filter chain. Per
 * sync and family: one `iptables-save` read (to see which jumps exist) and one
 * `iptables-restore --noflush` write, whatever the number of services.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../../util/log.js';
import type { Plan } from '../../plan/types.js';
import type { IpFamily } from '../../catalog/types.js';
import { compileIptables, driftOf, parseSave, renderCleanup, renderRestore, type IptablesRuleset } from './compile.js';
import { binaries, detectBackend, type IptablesBackend } from './detect.js';
import { IptablesError } from './errors.js';
import { processExec, type Exec } from './exec.js';

export interface IptablesDataplaneOptions {
  readonly logger: Logger;
  readonly registry: Registry;
  readonly exec?: Exec;
  /** Default auto (detectBackend). */
  readonly backend?: IptablesBackend | 'auto';
  /** Program ip6tables too (default: only when the plan has IPv6 cluster IPs or our v6 chains exist). */
  readonly ipv6?: boolean;
}

export class IptablesDataplane {
  private readonly exec: Exec;
  private readonly log: Logger;
  private backend: IptablesBackend | undefined;
  private want = new Map<IpFamily, IptablesRuleset>();
  private readonly syncSeconds: Histogram<'op'>;
  private readonly syncs: Counter<'op' | 'result'>;
  private readonly repairs: Counter;
  private readonly backendGauge: Gauge<'backend'>;

  constructor(private readonly opts: IptablesDataplaneOptions) {
    this.exec = opts.exec ?? processExec();
    this.log = opts.logger;
    const registers = [opts.registry];
    this.syncSeconds = new Histogram({ name: 'edgeway_iptables_sync_duration_seconds', help: 'Time of one iptables sync (save + restore)', labelNames: ['op'], registers, buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
    this.syncs = new Counter({ name: 'edgeway_iptables_syncs_total', help: 'iptables syncs by operation and result', labelNames: ['op', 'result'], registers });
    this.repairs = new Counter({ name: 'edgeway_iptables_drift_repairs_total', help: 'Syncs forced because our chains or jumps were altered', registers });
    this.backendGauge = new Gauge({ name: 'edgeway_iptables_backend', help: 'iptables backend in use (1)', labelNames: ['backend'], registers });
  }

  /** Backend in use (after the first apply or `init`). */
  get backendName(): IptablesBackend | undefined {
    return this.backend;
  }

  async init(): Promise<IptablesBackend> {
    if (this.backend) return this.backend;
    if (this.opts.backend && this.opts.backend !== 'auto') {
      this.backend = this.opts.backend;
      this.log.info({ backend: this.backend }, 'iptables backend set by config');
    } else {
      const c = await detectBackend(this.exec);
      this.backend = c.backend;
      this.log.info({ backend: c.backend, reason: c.reason }, 'iptables backend detected');
    }
    this.backendGauge.labels(this.backend).set(1);
    return this.backend;
  }

  /** Make the kernel match `plan`. Idempotent: re-applying the same plan rewrites identical chains. */
  async apply(plan: Pick<Plan, 'servicePorts'>): Promise<void> {
    await this.init();
    const end = this.syncSeconds.startTimer({ op: 'apply' });
    try {
      const want = new Map<IpFamily, IptablesRuleset>();
      for (const family of [4, 6] as const) want.set(family, compileIptables(plan, family));
      this.want = want;
      for (const [family, rs] of want) await this.syncFamily(family, rs, false);
      this.syncs.labels('apply', 'ok').inc();
    } catch (err) {
      this.syncs.labels('apply', 'error').inc();
      throw err;
    } finally {
      end();
    }
  }

  /** Check for drift and repair it (another tool flushed our chain or removed a jump). Returns the drift found. Idempotent. */
  async reconcile(): Promise<string[]> {
    if (!this.backend) return [];
    const found: string[] = [];
    for (const [family, rs] of this.want) {
      const d = await this.syncFamily(family, rs, true);
      found.push(...d.map((x) => `v${family} ${x}`));
    }
    if (found.length) {
      this.repairs.inc();
      this.log.warn({ drift: found }, 'iptables drift repaired');
    }
    this.syncs.labels('reconcile', 'ok').inc();
    return found;
  }

  /** Remove every rule, jump and chain we made, in both backends and both families. Idempotent. */
  async cleanup(): Promise<void> {
    for (const backend of ['legacy', 'nft'] as const) {
      for (const family of [4, 6] as const) {
        const b = binaries(backend, family);
        let saved;
        try {
          saved = parseSave(await this.exec(b.save, []));
        } catch {
          continue; // backend or family not available: nothing of ours there
        }
        const input = renderCleanup(saved.jumps, saved.chains);
        if (!input) continue;
        await this.exec(b.restore, ['--noflush', '-w', '5'], input).catch((err: unknown) => {
          throw new IptablesError('ERR_IPTABLES_APPLY', `cleanup with ${b.restore} failed: ${String(err)}`, { cause: err });
        });
        this.log.info({ backend, family }, 'iptables rules removed');
      }
    }
  }

  /** One family: read, then (when needed) one restore. Returns the drift seen before writing. */
  private async syncFamily(family: IpFamily, rs: IptablesRuleset, onlyIfDrift: boolean): Promise<string[]> {
    const b = binaries(this.backend!, family);
    const empty = rs.nat.length === 0 && rs.filter.length === 0;
    let saveText: string;
    try {
      saveText = await this.exec(b.save, []);
    } catch (err) {
      if (family === 6 && empty && this.opts.ipv6 !== true) return []; // no IPv6 here and nothing to do
      throw new IptablesError('ERR_IPTABLES_SAVE', `${b.save} failed: ${String(err)}`, { cause: err });
    }
    const saved = parseSave(saveText);
    // IPv6 with nothing to program and nothing of ours present: leave ip6tables alone.
    if (family === 6 && empty && saved.chains.size === 0 && this.opts.ipv6 !== true) return [];
    const drift = driftOf(saved, rs);
    if (onlyIfDrift && drift.length === 0) return [];
    try {
      await this.exec(b.restore, ['--noflush', '-w', '5'], renderRestore(rs, saved.jumps));
    } catch (err) {
      throw new IptablesError('ERR_IPTABLES_APPLY', `${b.restore} failed: ${String(err)}`, { cause: err });
    }
    return drift;
  }
}
