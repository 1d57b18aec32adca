/**
 * Regression test for a crash found by bench/soak: at the fd limit the agent died
 * of `uv_interface_addresses returned … error 24` thrown by os.networkInterfaces()
 * inside libp2p's getMultiaddrs() (@libp2p/utils getThinWaistAddresses, called from
 * timers and event handlers). scripts/patch-deps.mjs makes it keep the last answer.
 * The child runs with a low fd limit (prlimit), exhausts it and asks again.
 */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const pexec = promisify(execFile);

const child = `
import os from 'node:os';
import { openSync } from 'node:fs';
import { getThinWaistAddresses } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
const ma = multiaddr('/ip4/0.0.0.0/tcp/4001');
const before = getThinWaistAddresses(ma, 4001).map(String);
const held = [];
for (let i = 0; i < 10000; i++) { try { held.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code === 'EMFILE') break; throw e; } }
let direct = 'ok';
try { os.networkInterfaces(); } catch (e) { direct = String(e.info?.errno ?? e.code); }
let after;
try { after = getThinWaistAddresses(ma, 4001).map(String); } catch (e) { after = 'threw: ' + e.message; }
console.log(JSON.stringify({ before, direct, after, held: held.length }));
`;

describe('interface addresses at the fd limit (patched @libp2p/utils)', () => {
  it('getThinWaistAddresses keeps the last answer instead of throwing when os.networkInterfaces() fails with EMFILE', async () => {
    const { stdout } = await pexec('prlimit', ['--nofile=256:256', process.execPath, '--input-type=module', '-e', child], { cwd: process.cwd(), timeout: 30_000 });
    const r = JSON.parse(stdout.trim()) as { before: string[]; direct: string; after: string[] | string; held: number };
    // The condition is real: the plain call fails at the limit (errno 24, EMFILE).
    expect(r.direct).toBe('24');
    expect(r.before.length).toBeGreaterThan(0);
    expect(r.after).toEqual(r.before);
  });
});
