/**
 * Socket-level load balancing (Cilium's socket-LB) driven by the plan: loads the
 * cgroup sock_addr programs once, pins programs and maps under a per-instance
 * bpffs directory, attaches them to a cgroup v2 directory and keeps the maps equal
 * to the plan.
 *
 * Restart-safe: `start()` reuses pinned programs and maps and rebuilds its shadow
 * copy from the maps (the kernel is the source of truth), so a restarted agent
 * reconciles instead of flushing and established flows never notice. `stop()`
 * leaves kernel state in place; `cleanup()` removes attachments and pins.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Plan } from '../../plan/types.js';
import { silentLogger, type Logger } from '../../util/log.js';
import type { BpfBackend, MapOp } from './backend.js';
import type { SocketLbLifecycle } from './combined.js';
import { BpfObjectMissingError, EbpfUnsupportedError } from './errors.js';
import { defaultBpfBackend } from './libbpf-backend.js';
import { DEFAULT_OBJECT, checkPinPath, ensureBpffs, findCgroup2Root, mkdirp } from './host.js';
import { LAYOUTS, MAPS, PROGRAMS, STATS, U32, U64, decode, encode, type MapKey, type StatName, type StructDef } from './layout.js';
import { computeSync, desiredFrontends, emptyState, frontendKey, type FallbackReason, type LbState, type SyncOp } from './sync.js';

export interface SocketLbOptions {
  /** Compiled object (default bpf/build/sock_lb.bpf.o of this package). */
  readonly object?: string;
  /** Where a bpffs is (or gets) mounted. Default /sys/fs/bpf. */
  readonly bpffsRoot?: string;
  /** This instance's pin directory (default `<bpffsRoot>/edgeway`); no dots. */
  readonly pinDir?: string;
  /** cgroup v2 directory to attach to (default: the cgroup v2 root). */
  readonly cgroup?: string;
  /** Default: `LibbpfBackend` when the native addon is loaded, else `BpftoolBackend`. */
  readonly backend?: BpfBackend;
  readonly registry?: Registry;
  readonly logger?: Logger;
}

export interface SocketLbStatus {
  readonly attached: number;
  readonly frontends: number;
  readonly backends: number;
  readonly fallbacks: Readonly<Partial<Record<FallbackReason, number>>>;
}

/**
 * What start() found: `restored` (pins present), `adopted` (pins lost, e.g. a new
 * bpffs, but our programs still attached: re-pinned with their maps), `reloaded`
 * (program pins lost, maps kept), `fresh` (nothing usable).
 */
export type StartMode = 'fresh' | 'restored' | 'adopted' | 'reloaded';

export class SocketLb implements SocketLbLifecycle {
  readonly object: string;
  readonly bpffsRoot: string;
  readonly pinDir: string;
  readonly cgroup: string;
  private readonly bpf: BpfBackend;
  private readonly log: Logger;
  private state: LbState = emptyState();
  /** The shadow is unreliable (a batch failed): the next apply re-reads the maps. */
  private dirty = true;
  private attachedCount = 0;
  private fallbacks = new Map<FallbackReason, number>();
  private lastPlan?: Plan;
  /** Fresh maps are empty: attach only once the first apply filled them. */
  private attachPending = false;
  private readonly metrics?: ReturnType<typeof createMetrics>;
  /** Kernel operations run one at a time (apply from a sync loop, reconcile from a timer). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: SocketLbOptions = {}) {
    this.object = opts.object ?? DEFAULT_OBJECT;
    this.bpffsRoot = opts.bpffsRoot ?? '/sys/fs/bpf';
    this.pinDir = opts.pinDir ?? join(this.bpffsRoot, 'edgeway');
    checkPinPath(this.pinDir);
    const cg = opts.cgroup ?? findCgroup2Root();
    if (!cg) throw new EbpfUnsupportedError('no cgroup v2 hierarchy mounted');
    this.cgroup = cg;
    this.log = (opts.logger ?? silentLogger()).child({ part: 'ebpf' });
    this.bpf = opts.backend ?? defaultBpfBackend(this.log);
    if (opts.registry) this.metrics = createMetrics(opts.registry, this);
  }

  get progDir(): string { return join(this.pinDir, 'progs'); }
  get mapDir(): string { return join(this.pinDir, 'maps'); }
  mapPin(m: MapKey): string { return join(this.mapDir, MAPS[m]); }
  progPin(name: string): string { return join(this.progDir, name); }

  /**
   * Load (or reuse pinned) programs and maps, attach, and restore the shadow from
   * the maps. Idempotent: calling it again only re-attaches what is missing.
   */
  start(): Promise<StartMode> {
    return this.serial(() => this.doStart());
  }

