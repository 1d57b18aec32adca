/**
 * TCP hole punching across two NATs, no port forwards: `edgeway relay` in the cloud,
 * and on a1 (LAN A) and b1 (LAN B) the real libp2p tunnel node with the hole
 * puncher (test/tunnel/fixtures/punch-peer.mjs). a1 reaches b1 through the relay,
 * punches, and the punched socket must be a direct TCP connection between the two
 * NATs' public sides (from both ends' socket state and a1's kernel socket table).
 * Then the relay is killed and the same socket keeps carrying seeded random data
 * with sha256 intact. With rb's NAT symmetric (fully-random ports) the punch fails,
 * is counted, and data still goes through the relay intact.
 *
 * Topology and IP plan: test/helpers/topology.ts (LAN A 10.1.0.0/24 behind ra WAN
 * 10.200.1.2, LAN B 10.2.0.0/24 behind rb WAN 10.200.2.2, relay 10.200.0.10; all
 * inside the lab's namespaces). Data ports 20107 (cone) and 20108 (symmetric).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, kernelSkipReason, type ExitResult, type NsProcess } from '../helpers/netns.js';
import { buildTopology, IP, type Topology } from '../helpers/topology.js';
import { prng } from '../helpers/prng.js';
import { requirement } from '../helpers/skip.js';
import { loadNative } from '../../src/native/addon.js';
import { punchUnavailableReason } from '../../src/tunnel/punch/sockets.js';

// Without the addon there is no punching (that path is tested in test/tunnel/punch.test.ts).
const skip = requirement('hole-punch e2e', kernelSkipReason(), existsSync('dist/cli/main.js') ? undefined : 'dist/ missing: run `npm run build` first',
  punchUnavailableReason(loadNative()));
const node = process.execPath;
const PORT = 20006;
const PEER = 'test/tunnel/fixtures/punch-peer.mjs';

type Event = Record<string, unknown>;
/** The JSON of the first "<event> {...}" line. */
const event = async (p: NsProcess, name: string, timeoutMs = 60_000): Promise<Event> =>
  JSON.parse((await p.waitFor(new RegExp(`^${name} `), timeoutMs)).slice(name.length + 1)) as Event;

/** SIGTERM and how it ended (a busy box gets 20 s before SIGKILL). */
const exitCode = (p: NsProcess): Promise<ExitResult> => p.exit(20_000);

