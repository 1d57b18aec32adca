/**
 * DNS served by worker threads on SO_REUSEPORT sockets (src/dns/workers.ts), over
 * real UDP/TCP sockets on 127.0.0.1 (port 0), on both UDP paths (dgram, batched):
 * every worker answers and follows a catalog change, hostile packets are dropped
 * and counted across workers, counters reach the registry, and an agent with
 * workers exits 0 on SIGTERM.
 * IP plan: cluster names of fixtures.ts only (10.96.x answers, never contacted);
 * nothing leaves loopback. Needs dist/ (the worker runs compiled JS; built here if stale).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { DnsWorkers } from '../../src/dns/workers.js';
import { DnsMetrics } from '../../src/dns/metrics.js';
import { reusePort } from '../../src/dns/reuse-port.js';
import { createRegistry } from '../../src/metrics/registry.js';
import { silentLogger } from '../../src/util/log.js';
import { AgentProcess, ensureBuilt } from '../helpers/agent-process.js';
import { requirement } from '../helpers/skip.js';
import { CATALOG, query, snapshot, svc, UDP_MODES, writeDnsAgentConfig } from './fixtures.js';
import { udpExchange } from './upstream.js';

const ZOPTS = { domain: 'cluster.local', ttl: 30, negativeTtl: 5 };
const WEB = 'web.default.svc.cluster.local';
const reuse = reusePort();
const skip = requirement('dns worker threads', reuse.ok ? undefined : reuse.reason);

/** One datagram from a fresh socket (a new source port: the kernel's reuseport hash picks a worker). */
function fire(port: number, pkt: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.send(pkt, port, '127.0.0.1', () => { s.close(); resolve(); });
  });
}

const ipsOf = (b: Buffer): string[] => (dnsPacket.decode(b).answers ?? []).filter((a) => a.type === 'A').map((a) => String((a as { data: unknown }).data));

