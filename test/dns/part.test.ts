/**
 * The agent part and upstream selection: resolv.conf parsing, loop refusal, zone
 * following store snapshots (SERVFAIL before the first one), metrics registered.
 * IP plan: loopback only; resolv.conf contents are test files.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { configSchema, type Config } from '../../src/config/schema.js';
import { createDnsPart, dnsWorkerCount, type DnsPart } from '../../src/dns/part.js';
import { dgramReusePort } from '../../src/dns/reuse-port.js';
import { chooseUpstreams, parseResolvConf } from '../../src/dns/upstreams.js';
import { addressesNeedingInterface } from '../../src/dns/interface.js';
import { createRegistry } from '../../src/metrics/registry.js';
import { emptySnapshot, type Snapshot } from '../../src/catalog/types.js';
import { silentLogger } from '../../src/util/log.js';
import { CATALOG, query } from './fixtures.js';
import { startUpstream, udpExchange } from './upstream.js';

describe('upstream choice', () => {
  it('parses nameserver lines, dropping scope ids and comments', () => {
    expect(parseResolvConf('# c\nsearch a.b\nnameserver 10.0.0.2\nnameserver fe80::1%eth0 ; x\nnameserver bogus\noptions ndots:5\n')).toEqual([
      { host: '10.0.0.2', port: 53 }, { host: 'fe80::1', port: 53 },
    ]);
  });

  it.each([
    { name: 'configured upstreams win', configured: ['10.0.0.9:5353'], listen: ['169.254.96.16:53'], resolv: 'nameserver 10.0.0.2', want: ['10.0.0.9:5353'], refused: [] },
    { name: 'resolv.conf minus our own address', configured: [], listen: ['169.254.96.16:53'], resolv: 'nameserver 169.254.96.16\nnameserver 10.0.0.2', want: ['10.0.0.2:53'], refused: ['169.254.96.16:53'] },
    { name: 'a configured loop is refused', configured: ['127.0.0.1:5300', '10.0.0.3'], listen: ['127.0.0.1:5300'], resolv: '', want: ['10.0.0.3:53'], refused: ['127.0.0.1:5300'] },
    { name: 'same IP, other port is not us', configured: ['127.0.0.1:53'], listen: ['127.0.0.1:5300'], resolv: '', want: ['127.0.0.1:53'], refused: [] },
    { name: 'a wildcard listener is every local address', configured: [], listen: ['0.0.0.0:53'], resolv: 'nameserver 127.0.0.53\nnameserver 10.0.0.2', want: ['10.0.0.2:53'], refused: ['127.0.0.53:53'] },
  ])('$name', async ({ configured, listen, resolv, want, refused }) => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-dns-'));
    try {
      await writeFile(join(dir, 'resolv.conf'), resolv);
      const c = await chooseUpstreams(configured, listen, join(dir, 'resolv.conf'));
      expect(c.upstreams.map((u) => `${u.host}:${u.port}`)).toEqual(want);
      expect(c.refused).toEqual(refused);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('puts only unassigned, non-loopback addresses on the dummy interface', () => {
    expect(addressesNeedingInterface(['169.254.96.16:53', '127.0.0.1:53', '[::1]:53', '10.1.1.1:53', '0.0.0.0:53'], new Set(['10.1.1.1']))).toEqual(['169.254.96.16']);
  });
});

describe('dns threads', () => {
  it.each([
    { name: 'auto with batched UDP: the main thread', setting: 'auto' as const, batched: true, cores: 4, want: 1 },
    { name: 'auto with dgram only: one per core', setting: 'auto' as const, batched: false, cores: 4, want: 4 },
    { name: 'an explicit count wins', setting: 3, batched: true, cores: 2, want: 3 },
  ])('$name', ({ setting, batched, cores, want }) => {
    expect(dnsWorkerCount(setting, batched, cores)).toBe(want);
  });

  it.each([
    { version: '20.20.2', want: false }, { version: '22.11.0', want: false }, { version: '22.12.0', want: true },
    { version: '23.0.0', want: false }, { version: '23.1.0', want: true }, { version: '24.0.0', want: true },
  ])('dgram reusePort on Node $version: $want', ({ version, want }) => {
    expect(dgramReusePort(version)).toBe(want);
  });
});

class FakeStore extends EventEmitter<{ snapshot: [Snapshot] }> {
  snapshot: Snapshot = emptySnapshot();
}

describe('dns agent part', () => {
  let part: DnsPart | undefined;
  afterEach(async () => { await part?.stop(); part = undefined; });

  it('is absent when disabled', async () => {
    const config = { ...configSchema.parse({ dns: { enabled: false } }), nodeName: 'n1' } as Config;
    expect(await createDnsPart({ config, logger: silentLogger(), registry: createRegistry({ defaultMetrics: false }), store: new FakeStore() })).toBeUndefined();
  });

  it('follows store snapshots, forwards the rest, and exports metrics', async () => {
    const up = await startUpstream({ 'www.example': [{ name: 'www.example', type: 'A', ttl: 60, data: '192.0.2.10' }] });
    try {
      const config = { ...configSchema.parse({ dns: { listen: ['127.0.0.1:0'], upstreams: [`127.0.0.1:${up.port}`] } }), nodeName: 'n1' } as Config;
      const registry = createRegistry({ defaultMetrics: false });
      const store = new FakeStore();
      part = await createDnsPart({ config, logger: silentLogger(), registry, store });
      await part!.start();
      expect(part!.readiness.check()).toMatchObject({ ready: true });
      const port = part!.server!.addresses()[0]!.port;
      const ask = async (n: string): Promise<ReturnType<typeof dnsPacket.decode> & { rcode?: string }> => dnsPacket.decode(await udpExchange(port, query(n, 'A')));
      // Before the first snapshot: SERVFAIL, not a cacheable NXDOMAIN.
      expect((await ask('web.default.svc.cluster.local')).rcode).toBe('SERVFAIL');
      store.snapshot = CATALOG;
      store.emit('snapshot', CATALOG);
      expect((await ask('web.default.svc.cluster.local')).answers?.map((a) => (a as { data: string }).data)).toEqual(['10.96.0.10']);
      expect((await ask('www.example')).answers?.map((a) => (a as { data: string }).data)).toEqual(['192.0.2.10']);
      const text = await registry.metrics();
      expect(text).toMatch(/edgeway_dns_queries_total\{qtype="A",rcode="NOERROR",source="zone"\} 1/);
      expect(text).toMatch(/edgeway_dns_queries_total\{qtype="A",rcode="SERVFAIL",source="zone"\} 1/);
      expect(text).toMatch(/edgeway_dns_upstream_latency_seconds_count\{upstream="127.0.0.1:\d+",outcome="ok"\} 1/);
      expect(text).toMatch(/edgeway_dns_cache_lookups_total\{result="miss"\} 1/);
    } finally {
      await up.close();
    }
  });
});

describe('dns interface', () => {
  it.each([
    {
      name: 'dummy where the kernel has it',
      fail: [] as RegExp[],
      want: ['ip link show dev ew-t0', 'ip link add ew-t0 type dummy', 'ip addr replace 169.254.96.16/32 dev ew-t0', 'ip link set ew-t0 up', 'ip link del ew-t0'],
      kind: 'dummy',
    },
    {
      name: 'a port-less bridge where dummy is unknown',
      fail: [/type dummy/],
      want: ['ip link show dev ew-t0', 'ip link add ew-t0 type dummy', 'ip link add ew-t0 type bridge', 'ip addr replace 169.254.96.16/32 dev ew-t0', 'ip link set ew-t0 up', 'ip link del ew-t0'],
      kind: 'bridge',
    },
  ])('$name', async ({ fail, want, kind }) => {
    const { DnsInterface } = await import('../../src/dns/interface.js');
    const calls: string[] = [];
    const exec = async (cmd: string, args: readonly string[]): Promise<void> => {
      const line = [cmd, ...args].join(' ');
      calls.push(line);
      if (line.startsWith('ip link show')) throw new Error('Device "ew-t0" does not exist.');
      if (fail.some((re) => re.test(line))) throw new Error('Error: Unknown device type.');
    };
    const iface = new DnsInterface('ew-t0', ['169.254.96.16:53', '127.0.0.1:53'], exec);
    expect(await iface.ensure()).toEqual(['169.254.96.16']);
    expect(iface.kind).toBe(kind);
    await iface.remove();
    await iface.remove(); // idempotent: nothing more
    expect(calls).toEqual(want);
  });

  it('touches nothing when every listen address is loopback', async () => {
    const { DnsInterface } = await import('../../src/dns/interface.js');
    const calls: string[] = [];
    const iface = new DnsInterface('ew-t1', ['127.0.0.1:53', '[::1]:53'], async (c, a) => { calls.push([c, ...a].join(' ')); });
    expect(await iface.ensure()).toEqual([]);
    await iface.remove();
    expect(calls).toEqual([]);
  });
});
