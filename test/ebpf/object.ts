/**
 * Tests run against the object built from the current sources: scripts/build-bpf.sh
 * is idempotent (rebuilds only when a source is newer), so calling it first costs
 * nothing when CI already built it and catches a stale object locally.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { DEFAULT_OBJECT } from '../../src/dataplane/ebpf/host.js';

const script = new URL('../../scripts/build-bpf.sh', import.meta.url).pathname;

/** Build if needed; returns why the object is unavailable, or undefined. */
export function ensureObject(): string | undefined {
  try {
    execFileSync(script, [], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    return `scripts/build-bpf.sh failed: ${(err as Error).message}`;
  }
  return existsSync(DEFAULT_OBJECT) ? undefined : `no ${DEFAULT_OBJECT} (clang missing?)`;
}
