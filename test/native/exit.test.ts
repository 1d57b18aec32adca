/**
 * The addon at process exit (issue 13, item 1): a child uses edgeway_native.node
 * and exits naturally — the environment cleanup hook and the object finalizers run
 * in Node's order, which once freed the Pool's hook data twice ("corrupted size vs.
 * prev_size in fastbins", exit 134). Each child must exit 0 with its own checks
 * passed and no sanitizer report (scripts/ci-asan.sh runs this file under ASan/UBSan).
 * No root needed: the sockmap case is in exit.kernel.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/native/addon.js';
import { requirement } from '../helpers/skip.js';
import { runScenario } from './addon-child.js';

const native = loadNative();
const skip = requirement('addon exit tests', native.addonReason);

describe.skipIf(skip)('edgeway_native.node at a natural exit', () => {
  it.each([
    'idle pool',
    'pool collected before exit',
    'pool after a splice pair',
    'worker threads',
    'connectFrom pending at exit',
    ...(native.addon?.aeadReason === null ? ['aead pair in flight, pool closed', 'aead pair in flight when a worker is terminated'] : []),
  ])('%s: exit 0', async (scenario) => {
    const end = await runScenario(scenario, native);
    expect(end.stderr).not.toMatch(/AddressSanitizer|runtime error:|corrupted|double free/);
    expect({ code: end.code, signal: end.signal, stdout: end.stdout.trim() }).toEqual({ code: 0, signal: null, stdout: `ok ${scenario}` });
  });

  // Only with the sanitizer build (scripts/ci-asan.sh): LeakSanitizer does not run at
  // Node's exit, so the child calls it; Node's own leaks are reported too, none may
  // have a frame in the addon.
  it.skipIf(!(native.addon as { leakCheck?: unknown } | undefined)?.leakCheck)('aead pairs: no leak in edgeway_native.node', async () => {
    const env = { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:leak_check_at_exit=0:halt_on_error=1:exitcode=86' };
    const end = await runScenario('aead pairs, leak check', native, 120_000, env);
    expect(end.stderr).not.toMatch(/ERROR: AddressSanitizer|runtime error:/);
    expect(end.stderr).toMatch(/LeakSanitizer|SUMMARY: AddressSanitizer: \d+ byte/);
    const ours = end.stderr.split('\n').filter((l) => /#\d+ .*(edgeway_native|native\/src\/)/.test(l));
    expect({ code: end.code, ours }).toEqual({ code: 0, ours: [] });
  });
});
