import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { configHelp, configOptions, EXIT_OK, EXIT_RUNTIME, type Command } from '../command.js';
import { configFromArgs } from '../runtime.js';
import { CliNftExecutor } from '../../dataplane/nftables/executor.js';

const pexec = promisify(execFile);

export const cleanupCommand: Command = {
  name: 'cleanup',
  summary: 'remove every rule, interface and pin the agent made',
  help: `Usage: edgeway cleanup --config FILE

Removes table inet edgeway (every chain, map and set of the nftables data plane),
the iptables-mode chains (both backends),
the eBPF socket-LB programs and pins (dataplane.ebpf.pinDir), and the DNS dummy
interface (dns.interface, default edgeway0) when present.
Stop the agent first, or it puts them back. Running it twice is harmless.

Options:
${configHelp}`,
  options: { ...configOptions },
  async run(values) {
    const config = await configFromArgs(values);
    let failed = false;
    try {
      const removed = await new CliNftExecutor().deleteTable();
      process.stdout.write(removed ? 'removed table inet edgeway\n' : 'table inet edgeway: not present\n');
    } catch (err) {
      failed = true;
      process.stderr.write(`edgeway cleanup: removing table inet edgeway failed: ${(err as Error).message}\n`);
    }
    // iptables mode: our chains and jumps, on both backends and both families.
    try {
      const { IptablesDataplane } = await import('../../dataplane/iptables/dataplane.js');
      const { createRegistry } = await import('../../metrics/registry.js');
      const { silentLogger } = await import('../../util/log.js');
      await new IptablesDataplane({ logger: silentLogger(), registry: createRegistry({ defaultMetrics: false }) }).cleanup();
      process.stdout.write('removed iptables chains (legacy and nft backends), if any\n');
    } catch (err) {
      failed = true;
      process.stderr.write(`edgeway cleanup: removing iptables chains failed: ${(err as Error).message}\n`);
    }
    // eBPF socket-LB: programs, attachments and pins under dataplane.ebpf.pinDir.
    // Without pins (an agent that ran with its own bpffs mount, e.g. under `ip netns
    // exec`) our programs may still be attached: cleanup() also detaches by name.
    const { findCgroup2Root } = await import('../../dataplane/ebpf/host.js');
    const cgroup = config.dataplane.ebpf.cgroupPath || findCgroup2Root();
    if (existsSync(config.dataplane.ebpf.pinDir) || (cgroup && existsSync(cgroup))) {
      try {
        const { SocketLb } = await import('../../dataplane/ebpf/socket-lb.js');
        await new SocketLb({ pinDir: config.dataplane.ebpf.pinDir, ...(cgroup ? { cgroup } : {}) }).cleanup();
        process.stdout.write(`removed socket-LB programs and pins (${config.dataplane.ebpf.pinDir})\n`);
      } catch (err) {
        failed = true;
        process.stderr.write(`edgeway cleanup: removing socket-LB failed: ${(err as Error).message}\n`);
      }
    } else {
      process.stdout.write(`socket-LB pins (${config.dataplane.ebpf.pinDir}): not present\n`);
    }
    const ifname = config.dns.interface;
    const show = await pexec('ip', ['link', 'show', 'dev', ifname]).then(() => true, () => false);
    if (show) {
      try {
        await pexec('ip', ['link', 'del', 'dev', ifname]);
        process.stdout.write(`removed interface ${ifname}\n`);
      } catch (err) {
        failed = true;
        process.stderr.write(`edgeway cleanup: removing interface ${ifname} failed: ${(err as Error).message}\n`);
      }
    } else {
      process.stdout.write(`interface ${ifname}: not present\n`);
    }
    return failed ? EXIT_RUNTIME : EXIT_OK;
  },
};
