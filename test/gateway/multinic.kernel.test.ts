/**
 * Multi-NIC listeners: the real `edgeway gateway` process in a namespace with two
 * NICs, clients in two other namespaces. `gateway.addresses: []` listens on every
 * non-loopback address and follows an address added and removed later; a gateway
 * given one interface name serves that NIC only. Both exit 0 on SIGTERM.
 *
 * IP plan (inside the test's namespaces only):
 *   gw ── 10.71.1.1/24 ── c1 (10.71.1.2)      extra address 10.71.1.5 added later
 *   gw ── 10.71.2.1/24 ── c2 (10.71.2.2)
 *   backend: 127.0.0.1:<port> inside gw
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, kernelSkipReason, type NsProcess } from '../helpers/netns.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const skip = kernelSkipReason() ?? (existsSync(join(root, 'dist/cli/main.js')) ? undefined : 'dist/ missing: run npm run build');
if (skip && process.env.CI === 'true') throw new Error(`gateway multi-NIC kernel test cannot run: ${skip}`);
if (skip) console.warn(`skipping gateway multi-NIC kernel test: ${skip}`);

const PORT_ALL = 18080;
const PORT_ONE = 18081;
const BACKEND = 18090;

describe.skipIf(!!skip)('gateway listeners on several NICs', () => {
  const lab = new Lab();
  let dir = '';
  let gw = '';
  let c1 = '';
  let c2 = '';
  let if1 = '';
  let all: NsProcess;
  let one: NsProcess;

  /** HTTP status from a client namespace ('000' = no connection). */
  const curl = async (ns: string, url: string): Promise<string> =>
    (await lab.exec(ns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', url]).catch((e: Error) => ({ stdout: /\b000\b/.exec(e.message)?.[0] ?? '000' }))).stdout.trim();

  const until = async (what: string, cond: () => Promise<boolean>, ms = 20_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timeout: ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  const stopWithCode = (p: NsProcess): Promise<number | null> => new Promise((resolve) => {
    if (p.child.exitCode !== null) return resolve(p.child.exitCode);
    p.child.once('exit', (code) => resolve(code));
    p.child.kill('SIGTERM');
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ew-gw-nic-'));
    gw = await lab.ns('gw');
    c1 = await lab.ns('c1');
    c2 = await lab.ns('c2');
    ({ aIf: if1 } = await lab.link(gw, '10.71.1.1/24', c1, '10.71.1.2/24'));
    await lab.link(gw, '10.71.2.1/24', c2, '10.71.2.2/24');
    const backend = lab.spawn(gw, process.execPath, ['-e', `require('http').createServer((q,r)=>r.end('ok')).listen(${BACKEND},'127.0.0.1',()=>console.log('ready'))`]);
    await backend.waitFor(/ready/);
    await writeFile(join(dir, 'catalog.yaml'), [
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] } },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', ports: [{ name: 'http', port: BACKEND }], endpoints: [{ addresses: ['127.0.0.1'], nodeName: 'gw' }] },
      // One Gateway object per gateway process, told apart by selector.
      { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'all', namespace: 'default' }, spec: { selector: { role: 'all' }, servers: [{ port: { number: PORT_ALL, protocol: 'HTTP' }, hosts: ['*'] }] } },
      { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'one', namespace: 'default' }, spec: { selector: { role: 'one' }, servers: [{ port: { number: PORT_ONE, protocol: 'HTTP' }, hosts: ['*'] }] } },
      { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'web', namespace: 'default' }, spec: { hosts: ['*'], gateways: ['all', 'one'], http: [{ route: [{ destination: { host: 'web' } }] }] } },
    ].map((o) => stringify(o)).join('---\n'));
    const config = async (role: string, addresses: string[]): Promise<string> => {
      const f = join(dir, `${role}.yaml`);
      await writeFile(f, stringify({
        nodeName: 'gw', stateDir: join(dir, role), sources: { kubernetes: { enabled: false }, static: { paths: [join(dir, 'catalog.yaml')], pollMs: 200 } },
        tunnel: { enabled: false }, metrics: { listen: '' }, log: { level: 'info' }, gateway: { addresses, addressPollMs: 200, labels: { role } },
      }));
      return f;
    };
    all = lab.spawn(gw, process.execPath, [join(root, 'bin/edgeway.js'), 'gateway', '--config', await config('all', [])]);
    one = lab.spawn(gw, process.execPath, [join(root, 'bin/edgeway.js'), 'gateway', '--config', await config('one', [if1])]);
    await until('gateway on every NIC', async () => (await curl(c1, `http://10.71.1.1:${PORT_ALL}/`)) === '200' && (await curl(c2, `http://10.71.2.1:${PORT_ALL}/`)) === '200');
  }, 90_000);

  afterAll(async () => {
    await lab.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('addresses [] listens on both NICs', async () => {
    expect(await curl(c1, `http://10.71.1.1:${PORT_ALL}/`)).toBe('200');
    expect(await curl(c2, `http://10.71.2.1:${PORT_ALL}/`)).toBe('200');
  });

  it('follows an address added to a NIC, and one removed', async () => {
    await lab.exec(gw, 'ip', ['addr', 'add', '10.71.1.5/24', 'dev', if1]);
    await until('listener on the new address', async () => (await curl(c1, `http://10.71.1.5:${PORT_ALL}/`)) === '200');
    await lab.exec(gw, 'ip', ['addr', 'del', '10.71.1.5/24', 'dev', if1]);
    await until('listener gone with the address', async () => (await curl(c1, `http://10.71.1.5:${PORT_ALL}/`)) === '000');
  }, 60_000);

  it('an interface name selects that NIC only', async () => {
    await until('interface gateway up', async () => (await curl(c1, `http://10.71.1.1:${PORT_ONE}/`)) === '200');
    expect(await curl(c2, `http://10.71.2.1:${PORT_ONE}/`)).toBe('000');
    // Loopback is never chosen by default either.
    expect((await lab.exec(gw, 'ss', ['-ltnH'])).stdout).not.toMatch(new RegExp(`127\\.0\\.0\\.1:${PORT_ALL}`));
  }, 60_000);

  it('both exit 0 on SIGTERM', async () => {
    expect(await stopWithCode(all)).toBe(0);
    expect(await stopWithCode(one)).toBe(0);
  }, 30_000);
});
