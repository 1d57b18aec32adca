import { configHelp, configOptions, EXIT_OK, EXIT_RUNTIME, optString, type Command } from '../command.js';
import { configFromArgs } from '../runtime.js';
import { probeCapabilities, type Probe } from '../../dataplane/detect.js';
import { CGROUP2_MOUNT, probeSocketLb } from '../../dataplane/ebpf/host.js';
import { decideMode, resolveMode } from '../../dataplane/mode.js';
import { loadNative } from '../../native/addon.js';
import { loadNftAddon } from '../../dataplane/nftables/native-nft.js';
import { punchUnavailableReason } from '../../tunnel/punch/sockets.js';

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'probe kernel features and tools; print the data-plane mode that would run',
  help: `Usage: edgeway doctor [--config FILE] [--json]

Probes nft (binary, JSON, kernel nf_tables — loaded in a throwaway network
namespace), the iptables backend, BPF (sockmap, sk_skb, cgroup_sock_addr) and
cgroup v2, and prints the data-plane mode that would run and why: for
\`dataplane.mode: auto\`, or with --config for that file's dataplane.mode,
decided exactly as \`edgeway agent\` decides it at start. Exits 1 when the
configured mode cannot run here (the agent would refuse to start).
Nothing is changed in the caller's namespace.

Options:
${configHelp.replace('(required)', '(optional: decide for this config)')}
      --json              print the findings as JSON`,
  options: { ...configOptions, json: { type: 'boolean' } },
  async run(values) {
    const config = optString(values, 'config') ? await configFromArgs(values) : undefined;
    const [caps, lb] = await Promise.all([probeCapabilities(), probeSocketLb()]);
    // The agent's own decision (mode.ts) on the same probe results.
    const decision = config ? await resolveMode(config, { caps, socketLb: lb }) : decideMode('auto', caps, lb);
    const mode = decision.error ? 'none (refused)' : decision.socketLb ? 'ebpf' : decision.base;
    const exit = decision.error ? EXIT_RUNTIME : EXIT_OK;
    // What the proxy could accelerate with (the sockmap program is not loaded here).
    // The two addons load on their own: splice needs only edgeway_native.node.
    const native = loadNative();
    const addons = [
      { name: 'edgeway_native.node', loaded: !!native.addon, detail: native.addonPath ?? native.addonReason ?? 'not loaded' },
      { name: 'edgeway_bpf.node', loaded: !!native.bpf, detail: native.bpfPath ?? native.bpfReason ?? 'not loaded' },
      nftAddonRow(),
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
    // TCP hole punching needs sockets bound to the data port before connect (the addon).
    const noPunch = punchUnavailableReason(native);
    const holePunch = { available: noPunch === undefined, detail: noPunch ? `${noPunch}: peers behind NAT stay relayed` : 'SO_REUSEPORT sockets from edgeway_native.node' };
    if (values.json) {
      process.stdout.write(`${JSON.stringify({
        mode, configured: decision.configured, reason: decision.reasons.join('; '), ...(decision.error ? { error: decision.error } : {}),
        ...(config ? { config: values.config } : {}), capabilities: caps, socketLb: lb, addons, accelerators, holePunch,
      }, null, 2)}\n`);
      return exit;
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
      line('tunnel hole punching', { ok: holePunch.available, detail: holePunch.detail }),
      '',
      ...(config ? [`config: ${String(values.config)} (dataplane.mode: ${decision.configured})`] : []),
      `mode: ${mode}`,
      ...decision.reasons.map((r) => `why:  ${r}`),
      ...(decision.error ? [`error: ${decision.error}`] : []),
      ...(caps.root && (!caps.cgroupV2.ok || !lb.bpffsMounted)
        ? [`note: the agent (mode ebpf/auto) mounts the missing ${[!caps.cgroupV2.ok ? `cgroup2 (at ${CGROUP2_MOUNT})` : '', !lb.bpffsMounted ? 'bpffs (at /sys/fs/bpf)' : ''].filter(Boolean).join(' and ')} before it decides`]
        : []),
    ];
    process.stdout.write(`${out.join('\n')}\n`);
    return exit;
  },
};

/** edgeway_nft.node: nftables in-process; without it every sync starts an `nft` process. */
function nftAddonRow(): { name: string; loaded: boolean; detail: string } {
  const nft = loadNftAddon();
  return 'addon' in nft
    ? { name: 'edgeway_nft.node', loaded: true, detail: `${nft.path} (nftables updates in-process)` }
    : { name: 'edgeway_nft.node', loaded: false, detail: `${nft.reason}; nftables updates through the nft CLI` };
}
