import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kernelSkipReason, Lab } from './netns.js';
import { buildTopology, IP, type HostName, type Topology } from './topology.js';

const skip = kernelSkipReason();

describe.skipIf(skip !== undefined)('two-LAN NAT topology', () => {
  const lab = new Lab();
  let topo: Topology;
  beforeAll(async () => {
    topo = await buildTopology(lab);
    for (const h of ['relay', 'a2', 'b1'] as const) {
      await lab.spawn(topo.ns[h], process.execPath, ['test/helpers/fixtures/echo-server.mjs', '--id', h, '--port', '7000', '--host', '0.0.0.0']).waitFor(/listening/);
    }
  });
  afterAll(async () => { await lab.destroy(); });

  /** TCP connect from a host; resolves with the address the server saw us as, or 'fail'. */
  const reach = async (from: HostName, ip: string): Promise<string> => {
    const r = await lab.exec(topo.ns[from], process.execPath, ['-e', `
      const s = require('net').connect(7000, '${ip}', () => s.write('peer\\n'));
      const t = setTimeout(() => { console.log('fail'); process.exit(0); }, 1000);
      s.on('data', () => { console.log('ok'); clearTimeout(t); s.destroy(); });
      s.on('error', () => { console.log('fail'); clearTimeout(t); });`]);
    return r.stdout.trim();
  };

  it.each([
    { from: 'a1' as const, to: IP.relay, ok: 'ok', name: 'LAN A → relay through NAT' },
    { from: 'b1' as const, to: IP.relay, ok: 'ok', name: 'LAN B → relay through NAT' },
    { from: 'a1' as const, to: IP.a2, ok: 'ok', name: 'same LAN' },
    { from: 'a1' as const, to: IP.b1, ok: 'fail', name: 'LAN A → LAN B (no route)' },
    { from: 'relay' as const, to: IP.b1, ok: 'fail', name: 'cloud → LAN B' },
    { from: 'a1' as const, to: IP.rbWan, ok: 'fail', name: 'LAN A → rb WAN without a port forward' },
  ])('$name: $ok', async ({ from, to, ok }) => {
    expect(await reach(from, to)).toBe(ok);
  });

  it('a port forward on rb makes b1 reachable on rb WAN, and can be removed', async () => {
    await topo.portForward('rb', 7000, IP.b1);
    expect(await reach('a1', IP.rbWan)).toBe('ok');
    await topo.clearPortForwards('rb');
    expect(await reach('a1', IP.rbWan)).toBe('fail');
  });

  it('masquerades: the relay sees the router WAN address, not the LAN host', async () => {
    // Hold a connection open and look at it from the relay side.
    const probe = lab.exec(topo.ns.a1, process.execPath, ['-e', `const s=require('net').connect(7000,'${IP.relay}'); setTimeout(()=>s.destroy(), 800);`]);
    await new Promise((res) => setTimeout(res, 300));
    const ss = await lab.exec(topo.ns.relay, 'ss', ['-tn']);
    await probe;
    expect(ss.stdout).toContain(IP.raWan);
    expect(ss.stdout).not.toContain(IP.a1);
  });

  /** The address the relay sees for a new connection from a1 bound to source port `port`. */
  const seenAs = async (port: number): Promise<string[]> => {
    const peers = async (): Promise<Set<string>> => {
      const ss = await lab.exec(topo.ns.relay, 'ss', ['-tnH', 'state', 'established', 'dst', IP.raWan]);
      return new Set(ss.stdout.trim().split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/).at(-1)!));
    };
    const before = await peers();
    const probe = lab.spawn(topo.ns.a1, process.execPath, ['-e', `const s=require('net').connect({ port: 7000, host: '${IP.relay}', localPort: ${port} }, () => console.log('connected')); process.on('SIGTERM', () => process.exit(0));`]);
    try {
      await probe.waitFor(/connected/);
      const during = await peers();
      return [...during].filter((p) => !before.has(p));
    } finally {
      await probe.stop();
    }
  };

  it.each([
    { mode: 'cone' as const, port: 41000, keeps: true },
    { mode: 'symmetric' as const, port: 41001, keeps: false },
  ])('ra NAT $mode: the source port is kept = $keeps', async ({ mode, port, keeps }) => {
    await topo.setNat('ra', mode);
    try {
      const seen = await seenAs(port);
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatch(new RegExp(`^${IP.raWan.replaceAll('.', '\\.')}:\\d+$`));
      // fully-random could pick the same port by chance: 1 in ~64k.
      expect(seen[0] === `${IP.raWan}:${port}`, seen[0]).toBe(keeps);
    } finally {
      await topo.setNat('ra', 'cone');
    }
  });
});
