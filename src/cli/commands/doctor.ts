import { EXIT_OK, type Command } from '../command.js';
import { chooseMode, probeCapabilities, type Probe } from '../../dataplane/detect.js';

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
    const caps = await probeCapabilities();
    const choice = chooseMode(caps);
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ mode: choice.mode, reason: choice.reason, capabilities: caps }, null, 2)}\n`);
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
      line('cgroup v2', caps.cgroupV2),
      '',
      `mode: ${choice.mode}`,
      `why:  ${choice.reason}`,
    ];
    process.stdout.write(`${out.join('\n')}\n`);
    return EXIT_OK;
  },
};
