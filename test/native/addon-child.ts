/**
 * Runs test/native/fixtures/addon-exit.mjs (one scenario with the addons, then a
 * natural exit) and returns how the child ended. The child inherits the
 * environment, so under scripts/ci-asan.sh it runs with the sanitizer build and
 * LD_PRELOAD of libasan too.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { NativeLoad } from '../../src/native/addon.js';

const fixture = fileURLToPath(new URL('./fixtures/addon-exit.mjs', import.meta.url));

export interface ChildEnd { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

export function runScenario(scenario: string, native: NativeLoad, timeoutMs = 60_000, env: NodeJS.ProcessEnv = process.env): Promise<ChildEnd> {
  const args = ['--expose-gc', fixture, scenario, native.addonPath ?? '', native.bpfPath ?? '', native.sockmapObject ?? ''];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}
