/**
 * Host facts the socket-LB data plane needs: where cgroup v2 is mounted (on
 * hybrid hosts it is /sys/fs/cgroup/unified, not /sys/fs/cgroup), whether a bpffs
 * is mounted at the pin root, mounting either where it is missing (as Cilium
 * does: `ip netns exec` and some container setups hide the host's), and a doctor
 * probe.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { EbpfConfigError, EbpfUnsupportedError } from './errors.js';

const pexec = promisify(execFile);

/** Default path of the compiled object (scripts/build-bpf.sh). */
export const DEFAULT_OBJECT = fileURLToPath(new URL('../../../bpf/build/sock_lb.bpf.o', import.meta.url));

interface MountRow { readonly source: string; readonly target: string; readonly fstype: string }

function mounts(): MountRow[] {
  // /proc/mounts escapes spaces as \040; our paths never contain them.
  return readFileSync('/proc/mounts', 'utf8').split('\n').filter(Boolean).map((l) => {
    const [source = '', target = '', fstype = ''] = l.split(' ');
    return { source, target, fstype };
  });
}

/** Mount point of the cgroup v2 hierarchy, or undefined when there is none. */
export function findCgroup2Root(): string | undefined {
  return mounts().find((m) => m.fstype === 'cgroup2')?.target;
}

export function isBpffs(path: string): boolean {
  return mounts().some((m) => m.fstype === 'bpf' && m.target === path);
}

/**
 * Make sure a bpffs is mounted at `root` (mounting one if not). Idempotent.
 * libbpf rewrites '.' to '_' in pin paths, so paths with a dot are refused.
 */
export async function ensureBpffs(root: string): Promise<void> {
  checkPinPath(root);
  if (isBpffs(root)) return;
  mkdirSync(root, { recursive: true });
  await mount('bpf', root);
  if (!isBpffs(root)) throw new EbpfUnsupportedError(`mounted bpffs at ${root} but it does not show in /proc/mounts`);
}

/**
 * Where the agent mounts a cgroup v2 hierarchy when none is mounted (Cilium uses
 * /run/cilium/cgroupv2). cgroup v2 is one hierarchy: this mount shows the same
 * tree (of the caller's cgroup namespace) as any other.
 */
export const CGROUP2_MOUNT = '/run/edgeway/cgroupv2';

/** What `ensureHostMounts` found or did, one line each (logged, shown by doctor). */
export interface HostMounts {
  readonly cgroup2Root: string;
  readonly bpffsRoot: string;
  readonly notes: readonly string[];
}

/**
 * Make sure socket-LB has a cgroup v2 hierarchy and a bpffs: the first cgroup2
 * mount in /proc/mounts, else one mounted at `cgroup2Mount`; a bpffs at
 * `bpffsRoot`, mounted there if missing. Idempotent (a second call finds both).
 * Needs CAP_SYS_ADMIN; throws EbpfUnsupportedError when a mount fails.
 */
export async function ensureHostMounts(opts: { bpffsRoot?: string; cgroup2Mount?: string } = {}): Promise<HostMounts> {
  const bpffsRoot = opts.bpffsRoot ?? '/sys/fs/bpf';
  const notes: string[] = [];
  let cgroup2Root = findCgroup2Root();
  if (cgroup2Root) {
    notes.push(`cgroup2 mounted at ${cgroup2Root}`);
  } else {
    const target = opts.cgroup2Mount ?? CGROUP2_MOUNT;
    mkdirSync(target, { recursive: true });
    await mount('cgroup2', target);
    cgroup2Root = findCgroup2Root();
    if (cgroup2Root !== target) throw new EbpfUnsupportedError(`mounted cgroup2 at ${target} but /proc/mounts shows ${cgroup2Root ?? 'none'}`);
    notes.push(`no cgroup2 was mounted: mounted one at ${target}`);
  }
  if (isBpffs(bpffsRoot)) {
    notes.push(`bpffs mounted at ${bpffsRoot}`);
  } else {
    await ensureBpffs(bpffsRoot);
    notes.push(`no bpffs at ${bpffsRoot}: mounted one`);
  }
  return { cgroup2Root, bpffsRoot, notes };
}

