/** Reading the Grafana dashboard (deploy/grafana/edgeway.json): panel queries and the metric names in them. */

export interface PanelExpr { readonly title: string; readonly expr: string }

/** Every target expression of every panel (rows nested one level, as Grafana writes them). */
export function dashboardExprs(dashboard: unknown): PanelExpr[] {
  const out: PanelExpr[] = [];
  const walk = (panels: unknown): void => {
    if (!Array.isArray(panels)) return;
    for (const p of panels as { title?: string; targets?: { expr?: string }[]; panels?: unknown }[]) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ title: p.title ?? '', expr: t.expr });
      walk(p.panels);
    }
  };
  walk((dashboard as { panels?: unknown }).panels);
  return out;
}

/** Metric names a PromQL expression reads (histogram suffixes stripped to the family name). */
export function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\bedgeway_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')))];
}
