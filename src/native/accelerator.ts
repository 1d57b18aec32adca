/**
 * What the agent forwards with: detects the addon and the sockmap program once,
 * exposes the available forwarders, picks one per connection with fallback, and
 * reports `edgeway_dataplane_accelerator{kind}` (1 = usable, 0 = not) plus a
 * per-kind count of forwarded connections and of fallbacks.
 */
import type net from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import { NativeAeadForwarder, type AeadForwarder } from './aead-forwarder.js';
import { loadNative, type NativeLoad, type OriginalDst, type SockmapStats } from './addon.js';
import { HandoverError, NativeUnavailableError } from './errors.js';
import type { ForwardOptions, ForwardResult, Forwarder, ForwarderKind } from './forwarder.js';
import { NativeEngine, SockmapForwarder, SpliceForwarder } from './native-forwarders.js';
import { NodeStreamsForwarder } from './node-streams.js';

/** `auto` = fastest available first; a kind = that one, falling back to slower ones. */
export type AcceleratorPreference = 'auto' | ForwarderKind;

/**
 * Order for `auto`, fastest first, from bench/accel.mjs on kernel 6.18 (see
 * bench/results/accel.md; two runs, median of 3 rounds each, noisy shared box):
 * bulk × direct splice 0.60 / 0.97 vs sockmap 0.32 / 0.51, machine CPU per GB
 * splice 4.4 / 3.4 s vs sockmap 8.5 / 6.6 s (the sockmap egress redirect goes through
 * the psock backlog workqueue); connection rates were equal within noise. So
 * splice leads; sockmap stays available by preference (`accelerator.mode: sockmap`).
 */
export const AUTO_ORDER: readonly ForwarderKind[] = ['splice', 'sockmap', 'node'];

export interface AcceleratorStatus {
  readonly kind: ForwarderKind;
  readonly available: boolean;
  /** Why it is not available (one line). */
  readonly reason?: string;
}

export interface AcceleratorOptions {
  readonly registry?: Registry;
  readonly logger?: Logger;
  readonly threads?: number;
  readonly pipeSize?: number;
  /** Load the sockmap program (needs CAP_BPF + CAP_NET_ADMIN). Default true. */
  readonly sockmap?: boolean;
  /** Override addon discovery (tests of the absent-addon path pass `{}`). */
  readonly native?: NativeLoad;
}

export class Accelerators {
  readonly status: readonly AcceleratorStatus[];
  private readonly forwarders = new Map<ForwarderKind, Forwarder>();
  private readonly engine?: NativeEngine;
  private aeadForwarder?: NativeAeadForwarder;
  private readonly getOrigDst?: (fd: number) => OriginalDst | null;
  private readonly connections?: Counter<'kind'>;
  private readonly fallbacks?: Counter<'from' | 'to'>;

  constructor(opts: AcceleratorOptions = {}) {
    const native = opts.native ?? loadNative();
    const status: AcceleratorStatus[] = [];
    this.forwarders.set('node', new NodeStreamsForwarder());
    if (native.addon) {
      this.getOrigDst = native.addon.getOriginalDst.bind(native.addon);
      this.engine = new NativeEngine(native.addon, { threads: opts.threads, pipeSize: opts.pipeSize });
      this.forwarders.set('splice', new SpliceForwarder(this.engine));
      status.push({ kind: 'splice', available: true });
      let reason: string | undefined;
      if (opts.sockmap === false) reason = 'disabled by configuration';
      else if (!native.bpf) reason = native.bpfReason ?? 'libbpf addon not loaded';
      else if (!native.sockmapObject) reason = 'BPF object not built (bpf/build/sockmap_verdict.bpf.o)';
      else {
        try {
          this.engine.enableSockmap(native.sockmapObject, native.bpf);
          this.forwarders.set('sockmap', new SockmapForwarder(this.engine));
        } catch (err) {
          reason = (err as Error).message;
        }
      }
      status.push(reason ? { kind: 'sockmap', available: false, reason } : { kind: 'sockmap', available: true });
    } else {
      const reason = native.addonReason ?? 'addon not loaded';
      status.push({ kind: 'splice', available: false, reason }, { kind: 'sockmap', available: false, reason });
    }
    status.push({ kind: 'node', available: true });
    this.status = status;
    if (opts.registry) {
      const gauge = new Gauge({
        name: 'edgeway_dataplane_accelerator',
        help: 'Forwarding paths of the userspace proxy: 1 = usable, 0 = not (see edgeway doctor for why)',
        labelNames: ['kind'],
        registers: [opts.registry],
      });
      for (const s of status) gauge.set({ kind: s.kind }, s.available ? 1 : 0);
      this.connections = new Counter({
        name: 'edgeway_dataplane_forwarded_connections_total',
        help: 'Proxied connections by the forwarding path that carried them',
        labelNames: ['kind'],
        registers: [opts.registry],
      });
      this.fallbacks = new Counter({
        name: 'edgeway_dataplane_forward_fallbacks_total',
        help: 'Connections an accelerator refused at hand-over and a slower path carried',
        labelNames: ['from', 'to'],
        registers: [opts.registry],
      });
    }
    for (const s of status) if (!s.available) opts.logger?.info({ kind: s.kind, reason: s.reason }, 'accelerator unavailable');
  }

