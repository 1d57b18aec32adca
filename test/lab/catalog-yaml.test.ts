/**
 * The lab's catalog writer (src/lab/catalog-yaml.ts), read back through the real
 * static-source parser and catalog builder: what the e2e tests and the soak write
 * is what the agents will serve.
 */
import { describe, expect, it } from 'vitest';
import { buildSnapshot } from '../../src/catalog/build.js';
import type { SlimPolicy, SlimService, SlimSlice } from '../../src/catalog/convert.js';
import type { Node, Snapshot } from '../../src/catalog/types.js';
import { labCatalogYaml } from '../../src/lab/catalog-yaml.js';
import { IP } from '../../src/lab/topology.js';
import { parseStaticFile } from '../../src/sources/static.js';

const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo';

function read(text: string): Snapshot {
  const rejected: string[] = [];
  const r = parseStaticFile('lab.yaml', text, 'FilterIfLabelExists', { reject: (_k, ref, why) => void rejected.push(`${ref}: ${why}`), clearRejection: () => undefined });
  expect(rejected).toEqual([]);
  return buildSnapshot({
    services: r.service.values() as Iterable<SlimService>, slices: r.slice.values() as Iterable<SlimSlice>,
    nodes: r.node.values() as Iterable<Node>, policies: r.policy.values() as Iterable<SlimPolicy>,
  }, 1, '1970-01-01T00:00:00.000Z');
}

describe('labCatalogYaml', () => {
  const snap = read(labCatalogYaml(['a1', { name: 'a2', peerId: PEER }, { name: 'b1', externalIP: IP.rbWan }], [
    { name: 'web', clusterIP: '10.96.0.30', port: 80, targetPort: 8080, portName: 'http', on: 'b1' },
    { name: 'dns', namespace: 'soak', clusterIP: '10.96.0.31', port: 53, targetPort: 8053, protocol: 'UDP', on: 'a2', ready: true },
    { name: 'single', clusterIP: '10.96.0.32', port: 80, targetPort: 9000, protocol: 'TCP', on: 'b1', endpointPortName: '' },
  ]));

  it('writes the nodes with their topology addresses, annotation and extra address', () => {
    expect(snap.nodes.map((n) => [n.name, n.addresses.map((a) => `${a.type}=${a.address}`).join(), n.peerId ?? '']).sort()).toEqual([
      ['a1', `InternalIP=${IP.a1}`, ''],
      ['a2', `InternalIP=${IP.a2}`, PEER],
      ['b1', `InternalIP=${IP.b1},ExternalIP=${IP.rbWan}`, ''],
    ]);
  });

  it.each([
    { name: 'named TCP port, endpoint on b1', key: 'default/web', port: 'http/TCP/80→8080', ep: `${IP.b1}@b1 http/TCP/8080` },
    { name: 'UDP in another namespace, ready endpoint on a2', key: 'soak/dns', port: 'p/UDP/53→8053', ep: `${IP.a2}@a2 p/UDP/8053` },
    { name: 'unnamed endpoint port under a named service port', key: 'default/single', port: 'p/TCP/80→9000', ep: `${IP.b1}@b1 /TCP/9000` },
  ])('$name', ({ key, port, ep }) => {
    const s = snap.services.find((x) => x.key === key)!;
    expect(s.ports.map((p) => `${p.name}/${p.protocol}/${p.port}→${String(p.targetPort)}`)).toEqual([port]);
    expect(s.endpoints.map((e) => `${e.ip}@${e.nodeName ?? ''} ${e.ports.map((p) => `${p.name}/${p.protocol}/${p.port}`).join()}`)).toEqual([ep]);
    expect(s.endpoints.every((e) => e.ready)).toBe(true);
  });
});
