/** The lab moved to src/lab/ so the demo (src/demo/) shares it; tests keep importing it from here. */
import { kernelSkipReason as labUnavailable } from '../../src/lab/netns.js';
import { inCi, RequirementError } from './skip.js';

export * from '../../src/lab/netns.js';

/**
 * Why kernel tests cannot run here, or undefined when they can. Printed by skipping
 * tests. With CI=true it throws instead (test/helpers/skip.ts): CI runs as root on
 * Linux, and a kernel suite that skips there would pass without testing anything.
 * (This local export takes precedence over the lab's plain one.)
 */
export function kernelSkipReason(): string | undefined {
  const reason = labUnavailable();
  if (reason && inCi()) throw new RequirementError('kernel tests', reason);
  return reason;
}
