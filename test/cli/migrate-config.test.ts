// `edgeway migrate-config`: EdgeMesh agent configs (their shipped ConfigMap as it is,
// and one touching every module) become valid edgeway configs, with a warning for
// every key that does not map.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { migrateEdgeMeshConfig } from '../../src/config/from-edgemesh.js';
import { parseConfig } from '../../src/config/load.js';

const run = promisify(execFile);
const fixture = (name: string): string => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const full = parse(readFileSync(fixture('edgemesh-agent-full.yaml'), 'utf8')) as unknown;

describe('migrate-config', () => {
  it('maps every EdgeMesh key that has an equivalent', () => {
    const { config } = migrateEdgeMeshConfig(full);
    const c = parseConfig(config, 'migrated', {}, { NODE_NAME: 'n1' });
    expect(c.sources.kubernetes).toMatchObject({ apiServer: 'http://10.0.0.1:8080', kubeconfig: '/root/.kube/config' });
    expect(c.dns).toMatchObject({ enabled: true, interface: 'edgemesh0', listen: ['169.254.96.16:5353'], upstreams: ['10.96.0.10:53', '10.96.0.11:5353'] });
    expect(c.serviceFilter.mode).toBe('FilterIfLabelDoesNotExists');
    expect(c.tunnel).toMatchObject({ enabled: true, listenPort: 20007, psk: { path: '/etc/edgemesh/psk' } });
    expect(c.tunnel.relayNodes).toEqual([{ nodeName: 'cloud-relay', advertiseAddress: ['1.1.1.1', '2.2.2.2'] }]);
    expect(c.metrics.listen).toBe('0.0.0.0:9999');
    expect(c.dataplane.mode).toBe('auto');
  });

  it.each([
    ['kubeAPIConfig.metaServer.server', /overlays\/kubeedge/],
    ['modules.edgeDNS.cacheDNS.cacheTTL', /TTL/],
    ['modules.edgeProxy.socks5Proxy', /SOCKS5/],
    ['modules.edgeProxy.loadBalancer', /DestinationRule/],
    ['modules.edgeTunnel.rendezvous', /node name/],
    ['modules.edgeTunnel.relayNodes[1]', /no nodeName/],
    ['modules.edgeTunnel.maxCandidates', /ignored/],
    ['modules.edgeTunnel.listenInterfaces', /listenAddresses/],
    ['modules.edgeTunnel.mysteryKey', /no edgeway equivalent/],
    ['modules.edgeCNI', /not part of edgeway/],
  ])('warns about %s', (path, reason) => {
    const w = migrateEdgeMeshConfig(full).warnings.find((x) => x.startsWith(`${path}: `));
    expect(w, migrateEdgeMeshConfig(full).warnings.join('\n')).toMatch(reason);
  });

  it.each([
    ['edgeProxy disabled → no data plane', { modules: { edgeProxy: { enable: false } } }, { dataplane: { mode: 'none' } }],
    ['PSK on by default at EdgeMesh\'s path', { modules: { edgeTunnel: { enable: true } } }, { tunnel: { enabled: true, psk: { path: '/etc/edgemesh/psk' } } }],
    ['PSK disabled', { modules: { edgeTunnel: { psk: { enable: false } } } }, { tunnel: {} }],
    ['custom DNS address', { commonConfig: { bridgeDeviceIP: '169.254.20.10' }, modules: { edgeDNS: { enable: false } } }, { dns: { enabled: false, listen: ['169.254.20.10:53'] } }],
  ])('%s', (_name, input, expected) => {
    expect(migrateEdgeMeshConfig(input).config).toEqual(expected);
  });

  it('refuses a document that is not a mapping', () => {
    expect(() => migrateEdgeMeshConfig(['a'])).toThrow(/EdgeMesh agent config/);
  });

  it('the built CLI migrates EdgeMesh\'s shipped ConfigMap as it is (exit 0, valid YAML)', async () => {
    const { stdout, stderr } = await run(process.execPath, ['bin/edgeway.js', 'migrate-config', fixture('edgemesh-agent-cfg.yaml')]);
    const cfg = parseConfig(parse(stdout), 'out', {}, { NODE_NAME: 'n1' });
    expect(cfg.tunnel.psk.path).toBe('/etc/edgemesh/psk');
    expect(cfg.tunnel.enabled).toBe(true);
    expect(stderr).toMatch(/^warning: modules\.edgeDNS: absent/m);
  });

  it('the built CLI exits 2 on a missing file or non-YAML input', async () => {
    await expect(run(process.execPath, ['bin/edgeway.js', 'migrate-config', '/nonexistent/edgemesh.yaml'])).rejects.toMatchObject({ code: 2 });
    await expect(run(process.execPath, ['bin/edgeway.js', 'migrate-config', fixture('../migrate-config.test.ts')])).rejects.toMatchObject({ code: 2 });
  });
});
