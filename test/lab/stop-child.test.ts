/**
 * The lab's one way to stop a process (src/lab/netns.ts `stopChild`), used by the
 * fleet, the soak and Lab.spawn's stop/exit/kill: real child processes, no namespaces.
 * A process that is already gone must resolve at once (its 'exit' was emitted
 * before: waiting for it would hang), and a result that is not a clean exit code
 * names the signal.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { stopChild } from '../../src/lab/netns.js';

const started: ChildProcess[] = [];
afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** A node child that prints "ready" once its SIGTERM handling is in place. */
async function child(onTerm: 'exit 0' | 'exit 3' | 'ignore'): Promise<ChildProcess> {
  const handler = onTerm === 'ignore' ? '() => {}' : `() => process.exit(${onTerm.split(' ')[1]})`;
  const c = spawn(process.execPath, ['-e', `process.on('SIGTERM', ${handler}); console.log('ready'); setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  started.push(c);
  await once(c.stdout!, 'data');
  return c;
}

describe('stopChild', () => {
  it.each([
    { name: 'clean exit on SIGTERM', onTerm: 'exit 0' as const, want: 0 },
    { name: 'non-zero exit on SIGTERM', onTerm: 'exit 3' as const, want: 3 },
    { name: 'SIGTERM ignored: killed, and said so', onTerm: 'ignore' as const, want: 'SIGKILL after 300 ms' },
  ])('$name', async ({ onTerm, want }) => {
    expect(await stopChild(await child(onTerm), { killAfterMs: 300 })).toBe(want);
  });

  it('SIGKILL on request: the signal is the result', async () => {
    expect(await stopChild(await child('ignore'), { signal: 'SIGKILL', killAfterMs: 60_000 })).toBe('SIGKILL');
  });

  it('a process already gone resolves at once, with its code or the signal that ended it', async () => {
    const exited = await child('exit 0');
    exited.kill('SIGTERM');
    await once(exited, 'exit');
    expect(await stopChild(exited)).toBe(0);
    const crashed = await child('ignore');
    crashed.kill('SIGSEGV');
    await once(crashed, 'exit');
    expect(await stopChild(crashed)).toBe('died before the stop: SIGSEGV');
  });
});
