/**
 * Regression test for the relay memory leak (PITFALLS.md): @libp2p/utils `pipe()`
 * wrapped the same message stream twice for `pipe(src, dst, src)` (what the
 * circuit relay does); the second wrapper subscribed to src's messages and was
 * never read, so the relay kept every relayed byte. scripts/patch-deps.mjs
 * (run by `npm install`) gives one wrapper per stream.
 */
import { describe, expect, it } from 'vitest';
import { pipe, streamPair } from '@libp2p/utils';
import { readFile } from 'node:fs/promises';
import { pipePatchApplied } from '../../src/tunnel/relay-server.js';

function listeners(s: unknown): number {
  return (s as { listenerCount(t: string): number }).listenerCount('message');
}

describe('relay pipe() leak fix', () => {
  it('is installed', async () => {
    expect(await pipePatchApplied()).toBe(true);
  });

  it('pipe(src, dst, src) subscribes to src once and relays both ways', async () => {
    const [srcOut, src] = await streamPair();
    const [dst, dstOut] = await streamPair();
    const before = listeners(src);
    const done = pipe(src, dst, src).catch(() => undefined);
    // One reader of src's messages, not two (the second one was the leak).
    expect(listeners(src) - before).toBe(1);
    const fromDst: Uint8Array[] = [];
    const fromSrc: Uint8Array[] = [];
    dstOut.addEventListener('message', (e) => { fromDst.push((e.data as Uint8Array).subarray()); });
    srcOut.addEventListener('message', (e) => { fromSrc.push((e.data as Uint8Array).subarray()); });
    srcOut.send(new TextEncoder().encode('ping'));
    dstOut.send(new TextEncoder().encode('pong'));
    const deadline = Date.now() + 2000;
    while ((fromDst.length === 0 || fromSrc.length === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(Buffer.concat(fromDst).toString()).toBe('ping');
    expect(Buffer.concat(fromSrc).toString()).toBe('pong');
    srcOut.abort(new Error('done'));
    dstOut.abort(new Error('done'));
    await done;
  });

  it('the patch script recognises the upstream code it replaces', async () => {
    const script = await readFile('scripts/patch-deps.mjs', 'utf8');
    expect(script).toContain('return messageStreamToDuplex(source);');
  });
});
