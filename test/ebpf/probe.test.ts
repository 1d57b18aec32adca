/** The doctor probe never throws and explains every missing piece. */
import { describe, expect, it } from 'vitest';
import { probeSocketLb } from '../../src/dataplane/ebpf/host.js';

describe('probeSocketLb', () => {
  it('reports a missing bpftool and object as reasons', async () => {
    const p = await probeSocketLb({ bpftool: '/nonexistent/bpftool', object: '/nonexistent/sock_lb.o' });
    expect(p.supported).toBe(false);
    expect(p.reasons).toEqual(expect.arrayContaining([expect.stringMatching(/bpftool not found/), expect.stringMatching(/object .* missing/)]));
    expect(p.object).toEqual({ path: '/nonexistent/sock_lb.o', present: false });
  });
});