  /** The forwarder of one kind, if available. */
  get(kind: ForwarderKind): Forwarder | undefined {
    return this.forwarders.get(kind);
  }

  /** Kinds usable now, fastest first. */
  get available(): ForwarderKind[] {
    return AUTO_ORDER.filter((k) => this.forwarders.has(k));
  }

  /**
   * A forwarder that tries `preference` (or the fastest for `auto`), then each
   * slower available kind when the faster one refuses the hand-over; the
   * connection is always carried (Node streams accept everything).
   */
  pick(preference: AcceleratorPreference = 'auto'): Forwarder {
    const start = preference === 'auto' ? 0 : AUTO_ORDER.indexOf(preference);
    const chain = AUTO_ORDER.slice(Math.max(0, start)).map((k) => this.forwarders.get(k)).filter((f): f is Forwarder => f !== undefined);
    return new FallbackForwarder(chain, this.connections, this.fallbacks);
  }

  /**
   * The EWC1 record pump (the tunnel data channel's bulk path) on the same pool, or
   * undefined when it cannot run here (`aeadReason` says why; the channel then keeps
   * its JS codec).
   */
  aead(): AeadForwarder | undefined {
    if (!this.engine || this.engine.aeadReason) return undefined;
    this.aeadForwarder ??= new NativeAeadForwarder(this.engine);
    return this.aeadForwarder;
  }

  /** Why `aead()` is undefined (one line), or undefined when it is available. */
  get aeadReason(): string | undefined {
    return this.engine ? this.engine.aeadReason : 'native addon not loaded';
  }

  /** The pre-NAT destination of an accepted, redirected connection. */
  originalDst(sock: net.Socket): OriginalDst | null {
    if (!this.getOrigDst) throw new NativeUnavailableError('getOriginalDst needs the native addon');
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return null;
    return this.getOrigDst(fd);
  }

  /** Counters of the sockmap verdict program (summed over CPUs), when loaded. */
  sockmapStats(): SockmapStats | undefined {
    return this.engine?.sockmap?.stats();
  }

  /** Connections currently carried by the native pool. */
  get nativeActive(): number {
    return this.engine?.active ?? 0;
  }

  /** Stop the epoll threads (pairs still running are cancelled) and detach BPF. Idempotent. */
  close(): void {
    this.engine?.close();
  }
}

class FallbackForwarder implements Forwarder {
  readonly kind: ForwarderKind;
  constructor(
    private readonly chain: readonly Forwarder[],
    private readonly connections?: Counter<'kind'>,
    private readonly fallbacks?: Counter<'from' | 'to'>,
  ) {
    this.kind = chain[0]?.kind ?? 'node';
  }

  async forward(client: net.Socket, upstream: net.Socket, opts?: ForwardOptions): Promise<ForwardResult> {
    for (let i = 0; i < this.chain.length; i++) {
      const f = this.chain[i]!;
      try {
        const p = f.forward(client, upstream, opts);
        // Counted once the path accepted the sockets (hand-over errors reject first).
        const r = await p;
        this.connections?.inc({ kind: r.kind });
        return r;
      } catch (err) {
        const next = this.chain[i + 1];
        if (err instanceof HandoverError && next) {
          this.fallbacks?.inc({ from: f.kind, to: next.kind });
          continue;
        }
        if (!(err instanceof HandoverError)) this.connections?.inc({ kind: f.kind });
        throw err;
      }
    }
    throw new HandoverError('node', 'no forwarder available');
  }
}

/** Convenience for callers that only want the pick (tests, bench). */
export function pickForwarder(accel: Accelerators, preference: AcceleratorPreference = 'auto'): Forwarder {
  return accel.pick(preference);
}

/** Build from the `accelerator` config section (composition roots: agent, gateway). */
export function acceleratorsFromConfig(
  cfg: Config['accelerator'],
  deps: { registry?: Registry; logger?: Logger } = {},
): { accelerators: Accelerators; forwarder: Forwarder } {
  const accelerators = new Accelerators({
    ...deps,
    threads: cfg.threads,
    pipeSize: cfg.pipeSize,
    sockmap: cfg.sockmap,
    ...(cfg.mode === 'node' ? { native: { addonReason: 'disabled by configuration (accelerator.mode: node)' } } : {}),
  });
  return { accelerators, forwarder: accelerators.pick(cfg.mode) };
}

/** One line per path for `edgeway doctor`: `splice: yes` / `sockmap: no (reason)`. */
export function describeAccelerators(status: readonly AcceleratorStatus[]): string[] {
  return status.map((s) => `${s.kind}: ${s.available ? 'yes' : `no (${s.reason ?? 'unknown'})`}`);
}