  private async doStart(): Promise<StartMode> {
    await ensureBpffs(this.bpffsRoot);
    const mapsPinned = Object.values(MAPS).every((m) => existsSync(join(this.mapDir, m)));
    const progsPinned = PROGRAMS.every((p) => existsSync(this.progPin(p.name)));
    let mode: StartMode;
    if (mapsPinned && progsPinned) {
      mode = 'restored';
    } else if (!mapsPinned && (await this.adopt())) {
      mode = 'adopted';
    } else {
      if (!existsSync(this.object)) throw new BpfObjectMissingError(this.object);
      mkdirp(this.mapDir);
      // Programs are re-pinned from scratch; existing maps are kept and reused.
      rmSync(this.progDir, { recursive: true, force: true });
      const reuse = mapsPinned ? new Map(Object.values(MAPS).map((m) => [m, join(this.mapDir, m)])) : undefined;
      if (!mapsPinned) for (const m of Object.values(MAPS)) rmSync(join(this.mapDir, m), { force: true });
      // bpftool pins every map of the object, reused ones too: pin into a scratch
      // directory and keep only what is new, so existing pins are never touched.
      const scratch = join(this.pinDir, 'loading');
      rmSync(scratch, { recursive: true, force: true });
      await this.bpf.loadAll(this.object, this.progDir, reuse ? scratch : this.mapDir, reuse);
      rmSync(scratch, { recursive: true, force: true });
      mode = mapsPinned ? 'reloaded' : 'fresh';
    }
    // Fresh maps are empty: attaching now would only produce misses, and would
    // detach a previous instance's programs (pins lost with a container's bpffs)
    // before the new maps can serve. Attach after the first apply instead.
    this.attachPending = mode === 'fresh';
    if (!this.attachPending) await this.reconcileAttachments();
    await this.restore();
    this.log.info({ mode, pinDir: this.pinDir, cgroup: this.cgroup, frontends: this.state.frontends.size }, 'socket-LB started');
    return mode;
  }

  /**
   * Pins lost but the cgroup still runs a complete set of our programs: pin those
   * programs and their maps again, so nothing is reloaded and no affinity or
   * reverse entry is lost. Returns false (pinning nothing) when the set is
   * incomplete or its maps don't match this ABI.
   */
  private async adopt(): Promise<boolean> {
    const attached = await this.bpf.attachments(this.cgroup).catch(() => []);
    const progIds = new Map<string, number>();
    for (const p of PROGRAMS) {
      const hits = attached.filter((a) => a.name === p.name && a.attachType === p.attachType);
      if (hits.length !== 1) return false;
      progIds.set(p.name, hits[0]!.id);
    }
    const mapIds = new Map<string, number>();
    for (const id of new Set(progIds.values())) {
      for (const mid of await this.bpf.progMapIds(id)) {
        const name = await this.bpf.mapName(mid);
        if (mapIds.has(name) && mapIds.get(name) !== mid) return false; // two generations mixed
        mapIds.set(name, mid);
      }
    }
    if (!Object.values(MAPS).every((m) => mapIds.has(m))) return false;
    rmSync(this.progDir, { recursive: true, force: true });
    rmSync(this.mapDir, { recursive: true, force: true });
    mkdirp(this.progDir);
    mkdirp(this.mapDir);
    for (const [name, id] of progIds) await this.bpf.pinById('prog', id, this.progPin(name));
    for (const m of Object.values(MAPS)) await this.bpf.pinById('map', mapIds.get(m)!, join(this.mapDir, m));
    return true;
  }

  /**
   * Make the maps match the plan's kernel-served service ports. Idempotent: an
   * unchanged plan writes nothing. Returns the number of map operations.
   */
  apply(plan: Plan): Promise<number> {
    return this.serial(() => this.doApply(plan));
  }

