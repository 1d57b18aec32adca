/**
 * The `nft` child's environment: huge pages for its malloc (executor.ts
 * hugePages), the caller's other glibc tunables kept, an explicit hugetlb
 * setting never overridden. A real child process (`sh`) stands in for `nft` and
 * prints what it received.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CliNftExecutor } from '../../src/dataplane/nftables/executor.js';

const saved = process.env['GLIBC_TUNABLES'];
afterEach(() => {
  if (saved === undefined) delete process.env['GLIBC_TUNABLES'];
  else process.env['GLIBC_TUNABLES'] = saved;
});

describe('CliNftExecutor child environment', () => {
  it.each([
    { name: 'none set: huge pages', before: undefined, hugePages: undefined, want: 'glibc.malloc.hugetlb=1' },
    { name: 'other tunables kept', before: 'glibc.malloc.tcache_count=0', hugePages: undefined, want: 'glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1' },
    { name: 'an explicit hugetlb setting wins', before: 'glibc.malloc.hugetlb=0', hugePages: undefined, want: 'glibc.malloc.hugetlb=0' },
    { name: 'hugePages false: untouched', before: 'glibc.malloc.tcache_count=0', hugePages: false, want: 'glibc.malloc.tcache_count=0' },
    { name: 'hugePages false, none set: none', before: undefined, hugePages: false, want: '' },
  ])('$name', async ({ before, hugePages, want }) => {
    // Made first: the environment is read at each spawn, as before the tunable.
    const ex = new CliNftExecutor({ nft: 'sh', ...(hugePages === undefined ? {} : { hugePages }) });
    if (before === undefined) delete process.env['GLIBC_TUNABLES'];
    else process.env['GLIBC_TUNABLES'] = before;
    const out = await ex.exec(['-c', 'printf %s "$GLIBC_TUNABLES"']);
    expect(out).toBe(want);
  });
});
