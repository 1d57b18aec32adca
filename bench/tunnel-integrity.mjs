#!/usr/bin/env node
// The large integrity run (issue 11): test/e2e/integrity.kernel.test.ts with
// 64 MiB per flow (16 flows at once, every accelerator mode, same-LAN direct and
// cross-LAN relayed, PSK on) instead of CI's 2 MiB. Needs root and a built dist/.
// Each case prints its time and result ("integrity … in N s, 16/16 ok"); the run
// fails if any byte differs. Size: EDGEWAY_INTEGRITY_MIB (default 64 here).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const env = { ...process.env, EDGEWAY_INTEGRITY_MIB: process.env.EDGEWAY_INTEGRITY_MIB ?? '64' };
const r = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--project', 'kernel', 'test/e2e/integrity.kernel.test.ts', '--testTimeout', '1800000', '--hookTimeout', '600000'], { cwd: root, env, stdio: 'inherit' });
process.exit(r.status ?? 1);