  private async doApply(plan: Plan): Promise<number> {
    if (this.dirty) await this.restore();
    this.lastPlan = plan;
    const desired = desiredFrontends(plan);
    this.fallbacks = new Map(desired.fallbacks);
    const { ops, next } = computeSync(this.state, desired.frontends);
    try {
      await this.bpf.mapOps(ops.map((o) => this.toMapOp(o)));
    } catch (err) {
      this.dirty = true;
      throw err;
    }
    this.state = next;
    if (this.attachPending) {
      await this.reconcileAttachments();
      this.attachPending = false;
    }
    this.updateGauges();
    if (ops.length) this.log.debug({ ops: ops.length, frontends: next.frontends.size }, 'socket-LB maps updated');
    return ops.length;
  }

  /**
   * Repair drift: re-attach programs someone detached, re-read the maps and
   * rewrite whatever differs from the last applied plan. Idempotent; returns the
   * number of map operations the repair needed.
   */
  reconcile(): Promise<number> {
    return this.serial(async () => {
      if (!this.attachPending) await this.reconcileAttachments();
      await this.restore();
      return this.lastPlan ? this.doApply(this.lastPlan) : 0;
    });
  }

  /** Stop managing; attachments, pins and maps stay so traffic keeps flowing. */
  stop(): Promise<void> {
    return Promise.resolve();
  }

  /** Detach every program and remove every pin of this instance. Idempotent. */
  cleanup(): Promise<void> {
    return this.serial(() => this.doCleanup());
  }

