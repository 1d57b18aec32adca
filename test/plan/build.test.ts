/**
 * Plan builder. IP plan: cluster IPs 10.96.0.0/16 (fd00:96::/64), pods on this node
 * (edge-1, zone-a) 10.244.1.0/24, pods on edge-2 (zone-b) 10.244.2.0/24 — routable
 * when 10.244.2.0/24 is in routableCIDRs — and edge-3 (zone-a) 10.244.3.0/24.
 */
import { describe, expect, it } from 'vitest';
import { allocateUserspacePorts, buildPlan, type PlanOptions } from '../../src/plan/build.js';
import type { Endpoint, Service, Snapshot } from '../../src/catalog/types.js';
import { SNAPSHOT_VERSION } from '../../src/catalog/types.js';

const opts: PlanOptions = { nodeName: 'edge-1', routableCIDRs: [], userspacePorts: '20100-24999', mode: 'nftables' };

function ep(ip: string, over: Partial<Endpoint> = {}): Endpoint {
  return { ip, family: ip.includes(':') ? 6 : 4, ready: true, serving: true, terminating: false, zoneHints: [], ports: [{ name: 'http', protocol: 'TCP', port: 8080 }], ...over };
}

function svc(over: Partial<Service> = {}): Service {
  return {
    namespace: 'default', name: 'web', key: 'default/web', type: 'ClusterIP', clusterIPs: ['10.96.0.10'], headless: false,
    ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }], sessionAffinity: { kind: 'None' }, internalTrafficPolicy: 'Cluster',
    endpoints: [ep('10.244.1.5', { nodeName: 'edge-1', zone: 'zone-a' })], ...over,
  };
}

function snap(services: Service[]): Snapshot {
  return {
    version: SNAPSHOT_VERSION, revision: 7, builtAt: '', origin: 'live', services,
    nodes: [{ name: 'edge-1', addresses: [], zone: 'zone-a', ready: true }, { name: 'edge-2', addresses: [], zone: 'zone-b', ready: true }],
  };
}

