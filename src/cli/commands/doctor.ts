import { EXIT_OK, type Command } from '../command.js';
import { probeCapabilities, type Probe } from '../../dataplane/detect.js';
import { CGROUP2_MOUNT, probeSocketLb } from '../../dataplane/ebpf/host.js';
import { decideMode } from '../../dataplane/mode.js';
import { loadNative } from '../../native/addon.js';

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'probe kernel features and tools; print the data-plane mode that would run',
  help: `Usage: edgeway doctor [--json]

Probes nft (binary, JSON, kernel nf_tables — loaded in a throwaway network
namespace), the iptables backend, BPF (sockmap, sk_skb, cgroup_sock_addr) and
cgroup v2, and prints the mode \`dataplane.mode: auto\` would pick and why.
Nothing is changed in the caller's namespace.

Options:
      --json              print the findings as JSON`,
  options: { json: { type: 'boolean' } },
  async run(values) {
    const [caps, lb] = await Promise.all([probeCapabilities(), probeSocketLb()]);
    const decision = decideMode('auto', caps, lb);
    const mode = decision.socketLb ? 'ebpf' : decision.base;
    // What the proxy could accelerate with (the sockmap program is not loaded here).
    // The two addons load on their own: splice needs only edgeway_native.node.
    const native = loadNative();
    const addons = [
      { name: 'edgeway_native.node', loaded: !!native.addon, detail: native.addonPath ?? native.addonReason ?? 'not loaded' },
      { name: 'edgeway_bpf.node', loaded: !!native.bpf, detail: native.bpfPath ?? native.bpfReason ?? 'not loaded' },
    ];
    const noNative = native.addonReason ?? 'edgeway_native.node not loaded';
    const accelerators = [
      { kind: 'splice', available: !!native.addon, detail: native.addon ? 'edgeway_native.node loaded' : noNative },
      {
        kind: 'sockmap',
        available: !!native.addon && !!native.bpf && !!native.sockmapObject,
        detail: !native.addon ? noNative : !native.bpf ? (native.bpfReason ?? 'edgeway_bpf.node not loaded') : native.sockmapObject ? `BPF object ${native.sockmapObject}` : 'BPF object not built',
      },
      { kind: 'node', available: true, detail: 'plain Node streams' },
    ];
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ mode, reason: decision.reasons.join('; '), capabilities: caps, socketLb: lb, addons, accelerators }, null, 2)}\n`);
      return EXIT_OK;
    }
    const line = (name: string, p: Probe): string => `${p.ok ? ' ok ' : 'FAIL'}  ${name.padEnd(22)} ${p.detail}`;
    const out = [
      line('root', { ok: caps.root, detail: caps.root ? 'running as root' : 'not root: kernel probes limited' }),
      line('nft binary', caps.nft),
      line('nft JSON', caps.nftJson),
      line('kernel nf_tables', caps.nfTables),
      line('iptables', caps.iptables),
      line('bpf sockmap', caps.bpf.sockmap),
      line('bpf sk_skb', caps.bpf.skSkb),
      line('bpf cgroup_sock_addr', caps.bpf.cgroupSockAddr),
      line('cgroup v2', caps.cgroupV2.ok ? caps.cgroupV2 : { ok: false, detail: `${caps.cgroupV2.detail}; the agent (mode ebpf/auto, root) mounts one at ${CGROUP2_MOUNT}` }),
      line('bpffs', lb.bpffsMounted ? { ok: true, detail: 'mounted at /sys/fs/bpf' } : { ok: false, detail: 'not mounted at /sys/fs/bpf; the agent (mode ebpf/auto, root) mounts it' }),
      line('socket-LB', { ok: lb.supported, detail: lb.supported ? `cgroup v2 ${lb.cgroup2Root}, ${lb.bpftool}` : lb.reasons.join('; ') }),
      ...addons.map((a) => line(`addon ${a.name.replace('.node', '')}`, { ok: a.loaded, detail: a.detail })),
      ...accelerators.map((a) => line(`accelerator ${a.kind}`, { ok: a.available, detail: a.detail })),
      '',
      `mode: ${mode}`,
      ...decision.reasons.map((r) => `why:  ${r}`),
      ...(caps.root && (!caps.cgroupV2.ok || !lb.bpffsMounted)
        ? [`note: the agent (mode ebpf/auto) mounts the missing ${[!caps.cgroupV2.ok ? `cgroup2 (at ${CGROUP2_MOUNT})` : '', !lb.bpffsMounted ? 'bpffs (at /sys/fs/bpf)' : ''].filter(Boolean).join(' and ')} before it decides`]
        : []),
    ];
    process.stdout.write(`${out.join('\n')}\n`);
    return EXIT_OK;
  },
};
