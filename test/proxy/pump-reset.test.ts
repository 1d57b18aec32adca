/**
 * A flow whose endpoint side fails must reach the client as a reset, never as a
 * clean end: the client would take a cut answer for a whole one (seen when the far
 * agent was killed mid-flow, test/e2e/agent-crash.kernel.test.ts).
 *
 * Topology, all on 127.0.0.1 (port 0): app ⇄ [client socket | pump | endpoint] ⇄ backend.
 * The backend reads every byte the app sent (so nothing is left unread on the way:
 * a plain close would send FIN), answers half of them, then fails.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { createHash } from 'node:crypto';
import { pump } from '../../src/proxy/pump.js';
import { seededBytes } from '../helpers/prng.js';
import { LoopbackPairs } from '../tunnel/helpers.js';

const pairs = new LoopbackPairs();
afterEach(() => pairs.closeAll());
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** What the app sees: the bytes, and how the connection ended. */
function outcome(app: net.Socket): Promise<{ bytes: Buffer; how: 'end' | 'reset' | string }> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    app.on('data', (c: Buffer) => got.push(c));
    app.on('end', () => resolve({ bytes: Buffer.concat(got), how: 'end' }));
    app.on('error', (err: NodeJS.ErrnoException) => resolve({ bytes: Buffer.concat(got), how: err.code === 'ECONNRESET' ? 'reset' : String(err.code) }));
  });
}

/** Read exactly n bytes from s. */
function readN(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    let len = 0;
    const onData = (c: Buffer): void => {
      got.push(c);
      len += c.length;
      if (len >= n) { s.off('data', onData); resolve(Buffer.concat(got)); }
    };
    s.on('data', onData);
  });
}

describe('pump: an endpoint failure resets the client', () => {
  it.each([
    { name: 'endpoint socket reset by the backend (ECONNRESET)', endpoint: 'socket' },
    { name: 'endpoint stream destroyed with an error (a tunnel carrier that failed)', endpoint: 'stream' },
  ] as const)('$name', async ({ endpoint }) => {
    const [app, client] = await pairs.pair();
    const payload = seededBytes(7, 256 * 1024);
    let backendSide: net.Socket | undefined;
    let ep: Duplex;
    if (endpoint === 'socket') {
      const [e, backend] = await pairs.pair();
      ep = e;
      backendSide = backend;
    } else {
      // A Duplex that is not a socket, fed by the test: what the tunnel's carriers look like to the pump.
      const [e, backend] = await pairs.pair();
      backendSide = backend;
      ep = new Duplex({
        write(chunk: Buffer, _enc, cb) { e.write(chunk, cb); },
        final(cb) { e.end(); cb(); },
        read() { e.resume(); },
      });
      e.on('data', (c: Buffer) => { if (!ep.push(c)) e.pause(); });
      ep.on('close', () => e.destroy());
    }
    const done = new Promise<Error | undefined>((resolve) => pump(client, ep, { toEndpoint: () => undefined, toClient: () => undefined, done: (err) => resolve(err) }));
    const seen = outcome(app);
    app.write(payload);
    const atBackend = await readN(backendSide, payload.length);
    expect(sha(atBackend)).toBe(sha(payload));
    backendSide.write(payload.subarray(0, payload.length / 2));
    // Let the half reach the app before the failure, as in a flow cut mid-answer.
    await new Promise((r) => setTimeout(r, 50));
    if (endpoint === 'socket') backendSide.resetAndDestroy();
    else ep.destroy(new Error('tunnel carrier failed'));
    const r = await seen;
    expect(r.how).toBe('reset');
    // What did arrive is the answer's start, unchanged.
    expect(sha(r.bytes)).toBe(sha(payload.subarray(0, r.bytes.length)));
    expect(await done).toBeInstanceOf(Error);
  });

  it('a clean end both ways still ends cleanly (FIN, every byte)', async () => {
    const [app, client] = await pairs.pair();
    const [ep, backend] = await pairs.pair();
    const payload = seededBytes(8, 128 * 1024);
    const done = new Promise<Error | undefined>((resolve) => pump(client, ep, { toEndpoint: () => undefined, toClient: () => undefined, done: (err) => resolve(err) }));
    backend.pipe(backend);
    const seen = outcome(app);
    app.end(payload);
    const r = await seen;
    expect(r.how).toBe('end');
    expect(sha(r.bytes)).toBe(sha(payload));
    expect(await done).toBeUndefined();
  });
});