describe.skipIf(!!skip)('TCP hole punching through two NATs', () => {
  const lab = new Lab();
  let topo: Topology;
  let dir = '';
  let data: Buffer;
  let dataSha = '';

  let relayProc: NsProcess | undefined;
  const startRelay = async (): Promise<{ proc: NsProcess; ma: string }> => {
    // A relay left running by a failed test holds the ports.
    await relayProc?.stop();
    const proc = lab.spawn(topo.ns.relay, node, ['bin/edgeway.js', 'relay', '--config', join(dir, 'relay.json')]);
    relayProc = proc;
    const line = await proc.waitFor(/^relay /, 90_000);
    return { proc, ma: `/ip4/${IP.relay}/tcp/${PORT}/p2p/${line.split(' ')[1]!}` };
  };
  const startPair = async (relayMa: string, dataPort: number): Promise<{ a: NsProcess; b: NsProcess }> => {
    const b = lab.spawn(topo.ns.b1, node, [PEER, '--relay', relayMa, '--data-port', String(dataPort)]);
    const bReady = await event(b, 'ready');
    const a = lab.spawn(topo.ns.a1, node, [PEER, '--relay', relayMa, '--data-port', String(dataPort), '--peer', String(bReady.peerId), '--file', join(dir, 'data.bin')]);
    const aReady = await event(a, 'ready');
    // Each side learnt its public (NAT WAN) address from the relay.
    expect(aReady.observed).toEqual([IP.raWan]);
    expect(bReady.observed).toEqual([IP.rbWan]);
    return { a, b };
  };

  beforeAll(async () => {
    // Both routers masquerade with a stateful firewall (unsolicited SYNs dropped, as a
    // home router does); no port forwards.
    topo = await buildTopology(lab, { firewall: true });
    dir = await mkdtemp(join(tmpdir(), 'ew-holepunch-'));
    const rnd = prng(0x5eed12);
    data = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(rnd() * 256);
    dataSha = createHash('sha256').update(data).digest('hex');
    await writeFile(join(dir, 'data.bin'), data);
    await writeFile(join(dir, 'relay.json'), JSON.stringify({
      nodeName: 'relay', stateDir: join(dir, 'relay'), log: { level: 'warn' }, metrics: { listen: '' },
      sources: { kubernetes: { enabled: false } }, dataplane: { mode: 'none' }, dns: { enabled: false },
      tunnel: { listenPort: PORT },
    }));
  }, 60_000);

  afterAll(async () => {
    await lab.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('cone NATs: relayed → hole-punched; the relay dies and the direct socket keeps the data intact', async () => {
    const relay = await startRelay();
    const { a, b } = await startPair(relay.ma, 20107);
    expect(String((await event(a, 'relayed')).remote)).toContain('/p2p-circuit');

    const punched = await event(a, 'punched');
    const served = await event(b, 'punched');
    // A figure for the report, never a gate: time from asking to a connected socket.
    console.log(`hole punch took ${String(punched.ms)} ms (busy shared box)`);
    // Direct between the NATs' public sides: a1 from a fresh port to b1's data port;
    // b1 sees a1's port unchanged through ra (masquerade kept it).
    const aPort = /^10\.1\.0\.2:(\d+)$/.exec(String(punched.local))?.[1];
    expect(aPort, String(punched.local)).toBeDefined();
    expect(punched.remote).toBe(`${IP.rbWan}:20107`);
    expect(served).toMatchObject({ local: `${IP.b1}:20107`, remote: `${IP.raWan}:${aPort!}` });
    expect(new Set([punched.role, served.role])).toEqual(new Set(['client', 'server']));
    expect(punched.counts).toContainEqual(expect.objectContaining({ labels: { side: 'outbound', result: 'ok' }, value: 1 }));
    // The kernel agrees: a1 holds an established TCP socket to rb's WAN address.
    const ss = await lab.exec(topo.ns.a1, 'ss', ['-tnH', 'state', 'established', 'src', `${IP.a1}:${aPort!}`]);
    expect(ss.stdout).toContain(`${IP.rbWan}:20107`);

    expect(await event(a, 'echo')).toEqual({ n: 1, bytes: data.length, sha256: dataSha });
    expect(await event(b, 'recv')).toEqual({ bytes: data.length, sha256: dataSha });

    expect(await exitCode(relay.proc)).toBe(0);
    await event(a, 'relay-gone', 90_000);
    await a.waitFor(/^echo \{"n":2/, 60_000);
    expect(a.lines.filter((l) => l.startsWith('echo ')).map((l) => JSON.parse(l.slice(5)) as Event)).toEqual([
      { n: 1, bytes: data.length, sha256: dataSha }, { n: 2, bytes: data.length, sha256: dataSha },
    ]);
    expect(b.lines.filter((l) => l.startsWith('recv ')).map((l) => JSON.parse(l.slice(5)) as Event)).toEqual([
      { bytes: data.length, sha256: dataSha }, { bytes: data.length, sha256: dataSha },
    ]);
    expect(await exitCode(a)).toBe(0);
    expect(await exitCode(b)).toBe(0);
  }, 240_000);

  it('symmetric NAT on rb: the punch fails cleanly, is counted, and data stays relayed and intact', async () => {
    await topo.setNat('rb', 'symmetric');
    try {
      const relay = await startRelay();
      const { a, b } = await startPair(relay.ma, 20108);
      const failed = await event(a, 'punch-failed', 120_000);
      expect(failed).toMatchObject({ reason: 'failed', code: 'ERR_TUNNEL_PUNCH' });
      console.log(`failed hole punch gave up after ${String(failed.ms)} ms (3 attempts)`);
      expect(failed.counts).toContainEqual(expect.objectContaining({ labels: { side: 'outbound', result: 'failed' }, value: 1 }));
      expect(await event(a, 'relayed-echo')).toEqual({ bytes: data.length, sha256: dataSha });
      expect(b.lines.some((l) => l.startsWith('punched '))).toBe(false);
      expect(await exitCode(a)).toBe(0);
      expect(await exitCode(b)).toBe(0);
      expect(await exitCode(relay.proc)).toBe(0);
    } finally {
      await topo.setNat('rb', 'cone');
    }
  }, 240_000);
});
