/**
 * Punch dials at the fd limit (found by bench/soak): a refused SYN is retried every
 * 100 ms until the punch deadline, and so was a bind that failed with EMFILE — 140
 * failed binds a second while the agent was out of fds, holding flows that waited
 * for the channel. Out of fds, a candidate is given up at once. The child runs the
 * real shared-port sockets (native addon) with a low fd limit (prlimit), exhausted.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ensureBuilt } from '../helpers/agent-process.js';
import { loadNative } from '../../src/native/addon.js';
import { createPunchSockets, punchUnavailableReason } from '../../src/tunnel/punch/sockets.js';
import { requirement } from '../helpers/skip.js';

const pexec = promisify(execFile);
const load = loadNative();
const noSockets = createPunchSockets(load) ? undefined : requirement('native addon with connectFrom', punchUnavailableReason(load) ?? 'unavailable');

const child = `
import net from 'node:net';
import { openSync } from 'node:fs';
import { loadNative } from './dist/native/addon.js';
import { createPunchSockets } from './dist/tunnel/punch/sockets.js';
import { dialCandidates } from './dist/tunnel/punch/dial.js';
const sockets = createPunchSockets(loadNative());
// As in the agent: connects leave from a shared-port listener's port.
const srv = new net.Server(() => undefined);
await sockets.listen(srv, '127.0.0.1', 0);
const localPort = srv.address().port;
const held = [];
for (let i = 0; i < 10000; i++) { try { held.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code === 'EMFILE') break; throw e; } }
const errors = [];
const c = await dialCandidates({ sockets, localHost: '127.0.0.1', localPort, candidates: ['127.0.0.1', '127.0.0.2'], remotePort: 9, timeoutMs: 2000, onError: (h, e) => errors.push(e.errno) });
console.log(JSON.stringify({ connected: !!c, errors }));
process.exit(0);
`;

describe.skipIf(!!noSockets)('punch dial out of fds', () => {
  beforeAll(async () => { await ensureBuilt(); }, 180_000);

  it('gives a candidate up at the first EMFILE instead of retrying until the deadline', async () => {
    const { stdout } = await pexec('prlimit', ['--nofile=256:256', process.execPath, '--input-type=module', '-e', child], { cwd: process.cwd(), timeout: 30_000 });
    const r = JSON.parse(stdout.trim()) as { connected: boolean; errors: number[] };
    expect(r.connected).toBe(false);
    // The condition is real: each candidate's bind failed for lack of fds ...
    expect(r.errors.length).toBeGreaterThan(0);
    expect(r.errors.every((e) => e === 24), JSON.stringify(r.errors)).toBe(true); // EMFILE
    // ... once per candidate (a retry loop makes about 20 per candidate in 2 s).
    expect(r.errors.length).toBe(2);
  });
});
