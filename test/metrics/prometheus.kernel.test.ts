/**
 * A real Prometheus (Debian's `prometheus`) scraping a real agent: both run in a
 * network namespace the test makes (loopback only). The test reads Prometheus's
 * HTTP API: the target is up, edgeway_* series are stored, DNS query counters rise
 * after real queries (dig against the agent's node DNS), and the dashboard's DNS
 * and catalog queries return data. Both processes exit 0 on SIGTERM.
 * IP plan: 169.254.96.16 (node DNS), 127.0.0.1:9464 (agent metrics) and
 * 127.0.0.1:9090 (Prometheus), inside the test namespace only.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, kernelSkipReason, run } from '../helpers/netns.js';
import { dashboardExprs } from './dashboard.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const hasProm = await run('prometheus', ['--version']).then(() => true, () => false);
const skip = kernelSkipReason()
  ?? (existsSync(join(root, 'dist/cli/main.js')) ? undefined : 'dist/ missing: run npm run build')
  ?? (hasProm ? undefined : 'prometheus missing: run scripts/install-system-deps.sh');
if (skip && process.env.CI === 'true') throw new Error(`Prometheus scrape test cannot run in CI: ${skip}`);
if (skip) console.warn(`skipping Prometheus scrape test: ${skip}`);

interface Sample { metric: Record<string, string>; value: [number, string] }

describe.skipIf(!!skip)('a real Prometheus scrapes the agent', () => {
  const lab = new Lab();
  let dir = '';
  afterAll(async () => {
    await lab.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('stores edgeway_* series, sees DNS counters rise after traffic, and both exit 0', async () => {
    const ns = await lab.ns('prom');
    dir = await mkdtemp(join(tmpdir(), 'ew-prom-'));
    const cfg = join(dir, 'agent.yaml');
    await writeFile(cfg, [
      'nodeName: edge-1',
      `stateDir: ${join(dir, 'state')}`,
      'log: { level: warn }',
      'sources:',
      '  kubernetes: { enabled: false }',
      `  static: { paths: [${join(root, 'examples/services.yaml')}] }`,
      'dataplane: { mode: none }',
      'dns: { listen: ["169.254.96.16:53"], upstreams: ["127.0.0.1:5399"] }',
      'tunnel: { enabled: false }',
      'metrics: { listen: "127.0.0.1:9464" }',
      '',
    ].join('\n'));
    await writeFile(join(dir, 'prometheus.yml'), [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      '  - job_name: edgeway',
      '    static_configs: [{ targets: ["127.0.0.1:9464"] }]',
      '',
    ].join('\n'));
    const agent = lab.spawn(ns, process.execPath, [join(root, 'bin/edgeway.js'), 'agent', '--config', cfg]);
    const prom = lab.spawn(ns, 'prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      '--web.listen-address=127.0.0.1:9090', '--log.level=warn',
    ]);

    const query = async (q: string): Promise<Sample[]> => {
      const url = `http://127.0.0.1:9090/api/v1/query?query=${encodeURIComponent(q)}`;
      const out = await lab.exec(ns, process.execPath, ['-e', `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => process.stdout.write(t))`]).catch(() => ({ stdout: '' }));
      if (!out.stdout) return [];
      const body = JSON.parse(out.stdout) as { status: string; data?: { result: Sample[] }; error?: string };
      if (body.status !== 'success') throw new Error(`${q}: ${body.error}`);
      return body.data!.result;
    };
    /** Poll a query until pred holds (bounded: 60 × 0.5 s). */
    const until = async (q: string, pred: (r: Sample[]) => boolean): Promise<Sample[]> => {
      let r: Sample[] = [];
      for (let i = 0; i < 120; i++) {
        r = await query(q);
        if (pred(r)) return r;
        if (agent.child.exitCode !== null || prom.child.exitCode !== null) throw new Error(`agent ${agent.child.exitCode} / prometheus ${prom.child.exitCode} exited`);
        await new Promise((res) => setTimeout(res, 500));
      }
      throw new Error(`${q}: condition never held; last ${JSON.stringify(r)}`);
    };
    const dig = (name: string): Promise<string> =>
      lab.exec(ns, 'dig', ['@169.254.96.16', '+short', '+time=1', '+tries=1', name]).then((r) => r.stdout.trim(), () => '');

    // Agent serving, Prometheus scraping it.
    for (let i = 0; i < 50 && (await dig('web.default.svc.cluster.local')) !== '10.96.0.10'; i++) await new Promise((r) => setTimeout(r, 200));
    await until('up{job="edgeway"}', (r) => r[0]?.value[1] === '1');
    const names = await until('count by (__name__) ({__name__=~"edgeway_.+"})', (r) => r.length > 20);
    const stored = new Set(names.map((s) => s.metric.__name__));
    for (const n of ['edgeway_catalog_services', 'edgeway_dns_queries_total', 'edgeway_process_process_resident_memory_bytes']) expect(stored, n).toContain(n);

    // Counters rise after traffic: 25 answered A queries.
    const total = async (): Promise<number> => (await query('sum(edgeway_dns_queries_total{rcode="NOERROR"})')).reduce((s, x) => s + Number(x.value[1]), 0);
    const before = await total();
    for (let i = 0; i < 25; i++) expect(await dig('web.default.svc.cluster.local')).toBe('10.96.0.10');
    await until('sum(edgeway_dns_queries_total{rcode="NOERROR"})', (r) => Number(r[0]?.value[1] ?? 0) >= before + 25);
    expect(await total()).toBeGreaterThanOrEqual(before + 25);

    // The dashboard's DNS and catalog panels have data on this agent.
    const exprs = dashboardExprs(JSON.parse(readFileSync(join(root, 'deploy/grafana/edgeway.json'), 'utf8')) as unknown);
    const panels = exprs.filter((e) => /edgeway_(catalog_services|catalog_endpoints|dns_queries_total)\b/.test(e.expr));
    expect(panels.length).toBeGreaterThan(0);
    for (const p of panels) {
      const q = p.expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*');
      expect((await until(q, (r) => r.length > 0)).length, `${p.title}: ${q}`).toBeGreaterThan(0);
    }

    await agent.stop();
    expect(agent.child.exitCode).toBe(0);
    await prom.stop();
    expect(prom.child.exitCode).toBe(0);
  }, 180_000);
});
