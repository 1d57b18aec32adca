/**
 * Which data plane runs: `dataplane.mode` resolved against what the host can do.
 * The base is nftables (or iptables on legacy kernels, or none); eBPF socket-LB
 * rides on top of nftables when the mode asks for it (`ebpf`) or allows it (`auto`)
 * and the host supports it. One place for the agent, `doctor` and `render`.
 */
import type { Config } from '../config/schema.js';
import { chooseMode, probeCapabilities, type Capabilities } from './detect.js';
import { ensureHostMounts, probeSocketLb, type SocketLbProbe } from './ebpf/host.js';
import { socketLbDecision } from './ebpf/combined.js';

export type BaseMode = 'nftables' | 'iptables' | 'none';

export interface ResolvedMode {
  readonly configured: Config['dataplane']['mode'];
  readonly base: BaseMode;
  readonly socketLb: boolean;
  /** Why, in one line per decision (logged by the agent, printed by doctor). */
  readonly reasons: readonly string[];
  /** A mode that cannot run here (`ebpf` without socket-LB support): the agent refuses to start. */
  readonly error?: string;
}

export interface ModeProbes {
  readonly caps?: Capabilities;
  readonly socketLb?: SocketLbProbe;
}

/** Pure: the decision from probe results. */
export function decideMode(configured: Config['dataplane']['mode'], caps: Capabilities | undefined, lb: SocketLbProbe | undefined): ResolvedMode {
  if (configured === 'none') return { configured, base: 'none', socketLb: false, reasons: ['dataplane.mode is none: no kernel state is written'] };
  if (configured === 'iptables') return { configured, base: 'iptables', socketLb: false, reasons: ['dataplane.mode is iptables: REDIRECT into the userspace proxy'] };
  if (configured === 'nftables') return { configured, base: 'nftables', socketLb: false, reasons: ['dataplane.mode is nftables'] };
  const auto = caps ? chooseMode(caps) : { mode: 'nftables' as const, reason: 'not probed' };
  const base: BaseMode = configured === 'ebpf' ? 'nftables' : auto.mode === 'ebpf' ? 'nftables' : auto.mode;
  const reasons = [configured === 'ebpf' ? 'dataplane.mode is ebpf: nftables below socket-LB' : `auto: ${auto.mode} — ${auto.reason}`];
  if (base !== 'nftables' || !lb) return { configured, base, socketLb: false, reasons: [...reasons, 'socket-LB: not probed (needs nftables)'] };
  const d = socketLbDecision(configured, lb);
  reasons.push(`socket-LB ${d.enabled ? 'on' : 'off'}: ${d.reason}`);
  if (d.required && !d.enabled) return { configured, base, socketLb: false, reasons, error: `dataplane.mode ebpf cannot run here: ${d.reason}` };
  return { configured, base, socketLb: d.enabled, reasons };
}

/**
 * Probe the host (only what the configured mode needs) and decide. For `ebpf` and
 * `auto` the agent first mounts cgroup2 and bpffs where they are missing
 * (`mountMissing`, default on when root; `ip netns exec` and some containers hide
 * the host's), and says so in the reasons.
 */
export async function resolveMode(config: Config, probes: ModeProbes = {}, opts: { mountMissing?: boolean } = {}): Promise<ResolvedMode> {
  const m = config.dataplane.mode;
  if (m === 'none' || m === 'iptables' || m === 'nftables') return decideMode(m, undefined, undefined);
  const caps = probes.caps ?? (m === 'auto' ? await probeCapabilities() : undefined);
  const mountNotes: string[] = [];
  if (!probes.socketLb && (opts.mountMissing ?? process.getuid?.() === 0)) {
    try {
      // SocketLb pins under /sys/fs/bpf (dataplane.ebpf.pinDir lives there).
      mountNotes.push(...(await ensureHostMounts({ bpffsRoot: '/sys/fs/bpf' })).notes.filter((n) => n.startsWith('no ')));
    } catch (err) {
      mountNotes.push(`host mounts: ${(err as Error).message}`);
    }
  }
  const lb = probes.socketLb ?? (await probeSocketLb({ bpffsRoot: '/sys/fs/bpf' }));
  const d = decideMode(m, caps, lb);
  return mountNotes.length ? { ...d, reasons: [...d.reasons, ...mountNotes] } : d;
}
