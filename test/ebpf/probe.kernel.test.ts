/** The doctor probe on this host (root: the kernel feature probe loads test programs). */
import { describe, expect, it } from 'vitest';
import { probeSocketLb } from '../../src/dataplane/ebpf/host.js';
import { kernelSkipReason } from '../helpers/netns.js';

describe('probeSocketLb (kernel)', () => {
  it.skipIf(kernelSkipReason() !== undefined)('finds cgroup v2 and the kernel features', async () => {
    const p = await probeSocketLb({ object: '/nonexistent/sock_lb.o' });
    expect(p.cgroup2Root).toMatch(/^\/sys\/fs\/cgroup/);
    expect(p.features).toEqual({ sockAddrPrograms: true, netnsCookie: true, socketCookie: true });
    expect(p.bpftool).toMatch(/libbpf/);
    expect(p.reasons).toEqual([expect.stringMatching(/object .* missing/)]);
  });
});
