/**
 * `connectFrom` (native/src/reuseport.cc) with an ephemeral local port: port 0 binds
 * one (hole punching passes the data port; other callers may not care), bad ports
 * are a TypeError thrown at the call — never a truncated port, never an abort. The
 * exit with a connect still pending is a child scenario in exit.test.ts.
 * Loopback only, real sockets on port 0, seeded bytes checked by sha256.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { loadNative, type NativeAddon } from '../../src/native/addon.js';
import { seededBytes } from '../helpers/prng.js';
import { requirement } from '../helpers/skip.js';

const native = loadNative();
const skip = requirement('connectFrom', native.addonReason, typeof native.addon?.connectFrom === 'function' ? undefined : 'addon without connectFrom');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe.skipIf(skip)('connectFrom with local port 0', () => {
  const addon = native.addon as Required<NativeAddon>;
  const servers: net.Server[] = [];
  afterAll(async () => { await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))); });

  async function echoServer(host: string): Promise<number> {
    const srv = net.createServer((s) => s.pipe(s));
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, host, r));
    return (srv.address() as net.AddressInfo).port;
  }

  it.each([['IPv4', '127.0.0.1'], ['IPv4 wildcard local', '0.0.0.0'], ['IPv6', '::1']])('%s: connects from an ephemeral port, bytes intact', async (_name, local) => {
    const remote = local === '0.0.0.0' ? '127.0.0.1' : local;
    const port = await echoServer(remote);
    const fd = await addon.connectFrom(local, 0, remote, port, 5000);
    const sock = new net.Socket({ fd, readable: true, writable: true });
    try {
      expect(sock.localPort).toBeGreaterThan(0);
      expect(sock.remotePort).toBe(port);
      const data = seededBytes(local.length, 200_000);
      const got: Buffer[] = [];
      let n = 0;
      await new Promise<void>((resolve) => { sock.on('data', (d: Buffer) => { got.push(d); n += d.length; if (n >= data.length) resolve(); }); sock.write(data); });
      expect(sha(Buffer.concat(got))).toBe(sha(data));
    } finally {
      sock.destroy();
    }
  });

  it.each([
    ['fractional local port', 0.5, 1],
    ['NaN local port', Number.NaN, 1],
    ['local port 65536', 65536, 1],
    ['negative local port', -1, 1],
    ['remote port 0', 0, 0],
    ['fractional remote port', 0, 80.5],
  ])('%s: TypeError at the call', (_name, localPort, remotePort) => {
    expect(() => addon.connectFrom('127.0.0.1', localPort, '127.0.0.1', remotePort, 1000)).toThrow(TypeError);
  });
});
