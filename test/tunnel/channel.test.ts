/**
 * The data channel on loopback, in one process: a relay and two agents, PSK on and
 * off. Loopback addresses are never LAN candidates from the catalog, so the first
 * channel from A to B goes through the relay's blind data port; once A holds a
 * direct libp2p connection to B, the channel moves to B's data listener (LAN
 * path). Byte paths carry seeded random data checked by sha256.
 *
 * IP plan: everything on 127.0.0.1; ports are free ports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import dgram from 'node:dgram';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import { createRegistry } from '../../src/metrics/registry.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger, silentLogger } from '../../src/util/log.js';
import { TunnelService } from '../../src/tunnel/service.js';
import { startRelayServer, type RelayServerHandle } from '../../src/tunnel/relay-server.js';
import { TunnelRefusedError } from '../../src/tunnel/errors.js';
import type { RemoteTarget } from '../../src/proxy/remote-dialer.js';
import type { Snapshot } from '../../src/catalog/types.js';
import { prng } from '../helpers/prng.js';
import { endpoint, freePort, service, snapshot } from './helpers.js';

const logger = process.env.EW_DEBUG_LOG ? createLogger('debug') : silentLogger();

function seeded(seed: number, n: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((r() * 2 ** 32) >>> 0, i);
  return b;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Write `payload`, half-close, collect everything until the far end closes. */
function roundTrip(d: Duplex, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    d.on('data', (c: Buffer) => got.push(c));
    d.on('end', () => resolve(Buffer.concat(got)));
    d.on('error', reject);
    d.end(payload);
  });
}

async function metric(reg: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = reg.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

async function until(pred: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe.each([{ psk: true }, { psk: false }])('data channel on loopback (psk: $psk)', ({ psk }) => {
  let dir: string;
  let relay: RelayServerHandle;
  let relayReg: Registry;
  let a: TunnelService;
  const regs: Record<string, Registry> = {};
  let b: TunnelService;
  let bDataPort: number;
  let echo: net.Server;
  let udpEcho: dgram.Socket;
  let echoPort: number;
  let snap: Snapshot;
  const target = (): RemoteTarget => ({ nodeName: 'b', protocol: 'TCP', serviceKey: 'default/echo', servicePort: 80, ip: '127.0.0.1', port: echoPort });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ew-channel-'));
    const pskPath = join(dir, 'swarm.key');
    await writeFile(pskPath, `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`);
    echo = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); s.pipe(s); });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
    udpEcho = dgram.createSocket('udp4');
    udpEcho.on('message', (m, ri) => udpEcho.send(Buffer.concat([Buffer.from('b:'), m]), ri.port, ri.address));
    await new Promise<void>((r) => udpEcho.bind(echoPort, '127.0.0.1', r));
    const pskCfg = psk ? { psk: { path: pskPath } } : {};
    const relayPort = await freePort();
    relayReg = createRegistry({ defaultMetrics: false });
    relay = await startRelayServer(parseConfig({ stateDir: join(dir, 'relay'), accelerator: { mode: 'node' }, tunnel: { listenPort: relayPort, dataPort: await freePort(), listenAddresses: ['127.0.0.1'], ...pskCfg } }, 'relay.yaml', { nodeName: 'relay' }), logger, relayReg);
    snap = snapshot([
      service('default', 'echo', 80, [endpoint('127.0.0.1', 'b', echoPort)]),
      service('default', 'echo-udp', 53, [endpoint('127.0.0.1', 'b', echoPort, 'UDP')], 'UDP'),
    ], [{ name: 'a', addresses: [], ready: true }, { name: 'b', addresses: [], ready: true }]);
    const agent = async (name: string): Promise<TunnelService> => {
      const dataPort = await freePort();
      if (name === 'b') bDataPort = dataPort;
      const config = parseConfig({
        stateDir: join(dir, name),
        tunnel: { listenPort: await freePort(), dataPort, listenAddresses: ['127.0.0.1'], relayNodes: [{ nodeName: 'relay', advertiseAddress: [`127.0.0.1:${relayPort}`] }], udpIdleTimeoutMs: 500, stateFile: false, ...pskCfg },
      }, `${name}.yaml`, { nodeName: name });
      regs[name] = createRegistry({ defaultMetrics: false });
      const s = new TunnelService({ config, logger, registry: regs[name], snapshot: () => snap });
      await s.start();
      return s;
    };
    a = await agent('a');
    b = await agent('b');
    await until(async () => a.relays!.reservedRelays().length === 1 && b.relays!.reservedRelays().length === 1 && (await a.directory!.resolve('b').then(() => true, () => false)), 'reservations and rendezvous');
  }, 40_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await relay?.stop();
    echo?.close();
    udpEcho?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('relayed: seeded bytes both ways through the blind relay, intact (sha256)', async () => {
    const payload = seeded(1, 4 * 1024 * 1024);
    const d = await a.dialer!.dialStream(target());
    const back = await roundTrip(d, payload);
    expect(sha(back)).toBe(sha(payload));
    const st = await a.state();
    expect(st.channels.find((c) => c.nodeName === 'b')).toMatchObject({ path: 'relayed', via: 'relay' });
    expect(await metric(regs.a!, 'edgeway_tunnel_channel_flows_total', { path: 'relayed' })).toBeGreaterThanOrEqual(1);
    // The relay forwarded ciphertext: at least the payload both ways, plus TLS overhead.
    await until(async () => (await metric(relayReg, 'edgeway_relay_data_bytes_total')) > 2 * payload.length, 'relay byte count after the pair closed');
  }, 30_000);
});