describe.skipIf(!!skip).each(UDP_MODES)('dns workers, UDP $udp', ({ batch }) => {
  const registry = createRegistry({ defaultMetrics: false });
  let pool: DnsWorkers;
  let port = 0;

  beforeAll(async () => {
    await ensureBuilt();
    const metrics = new DnsMetrics(registry, { cacheEntries: () => pool.cacheEntries, tcpConnections: () => pool.tcpConnections, pull: () => pool.pull() });
    pool = new DnsWorkers({
      count: 2, listen: ['127.0.0.1:0'], snapshot: CATALOG, zone: ZOPTS, upstreams: [], upstreamTimeoutMs: 500, cacheSize: 100,
      maxTcpConnections: 8, logger: silentLogger(), metrics, openUdpFd: reuse.ok ? reuse.openUdpFd : undefined, batch: batch !== undefined,
    });
    await pool.start();
    port = pool.addresses().find((a) => a.proto === 'udp')!.port;
  }, 180_000); // ensureBuilt may compile dist/ first
  afterAll(async () => { await pool?.stop(); });

  /** Ask for `name` and find which worker answered (its query count rose). */
  async function ask(name: string): Promise<{ worker: number; ips: string[] }> {
    await pool.pull();
    const before = pool.workerQueries();
    const ips = ipsOf(await udpExchange(port, query(name, 'A'), 5000));
    await pool.pull();
    const after = pool.workerQueries();
    const rose = after.flatMap((n, i) => (n > before[i]! ? [i] : []));
    expect(rose, 'exactly one worker counted the query').toHaveLength(1);
    return { worker: rose[0]!, ips };
  }

  it('answers from every worker, and every worker follows a catalog change', async () => {
    expect(pool.count).toBe(2);
    const seen = new Set<number>();
    for (let i = 0; i < 200 && seen.size < 2; i++) {
      const r = await ask(WEB);
      expect(r.ips).toEqual(['10.96.0.10']);
      seen.add(r.worker);
    }
    expect([...seen].sort()).toEqual([0, 1]);

    // web moves to another cluster IP; each worker must switch, and never go back.
    const moved = snapshot(CATALOG.services.map((s) => (s.name === 'web' ? svc('default', 'web', { ...s, clusterIPs: ['10.96.0.99'] }) : s)), CATALOG.revision + 1);
    pool.setSnapshot(moved);
    const switched = new Set<number>();
    for (let i = 0; i < 400 && switched.size < 2; i++) {
      const r = await ask(WEB);
      if (switched.has(r.worker)) expect(r.ips, `worker ${r.worker} after its switch`).toEqual(['10.96.0.99']);
      else if (r.ips[0] === '10.96.0.99') switched.add(r.worker);
      else expect(r.ips).toEqual(['10.96.0.10']);
    }
    expect([...switched].sort()).toEqual([0, 1]);
  });

  it('drops and counts hostile packets on every worker, and still answers', async () => {
    const metric = async (reason: string): Promise<number> => {
      const m = new RegExp(`edgeway_dns_dropped_packets_total\\{reason="${reason}"\\} (\\d+)`).exec(await registry.metrics());
      return m ? Number(m[1]) : 0;
    };
    const start = { short: await metric('short'), response: await metric('response'), oversize: await metric('oversize') };
    const N = 40;
    const answer = query(WEB, 'A');
    answer.writeUInt16BE(answer.readUInt16BE(2) | 0x8000, 2); // QR set: a response, never answered (no reflection)
    for (let i = 0; i < N; i++) {
      await fire(port, Buffer.from([1, 2, 3, 4, 5]));
      await fire(port, answer);
      await fire(port, Buffer.alloc(5000, 7));
    }
    let got = { short: 0, response: 0, oversize: 0 };
    for (let i = 0; i < 100; i++) {
      got = { short: await metric('short') - start.short, response: await metric('response') - start.response, oversize: await metric('oversize') - start.oversize };
      if (got.short >= N && got.response >= N && got.oversize >= N) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(got).toEqual({ short: N, response: N, oversize: N });
    expect((await ask(WEB)).ips.length).toBe(1);
  });

  it('serves TCP from the first worker and exports the merged counters', async () => {
    const tcp = pool.addresses().find((a) => a.proto === 'tcp')!;
    expect(tcp.port).toBe(port);
    const { execFile } = await import('node:child_process');
    const out = await new Promise<string>((resolve, reject) => execFile('dig', ['@127.0.0.1', '-p', String(port), '+tcp', '+short', '+time=3', '+tries=1', 'plain.prod.svc.cluster.local'], (err, stdout) => (err ? reject(err) : resolve(stdout))));
    expect(out.trim()).toBe('10.96.0.20');
    await pool.pull();
    const total = pool.workerQueries().reduce((a, b) => a + b, 0);
    const text = await registry.metrics();
    const exported = [...text.matchAll(/^edgeway_dns_queries_total\{[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
    expect(exported).toBe(total);
    expect(total).toBeGreaterThan(2);
  });
});

describe.skipIf(!!skip)('agent with dns workers', () => {
  let dir = '';
  afterAll(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

  it('answers through its workers and exits 0 on SIGTERM', { timeout: 180_000 }, async () => {
    await ensureBuilt();
    dir = await mkdtemp(join(tmpdir(), 'ew-dns-w-'));
    const cfg = await writeDnsAgentConfig(dir, '{ listen: ["127.0.0.1:0"], upstreams: ["127.0.0.1:9"], workers: 2 }', '127.0.0.1:0');
    const agent = await AgentProcess.start(cfg, 30_000);
    try {
      let serving: Record<string, unknown> | undefined;
      for (let i = 0; i < 100 && !serving; i++) {
        serving = agent.logs.find((l) => l.msg === 'dns serving') as Record<string, unknown> | undefined;
        if (!serving) await new Promise((r) => setTimeout(r, 100));
      }
      expect(serving?.workers).toBe(2);
      const dnsPort = Number(/:(\d+)$/.exec(String((serving!.listen as string[])[0]))![1]);
      let ips: string[] = [];
      for (let i = 0; i < 50 && ips.length === 0; i++) {
        ips = ipsOf(await udpExchange(dnsPort, query('web.default.svc.cluster.local', 'A'), 2000).catch(() => dnsPacket.encode({ type: 'response' })));
        if (ips.length === 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect(ips).toEqual(['10.96.0.10']);
      expect((await agent.get('/metrics')).text).toMatch(/edgeway_dns_queries_total\{qtype="A",rcode="NOERROR",source="zone"\} [1-9]/);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });
});
