/**
 * BpfBackend over the libbpf addon (edgeway_bpf.node, native/src/bpfobj.cc): the same
 * operations as `BpftoolBackend`, as direct syscalls instead of one `bpftool`
 * process per call. A map transaction is one addon call that opens each pinned
 * map once and applies the operations in order, stopping at the first failure.
 *
 * `defaultBpfBackend()` picks this backend when edgeway_bpf.node is loaded and has the
 * `bpf` functions, else `BpftoolBackend`.
 */
import { mkdirSync } from 'node:fs';
import { loadNative, type NativeBpf } from '../../native/addon.js';
import type { Logger } from '../../util/log.js';
import { BpftoolBackend, type BpfBackend, type CgroupAttachment, type MapEntry, type MapOp, type PerCpuEntry } from './backend.js';
import { BpfCommandError } from './errors.js';

export class LibbpfBackend implements BpfBackend {
  readonly kind = 'libbpf';

  constructor(private readonly bpf: NativeBpf) {}

  loadAll(object: string, progDir: string, mapDir: string, reuseMaps?: ReadonlyMap<string, string>): Promise<void> {
    return this.call('loadAll', () => {
      // libbpf creates only the last path component of a pin's directory.
      mkdirSync(progDir, { recursive: true });
      mkdirSync(mapDir, { recursive: true });
      return this.bpf.loadAll(object, progDir, mapDir, Object.fromEntries(reuseMaps ?? []));
    });
  }

  progId(pin: string): Promise<number> {
    return this.call('progId', () => this.bpf.progId(pin));
  }

  attach(cgroup: string, attachType: string, progPin: string): Promise<void> {
    return this.call('attach', () => this.bpf.attach(cgroup, attachType, progPin));
  }

  detach(cgroup: string, attachType: string, prog: string | number): Promise<void> {
    return this.call('detach', () => this.bpf.detach(cgroup, attachType, prog));
  }

  attachments(cgroup: string): Promise<CgroupAttachment[]> {
    return this.call('attachments', () => this.bpf.attachments(cgroup));
  }

  progMapIds(id: number): Promise<number[]> {
    return this.call('progMapIds', () => this.bpf.progMapIds(id));
  }

  mapName(id: number): Promise<string> {
    return this.call('mapName', () => this.bpf.mapName(id));
  }

  pinById(kind: 'prog' | 'map', id: number, path: string): Promise<void> {
    return this.call('pinById', () => this.bpf.pinById(kind, id, path));
  }

  mapOps(ops: readonly MapOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    return this.call('mapOps', async () => { await this.bpf.mapOps(ops); });
  }

  dump(map: string): Promise<MapEntry[]> {
    return this.call('dump', () => this.bpf.dump(map));
  }

  dumpPerCpu(map: string): Promise<PerCpuEntry[]> {
    return this.call('dumpPerCpu', () => this.bpf.dumpPerCpu(map));
  }

  /** Errors become BpfCommandError (as with bpftool), keeping errno and the addon error as cause. */
  private async call<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const e = err as Error & { errno?: number };
      const wrapped = new BpfCommandError(`libbpf ${what}: ${e.message}`, { cause: err });
      if (typeof e.errno === 'number') Object.assign(wrapped, { errno: e.errno });
      throw wrapped;
    }
  }
}

/** The addon's bpf functions when the addon is loaded and has them. */
export function nativeBpf(): NativeBpf | undefined {
  const bpf = loadNative().bpf?.bpf;
  return bpf && typeof bpf.mapOps === 'function' && typeof bpf.loadAll === 'function' ? bpf : undefined;
}

/** `LibbpfBackend` when the addon provides it, else `BpftoolBackend`; logs which. */
export function defaultBpfBackend(log?: Logger): BpfBackend {
  const bpf = nativeBpf();
  if (bpf) {
    log?.info({ backend: 'libbpf' }, 'socket-LB maps through the native addon (libbpf)');
    return new LibbpfBackend(bpf);
  }
  log?.info({ backend: 'bpftool', reason: loadNative().bpfReason ?? 'libbpf addon not loaded' }, 'socket-LB maps through bpftool');
  return new BpftoolBackend();
}
