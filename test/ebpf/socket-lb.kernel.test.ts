/**
 * Socket-LB end to end with real sockets: a client namespace whose processes sit in
 * a test cgroup (the only place our programs are attached), backends in another
 * namespace, and NO nftables NAT anywhere: the client namespace has no route to
 * the ClusterIPs at all, so a flow only works when the connect()/sendmsg() hook
 * rewrote it, and nft counter rules on the ClusterIP ranges must stay at zero.
 *
 * The whole suite runs once per BpfBackend (bpftool and the addon's libbpf); a
 * BpftoolBackend is the independent observer of kernel state in both.
 *
 * IP plan (exists only inside this test's namespaces):
 *   client ns  10.1.0.1/24  fd00:1::1/64
 *   backend ns 10.1.0.2/24  fd00:1::2/64   backends b1/b2/b3 on ports 8081/8082/8083 (TCP+UDP, dual stack)
 *   ClusterIPs 10.96.0.0/16, fd00:96::/64 (never routed)
 */
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { SocketLb, listPins } from '../../src/dataplane/ebpf/socket-lb.js';
import { BpftoolBackend, type BpfBackend } from '../../src/dataplane/ebpf/backend.js';
import { BpfCommandError } from '../../src/dataplane/ebpf/errors.js';
import { LibbpfBackend, nativeBpf } from '../../src/dataplane/ebpf/libbpf-backend.js';
import { loadNative } from '../../src/native/addon.js';
import { findCgroup2Root } from '../../src/dataplane/ebpf/host.js';
import { ensureObject } from './object.js';
import { requirement } from '../helpers/skip.js';
import { Lab, kernelSkipReason, run } from '../helpers/netns.js';
import { ep, plan, svcPort } from './plans.js';
import type { Plan } from '../../src/plan/types.js';

const FIX = new URL('../helpers/fixtures/', import.meta.url).pathname;
const HOLD = new URL('./fixtures/hold-client.mjs', import.meta.url).pathname;
const VIP4 = '10.96.0.10';
const VIP4_AFF = '10.96.0.11';
const VIP6 = 'fd00:96::10';
const BACKENDS = [['b1', 8081], ['b2', 8082], ['b3', 8083]] as const;

const skip = requirement('socket-LB kernel tests', kernelSkipReason(), findCgroup2Root() ? undefined : 'no cgroup v2', ensureObject());
const native = nativeBpf();
const libbpfSkip = skip ?? requirement('socket-LB kernel tests via libbpf', native ? undefined : loadNative().bpfReason ?? 'the libbpf addon has no bpf functions (rebuild it)');
const CASES: { name: string; skip: string | undefined; make: () => BpfBackend }[] = [
  { name: 'bpftool', skip, make: () => new BpftoolBackend() },
  { name: 'libbpf (addon)', skip: libbpfSkip, make: () => new LibbpfBackend(native!) },
];

function fullPlan(backends: readonly (readonly [string, number])[] = BACKENDS): Plan {
  const eps4 = backends.map(([, p]) => ep('10.1.0.2', p));
  const eps6 = backends.map(([, p]) => ep('fd00:1::2', p));
  return plan(
    svcPort('web', [VIP4, VIP6], 80, [...eps4, ...eps6]),
    svcPort('dns', [VIP4, VIP6], 53, [...eps4, ...eps6], { protocol: 'UDP' }),
    svcPort('sticky', [VIP4_AFF], 80, eps4, { policy: { kind: 'clientIp', timeoutSeconds: 60 } }),
  );
}

interface ClientResult { counts: Record<string, number>; errors: number; firstError?: string; peers?: Record<string, number> }