describe('buildPlan', () => {
  it.each([
    { name: 'local endpoint → kernel DNAT', s: svc(), o: {}, target: 'kernel', eps: ['10.244.1.5:8080/local'] },
    { name: 'remote endpoint → userspace', s: svc({ endpoints: [ep('10.244.2.7', { nodeName: 'edge-2' })] }), o: {}, target: 'userspace', eps: ['10.244.2.7:8080/remote'], reason: 'remote-endpoints' },
    { name: 'routable endpoint → kernel', s: svc({ endpoints: [ep('10.244.2.7', { nodeName: 'edge-2' })] }), o: { routableCIDRs: ['10.244.2.0/24'] }, target: 'kernel', eps: ['10.244.2.7:8080/routable'] },
    { name: 'endpoint without node → routable', s: svc({ endpoints: [ep('10.1.2.3')] }), o: {}, target: 'kernel', eps: ['10.1.2.3:8080/routable'] },
    { name: 'no endpoints → reject', s: svc({ endpoints: [] }), o: {}, target: 'reject', eps: [] },
    { name: 'not ready, not serving → reject', s: svc({ endpoints: [ep('10.244.1.5', { ready: false, serving: false })] }), o: {}, target: 'reject', eps: [] },
    {
      name: 'ready wins over terminating',
      s: svc({ endpoints: [ep('10.244.1.5', { nodeName: 'edge-1' }), ep('10.244.1.6', { nodeName: 'edge-1', ready: false, serving: true, terminating: true })] }),
      o: {}, target: 'kernel', eps: ['10.244.1.5:8080/local'],
    },
    {
      name: 'serving-terminating only when none ready',
      s: svc({ endpoints: [ep('10.244.1.6', { nodeName: 'edge-1', ready: false, serving: true, terminating: true }), ep('10.244.1.7', { ready: false, serving: false })] }),
      o: {}, target: 'kernel', eps: ['10.244.1.6:8080/local'], notReady: true,
    },
    {
      name: 'zone hints for this zone',
      s: svc({ endpoints: [ep('10.244.1.5', { nodeName: 'edge-1', zoneHints: ['zone-a'] }), ep('10.244.2.7', { nodeName: 'edge-2', zoneHints: ['zone-b'] })] }),
      o: {}, target: 'kernel', eps: ['10.244.1.5:8080/local'],
    },
    {
      name: 'hints ignored unless every endpoint has one',
      s: svc({ endpoints: [ep('10.244.1.5', { nodeName: 'edge-1', zoneHints: ['zone-a'] }), ep('10.244.3.7', { nodeName: 'edge-3' })] }),
      o: { routableCIDRs: ['10.244.0.0/16'] }, target: 'kernel', eps: ['10.244.1.5:8080/local', '10.244.3.7:8080/routable'],
    },
    {
      name: 'PreferClose keeps same-zone endpoints',
      s: svc({ trafficDistribution: 'PreferClose', endpoints: [ep('10.244.3.5', { nodeName: 'edge-3', zone: 'zone-a' }), ep('10.244.2.7', { nodeName: 'edge-2', zone: 'zone-b' })] }),
      o: { routableCIDRs: ['10.244.0.0/16'] }, target: 'kernel', eps: ['10.244.3.5:8080/routable'],
    },
    {
      name: 'PreferClose falls back to all when none is close',
      s: svc({ trafficDistribution: 'PreferClose', endpoints: [ep('10.244.2.7', { nodeName: 'edge-2', zone: 'zone-b' })] }),
      o: { routableCIDRs: ['10.244.0.0/16'] }, target: 'kernel', eps: ['10.244.2.7:8080/routable'],
    },
    {
      name: 'internalTrafficPolicy Local',
      s: svc({ internalTrafficPolicy: 'Local', endpoints: [ep('10.244.2.7', { nodeName: 'edge-2' })] }), o: {}, target: 'reject', eps: [],
    },
    { name: 'iptables mode → userspace', s: svc(), o: { mode: 'iptables' as const }, target: 'userspace', eps: ['10.244.1.5:8080/local'], reason: 'iptables-mode' },
    { name: 'leastRequest → userspace', s: svc({ lbPolicy: { kind: 'leastRequest' } }), o: {}, target: 'userspace', eps: ['10.244.1.5:8080/local'], reason: 'least-request' },
    { name: 'consistent hash → userspace', s: svc({ lbPolicy: { kind: 'consistentHash', key: { type: 'header', name: 'x-user' } } }), o: {}, target: 'userspace', eps: ['10.244.1.5:8080/local'], reason: 'l7-policy' },
    { name: 'round robin stays in the kernel', s: svc({ lbPolicy: { kind: 'roundRobin' } }), o: {}, target: 'kernel', eps: ['10.244.1.5:8080/local'] },
    {
      name: 'family mismatch dropped',
      s: svc({ endpoints: [ep('fd00:244::5', { nodeName: 'edge-1' })] }), o: {}, target: 'reject', eps: [],
    },
  ])('$name', ({ s, o, target, eps, reason, notReady }) => {
    const plan = buildPlan(snap([s]), { ...opts, ...o });
    expect(plan.servicePorts).toHaveLength(1);
    const sp = plan.servicePorts[0]!;
    expect(sp.target).toBe(target);
    expect(sp.endpoints.map((e) => `${e.ip}:${e.port}/${e.class}`)).toEqual(eps);
    expect(sp.userspaceReason).toBe(reason);
    if (target === 'userspace') expect(sp.userspacePort).toBeGreaterThanOrEqual(20100);
    else expect(sp.userspacePort).toBeUndefined();
    if (notReady) expect(sp.endpoints.every((e) => !e.ready)).toBe(true);
    expect(plan.revision).toBe(7);
  });

  it.each([
    { name: 'headless', s: svc({ headless: true, clusterIPs: [] }) },
    { name: 'ExternalName', s: svc({ type: 'ExternalName', clusterIPs: [], externalName: 'example.com' }) },
  ])('$name services have no entry', ({ s }) => {
    expect(buildPlan(snap([s]), opts).servicePorts).toEqual([]);
  });

  it('affinity wins over a DestinationRule, with a note', () => {
    const sp = buildPlan(snap([svc({ sessionAffinity: { kind: 'ClientIP', timeoutSeconds: 60 }, lbPolicy: { kind: 'roundRobin' } })]), opts).servicePorts[0]!;
    expect(sp.policy).toEqual({ kind: 'clientIp', timeoutSeconds: 60 });
    expect(sp.notes?.[0]).toMatch(/overrides/);
  });

  it('resolves target ports by service port name, per port', () => {
    const s = svc({
      ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'web' }, { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353 }],
      endpoints: [ep('10.244.1.5', { nodeName: 'edge-1', ports: [{ name: 'http', protocol: 'TCP', port: 8081 }, { name: 'dns', protocol: 'UDP', port: 5354 }] })],
    });
    const plan = buildPlan(snap([s]), opts);
    expect(plan.servicePorts.map((p) => [p.id, p.endpoints[0]?.port])).toEqual([['default/web:53/UDP', 5354], ['default/web:80/TCP', 8081]]);
  });

  it('dual-stack: endpoints of both families', () => {
    const s = svc({ clusterIPs: ['10.96.0.10', 'fd00:96::10'], endpoints: [ep('10.244.1.5', { nodeName: 'edge-1' }), ep('fd00:244::5', { nodeName: 'edge-1' })] });
    const sp = buildPlan(snap([s]), opts).servicePorts[0]!;
    expect(sp.endpoints.map((e) => e.family).sort()).toEqual([4, 6]);
  });

  it('is deterministic and sorted', () => {
    const services = ['b', 'a', 'c'].map((n) => svc({ name: n, key: `default/${n}`, lbPolicy: { kind: 'leastRequest' } }));
    const a = buildPlan(snap(services), opts);
    const b = buildPlan(snap([...services].reverse()), opts);
    expect(a.servicePorts.map((p) => p.id)).toEqual(['default/a:80/TCP', 'default/b:80/TCP', 'default/c:80/TCP']);
    expect(b.servicePorts.map((p) => p.userspacePort)).toEqual(a.servicePorts.map((p) => p.userspacePort));
    expect(new Set(a.servicePorts.map((p) => p.userspacePort)).size).toBe(3);
  });

  it('exhausted userspace range → listed and rejected', () => {
    const services = ['a', 'b', 'c'].map((n) => svc({ name: n, key: `default/${n}`, lbPolicy: { kind: 'leastRequest' } }));
    const plan = buildPlan(snap(services), { ...opts, userspacePorts: '30000-30001' });
    expect(plan.userspacePortExhausted).toEqual(['default/c:80/TCP']);
    expect(plan.servicePorts.map((p) => p.target)).toEqual(['userspace', 'userspace', 'reject']);
  });
});

describe('allocateUserspacePorts', () => {
  it.each([
    { name: 'all distinct within range', ids: Array.from({ length: 50 }, (_, i) => `ns/s${i}:80/TCP`), range: '100-149', exhausted: 0 },
    { name: 'overflow listed', ids: Array.from({ length: 5 }, (_, i) => `ns/s${i}:80/TCP`), range: '100-102', exhausted: 2 },
  ])('$name', ({ ids, range, exhausted }) => {
    const r = allocateUserspacePorts(ids, range);
    const ports = [...r.ports.values()];
    expect(new Set(ports).size).toBe(ports.length);
    expect(r.exhausted).toHaveLength(exhausted);
    const [lo, hi] = range.split('-').map(Number) as [number, number];
    expect(ports.every((p) => p >= lo && p <= hi)).toBe(true);
  });

  it('a port stays put when an unrelated id is added', () => {
    const a = allocateUserspacePorts(['ns/a:80/TCP'], '20100-24999');
    const b = allocateUserspacePorts(['ns/a:80/TCP', 'ns/zz:80/TCP'], '20100-24999');
    expect(b.ports.get('ns/a:80/TCP')).toBe(a.ports.get('ns/a:80/TCP'));
  });
});
