/**
 * A flow that finds a peer's warm pool empty (src/tunnel/channel/peer-channel.ts):
 * it waits for the next connection only as long as it was told, then takes the
 * libp2p path; the connection that comes later joins the pool and carries the next
 * flow intact. A slow path dialer stands in for a hole punch on a loaded link (the
 * fleet saw flows reset when they waited out their deadline for one).
 * Real parts: loopback TCP, the real EWC1 handshake and record layer on both ends.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { PeerChannel, type PathDialer } from '../../src/tunnel/channel/peer-channel.js';
import { ewcServer } from '../../src/tunnel/channel/ewc-handshake.js';
import type { EwcSocket } from '../../src/tunnel/channel/ewc-codec.js';
import { silentLogger } from '../../src/util/log.js';
import { seededBytes } from '../helpers/prng.js';

const cred = { id: randomBytes(16).toString('hex'), key: randomBytes(32) };
const cleanup: (() => void)[] = [];
afterEach(() => { for (const c of cleanup.splice(0)) c(); });

/** An EWC1 server on loopback that answers each connection's bytes with their sha256 once it ends. */
async function shaServer(): Promise<number> {
  const srv = net.createServer((raw) => {
    ewcServer(raw, (id) => (id === cred.id ? cred.key : undefined), 5000).then(({ socket }) => {
      const h = createHash('sha256');
      socket.on('data', (d: Buffer) => h.update(d));
      socket.on('end', () => socket.end(h.digest('hex')));
      socket.on('error', () => undefined);
    }, () => raw.destroy());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup.push(() => srv.close());
  return (srv.address() as net.AddressInfo).port;
}

function roundTrip(sock: EwcSocket, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    sock.on('data', (d: Buffer) => { out += d.toString(); });
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
    sock.resume(); // a taken connection is paused until its flow reads
    sock.end(bytes);
  });
}

describe('peer channel: a flow and an empty warm pool', () => {
  it('gives up after waitMs, and the late connection carries the next flow', async () => {
    const port = await shaServer();
    let delayMs = 0;
    let dials = 0;
    const dialer: PathDialer = {
      path: 'punched',
      via: `127.0.0.1:${port}`,
      async connect(n) {
        dials++;
        await new Promise((r) => setTimeout(r, delayMs));
        return Promise.all(Array.from({ length: n }, () => new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(port, '127.0.0.1', () => resolve(s));
          s.once('error', reject);
        })));
      },
    };
    const ch = new PeerChannel({
      peerId: 'p', nodeName: 'b', warm: 1, handshakeTimeoutMs: 5000, maxIdleMs: 60_000, logger: silentLogger(),
      hello: async () => ({ cred, dataPort: port }),
      paths: async () => [dialer],
      lanPath: async () => undefined,
      onChange: () => undefined,
      onHandshake: () => undefined,
    });
    cleanup.push(() => ch.close());
    expect(await ch.ensure()).toBe(true);
    // Wait (bounded) for the first refill to settle: one warm connection.
    for (let i = 0; i < 100 && ch.warmCount < 1; i++) await new Promise((r) => setTimeout(r, 20));
    // From now on the path takes 3 s per connection (the refill after this take too).
    delayMs = 3000;
    const first = await ch.take(100);
    expect(first).toBeDefined();
    const a = seededBytes(1, 300_000);
    expect(await roundTrip(first!, a)).toBe(createHash('sha256').update(a).digest('hex'));

    // The pool is empty and its refill is on the slow path: the flow waits 150 ms at most.
    expect(ch.warmCount).toBe(0);
    expect(await ch.take(150)).toBeUndefined();
    expect(dials).toBeGreaterThanOrEqual(2);
    // What the slow dial brings joins the pool (bounded wait) and carries the next flow intact.
    for (let i = 0; i < 300 && ch.warmCount < 1; i++) await new Promise((r) => setTimeout(r, 20));
    expect(ch.warmCount).toBeGreaterThanOrEqual(1);
    const late = await ch.take(0);
    expect(late).toBeDefined();
    const b = seededBytes(2, 200_000);
    expect(await roundTrip(late!, b)).toBe(createHash('sha256').update(b).digest('hex'));
  }, 30_000);
});
