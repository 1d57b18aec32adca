/**
 * Who may be a node, without a PSK and without the Node annotation (issue 11
 * item 3): a node name is bound to the first peer id that claims it, by the
 * relay (rendezvous registrations) and by agents (rendezvous answers), persisted;
 * a configured relay is never a node. Attacks are made by a real second libp2p
 * peer with its own identity.
 *
 * IP plan: everything on 127.0.0.1; backends on free ports.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { createRegistry } from '../../src/metrics/registry.js';
import { parseConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/util/log.js';
import { TunnelService, PEER_BINDINGS_FILE } from '../../src/tunnel/service.js';
import { startRelayServer, RENDEZVOUS_BINDINGS_FILE, type RelayServerHandle } from '../../src/tunnel/relay-server.js';
import { createTunnelNode, type TunnelLibp2p } from '../../src/tunnel/node.js';
import { rendezvousCall } from '../../src/tunnel/rendezvous.js';
import { BindingStore, checkBinding } from '../../src/tunnel/bindings.js';
import { decodeStatus, encodeRequest, statusName, TUNNEL_PROTOCOL } from '../../src/tunnel/protocol.js';
import { readPrefix } from '../../src/tunnel/stream-io.js';
import type { Snapshot } from '../../src/catalog/types.js';
import { endpoint, freePort, service, snapshot } from './helpers.js';

const logger = silentLogger();

/** Open a tunnel stream from `from` to `to` and return the status name the far side answers. */
async function tunnelStatus(from: TunnelLibp2p, to: TunnelLibp2p, req: Parameters<typeof encodeRequest>[0]): Promise<string> {
  const stream = await from.dialProtocol(to.getMultiaddrs(), TUNNEL_PROTOCOL, { signal: AbortSignal.timeout(10_000) });
  stream.send(encodeRequest(req));
  const { value } = await readPrefix(stream, (b) => { const s = decodeStatus(b); return s ? { value: s, used: s.used } : undefined; }, { maxBytes: 1024, timeoutMs: 10_000 });
  stream.abort(new Error('done'));
  return statusName(value.code);
}

describe('first-use bindings (pure)', () => {
  it.each([
    { name: 'unbound name', map: {}, peer: 'P1', want: 'new' },
    { name: 'same peer again', map: { b: 'P1' }, peer: 'P1', want: 'same' },
    { name: 'another peer', map: { b: 'P1' }, peer: 'EVIL', want: 'conflict' },
  ])('$name → $want', ({ map, peer, want }) => {
    expect(checkBinding(new Map(Object.entries(map)), 'b', peer)).toBe(want);
  });

  it('persists across a restart and keeps refusing another peer', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-bind-'));
    try {
      const s1 = await BindingStore.open(dir, 'b.json');
      expect(s1.bind('b', 'P1')).toBe('new');
      await s1.flush();
      const s2 = await BindingStore.open(dir, 'b.json');
      expect(s2.bind('b', 'EVIL')).toBe('conflict');
      expect(s2.bind('b', 'P1')).toBe('same');
      expect(JSON.parse(await readFile(join(dir, 'b.json'), 'utf8'))).toEqual({ b: 'P1' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('tunnel trust without PSK or annotations (real peers on loopback)', () => {
  let dir: string;
  let relay: RelayServerHandle;
  let a: TunnelService;
  let b: TunnelService | undefined;
  let bPeerId = '';
  let attacker: TunnelLibp2p;
  let echo: net.Server;
  let echoPort: number;
  let snap: Snapshot;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ew-trust-'));
    echo = net.createServer((s) => { s.on('error', () => undefined); s.pipe(s); });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
    const relayPort = await freePort();
    relay = await startRelayServer(parseConfig({ stateDir: join(dir, 'relay'), tunnel: { listenPort: relayPort, dataPort: await freePort(), listenAddresses: ['127.0.0.1'] } }, 'relay.yaml', { nodeName: 'relay' }), logger, createRegistry({ defaultMetrics: false }));
    snap = snapshot([service('default', 'echo', 80, [endpoint('127.0.0.1', 'a', echoPort)])], [
      { name: 'a', addresses: [], ready: true },
      { name: 'b', addresses: [], ready: true },
    ]);
    const agent = async (name: string): Promise<TunnelService> => {
      const config = parseConfig({
        stateDir: join(dir, name),
        tunnel: { listenPort: await freePort(), dataPort: await freePort(), listenAddresses: ['127.0.0.1'], relayNodes: [{ nodeName: 'relay', advertiseAddress: [`127.0.0.1:${relayPort}`] }], stateFile: false },
      }, `${name}.yaml`, { nodeName: name });
      const s = new TunnelService({ config, logger, registry: createRegistry({ defaultMetrics: false }), snapshot: () => snap });
      await s.start();
      return s;
    };
    a = await agent('a');
    b = await agent('b');
    bPeerId = (await b.state()).peerId;
    // a has resolved b once: both the relay and a have bound "b" to b's peer id.
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !(await a.directory!.resolve('b').then((r) => r.peerId.toString() === bPeerId, () => false))) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await b.stop();
    b = undefined;
    attacker = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] });
    await attacker.dial(multiaddr(`/ip4/127.0.0.1/tcp/${relayPort}/p2p/${relay.peerId}`), { signal: AbortSignal.timeout(10_000) });
  }, 60_000);

  afterAll(async () => {
    await attacker?.stop();
    await b?.stop();
    await a?.stop();
    await relay?.stop();
    echo?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the relay refuses the name of a node that is not connected any more to another peer', async () => {
    // Before: the name was free once its holder disconnected, so the impostor got it.
    await expect(rendezvousCall(attacker, peerIdFromString(relay.peerId), { op: 'register', nodeName: 'b', addrs: [] })).rejects.toThrow(/bound to another peer/);
    const recs = await rendezvousCall(attacker, peerIdFromString(relay.peerId), { op: 'lookup', nodeName: 'b' });
    expect(recs.every((r) => r.peerId === bPeerId)).toBe(true);
    expect(JSON.parse(await readFile(join(dir, 'relay', RENDEZVOUS_BINDINGS_FILE), 'utf8'))).toMatchObject({ b: bPeerId });
  });

  it('agents keep their own binding and never trust the impostor as the node', async () => {
    a.directory!.invalidate('b');
    expect(await a.directory!.nodeNameOf(attacker.peerId.toString())).toBeUndefined();
    expect(await tunnelStatus(attacker, a.node!, { proto: 'tcp', nodeName: 'a', serviceKey: 'default/echo', servicePort: 80, ip: '127.0.0.1', port: echoPort })).toBe('unauthorised');
    expect(JSON.parse(await readFile(join(dir, 'a', PEER_BINDINGS_FILE), 'utf8'))).toMatchObject({ b: bPeerId });
  });

  it('a configured relay is a relay, not a node: no access to local endpoints', async () => {
    expect(await tunnelStatus(relay.node, a.node!, { proto: 'tcp', nodeName: 'a', serviceKey: 'default/echo', servicePort: 80, ip: '127.0.0.1', port: echoPort })).toBe('unauthorised');
  });
});
