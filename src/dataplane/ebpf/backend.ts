/**
 * The process boundary of the eBPF data plane: load/pin/attach programs and read
 * or write maps. `BpftoolBackend` drives `bpftool` (one `bpftool batch file -` per
 * map transaction); the native addon (libbpf) can implement the same interface
 * later without touching the controller. Tests of the controller logic may use a
 * fake here; everything else talks to the kernel.
 */
import { spawn } from 'node:child_process';
import { BpfCommandError } from './errors.js';

export interface MapOp {
  readonly op: 'update' | 'delete';
  /** Pinned map path. */
  readonly map: string;
  readonly key: Buffer;
  /** Required for update. */
  readonly value?: Buffer;
}

export interface MapEntry {
  readonly key: Buffer;
  readonly value: Buffer;
}

export interface PerCpuEntry {
  readonly key: Buffer;
  readonly values: readonly Buffer[];
}

export interface CgroupAttachment {
  readonly id: number;
  readonly attachType: string;
  readonly name: string;
}

export interface BpfBackend {
  /**
   * Load every program of `object`, pin programs under `progDir/<name>` and maps
   * under `mapDir/<name>`. `reuseMaps` (map name → pinned path) makes the new
   * programs use existing maps instead of fresh ones.
   */
  loadAll(object: string, progDir: string, mapDir: string, reuseMaps?: ReadonlyMap<string, string>): Promise<void>;
  /** Kernel id of a pinned program. */
  progId(pin: string): Promise<number>;
  attach(cgroup: string, attachType: string, progPin: string): Promise<void>;
  /** `prog`: a pinned path or a kernel program id. */
  detach(cgroup: string, attachType: string, prog: string | number): Promise<void>;
  /** Programs attached directly to a cgroup (not inherited ones). */
  attachments(cgroup: string): Promise<CgroupAttachment[]>;
  /** Ids of the maps a loaded program uses. */
  progMapIds(id: number): Promise<number[]>;
  /** Name of a loaded map. */
  mapName(id: number): Promise<string>;
  /** Pin a loaded program or map (by kernel id) at `path`. */
  pinById(kind: 'prog' | 'map', id: number, path: string): Promise<void>;
  /** Apply operations in order; stops at the first failure (later ops not applied). */
  mapOps(ops: readonly MapOp[]): Promise<void>;
  dump(map: string): Promise<MapEntry[]>;
  dumpPerCpu(map: string): Promise<PerCpuEntry[]>;
}

const hex = (b: Buffer): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
const unhex = (a: readonly string[]): Buffer => Buffer.from(a.map((x) => parseInt(x, 16)));

export interface BpftoolOptions {
  /** bpftool binary (default `bpftool` from PATH). */
  readonly bin?: string;
  readonly timeoutMs?: number;
}

/** BpfBackend over the `bpftool` CLI. */
export class BpftoolBackend implements BpfBackend {
  private readonly bin: string;
  private readonly timeoutMs: number;

  constructor(opts: BpftoolOptions = {}) {
    this.bin = opts.bin ?? 'bpftool';
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  async loadAll(object: string, progDir: string, mapDir: string, reuseMaps?: ReadonlyMap<string, string>): Promise<void> {
    const reuse = [...(reuseMaps ?? new Map<string, string>())].flatMap(([name, pin]) => ['map', 'name', name, 'pinned', pin]);
    await this.run(['prog', 'loadall', object, progDir, ...reuse, 'pinmaps', mapDir]);
  }

  async progId(pin: string): Promise<number> {
    const out = JSON.parse(await this.run(['-j', 'prog', 'show', 'pinned', pin])) as { id: number };
    return out.id;
  }

  async progMapIds(id: number): Promise<number[]> {
    const out = JSON.parse(await this.run(['-j', 'prog', 'show', 'id', String(id)])) as { map_ids?: number[] };
    return out.map_ids ?? [];
  }

  async mapName(id: number): Promise<string> {
    return (JSON.parse(await this.run(['-j', 'map', 'show', 'id', String(id)])) as { name: string }).name;
  }

  async pinById(kind: 'prog' | 'map', id: number, path: string): Promise<void> {
    await this.run([kind, 'pin', 'id', String(id), path]);
  }

  async attach(cgroup: string, attachType: string, progPin: string): Promise<void> {
    // `multi` (BPF_F_ALLOW_MULTI): coexist with other programs on the same cgroup.
    await this.run(['cgroup', 'attach', cgroup, attachType, 'pinned', progPin, 'multi']);
  }

  async detach(cgroup: string, attachType: string, prog: string | number): Promise<void> {
    await this.run(['cgroup', 'detach', cgroup, attachType, ...(typeof prog === 'number' ? ['id', String(prog)] : ['pinned', prog])]);
  }

  async attachments(cgroup: string): Promise<CgroupAttachment[]> {
    const out = (await this.run(['-j', 'cgroup', 'show', cgroup])).trim();
    if (!out) return [];
    const rows = JSON.parse(out) as { id: number; attach_type: string; name: string }[];
    return rows.map((r) => ({ id: r.id, attachType: r.attach_type, name: r.name }));
  }

  async mapOps(ops: readonly MapOp[]): Promise<void> {
    if (ops.length === 0) return;
    const lines = ops.map((o) => {
      if (/\s/.test(o.map)) throw new BpfCommandError(`map path with whitespace: ${o.map}`);
      return o.op === 'update'
        ? `map update pinned ${o.map} key hex ${hex(o.key)} value hex ${hex(o.value ?? Buffer.alloc(0))}`
        : `map delete pinned ${o.map} key hex ${hex(o.key)}`;
    });
    await this.run(['batch', 'file', '-'], `${lines.join('\n')}\n`);
  }

  async dump(map: string): Promise<MapEntry[]> {
    const rows = JSON.parse(await this.run(['-j', 'map', 'dump', 'pinned', map])) as { key: string[]; value: string[] }[];
    return rows.map((r) => ({ key: unhex(r.key), value: unhex(r.value) }));
  }

  async dumpPerCpu(map: string): Promise<PerCpuEntry[]> {
    const rows = JSON.parse(await this.run(['-j', 'map', 'dump', 'pinned', map])) as { key: string[]; values: { value: string[] }[] }[];
    return rows.map((r) => ({ key: unhex(r.key), values: r.values.map((v) => unhex(v.value)) }));
  }

  private run(args: readonly string[], input?: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.bin, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs);
      child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      child.on('error', (e) => { clearTimeout(timer); reject(new BpfCommandError(`${this.bin} ${args.join(' ')}: ${e.message}`, { cause: e })); });
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(stdout);
        else reject(new BpfCommandError(`${this.bin} ${args.slice(0, 4).join(' ')}… exited ${code}: ${stderr.trim().split('\n').filter((l) => !l.startsWith('Warning') && !l.includes('libbpf_strict') && !l.includes('--legacy')).join(' ').slice(0, 2000)}`));
      });
      if (child.stdin) {
        // bpftool exiting early (a failed batch line) surfaces as its exit code, not EPIPE.
        child.stdin.on('error', () => undefined);
        child.stdin.end(input);
      }
    });
  }
}
