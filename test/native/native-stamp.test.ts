/**
 * The native build stamp (scripts/native-stamp.mjs) that lets `npm start` /
 * `npm test` rebuild the addons once the toolchain is there: a build is current
 * only when every output exists and the inputs hash to the stamped digest.
 * Runs on a scratch copy of the layout (no compiler needed).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error -- plain ESM script without declarations (checked by tsconfig.check.json)
import { OUTPUTS, staleReason, writeStamp } from '../../scripts/native-stamp.mjs';

const stamp = { OUTPUTS: OUTPUTS as string[], staleReason: staleReason as (root: string) => string | undefined, writeStamp: writeStamp as (root: string) => void };
let root = '';
afterEach(() => { if (root) rmSync(root, { recursive: true, force: true }); });

function put(rel: string, text: string): void {
  mkdirSync(dirname(join(root, rel)), { recursive: true });
  writeFileSync(join(root, rel), text);
}

function tree(): void {
  root = mkdtempSync(join(tmpdir(), 'ew-stamp-'));
  put('native/src/addon.cc', 'int a;');
  put('native/CMakeLists.txt', 'project(x)');
  put('bpf/sock_lb.c', 'int b;');
  put('bpf/lib/layout.h', '#define X 1');
  for (const o of stamp.OUTPUTS) put(o, 'built');
}

describe('native build stamp', () => {
  it.each([
    { name: 'fresh build', change: (): void => undefined, want: undefined },
    { name: 'a C++ source changed', change: (): void => put('native/src/addon.cc', 'int a2;'), want: 'sources changed since the last build' },
    { name: 'a new source file', change: (): void => put('native/src/reuseport.cc', 'int c;'), want: 'sources changed since the last build' },
    { name: 'a BPF header changed', change: (): void => put('bpf/lib/layout.h', '#define X 2'), want: 'sources changed since the last build' },
    { name: 'the libbpf addon is missing', change: (): void => rmSync(join(root, 'native/build/Release/edgeway_bpf.node')), want: 'missing native/build/Release/edgeway_bpf.node' },
    { name: 'no stamp (built by hand)', change: (): void => rmSync(join(root, 'native/build/edgeway-build.json')), want: 'no build stamp' },
  ])('$name → $want', ({ change, want }) => {
    tree();
    stamp.writeStamp(root);
    change();
    expect(stamp.staleReason(root)).toBe(want);
  });
});
