import { afterEach, describe, expect, it, vi } from 'vitest';
import { RequirementError, requirement } from './skip.js';

describe('requirement (the one skip rule)', () => {
  const ci = process.env.CI;
  afterEach(() => {
    if (ci === undefined) delete process.env.CI;
    else process.env.CI = ci;
    vi.restoreAllMocks();
  });

  it.each([
    { name: 'nothing missing, outside CI', ci: undefined, reasons: [undefined, undefined], want: undefined },
    { name: 'nothing missing, in CI', ci: 'true', reasons: [undefined], want: undefined },
    { name: 'first reason wins, outside CI', ci: undefined, reasons: [undefined, 'no clang', 'no bpftool'], want: 'no clang' },
    { name: 'CI=false is not CI', ci: 'false', reasons: ['not root'], want: 'not root' },
  ])('$name → $want', ({ ci: value, reasons, want }) => {
    if (value === undefined) delete process.env.CI;
    else process.env.CI = value;
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    expect(requirement('suite x', ...reasons)).toBe(want);
    expect(warn.mock.calls).toEqual(want ? [[`skipping suite x: ${want}`]] : []);
  });

  it('throws with CI=true when something is missing, naming the suite and the reason', () => {
    process.env.CI = 'true';
    expect(() => requirement('suite x', undefined, 'no cgroup v2')).toThrow(RequirementError);
    expect(() => requirement('suite x', 'no cgroup v2')).toThrow(/suite x cannot run in CI .*: no cgroup v2/);
  });
});
