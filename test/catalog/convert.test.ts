// Test IP plan: cluster IPs 10.96.0.0/16, fd00:96::/64; endpoints 10.244.0.0/16, fd00:244::/64.
import { describe, expect, it } from 'vitest';
import {
  convertDestinationRule, convertEndpointSlice, convertEndpoints, convertNode, convertService,
} from '../../src/catalog/convert.js';
import { cidrContains, normalizeIp } from '../../src/catalog/ip.js';

const svc = (spec: object, meta: object = {}): object => ({ metadata: { name: 'web', namespace: 'default', ...meta }, spec });
const port = (p: object = {}): object => ({ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', ...p });

describe('convertService', () => {
  it('converts a dual-stack service with affinity', () => {
    const r = convertService(svc({ clusterIPs: ['10.96.0.10', 'FD00:96::0A'], ports: [port()], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }), 'FilterIfLabelExists');
    expect(r).toEqual({
      ok: true,
      value: {
        namespace: 'default', name: 'web', key: 'default/web', type: 'ClusterIP', clusterIPs: ['10.96.0.10', 'fd00:96::a'], headless: false,
        ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }], sessionAffinity: { kind: 'ClientIP', timeoutSeconds: 60 },
        internalTrafficPolicy: 'Cluster', filtered: false,
      },
    });
  });

  it.each([
    { name: 'port out of range', spec: { clusterIP: '10.96.0.1', ports: [port({ port: 70000 })] }, reason: 'spec.ports[0].port 70000 is out of range' },
    { name: 'port zero', spec: { clusterIP: '10.96.0.1', ports: [port({ port: 0 })] }, reason: 'out of range' },
    { name: 'unparsable IP', spec: { clusterIP: '10.96.0.300', ports: [port()] }, reason: 'spec.clusterIPs[0] "10.96.0.300" is not an IP address' },
    { name: 'duplicate port names', spec: { clusterIP: '10.96.0.1', ports: [port(), port({ port: 81 })] }, reason: 'duplicated' },
    { name: 'unnamed port among several', spec: { clusterIP: '10.96.0.1', ports: [port(), port({ name: undefined, port: 81 })] }, reason: 'name is required' },
    { name: 'bad protocol', spec: { clusterIP: '10.96.0.1', ports: [port({ protocol: 'ICMP' })] }, reason: 'protocol "ICMP"' },
    { name: 'spec missing', spec: undefined, reason: 'spec missing' },
    { name: 'affinity timeout out of range', spec: { clusterIP: '10.96.0.1', ports: [port()], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } }, reason: 'timeoutSeconds' },
    { name: 'unknown type', spec: { type: 'Weird', ports: [] }, reason: 'spec.type' },
  ])('rejects: $name', ({ spec, reason }) => {
    const r = convertService({ metadata: { name: 'web', namespace: 'default' }, ...(spec ? { spec } : {}) }, 'FilterIfLabelExists');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toContain(reason);
  });

  it.each([
    { name: 'missing name', meta: { name: undefined }, reason: 'metadata.name missing' },
    { name: 'missing namespace', meta: { namespace: undefined }, reason: 'metadata.namespace missing' },
    { name: 'name not a DNS label', meta: { name: 'Web_1' }, reason: 'not a DNS label' },
  ])('rejects metadata: $name', ({ meta, reason }) => {
    const r = convertService(svc({ clusterIP: '10.96.0.1', ports: [port()] }, meta), 'FilterIfLabelExists');
    expect(!r.ok && r.reason).toContain(reason);
  });

  it.each([
    { mode: 'FilterIfLabelExists', labelled: true, filtered: true },
    { mode: 'FilterIfLabelExists', labelled: false, filtered: false },
    { mode: 'FilterIfLabelDoesNotExists', labelled: true, filtered: false },
    { mode: 'FilterIfLabelDoesNotExists', labelled: false, filtered: true },
  ] as const)('service filter $mode, labelled=$labelled → filtered=$filtered', ({ mode, labelled, filtered }) => {
    const labels = labelled ? { 'service.edgemesh.kubeedge.io/service-proxy-name': 'other' } : {};
    const r = convertService(svc({ clusterIP: '10.96.0.1', ports: [port()] }, { labels }), mode);
    expect(r.ok && r.value.filtered).toBe(filtered);
  });

  it('headless by clusterIP None or by label', () => {
    const a = convertService(svc({ clusterIP: 'None', ports: [port()] }), 'FilterIfLabelExists');
    const b = convertService(svc({ clusterIP: '10.96.0.1', ports: [port()] }, { labels: { 'service.kubernetes.io/headless': '' } }), 'FilterIfLabelExists');
    expect(a.ok && a.value).toMatchObject({ headless: true, clusterIPs: [] });
    expect(b.ok && b.value).toMatchObject({ headless: true, clusterIPs: [] });
  });
});

