/**
 * `npm install` runs scripts/install-native.mjs: without a toolchain (or when told
 * to skip) it prints exactly one line and exits 0 — it must never fail the install.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';

const script = join(packageRoot(), 'scripts', 'install-native.mjs');
// A PATH with node and sh only: no clang, cmake or compiler.
const bare = mkdtempSync(join(tmpdir(), 'ew-bare-path-'));
symlinkSync(process.execPath, join(bare, 'node'));
symlinkSync('/bin/sh', join(bare, 'sh'));
afterAll(() => rmSync(bare, { recursive: true, force: true }));

describe('install-native.mjs', () => {
  it.each([
    { name: 'toolchain missing', env: { PATH: bare }, want: /^edgeway: native accelerators not built \(missing: clang, cmake, c\+\+.*\); using plain Node streams$/ },
    { name: 'skipped on request', env: { PATH: bare, EDGEWAY_SKIP_NATIVE: '1' }, want: /^edgeway: native accelerators skipped \(EDGEWAY_SKIP_NATIVE=1\); using plain Node streams$/ },
  ])('$name: one line, exit 0', ({ env, want }) => {
    const r = spawnSync(process.execPath, [script], { env, encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(want);
  });
});
