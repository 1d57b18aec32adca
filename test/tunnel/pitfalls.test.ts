/**
 * Regression tests for the js-libp2p v3 traps in PITFALLS.md, each against the
 * workaround in src/tunnel (real libp2p nodes on loopback). The relay pipe() leak
 * has its own file (relay-pipe.test.ts); relay limits, runOnLimitedConnection and
 * the private-address upgrade are proven by loopback.test.ts and the netns e2e.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Stream } from '@libp2p/interface';
import '../../src/tunnel/polyfill.js';
import { createTunnelNode, STREAM_READ_BUFFER_BYTES, STREAM_WINDOW_BYTES, type TunnelLibp2p } from '../../src/tunnel/node.js';
import { closeQuietly, StreamDuplex } from '../../src/tunnel/stream-io.js';

const SINK = '/edgeway/test/sink/1';
const SOURCE = '/edgeway/test/source/1';

describe('js-libp2p v3 pitfalls', () => {
  let a: TunnelLibp2p;
  let b: TunnelLibp2p;

  beforeAll(async () => {
    a = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] });
    b = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] });
    // SOURCE: write N bytes as fast as the stream lets us (drain *event*, never onDrain()).
    await b.handle(SOURCE, (stream: Stream) => {
      const total = 12 * 1024 * 1024;
      const chunk = new Uint8Array(64 * 1024).fill(1);
      let sent = 0;
      const pump = (): void => {
        while (sent < total) {
          sent += chunk.length;
          if (!stream.send(chunk)) { stream.addEventListener('drain', pump, { once: true }); return; }
        }
        closeQuietly(stream);
      };
      pump();
    }, { maxInboundStreams: 4096 });
    // SINK: count bytes, answer with the count on end.
    await b.handle(SINK, (stream: Stream) => {
      let n = 0;
      stream.addEventListener('message', (e) => { n += e.data.byteLength; });
      stream.addEventListener('end', () => { stream.send(new TextEncoder().encode(String(n))); closeQuietly(stream); });
    }, { maxInboundStreams: 4096 });
  });

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('Promise.withResolvers exists (polyfilled on Node 20)', () => {
    const r = (Promise as unknown as { withResolvers: () => { promise: Promise<number>; resolve: (v: number) => void } }).withResolvers();
    r.resolve(1);
    return expect(r.promise).resolves.toBe(1);
  });

  it('yamux window never exceeds the read buffer (else a paused stream aborts)', () => {
    expect(STREAM_WINDOW_BYTES).toBeLessThanOrEqual(STREAM_READ_BUFFER_BYTES);
  });

  it('a slow reader pauses the stream without a StreamBufferError (deferred pause, drain events)', async () => {
    const stream = await a.dialProtocol(b.getMultiaddrs()[0]!, SOURCE);
    const dup = new StreamDuplex(stream);
    let got = 0;
    let stalls = 0;
    await new Promise<void>((resolve, reject) => {
      dup.on('error', reject);
      dup.on('end', resolve);
      // Read in bursts with pauses so the stream is paused and resumed many times.
      dup.on('data', (c: Buffer) => {
        got += c.length;
        if (got % (2 * 1024 * 1024) < c.length) { stalls++; dup.pause(); setTimeout(() => dup.resume(), 30); }
      });
    });
    expect(got).toBe(12 * 1024 * 1024);
    expect(stalls).toBeGreaterThan(3);
    dup.destroy();
  }, 60_000);

  it('hundreds of concurrent streams on one connection (the default 32/64 per protocol are raised)', async () => {
    const conn = await a.dial(b.getMultiaddrs()[0]!, { force: true });
    const results = await Promise.all(Array.from({ length: 200 }, async () => {
      const s = await conn.newStream(SINK, { maxOutboundStreams: 4096 });
      const d = new StreamDuplex(s);
      const reply: Buffer[] = [];
      await new Promise<void>((resolve, reject) => { d.on('data', (c: Buffer) => reply.push(c)); d.on('end', resolve); d.on('error', reject); d.end(Buffer.alloc(1000)); });
      return Buffer.concat(reply).toString();
    }));
    expect(results.every((r) => r === '1000')).toBe(true);
    await conn.close();
  }, 60_000);

  it('close() rejecting with a non-Error never becomes an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (r: unknown): void => { unhandled.push(r); };
    process.on('unhandledRejection', onUnhandled);
    let aborted: unknown;
    const fake = { status: 'open', close: () => Promise.reject('not an Error'), abort: (e: unknown) => { aborted = e; } } as unknown as Stream;
    closeQuietly(fake);
    await new Promise((r) => setTimeout(r, 20));
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
    expect(aborted).toBeInstanceOf(Error);
  });
});
