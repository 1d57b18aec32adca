import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/errors.js';

describe('config defaults', () => {
  it('fills every documented default from an empty file', () => {
    const c = parseConfig({}, 'empty.yaml', {}, { NODE_NAME: 'n1' });
    expect(c).toMatchObject({
      nodeName: 'n1',
      clusterDomain: 'cluster.local',
      stateDir: '/var/lib/edgeway',
      sources: { kubernetes: { enabled: true, kubeconfig: '', apiServer: '' }, static: { paths: [] } },
      serviceFilter: { mode: 'FilterIfLabelExists' },
      dataplane: { mode: 'auto', routableCIDRs: [], userspacePorts: '20100-24999' },
      dns: { enabled: true, listen: ['169.254.96.16:53'], upstreams: [], ttl: 30, interface: 'edgeway0' },
      tunnel: { enabled: true, listenPort: 20006, psk: { path: '' }, relayNodes: [] },
      metrics: { listen: '127.0.0.1:9464' },
    });
  });

  it.each([
    { name: 'flag beats env and file', file: { nodeName: 'f' }, flag: 'x', env: 'e', want: 'x' },
    { name: 'env beats file', file: { nodeName: 'f' }, flag: undefined, env: 'e', want: 'e' },
    { name: 'file when no flag/env', file: { nodeName: 'f' }, flag: undefined, env: undefined, want: 'f' },
  ])('nodeName precedence: $name', ({ file, flag, env, want }) => {
    const c = parseConfig(file, 'c.yaml', flag ? { nodeName: flag } : {}, env ? { NODE_NAME: env } : {});
    expect(c.nodeName).toBe(want);
  });
});

describe('config errors name the file, the key path and the reason', () => {
  it.each([
    { name: 'bad mode', raw: { dataplane: { mode: 'not-a-mode' } }, path: 'dataplane.mode' },
    { name: 'unknown top-level key', raw: { dataplan: {} }, path: '(root)', reason: 'unknown key(s): dataplan' },
    { name: 'unknown nested key', raw: { dns: { listn: [] } }, path: 'dns', reason: 'unknown key(s): listn' },
    { name: 'listen not host:port', raw: { dns: { listen: ['169.254.96.16'] } }, path: 'dns.listen[0]', reason: 'host:port' },
    { name: 'port out of range', raw: { tunnel: { listenPort: 70000 } }, path: 'tunnel.listenPort' },
    { name: 'bad CIDR', raw: { dataplane: { routableCIDRs: ['10.0.0.0'] } }, path: 'dataplane.routableCIDRs[0]', reason: 'CIDR' },
    { name: 'relay without name', raw: { tunnel: { relayNodes: [{ advertiseAddress: ['1.2.3.4'] }] } }, path: 'tunnel.relayNodes[0].nodeName' },
    { name: 'wrong type', raw: { sources: { static: { paths: 'a.yaml' } } }, path: 'sources.static.paths' },
    { name: 'bad domain', raw: { clusterDomain: 'Cluster..local' }, path: 'clusterDomain' },
    { name: 'descending port range', raw: { dataplane: { userspacePorts: '30000-20000' } }, path: 'dataplane.userspacePorts', reason: 'ascending' },
    { name: 'bad api server URL', raw: { sources: { kubernetes: { apiServer: 'not a url' } } }, path: 'sources.kubernetes.apiServer' },
  ])('$name', ({ raw, path, reason }) => {
    let err: unknown;
    try { parseConfig(raw, '/etc/edgeway/bad.yaml'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as ConfigError).message;
    expect(msg).toContain('/etc/edgeway/bad.yaml');
    expect(msg).toContain(`${path}:`);
    if (reason) expect(msg).toContain(reason);
  });

  it('reports a missing file and YAML syntax errors with the file name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-cfg-'));
    await expect(loadConfig(join(dir, 'missing.yaml'))).rejects.toThrow(/missing\.yaml[\s\S]*file not found/);
    const broken = join(dir, 'broken.yaml');
    await writeFile(broken, 'dns:\n  listen: [a\n  ttl: 3\n');
    await expect(loadConfig(broken)).rejects.toThrow(/broken\.yaml[\s\S]*line \d+: YAML syntax/);
    const list = join(dir, 'list.yaml');
    await writeFile(list, '- a\n- b\n');
    await expect(loadConfig(list)).rejects.toThrow(ConfigError);
  });
});
