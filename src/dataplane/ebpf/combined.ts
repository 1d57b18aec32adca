/**
 * `dataplane.mode: ebpf` = the packet-level data plane (nftables) for everything,
 * plus socket-LB for what local sockets dial. nftables stays authoritative: it
 * serves traffic the hooks can't see (forwarded from other hosts, remote
 * endpoints through the tunnel, L7 redirects) and every flow socket-LB does not
 * translate. A socket-LB failure therefore never breaks service traffic: it is
 * logged, counted in `edgeway_ebpf_fallbacks_total{reason}` and retried on the
 * next reconcile, while nftables keeps serving.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Plan } from '../../plan/types.js';
import { silentLogger, type Logger } from '../../util/log.js';
import type { SocketLbProbe } from './host.js';

/** The part of a plan-driven data plane this composite needs (nftables implements it). */
export interface PlanDataplane {
  apply(plan: Plan): Promise<unknown>;
  reconcile(): Promise<unknown>;
  cleanup(): Promise<void>;
}

/** The socket-LB controller's lifecycle (SocketLb implements it). */
export interface SocketLbLifecycle {
  start(): Promise<unknown>;
  apply(plan: Plan): Promise<number>;
  reconcile(): Promise<number>;
  stop(): Promise<void>;
  cleanup(): Promise<void>;
}

export type FallbackCause = 'start-failed' | 'apply-failed' | 'reconcile-failed';

export interface EbpfDataplaneOptions {
  /** The nftables data plane. */
  readonly base: PlanDataplane;
  readonly socketLb: SocketLbLifecycle;
  readonly registry?: Registry;
  readonly logger?: Logger;
}

export class EbpfDataplane implements PlanDataplane {
  private readonly base: PlanDataplane;
  private readonly lb: SocketLbLifecycle;
  private readonly log: Logger;
  private started = false;
  /** socket-LB needs a retry (start or a sync failed). */
  private degraded = false;
  private lastPlan?: Plan;
  private readonly fallbacks?: Counter<'reason'>;
  private readonly active?: Gauge;

  constructor(opts: EbpfDataplaneOptions) {
    this.base = opts.base;
    this.lb = opts.socketLb;
    this.log = (opts.logger ?? silentLogger()).child({ part: 'ebpf' });
    if (opts.registry) {
      this.fallbacks = new Counter({ name: 'edgeway_ebpf_fallbacks_total', help: 'Times socket-LB could not serve and nftables alone carried service traffic, by cause', labelNames: ['reason'], registers: [opts.registry] });
      this.active = new Gauge({ name: 'edgeway_ebpf_socket_lb_active', help: '1 when socket-LB maps match the last applied plan', registers: [opts.registry] });
    }
  }

  /** True when socket-LB is serving the last plan. */
  get socketLbActive(): boolean {
    return this.started && !this.degraded;
  }

  /** Start socket-LB; a failure degrades to nftables only (never throws). */
  async start(): Promise<void> {
    try {
      await this.lb.start();
      this.started = true;
      this.degraded = false;
    } catch (err) {
      this.fallback('start-failed', err);
    }
    this.active?.set(this.socketLbActive ? 1 : 0);
  }

  /**
   * Apply to nftables first (authoritative; its errors propagate), then to
   * socket-LB (errors degrade). Idempotent.
   */
  async apply(plan: Plan): Promise<void> {
    await this.base.apply(plan);
    this.lastPlan = plan;
    if (!this.started) return;
    try {
      await this.lb.apply(plan);
      this.degraded = false;
    } catch (err) {
      this.fallback('apply-failed', err);
    }
    this.active?.set(this.socketLbActive ? 1 : 0);
  }

  /** Reconcile both; retries a failed socket-LB start or sync. Idempotent. */
  async reconcile(): Promise<void> {
    await this.base.reconcile();
    try {
      if (!this.started) {
        await this.lb.start();
        this.started = true;
      }
      await this.lb.reconcile();
      if (this.lastPlan) await this.lb.apply(this.lastPlan);
      this.degraded = false;
    } catch (err) {
      this.fallback(this.started ? 'reconcile-failed' : 'start-failed', err);
    }
    this.active?.set(this.socketLbActive ? 1 : 0);
  }

  /** Keep kernel state (programs stay attached, rules stay) for the next agent. */
  async stop(): Promise<void> {
    await this.lb.stop();
  }

  /** Remove socket-LB programs and pins, then the nftables state. */
  async cleanup(): Promise<void> {
    await this.lb.cleanup();
    await this.base.cleanup();
    this.started = false;
    this.active?.set(0);
  }

  private fallback(reason: FallbackCause, err: unknown): void {
    this.degraded = true;
    this.fallbacks?.inc({ reason });
    this.log.warn({ err, reason }, 'socket-LB unavailable; nftables alone serves service traffic');
  }
}

export type DataplaneMode = 'auto' | 'ebpf' | 'nftables' | 'iptables' | 'none';

/**
 * Whether socket-LB runs for a configured mode, and why (for doctor and the agent
 * log). `auto` picks it when the probe found cgroup v2, the BPF features, bpftool
 * and the object; `ebpf` requires it (the caller should fail with `reason`).
 */
export function socketLbDecision(mode: DataplaneMode, probe: SocketLbProbe): { readonly enabled: boolean; readonly required: boolean; readonly reason: string } {
  if (mode === 'nftables' || mode === 'iptables' || mode === 'none') return { enabled: false, required: false, reason: `dataplane.mode is ${mode}` };
  const required = mode === 'ebpf';
  if (probe.supported) return { enabled: true, required, reason: `cgroup v2 at ${probe.cgroup2Root}, BPF sock_addr hooks, bpftool ${probe.bpftool}` };
  return { enabled: false, required, reason: probe.reasons.join('; ') };
}
