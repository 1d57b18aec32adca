/**
 * The addon's batched UDP socket (native/src/dns-udp.cc UdpBatch) at the edges of
 * its life, in child processes so a crash cannot take the test runner down: closed
 * explicitly, then the process exits by itself; left open in a worker thread that
 * is terminated (the env cleanup hook closes it); answered over IPv6 loopback.
 * Each child must exit 0 with its own checks passed.
 * IP plan: 127.0.0.1 and ::1 only, port 0.
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNative } from '../../src/native/addon.js';
import { requirement } from '../helpers/skip.js';

const native = loadNative();
const skip = requirement('native UdpBatch', native.addonReason ?? (native.addon?.UdpBatch ? undefined : 'the addon has no UdpBatch'));

// A child: an echo-like responder on a UdpBatch (reply = query with its first byte
// flipped), asked by a dgram client; then the scenario's ending.
const CHILD = String.raw`
const dgram = require('node:dgram');
const { Worker, isMainThread, workerData, parentPort } = require('node:worker_threads');
const addon = require(process.env.ADDON);
function serve(host) {
  const fd = addon.udpReusePort(host, 0, false);
  const B = 8, S = 4096;
  const inB = Buffer.alloc(B * S), outB = Buffer.alloc(B * S), lens = new Int32Array(2 * B + 1), addrs = Buffer.alloc(B * 32);
  const u = new addon.UdpBatch(fd, B, S, inB.buffer, outB.buffer, lens.buffer, addrs.buffer, (n) => {
    for (let i = 0; i < n; i++) { inB.copy(outB, i * S, i * S, i * S + lens[i]); outB[i * S] ^= 0xff; lens[B + i] = lens[i]; }
  });
  return u;
}
function ask(u, host) {
  return new Promise((resolve, reject) => {
    const c = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const msg = Buffer.from('0123456789');
    const t = setTimeout(() => reject(new Error('no answer')), 5000);
    c.on('message', (m) => { clearTimeout(t); c.close(); m[0] ^= 0xff; resolve(m.equals(msg)); });
    c.send(msg, u.address().port, host);
  });
}
if (!isMainThread) {
  const u = serve('127.0.0.1');
  ask(u, '127.0.0.1').then((ok) => parentPort.postMessage(ok)); // left open: terminate() must close it
} else {
  const scenario = process.env.SCENARIO;
  (async () => {
    if (scenario === 'closed') {
      const u = serve('127.0.0.1');
      if (!(await ask(u, '127.0.0.1'))) throw new Error('bad echo');
      u.close(); u.close();
    } else if (scenario === 'ipv6') {
      const u = serve('::1');
      if (!(await ask(u, '::1'))) throw new Error('bad echo');
      u.close();
    } else if (scenario === 'worker terminated') {
      const w = new Worker(__filename);
      const ok = await new Promise((r) => w.once('message', r));
      if (!ok) throw new Error('bad echo in worker');
      await w.terminate();
    }
    console.log('ok ' + scenario);
  })().catch((e) => { console.error(e); process.exitCode = 1; });
}
`;

async function run(scenario: string, addonPath: string): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  // A file, not -e: the worker scenario starts a Worker on the same script.
  const dir = await mkdtemp(join(tmpdir(), 'ew-udp-batch-'));
  try {
    const file = join(dir, 'child.cjs');
    await writeFile(file, CHILD);
    return await new Promise((resolve) => {
      const child = spawn(process.execPath, [file], { env: { ...process.env, ADDON: addonPath, SCENARIO: scenario }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '', stderr = '';
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.on('exit', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr }); });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe.skipIf(!!skip)('native UdpBatch', () => {
  it.each(['closed', 'ipv6', 'worker terminated'])('%s: answers, then the process exits 0', async (scenario) => {
    const end = await run(scenario, native.addonPath!);
    expect(end.stderr).not.toMatch(/AddressSanitizer|runtime error:|corrupted|double free/);
    expect({ code: end.code, signal: end.signal, stdout: end.stdout.trim() }).toEqual({ code: 0, signal: null, stdout: `ok ${scenario}` });
  });
});
