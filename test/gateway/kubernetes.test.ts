/**
 * The gateway's objects through the Kubernetes source (the test API server is the
 * one allowed stand-in): optional CRDs absent is not an error; Istio Gateway and
 * VirtualService, Gateway API Gateway and HTTPRoute and kubernetes.io/tls Secrets
 * become ingress records; other Secret types are ignored; a changed Secret and a
 * deleted VirtualService are followed; the agent (no `ingress`) never lists them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CatalogStore } from '../../src/catalog/store.js';
import { KubernetesSource } from '../../src/sources/kubernetes.js';
import { createRegistry } from '../../src/metrics/registry.js';
import { silentLogger } from '../../src/util/log.js';
import type { IngressObject, TlsSecret } from '../../src/catalog/ingress.js';
import { KubeApiServer, type KubeObject, type ResourceType } from '../helpers/kube-apiserver.js';

const GATEWAY_TYPES: ResourceType[] = [
  { group: 'networking.istio.io', version: 'v1beta1', plural: 'gateways', kind: 'Gateway', namespaced: true },
  { group: 'networking.istio.io', version: 'v1beta1', plural: 'virtualservices', kind: 'VirtualService', namespaced: true },
  { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways', kind: 'Gateway', namespaced: true },
  { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', kind: 'HTTPRoute', namespaced: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
];

const PEM = (what: string, body: string): string => `-----BEGIN ${what}-----\n${body}\n-----END ${what}-----\n`;
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const base: KubeObject[] = [
  { kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] } },
  { kind: 'Node', metadata: { name: 'n1' }, status: {} },
];
const objects: KubeObject[] = [
  { apiVersion: 'networking.istio.io/v1beta1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'default' }, spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 80, protocol: 'HTTP' }, hosts: ['*'] }] } },
  { apiVersion: 'networking.istio.io/v1beta1', kind: 'VirtualService', metadata: { name: 'web', namespace: 'default' }, spec: { hosts: ['*'], gateways: ['edge'], http: [{ route: [{ destination: { host: 'web' } }] }] } },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'default' }, spec: { gatewayClassName: 'edgeway', listeners: [{ name: 'web', port: 8080, protocol: 'HTTP' }] } },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'default' }, spec: { parentRefs: [{ name: 'gw' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } },
  { kind: 'Secret', metadata: { name: 'cert', namespace: 'default' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(PEM('CERTIFICATE', 'one')), 'tls.key': b64(PEM('PRIVATE KEY', 'k')) } },
  { kind: 'Secret', metadata: { name: 'token', namespace: 'default' }, type: 'kubernetes.io/service-account-token', data: { token: b64('x') } },
];

let api: KubeApiServer | undefined;
let source: KubernetesSource | undefined;
let store: CatalogStore | undefined;

afterEach(async () => {
  await source?.stop();
  await store?.close();
  await api?.stop();
  api = undefined;
});

async function until(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timeout: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function start(extra: ResourceType[], ingress: boolean, objs: KubeObject[]): Promise<{ ingress: () => readonly IngressObject[] }> {
  api = await KubeApiServer.start({ extra });
  for (const o of objs) api.create(o);
  store = new CatalogStore({ logger: silentLogger(), registry: createRegistry({ defaultMetrics: false }), coalesceMs: 5 });
  source = new KubernetesSource(store.sink('kubernetes'), {
    apiServer: api.url, kubeconfig: '', filterMode: 'FilterIfLabelExists', logger: silentLogger(), minBackoffMs: 20, maxBackoffMs: 200, recheckMs: 100, ingress,
  });
  await source.start();
  await until(() => store!.sourceStates()[0]?.state === 'synced' && store!.snapshot.revision > 0, 'synced');
  return { ingress: () => store!.snapshot.ingress ?? [] };
}

describe('gateway objects from the Kubernetes source', () => {
  it('absent CRDs are not an error', async () => {
    await start([], true, base);
    expect(store!.sourceStates()[0]?.detail).toContain('gateways not served');
    expect(store!.snapshot.ingress).toBeUndefined();
  });

  it('reads Istio and Gateway API objects and TLS Secrets, follows changes and deletions', async () => {
    const h = await start(GATEWAY_TYPES, true, [...base, ...objects]);
    await until(() => h.ingress().length === 5, `5 ingress records, have ${JSON.stringify(h.ingress().map((o) => `${o.kind}/${o.name}`))}`);
    const names = h.ingress().map((o) => `${o.kind}:${'api' in o ? o.api : ''}:${o.name}`).sort();
    expect(names).toEqual(['Gateway:gatewayapi:gw', 'Gateway:istio:edge', 'Route:gatewayapi:r', 'Route:istio:web', 'Secret::cert']);
    api!.update({ ...objects[4]!, data: { 'tls.crt': b64(PEM('CERTIFICATE', 'two')), 'tls.key': b64(PEM('PRIVATE KEY', 'k')) } });
    await until(() => (h.ingress().find((o) => o.kind === 'Secret') as TlsSecret | undefined)?.cert.includes('two') === true, 'rotated Secret');
    api!.delete({ kind: 'VirtualService', metadata: { name: 'web', namespace: 'default' } });
    await until(() => !h.ingress().some((o) => o.kind === 'Route' && o.api === 'istio'), 'VirtualService deleted');
    expect(h.ingress()).toHaveLength(4);
  });

  it('the agent (no ingress) never lists them', async () => {
    await start(GATEWAY_TYPES, false, [...base, ...objects]);
    expect(store!.snapshot.ingress).toBeUndefined();
    expect(api!.requests.some((r) => r.path.includes('secrets') || r.path.includes('gateways'))).toBe(false);
  });
});
