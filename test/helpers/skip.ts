/**
 * The one skip rule of the test suites. A suite that needs something this machine
 * may lack (root, a built addon, clang, bpftool, cgroup v2, dist/) declares it with
 * `requirement(suite, reason, …)`:
 * - every reason undefined → undefined: the suite runs;
 * - outside CI → prints `skipping <suite>: <reason>` and returns the reason, for
 *   `describe.skipIf(reason)`;
 * - `CI=true` → throws, so the file fails: CI installs everything (.ci/run), and a
 *   skip there would hide a broken setup.
 * Reasons are evaluated in order; the first one given wins.
 */
export function requirement(suite: string, ...reasons: (string | undefined)[]): string | undefined {
  const reason = reasons.find((r) => r !== undefined);
  if (reason === undefined) return undefined;
  if (inCi()) throw new RequirementError(suite, reason);
  console.warn(`skipping ${suite}: ${reason}`);
  return reason;
}

/** CI runs with CI=true (.ci/run exports it). */
export function inCi(): boolean {
  return process.env.CI === 'true';
}

export class RequirementError extends Error {
  readonly code = 'ERR_TEST_REQUIREMENT';
  constructor(readonly suite: string, readonly reason: string) {
    super(`${suite} cannot run in CI (CI=true), and CI may not skip: ${reason}`);
    this.name = 'RequirementError';
  }
}