describe.each(CASES)('socket-LB (cgroup sock_addr hooks) via $name', (c) => {
  if (c.skip !== undefined) {
    it.skip(`skipped: ${c.skip}`, () => undefined);
    return;
  }
  const backend = c.make();
  const lab = new Lab();
  let client = '';
  let backendNs = '';
  const cgroup = join(findCgroup2Root() ?? '/nonexistent', `edgeway-test-${lab.tag}`);
  const bpffsRoot = `/tmp/ew${lab.tag}bpffs`;
  const pinDir = join(bpffsRoot, 'edgeway');
  let lb: SocketLb;
  const registry = new Registry();

  /** Run whoami-client inside the client namespace and (by default) the test cgroup. */
  async function whoami(args: string[], inCgroup = true): Promise<ClientResult> {
    const argv = [`${FIX}whoami-client.mjs`, ...args.flatMap((a) => a.split(' '))];
    const out = await lab.exec(client, process.execPath, argv, { timeoutMs: 60_000, ...(inCgroup ? { cgroup } : {}) });
    return JSON.parse(out.stdout.trim().split('\n').at(-1)!) as ClientResult;
  }

  async function nftCounters(ns: string): Promise<number> {
    const out = JSON.parse((await lab.exec(ns, 'nft', ['-j', 'list', 'table', 'inet', 'ewtest'])).stdout) as { nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[] };
    let packets = 0;
    for (const o of out.nftables) for (const e of o.rule?.expr ?? []) packets += e.counter?.packets ?? 0;
    return packets;
  }

  beforeAll(async () => {
    client = await lab.ns('c');
    backendNs = await lab.ns('b');
    await lab.link(client, ['10.1.0.1/24', 'fd00:1::1/64'], backendNs, ['10.1.0.2/24', 'fd00:1::2/64']);
    for (const [id, port] of BACKENDS) {
      await lab.spawn(backendNs, process.execPath, [`${FIX}echo-server.mjs`, '--id', id, '--port', String(port), '--udp']).waitFor(/listening/);
    }
    // Counters on every path a ClusterIP packet could take; no NAT anywhere.
    const counters = `table inet ewtest {
      chain out { type filter hook output priority 0; ip daddr 10.96.0.0/16 counter; ip6 daddr fd00:96::/64 counter; }
      chain pre { type filter hook prerouting priority 0; ip daddr 10.96.0.0/16 counter; ip6 daddr fd00:96::/64 counter; }
    }`;
    await lab.exec(client, 'nft', ['-f', '-'], { input: counters });
    await lab.exec(backendNs, 'nft', ['-f', '-'], { input: counters });
    mkdirSync(cgroup);
    lb = new SocketLb({ bpffsRoot, pinDir, cgroup, registry, backend });
    expect(await lb.start()).toBe('fresh');
    // Fresh (empty) maps: nothing attached until the first apply filled them.
    expect(await new BpftoolBackend().attachments(cgroup)).toEqual([]);
    expect(await lb.apply(fullPlan())).toBeGreaterThan(0);
  });

  afterAll(async () => {
    await lab.destroy();
    await lb?.cleanup().catch(() => undefined);
    for (let i = 0; i < 20 && existsSync(cgroup); i++) {
      try { rmdirSync(cgroup); } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    if (existsSync(bpffsRoot)) {
      await run('umount', [bpffsRoot]).catch(() => undefined);
      try { rmdirSync(bpffsRoot); } catch { /* still mounted: reported by the cleanup test */ }
    }
  });

  it('attaches all nine programs to the test cgroup only', async () => {
    const attached = await new BpftoolBackend().attachments(cgroup);
    expect(attached.map((a) => a.name).sort()).toEqual(['ew_sock4_connect', 'ew_sock4_getpeer', 'ew_sock4_recvmsg', 'ew_sock4_sendmsg', 'ew_sock6_connect', 'ew_sock6_getpeer', 'ew_sock6_recvmsg', 'ew_sock6_sendmsg', 'ew_sock_release']);
    expect(lb.status().attached).toBe(9);
  });

  it.each([
    ['TCP v4', [`--host ${VIP4}`, '--port 80'], `${VIP4} 80`],
    ['UDP v4', [`--host ${VIP4}`, '--port 53', '--udp'], `${VIP4} 53`],
    ['TCP v6', [`--host ${VIP6}`, '--port 80'], `${VIP6} 80`],
    ['UDP v6', [`--host ${VIP6}`, '--port 53', '--udp'], `${VIP6} 53`],
    ['TCP v4-mapped on a dual-stack socket', [`--host ::ffff:${VIP4}`, '--port 80'], `::ffff:${VIP4} 80`],
    ['UDP v4-mapped on a dual-stack socket', [`--host ::ffff:${VIP4}`, '--port 53', '--udp'], `::ffff:${VIP4} 53`],
  ])('%s: reaches every backend with no NAT, and the peer is the ClusterIP', async (_n, args, peer) => {
    const revMap = lb.mapPin(peer.includes(':') && !peer.includes('.') ? 'rev6' : 'rev4');
    const revBefore = (await new BpftoolBackend().dump(revMap)).length;
    const r = await whoami([...args, '--n', '60', '--peer']);
    expect(r.errors, r.firstError).toBe(0);
    // Random choice over 3 backends: each gets some of 60 (P(miss one) ≈ 3·(2/3)^60 ≈ 1e-10).
    expect(Object.keys(r.counts).sort()).toEqual(['b1', 'b2', 'b3']);
    for (const n of Object.values(r.counts)) expect(n).toBeGreaterThanOrEqual(5);
    expect(r.peers).toEqual({ [peer]: 60 });
    expect(await nftCounters(client)).toBe(0);
    expect(await nftCounters(backendNs)).toBe(0);
    const revAfter = (await new BpftoolBackend().dump(revMap)).length;
    // Closed TCP sockets leave no reverse entry behind (sock_release hook);
    // unconnected UDP keeps one per socket and backend until LRU eviction.
    if (args.includes('--udp')) expect(revAfter).toBeGreaterThan(revBefore);
    else expect(revAfter).toBe(revBefore);
  });

  it('leaves processes outside the test cgroup alone', async () => {
    const r = await whoami([`--host ${VIP4}`, '--port 80', '--n 1'], false);
    expect(r.errors).toBe(1);
    expect(r.firstError).toBe('ENETUNREACH');
  });

  it('ClientIP affinity keeps one backend per client', async () => {
    const r = await whoami([`--host ${VIP4_AFF}`, '--port 80', '--n 30']);
    expect(r.errors, r.firstError).toBe(0);
    expect(Object.values(r.counts)).toEqual([30]);
    const stats = await lb.stats();
    expect(stats.affinity_hit).toBeGreaterThanOrEqual(29n);
  });

  it('counts translations in the per-CPU map and exports metrics', async () => {
    const stats = await lb.stats();
    expect(stats.translated).toBeGreaterThanOrEqual(360n);
    expect(stats.rev_hit).toBeGreaterThan(0n);
    const text = await registry.metrics();
    expect(text).toMatch(/edgeway_ebpf_programs_attached 9/);
    expect(text).toMatch(/edgeway_ebpf_translations_total\{outcome="translated"\} \d{3,}/);
    expect(text).toMatch(/edgeway_ebpf_map_entries\{map="ew_be4_v1"\} 9/);
  });

  it('a map transaction stops at the first failure, applying what came before, and says why', async () => {
    const be = lb.mapPin('backend4');
    const key = Buffer.from([0xff, 0xff, 0xff, 0x7f]);
    const value = (await backend.dump(be))[0]!.value;
    const err = await backend.mapOps([
      { op: 'update', map: be, key, value },
      { op: 'delete', map: be, key: Buffer.from([0xfe, 0xff, 0xff, 0x7f]) },
      { op: 'delete', map: be, key },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BpfCommandError);
    expect((err as Error).message).toMatch(/No such file or directory|ENOENT/i);
    expect((await backend.dump(be)).some((e) => e.key.equals(key))).toBe(true);
    await backend.mapOps([{ op: 'delete', map: be, key }]);
    expect((await backend.dump(be)).some((e) => e.key.equals(key))).toBe(false);
    // A key of the wrong size is refused before the kernel reads past it.
    await expect(backend.mapOps([{ op: 'delete', map: be, key: Buffer.from([1, 0, 0]) }])).rejects.toBeInstanceOf(BpfCommandError);
  });

  it('backend removal takes effect for new connections', async () => {
    expect(await lb.apply(fullPlan(BACKENDS.slice(0, 2)))).toBeGreaterThan(0);
    const r = await whoami([`--host ${VIP4}`, '--port 80', '--n 40']);
    expect(r.errors, r.firstError).toBe(0);
    expect(Object.keys(r.counts).sort()).toEqual(['b1', 'b2']);
    const r6 = await whoami([`--host ${VIP6}`, '--port 53', '--udp', '--n 40']);
    expect(r6.errors, r6.firstError).toBe(0);
    expect(Object.keys(r6.counts).sort()).toEqual(['b1', 'b2']);
    expect(await lb.apply(fullPlan())).toBeGreaterThan(0);
  });

  it('concurrent apply/reconcile calls run one at a time and converge on the last plan', async () => {
    const [a, b, c] = await Promise.all([lb.apply(fullPlan(BACKENDS.slice(0, 1))), lb.reconcile(), lb.apply(fullPlan())]);
    expect(a).toBeGreaterThan(0);
    expect(b).toBe(0);
    expect(c).toBeGreaterThan(0);
    expect(await lb.apply(fullPlan())).toBe(0);
    const r = await whoami([`--host ${VIP4}`, '--port 80', '--n 30']);
    expect(Object.keys(r.counts).sort()).toEqual(['b1', 'b2', 'b3']);
  });

  it('reconcile repairs a detached program and a deleted service entry', async () => {
    const bpf = new BpftoolBackend();
    await bpf.detach(cgroup, 'cgroup_inet4_connect', lb.progPin('ew_sock4_connect'));
    const master = (await bpf.dump(lb.mapPin('svc4'))).find((e) => e.key.readUInt16LE(8) === 0)!;
    await bpf.mapOps([{ op: 'delete', map: lb.mapPin('svc4'), key: master.key }]);
    expect((await whoami([`--host ${VIP4}`, '--port 80', '--n 1'])).firstError).toBe('ENETUNREACH');
    expect(await lb.reconcile()).toBe(1);
    expect((await bpf.attachments(cgroup)).length).toBe(9);
    const r = await whoami([`--host ${VIP4}`, '--port 80', '--n 5']);
    const r2 = await whoami([`--host ${VIP4_AFF}`, '--port 80', '--n 5']);
    expect(r.errors + r2.errors).toBe(0);
    expect(await lb.reconcile()).toBe(0);
  });

  it('agent restart: a new instance restores from the pins, writes nothing, and flows keep going', async () => {
    const hold = lab.spawn(client, process.execPath, [HOLD, '--host', VIP4, '--port', '80', '--interval', '50'], process.env, { cgroup });
    const first = await hold.waitFor(/^reply /);
    expect(first).toMatch(new RegExp(`^reply b\\d ${VIP4.replaceAll('.', '\\.')} 80$`));
    const before = (await lb.stats()).translated;

    // The old controller object is dropped without cleanup (process exit), a new one takes over.
    await lb.stop();
    lb = new SocketLb({ bpffsRoot, pinDir, cgroup, backend });
    expect(await lb.start()).toBe('restored');
    expect(await lb.apply(fullPlan())).toBe(0);
    expect(lb.status()).toMatchObject({ attached: 9, frontends: 5, backends: 15 });

    const seen = hold.lines.length;
    await new Promise((r) => setTimeout(r, 500));
    expect(hold.lines.slice(seen).filter((l) => l.startsWith('error'))).toEqual([]);
    expect(hold.lines.length - seen).toBeGreaterThanOrEqual(3);
    expect(new Set(hold.lines.map((l) => l.split(' ')[1])).size).toBe(1);
    const r = await whoami([`--host ${VIP4}`, '--port 80', '--n 10']);
    expect(r.errors, r.firstError).toBe(0);
    expect((await lb.stats()).translated).toBeGreaterThanOrEqual(before + 10n);
    await hold.stop();
  });

  it('reloads programs over kept maps when program pins are gone', async () => {
    await run('rm', ['-rf', join(pinDir, 'progs')]);
    const again = new SocketLb({ bpffsRoot, pinDir, cgroup, backend });
    expect(await again.start()).toBe('reloaded');
    expect(await again.apply(fullPlan())).toBe(0);
    // The old programs (pins gone) were replaced, not stacked.
    expect((await new BpftoolBackend().attachments(cgroup)).length).toBe(9);
    const r = await whoami([`--host ${VIP4}`, '--port 80', '--n 10']);
    expect(r.errors, r.firstError).toBe(0);
    lb = again;
  });

  it('pins lost (new bpffs): a new instance adopts the attached programs and their maps', async () => {
    const bpf = new BpftoolBackend();
    const oldIds = (await bpf.attachments(cgroup)).map((a) => a.id).sort();
    const sticky = Object.keys((await whoami([`--host ${VIP4_AFF}`, '--port 80', '--n 1'])).counts);
    await run('umount', [bpffsRoot]);
    const adopted = new SocketLb({ bpffsRoot, pinDir, cgroup, backend });
    expect(await adopted.start()).toBe('adopted');
    expect(await adopted.apply(fullPlan())).toBe(0);
    expect((await bpf.attachments(cgroup)).map((a) => a.id).sort()).toEqual(oldIds);
    expect(listPins(pinDir).length).toBe(17);
    // Same maps: the affinity entry made before the restart still holds.
    const r = await whoami([`--host ${VIP4_AFF}`, '--port 80', '--n 5']);
    expect(r.errors, r.firstError).toBe(0);
    expect(Object.keys(r.counts)).toEqual(sticky);
    lb = adopted;
  });

  it('pins lost and the set incomplete: old programs serve until a fresh load replaces them', async () => {
    const bpf = new BpftoolBackend();
    await bpf.detach(cgroup, 'cgroup_inet_sock_release', lb.progPin('ew_sock_release'));
    const oldIds = (await bpf.attachments(cgroup)).map((a) => a.id).sort();
    expect(oldIds.length).toBe(8);
    await run('umount', [bpffsRoot]);
    const fresh = new SocketLb({ bpffsRoot, pinDir, cgroup, backend });
    expect(await fresh.start()).toBe('fresh');
    // The old attachments (and the maps they hold) still serve before the first apply.
    expect((await bpf.attachments(cgroup)).map((a) => a.id).sort()).toEqual(oldIds);
    expect((await whoami([`--host ${VIP4}`, '--port 80', '--n 5'])).errors).toBe(0);
    expect(await fresh.apply(fullPlan())).toBeGreaterThan(0);
    const now = await bpf.attachments(cgroup);
    expect(now.length).toBe(9);
    expect(now.some((a) => oldIds.includes(a.id))).toBe(false);
    const r = await whoami([`--host ${VIP4}`, '--port 80', '--n 10']);
    expect(r.errors, r.firstError).toBe(0);
    lb = fresh;
  });

  it('cleanup removes programs, attachments and pins', async () => {
    expect(listPins(pinDir).length).toBe(17);
    await lb.cleanup();
    expect(await new BpftoolBackend().attachments(cgroup)).toEqual([]);
    expect(existsSync(pinDir)).toBe(false);
    const r = await whoami([`--host ${VIP4}`, '--port 80', '--n 1']);
    expect(r.firstError).toBe('ENETUNREACH');
    await lb.cleanup(); // idempotent
  });
});