describe('convertEndpointSlice', () => {
  const slice = (o: object = {}): object => ({
    metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: [{ addresses: ['10.244.1.5'], nodeName: 'n1', zone: 'z1', conditions: { ready: true }, hints: { forZones: [{ name: 'z1' }] } }],
    ...o,
  });
  it('converts conditions with API defaults (nil ready = ready, nil serving = ready)', () => {
    const r = convertEndpointSlice(slice({ endpoints: [{ addresses: ['10.244.1.5'] }, { addresses: ['10.244.1.6'], conditions: { ready: false, serving: true, terminating: true } }] }));
    expect(r.ok && r.value.endpoints.map((e) => [e.ip, e.ready, e.serving, e.terminating])).toEqual([['10.244.1.5', true, true, false], ['10.244.1.6', false, true, true]]);
  });
  it('keeps zone hints and node', () => {
    const r = convertEndpointSlice(slice());
    expect(r.ok && r.value.endpoints[0]).toMatchObject({ nodeName: 'n1', zone: 'z1', zoneHints: ['z1'] });
  });
  it.each([
    { name: 'no service label', o: { metadata: { name: 'x', namespace: 'default' } }, reason: 'kubernetes.io/service-name' },
    { name: 'bad address', o: { endpoints: [{ addresses: ['10.244.1'] }] }, reason: 'is not an IP address' },
    { name: 'family mismatch', o: { endpoints: [{ addresses: ['fd00::1'] }] }, reason: 'does not match addressType' },
    { name: 'bad port', o: { ports: [{ name: 'http', port: -1 }] }, reason: 'out of range' },
    { name: 'duplicate port names', o: { ports: [{ name: 'a', port: 1 }, { name: 'a', port: 2 }] }, reason: 'duplicated' },
    { name: 'unknown address type', o: { addressType: 'IPv5' }, reason: 'addressType' },
  ])('rejects: $name', ({ o, reason }) => {
    const r = convertEndpointSlice(slice(o));
    expect(!r.ok && r.reason).toContain(reason);
  });
});

describe('convertEndpoints (core/v1 fallback)', () => {
  it('maps addresses and notReadyAddresses', () => {
    const r = convertEndpoints({ metadata: { name: 'web', namespace: 'default' }, subsets: [{ addresses: [{ ip: '10.244.1.5', nodeName: 'n1', hostname: 'web-0' }], notReadyAddresses: [{ ip: '10.244.1.6' }], ports: [{ name: 'http', port: 8080 }] }] });
    expect(r.ok && r.value.serviceName).toBe('web');
    expect(r.ok && r.value.endpoints.map((e) => [e.ip, e.ready, e.hostname ?? null])).toEqual([['10.244.1.5', true, 'web-0'], ['10.244.1.6', false, null]]);
  });
});

describe('convertNode', () => {
  it('reads addresses, zone, peer id and readiness', () => {
    const r = convertNode({ metadata: { name: 'n1', labels: { 'topology.kubernetes.io/zone': 'z1' }, annotations: { 'edgeway.io/peer-id': '12D3KooWabc' } }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.10' }, { type: 'Hostname', address: 'n1' }], conditions: [{ type: 'Ready', status: 'False' }] } });
    expect(r).toEqual({ ok: true, value: { name: 'n1', addresses: [{ type: 'InternalIP', address: '192.168.1.10' }, { type: 'Hostname', address: 'n1' }], zone: 'z1', peerId: '12D3KooWabc', ready: false } });
  });
  it('rejects an unparsable InternalIP', () => {
    expect(convertNode({ metadata: { name: 'n1' }, status: { addresses: [{ type: 'InternalIP', address: 'x' }] } }).ok).toBe(false);
  });
});

describe('convertDestinationRule', () => {
  const dr = (lb: object | undefined): object => ({ metadata: { name: 'web', namespace: 'default' }, spec: { host: 'web', trafficPolicy: lb ? { loadBalancer: lb } : {} } });
  it.each([
    { name: 'ROUND_ROBIN', lb: { simple: 'ROUND_ROBIN' }, want: { kind: 'roundRobin' } },
    { name: 'RANDOM', lb: { simple: 'RANDOM' }, want: { kind: 'random' } },
    { name: 'LEAST_REQUEST', lb: { simple: 'LEAST_REQUEST' }, want: { kind: 'leastRequest' } },
    { name: 'header hash', lb: { consistentHash: { httpHeaderName: 'X-User' } }, want: { kind: 'consistentHash', key: { type: 'header', name: 'x-user' } } },
    { name: 'source IP hash', lb: { consistentHash: { useSourceIp: true } }, want: { kind: 'consistentHash', key: { type: 'sourceIp' } } },
    { name: 'cookie hash', lb: { consistentHash: { httpCookie: { name: 'sid', ttl: '1h30m', path: '/' } } }, want: { kind: 'consistentHash', key: { type: 'cookie', name: 'sid', path: '/', ttlSeconds: 5400 } } },
  ])('$name', ({ lb, want }) => {
    const r = convertDestinationRule(dr(lb));
    expect(r.ok && r.value?.policy).toEqual(want);
  });
  it('no loadBalancer → no policy', () => {
    expect(convertDestinationRule(dr(undefined))).toEqual({ ok: true, value: null });
  });
  it.each([
    { name: 'unknown simple', lb: { simple: 'FASTEST' } },
    { name: 'empty consistentHash', lb: { consistentHash: {} } },
    { name: 'bad cookie ttl', lb: { consistentHash: { httpCookie: { name: 'sid', ttl: 'soon' } } } },
  ])('rejects: $name', ({ lb }) => {
    expect(convertDestinationRule(dr(lb)).ok).toBe(false);
  });
});

describe('ip helpers', () => {
  it.each([
    ['10.0.0.1', '10.0.0.1'], ['FD00:0:0::1', 'fd00::1'], ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], ['::ffff:10.0.0.1', '::ffff:a00:1'],
    ['010.0.0.1', undefined], ['1.2.3', undefined], ['x', undefined],
  ])('normalizeIp(%s) = %s', (a, b) => expect(normalizeIp(a)).toBe(b));
  it.each([
    ['10.0.0.0/8', '10.1.2.3', true], ['10.0.0.0/8', '11.0.0.1', false], ['192.168.1.0/25', '192.168.1.200', false],
    ['fd00::/8', 'fd12::1', true], ['fd00::/16', 'fd01::1', false], ['10.0.0.0/8', 'fd00::1', false], ['0.0.0.0/0', '1.2.3.4', true],
  ])('cidrContains(%s, %s) = %s', (c, ip, want) => expect(cidrContains(c, ip)).toBe(want));
});