async function mount(fstype: 'cgroup2' | 'bpf', target: string): Promise<void> {
  try {
    await pexec('mount', ['-t', fstype, fstype === 'bpf' ? 'bpf' : 'none', target]);
  } catch (err) {
    throw new EbpfUnsupportedError(`mount -t ${fstype} at ${target} failed: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
}

export function checkPinPath(path: string): void {
  if (!path.startsWith('/')) throw new EbpfConfigError(`pin path must be absolute: ${path}`);
  if (/[.\s]/.test(path)) throw new EbpfConfigError(`pin path must not contain dots or spaces (libbpf rewrites them): ${path}`);
}

/** What `edgeway doctor` shows for socket-LB. */
export interface SocketLbProbe {
  /** true when socket-LB can run here. */
  readonly supported: boolean;
  /** Why not (empty when supported). */
  readonly reasons: readonly string[];
  readonly cgroup2Root?: string;
  readonly bpftool?: string;
  readonly bpffsMounted: boolean;
  readonly object: { readonly path: string; readonly present: boolean };
  /** Kernel support: cgroup sock_addr programs and the helpers the hooks call. */
  readonly features: { readonly sockAddrPrograms: boolean; readonly netnsCookie: boolean; readonly socketCookie: boolean };
}

/**
 * Probe the host for socket-LB. Never throws: every failure becomes a reason.
 * Needs root for the kernel feature probe (otherwise reports it as a reason).
 */
export async function probeSocketLb(opts: { object?: string; bpffsRoot?: string; bpftool?: string } = {}): Promise<SocketLbProbe> {
  const reasons: string[] = [];
  const object = opts.object ?? DEFAULT_OBJECT;
  const bin = opts.bpftool ?? 'bpftool';
  const cgroup2Root = findCgroup2Root();
  if (!cgroup2Root) reasons.push('no cgroup v2 hierarchy mounted');
  const bpffsMounted = isBpffs(opts.bpffsRoot ?? '/sys/fs/bpf');
  let bpftool: string | undefined;
  try {
    const v = JSON.parse((await pexec(bin, ['-j', 'version'])).stdout) as { version?: string; libbpf_version?: string };
    bpftool = `${v.version ?? '?'} (libbpf ${v.libbpf_version ?? '?'})`;
  } catch {
    reasons.push(`${bin} not found or not runnable`);
  }
  const features = { sockAddrPrograms: false, netnsCookie: false, socketCookie: false };
  if (bpftool) {
    try {
      const f = JSON.parse((await pexec(bin, ['-j', 'feature', 'probe', 'kernel'], { maxBuffer: 16 * 1024 * 1024 })).stdout) as {
        program_types?: Record<string, boolean>;
        helpers?: Record<string, string[]>;
      };
      features.sockAddrPrograms = f.program_types?.have_cgroup_sock_addr_prog_type === true;
      const helpers = f.helpers?.cgroup_sock_addr_available_helpers ?? [];
      features.netnsCookie = helpers.includes('bpf_get_netns_cookie');
      features.socketCookie = helpers.includes('bpf_get_socket_cookie');
      if (!features.sockAddrPrograms) reasons.push('kernel lacks cgroup sock_addr BPF programs');
      if (!features.netnsCookie || !features.socketCookie) reasons.push('kernel lacks bpf_get_netns_cookie/bpf_get_socket_cookie for sock_addr programs (needs 5.7+)');
    } catch (err) {
      reasons.push(`kernel feature probe failed (root/CAP_BPF needed): ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const present = existsSync(object);
  if (!present) reasons.push(`eBPF object ${object} missing (run scripts/build-bpf.sh)`);
  return { supported: reasons.length === 0, reasons, ...(cgroup2Root ? { cgroup2Root } : {}), ...(bpftool ? { bpftool } : {}), bpffsMounted, object: { path: object, present }, features };
}

export function mkdirp(path: string): void {
  mkdirSync(path, { recursive: true });
}
