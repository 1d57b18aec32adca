// deploy/grafana/edgeway.json reads only metrics the code registers, grouped only
// by labels those metrics have. "Registered" = the prom-client metric definitions
// in src/ (every `new Counter/Gauge/Histogram({ name: 'edgeway_…', labelNames })`)
// plus the process metrics of the real registry (createRegistry).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/metrics/registry.js';
import { dashboardExprs, metricNames } from './dashboard.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dashboard = JSON.parse(readFileSync(join(root, 'deploy/grafana/edgeway.json'), 'utf8')) as unknown;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** name → label names, from the metric definitions in src/. */
function registered(): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const f of sources(join(root, 'src'))) {
    const text = readFileSync(f, 'utf8');
    const defs = [...text.matchAll(/name:\s*'(edgeway_[a-z0-9_]+)'/g)];
    defs.forEach((m, i) => {
      // This definition's options run up to the next definition (or a few lines on).
      const body = text.slice(m.index, defs[i + 1]?.index ?? m.index + 800);
      const labels = /labelNames:\s*\[([^\]]*)\]/.exec(body)?.[1] ?? '';
      out.set(m[1]!, new Set([...labels.matchAll(/'([a-z_]+)'/g)].map((x) => x[1]!)));
    });
  }
  for (const m of createRegistry().getMetricsAsArray()) out.set(m.name, new Set());
  return out;
}

describe('Grafana dashboard', () => {
  const names = registered();
  const exprs = dashboardExprs(dashboard);

  it('has panels and the registered-name scan finds the subsystems', () => {
    expect(exprs.length).toBeGreaterThan(20);
    for (const n of ['edgeway_dns_queries_total', 'edgeway_proxy_bytes_total', 'edgeway_tunnel_peers', 'edgeway_process_process_resident_memory_bytes']) expect(names.has(n), n).toBe(true);
  });

  it.each(exprs.map((e) => [e.title, e.expr]))('%s reads registered metrics and labels: %s', (_title, expr) => {
    const used = metricNames(expr);
    expect(used.length).toBeGreaterThan(0);
    for (const n of used) expect(names.has(n), `${n} is not registered by the code`).toBe(true);
    // `by (label)` and `{{label}}` must be labels of every metric in the expression.
    const groups = [...expr.matchAll(/by \(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((s) => s.trim())).filter((l) => l !== 'le' && l !== 'instance');
    for (const l of groups) for (const n of used) expect(names.get(n)!.has(l), `${n} has no label ${l}`).toBe(true);
  });

  it('the check can fail: an unknown metric is caught', () => {
    expect(metricNames('rate(edgeway_nope_total[1m])').every((n) => names.has(n))).toBe(false);
  });
});
