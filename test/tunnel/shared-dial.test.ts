/**
 * Issue 11 item 5: a peer dial shared by several flows does not carry the first
 * flow's abort signal (one flow's timeout must not fail the others), and the
 * dial's budget is derived from the proxy's connect timeout.
 *
 * IP plan: everything on 127.0.0.1 (loopback is never a direct candidate, so the
 * dial goes through the relay and takes a while — long enough for a 1 ms deadline
 * to expire while it runs).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRegistry } from '../../src/metrics/registry.js';
import { parseConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/util/log.js';
import { TunnelService } from '../../src/tunnel/service.js';
import { startRelayServer, type RelayServerHandle } from '../../src/tunnel/relay-server.js';
import type { Snapshot } from '../../src/catalog/types.js';
import { freePort, snapshot } from './helpers.js';

const logger = silentLogger();

describe('shared peer dial', () => {
  let dir: string;
  let relay: RelayServerHandle;
  let a: TunnelService;
  let b: TunnelService;
  const snap: Snapshot = snapshot([], [{ name: 'a', addresses: [], ready: true }, { name: 'b', addresses: [], ready: true }]);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ew-shared-dial-'));
    const relayPort = await freePort();
    relay = await startRelayServer(parseConfig({ stateDir: join(dir, 'relay'), tunnel: { listenPort: relayPort, dataPort: await freePort(), listenAddresses: ['127.0.0.1'] } }, 'relay.yaml', { nodeName: 'relay' }), logger, createRegistry({ defaultMetrics: false }));
    const agent = async (name: string): Promise<TunnelService> => {
      const config = parseConfig({
        stateDir: join(dir, name), proxy: { connectTimeoutMs: 8000 },
        tunnel: { listenPort: await freePort(), dataPort: await freePort(), listenAddresses: ['127.0.0.1'], relayNodes: [{ nodeName: 'relay', advertiseAddress: [`127.0.0.1:${relayPort}`] }], stateFile: false, directDialTimeoutMs: 6000 },
      }, `${name}.yaml`, { nodeName: name });
      const s = new TunnelService({ config, logger, registry: createRegistry({ defaultMetrics: false }), snapshot: () => snap });
      await s.start();
      return s;
    };
    a = await agent('a');
    b = await agent('b');
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !(b.relays!.reservedRelays().length === 1 && (await a.directory!.resolve('b').then(() => true, () => false)))) {
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await relay?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('derives the dial budget from the proxy connect timeout (direct attempt at most half)', () => {
    expect(a.dialer!.dialTimeouts()).toEqual({ directMs: 4000, totalMs: 8000 });
  });

  it('one flow giving up does not fail the others waiting for the same dial', async () => {
    const bId = (await b.state()).peerId;
    expect(a.node!.getConnections().filter((c) => c.remotePeer.toString() === bId)).toEqual([]);
    const impatient = new AbortController();
    const first = a.dialer!.connection('b', impatient.signal);
    const second = a.dialer!.connection('b');
    impatient.abort(new Error('flow 1 connect timeout'));
    await expect(first).rejects.toThrow(/flow 1 connect timeout/);
    const conn = await second;
    expect(conn.status).toBe('open');
    expect(conn.remotePeer.toString()).toBe(bId);
  });
});
