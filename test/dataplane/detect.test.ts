/** Pure parts of the feature probe: cgroup2 mount parsing and the mode choice. */
import { describe, expect, it } from 'vitest';
import { cgroupV2Mount, chooseMode, type Capabilities } from '../../src/dataplane/detect.js';

const ok = { ok: true, detail: 'ok' };
const no = { ok: false, detail: 'missing' };
const caps = (over: Partial<Capabilities>): Capabilities => ({
  root: true, nft: ok, nftJson: ok, nfTables: ok, iptables: { ...ok, backend: 'nf_tables' },
  bpf: { sockmap: ok, skSkb: ok, cgroupSockAddr: ok }, cgroupV2: ok, ...over,
});

describe('cgroupV2Mount', () => {
  it.each([
    { name: 'hybrid layout', mounts: 'tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n', want: '/sys/fs/cgroup/unified' },
    { name: 'unified layout', mounts: 'cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n', want: '/sys/fs/cgroup' },
    { name: 'v1 only', mounts: 'cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n', want: undefined },
  ])('$name', async ({ mounts, want }) => {
    expect(await cgroupV2Mount(mounts)).toBe(want);
  });
});

describe('chooseMode', () => {
  it.each([
    { name: 'nftables usable', c: caps({}), mode: 'nftables' },
    { name: 'no nft binary → iptables', c: caps({ nft: no, nftJson: no, nfTables: no }), mode: 'iptables' },
    { name: 'kernel refuses the ruleset → iptables', c: caps({ nfTables: { ok: false, detail: 'Operation not supported' } }), mode: 'iptables' },
    { name: 'nothing usable → none', c: caps({ nft: no, nftJson: no, nfTables: no, iptables: no }), mode: 'none' },
  ])('$name', ({ c, mode }) => {
    const r = chooseMode(c);
    expect(r.mode).toBe(mode);
    expect(r.reason.length).toBeGreaterThan(10);
  });
});
