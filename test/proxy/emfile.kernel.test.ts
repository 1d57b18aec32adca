// The proxy at its file-descriptor limit: run it (dist/, via the proxy fixture) with
// a tiny RLIMIT_NOFILE, flood it with connections, and check that it neither crashes
// nor spins, logs the fd exhaustion (libuv drops what it cannot accept; a dial that
// finds no fd is refused, counted and logged), and serves again once clients go away.
// Loopback only; no root needed, but it builds dist/ and runs a child, so it sits
// with the heavier (kernel project) tests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { ensureBuilt, ep, freePort, servicePort, startBackends, stopBackends, until, whoami, type Backend } from './util.js';

const PROXY = new URL('./fixtures/proxy-in-ns.mjs', import.meta.url).pathname;

describe.skipIf(process.platform !== 'linux')('EMFILE on accept', () => {
  let backends: Backend[] = [];
  let child: ChildProcess | undefined;
  beforeAll(async () => { ensureBuilt(); backends = await startBackends(['a']); });
  afterAll(async () => { child?.kill('SIGKILL'); await stopBackends(backends); });

  it('survives the fd limit, counts/logs it, and recovers', async () => {
    const port = await freePort();
    const plan = [servicePort({ userspacePort: port, endpoints: [ep('127.0.0.1', backends[0]!.port)] })];
    // prlimit lowers this child's limit only (lowering needs no privilege).
    child = spawn('prlimit', ['--nofile=64:64', '--', process.execPath, PROXY, JSON.stringify(plan)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    await until(() => stdout.includes('ready'), 'proxy ready', 15_000);
    expect(await whoami(port)).toBe('a');

    const held: net.Socket[] = [];
    for (let i = 0; i < 120; i++) {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('error', () => undefined);
      s.on('connect', () => s.write('whoami\n'));
      held.push(s);
    }
    await until(() => stderr.includes('file descriptors exhausted'), `fd exhaustion logged; stderr: ${stderr.slice(-1500)}`, 10_000);
    // At the limit with 120 clients still connected: the proxy must not spin.
    const cpuOf = (pid: number): number => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
    const c0 = cpuOf(child.pid!);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(cpuOf(child.pid!) - c0).toBeLessThan(0.5);
    expect(child.exitCode).toBeNull();
    for (const s of held) s.destroy();
    // Recovered: new clients are served again once the flood is gone.
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      ok = await whoami(port, { timeoutMs: 1_000 }).then((id) => id === 'a', () => false);
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ok).toBe(true);
    expect(child.exitCode).toBeNull();
    expect(stderr).toMatch(/"code":"EMFILE"/);
  }, 60_000);
});