  private async doCleanup(): Promise<void> {
    const attached = await this.bpf.attachments(this.cgroup).catch(() => []);
    for (const p of PROGRAMS) {
      const pin = this.progPin(p.name);
      const ids = new Set<number>();
      if (existsSync(pin)) ids.add(await this.bpf.progId(pin));
      for (const a of attached) if (a.name === p.name && a.attachType === p.attachType) ids.add(a.id);
      for (const id of ids) {
        if (attached.some((a) => a.id === id && a.attachType === p.attachType)) await this.bpf.detach(this.cgroup, p.attachType, id);
      }
    }
    rmSync(this.pinDir, { recursive: true, force: true });
    this.state = emptyState();
    this.dirty = true;
    this.attachedCount = 0;
    this.updateGauges();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  status(): SocketLbStatus {
    return { attached: this.attachedCount, frontends: this.state.frontends.size, backends: this.state.backends.size, fallbacks: Object.fromEntries(this.fallbacks) };
  }

  /** Per-CPU counters summed over CPUs. */
  async stats(): Promise<Record<StatName, bigint>> {
    const out = Object.fromEntries(STATS.map((s) => [s, 0n])) as Record<StatName, bigint>;
    for (const e of await this.bpf.dumpPerCpu(this.mapPin('stats'))) {
      const idx = Number(decode(U32, e.key).v);
      const name = STATS[idx];
      if (name) out[name] = e.values.reduce((a, v) => a + BigInt(decode(U64, v).v ?? 0), 0n);
    }
    return out;
  }

  private async reconcileAttachments(): Promise<void> {
    const attached = await this.bpf.attachments(this.cgroup);
    let count = 0;
    for (const p of PROGRAMS) {
      const id = await this.bpf.progId(this.progPin(p.name));
      // Programs of ours that an older load left attached (their pins replaced).
      for (const a of attached) {
        if (a.name === p.name && a.attachType === p.attachType && a.id !== id) await this.bpf.detach(this.cgroup, p.attachType, a.id);
      }
      if (!attached.some((a) => a.id === id && a.attachType === p.attachType)) await this.bpf.attach(this.cgroup, p.attachType, this.progPin(p.name));
      count++;
    }
    this.attachedCount = count;
    this.updateGauges();
  }

  /** Rebuild the shadow copy from the maps. */
  private async restore(): Promise<void> {
    const state = emptyState();
    for (const family of [4, 6] as const) {
      const keyDef = family === 4 ? LAYOUTS.svc4Key : LAYOUTS.svc6Key;
      for (const e of await this.bpf.dump(this.mapPin(family === 4 ? 'svc4' : 'svc6'))) {
        const k = decode(keyDef, e.key);
        const v = decode(LAYOUTS.svc, e.value);
        const vip = String(k.vip);
        const port = Number(k.dport);
        const proto = Number(k.proto);
        const key = frontendKey(family, vip, port, proto);
        let st = state.frontends.get(key);
        if (!st) {
          st = { family, vip, port, proto, svcId: Number(v.svc_id), revision: 0, flags: 0, affinityTimeout: 0, count: 0, slots: new Map() };
          state.frontends.set(key, st);
        }
        const slot = Number(k.slot);
        if (slot === 0) {
          st.count = Number(v.count);
          st.flags = Number(v.flags);
          st.revision = Number(v.revision);
          st.svcId = Number(v.svc_id);
          st.affinityTimeout = Number(v.affinity_timeout);
        } else {
          st.slots.set(slot, Number(v.backend_id));
        }
      }
      const beDef = family === 4 ? LAYOUTS.backend4 : LAYOUTS.backend6;
      for (const e of await this.bpf.dump(this.mapPin(family === 4 ? 'backend4' : 'backend6'))) {
        const id = Number(decode(U32, e.key).v);
        const v = decode(beDef, e.value);
        state.backends.set(id, { id, family, ip: String(v.addr), port: Number(v.port), proto: Number(v.proto) });
      }
    }
    this.state = state;
    this.dirty = false;
    this.updateGauges();
  }

  private toMapOp(o: SyncOp): MapOp {
    const keyDef = keyLayout(o.map);
    const key = typeof o.key === 'number' ? u32(o.key) : encode(keyDef!, o.key);
    const value = o.value ? encode(valueLayout(o.map), o.value) : undefined;
    return { op: o.op, map: this.mapPin(o.map), key, ...(value ? { value } : {}) };
  }

  private updateGauges(): void {
    if (!this.metrics) return;
    const m = this.metrics;
    m.attached.set(this.attachedCount);
    let svc4 = 0;
    let svc6 = 0;
    for (const f of this.state.frontends.values()) {
      const n = (f.count > 0 ? 1 : 0) + f.slots.size;
      if (f.family === 4) svc4 += n; else svc6 += n;
    }
    let be4 = 0;
    for (const b of this.state.backends.values()) if (b.family === 4) be4++;
    m.entries.set({ map: MAPS.svc4 }, svc4);
    m.entries.set({ map: MAPS.svc6 }, svc6);
    m.entries.set({ map: MAPS.backend4 }, be4);
    m.entries.set({ map: MAPS.backend6 }, this.state.backends.size - be4);
    m.fallbacks.reset();
    for (const [reason, n] of this.fallbacks) m.fallbacks.set({ reason }, n);
  }
}

function u32(n: number): Buffer {
  return encode(U32, { v: n });
}

function keyLayout(m: MapKey): StructDef | undefined {
  return m === 'svc4' ? LAYOUTS.svc4Key : m === 'svc6' ? LAYOUTS.svc6Key : undefined;
}

function valueLayout(m: MapKey): StructDef {
  switch (m) {
    case 'svc4': case 'svc6': return LAYOUTS.svc;
    case 'backend4': return LAYOUTS.backend4;
    case 'backend6': return LAYOUTS.backend6;
    default: throw new TypeError(`map ${m} is not written by the agent`);
  }
}

function createMetrics(registry: Registry, lb: SocketLb) {
  const attached = new Gauge({ name: 'edgeway_ebpf_programs_attached', help: 'Socket-LB programs attached to the cgroup', registers: [registry] });
  const entries = new Gauge({ name: 'edgeway_ebpf_map_entries', help: 'Entries the agent keeps in socket-LB maps', labelNames: ['map'], registers: [registry] });
  const fallbacks = new Gauge({ name: 'edgeway_ebpf_fallback_service_ports', help: 'Service ports (or address families of one) left to the nftables path, by reason', labelNames: ['reason'], registers: [registry] });
  const translations = new Counter({
    name: 'edgeway_ebpf_translations_total',
    help: 'Socket-LB hook outcomes from the per-CPU counters: translated, no_backend (fell back to nftables), affinity_hit, rev_hit',
    labelNames: ['outcome'],
    registers: [registry],
    async collect() {
      // Read at scrape time; the per-CPU map outlives agent restarts, so this stays monotonic.
      const s = await lb.stats().catch(() => undefined);
      if (!s) return;
      this.reset();
      for (const name of STATS) this.inc({ outcome: name }, Number(s[name]));
    },
  });
  return { attached, entries, fallbacks, translations };
}

/** Test helper: names of the pins a started instance holds. */
export function listPins(pinDir: string): string[] {
  const out: string[] = [];
  for (const sub of ['progs', 'maps']) {
    const d = join(pinDir, sub);
    if (existsSync(d)) for (const f of readdirSync(d)) out.push(`${sub}/${f}`);
  }
  return out.sort();
}
