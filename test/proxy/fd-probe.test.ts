/**
 * The proxy's fd probe (src/proxy/tcp.ts `fdProbe`): at the fd limit libuv drops
 * pending connections without an accept error, so the proxy counts the seconds at
 * the limit itself. A child process with a low fd limit (prlimit) exhausts it, lets
 * the probe run, frees the fds and lets it run again: counted while exhausted only.
 * Found by bench/soak (no EMFILE was counted while flows were being refused).
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ensureBuilt } from '../helpers/agent-process.js';

const pexec = promisify(execFile);

const child = `
import { openSync, closeSync } from 'node:fs';
import { fdProbe } from './dist/proxy/tcp.js';
let n = 0;
const stop = fdProbe(() => { n++; }, 50, 100);
const keep = setInterval(() => undefined, 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await sleep(300);
const before = n;
const held = [];
for (let i = 0; i < 10000; i++) { try { held.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code === 'EMFILE') break; throw e; } }
await sleep(500);
const atLimit = n - before;
for (const fd of held) closeSync(fd);
const released = n;
await sleep(500);
stop();
clearInterval(keep);
console.log(JSON.stringify({ before, atLimit, afterRelease: n - released, held: held.length }));
`;

describe('fd probe', () => {
  beforeAll(async () => { await ensureBuilt(); }, 180_000);

  it('counts while the process is out of fds, and only then', async () => {
    const { stdout } = await pexec('prlimit', ['--nofile=128:128', process.execPath, '--input-type=module', '-e', child], { cwd: process.cwd(), timeout: 30_000 });
    const r = JSON.parse(stdout.trim()) as { before: number; atLimit: number; afterRelease: number; held: number };
    expect(r.held).toBeGreaterThan(0);
    expect(r.before).toBe(0);
    expect(r.atLimit).toBeGreaterThan(0);
    expect(r.afterRelease).toBe(0);
  });
});
