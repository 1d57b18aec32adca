#!/usr/bin/env node
// Generated references: docs/configuration.md from the config schema (dist/config/
// schema.js through zod's JSON Schema export: every key, type, allowed values,
// bounds, default) and docs/metrics.md from the metric definitions in src/ (name,
// type, labels, help). `--check` exits 1 when a file is out of date instead of
// writing (test/docs/docs.test.ts). Needs `npm run build` first (reads dist/).
import { readFileSync, readdirSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

const root = new URL('..', import.meta.url).pathname;
const { configSchema } = await import(join(root, 'dist/config/schema.js'));

/** One row per leaf key (objects recurse; arrays of objects list their item keys as key[].x). */
export function configRows(schema, path = '') {
  const rows = [];
  for (const [k, v] of Object.entries(schema.properties ?? {})) {
    const p = path ? `${path}.${k}` : k;
    const item = v.type === 'array' ? v.items : undefined;
    if (v.type === 'object' && v.properties) rows.push(...configRows(v, p));
    else if (item?.type === 'object' && item.properties) {
      rows.push({ key: p, type: 'list of objects', def: JSON.stringify(v.default ?? []), notes: '' });
      rows.push(...configRows(item, `${p}[]`));
    } else {
      const type = v.enum ? v.enum.map((e) => `\`${e}\``).join(' \\| ') : item ? `list of ${item.type}` : (v.type ?? (v.anyOf ? v.anyOf.map((a) => (a.const !== undefined ? `\`${JSON.stringify(a.const)}\`` : a.format ? `${a.type} (${a.format})` : a.pattern ? `${a.type} matching \`${a.pattern.replace(/\|/g, '\\|')}\`` : a.type)).join(' or ') : 'any'));
      const notes = [
        v.minimum !== undefined && `≥ ${v.minimum}`, v.maximum !== undefined && v.maximum < Number.MAX_SAFE_INTEGER && `≤ ${v.maximum}`,
        v.pattern && `pattern \`${v.pattern.replace(/\|/g, '\\|')}\``, v.maxLength !== undefined && `≤ ${v.maxLength} chars`,
        item?.pattern && `items match \`${item.pattern.replace(/\|/g, '\\|')}\``,
        (schema.required ?? []).includes(k) && 'required',
      ].filter(Boolean).join(', ');
      rows.push({ key: p, type, def: v.default === undefined ? '—' : `\`${JSON.stringify(v.default)}\``, notes });
    }
  }
  return rows;
}

function configDoc() {
  const json = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' });
  const rows = configRows(json);
  return [
    '# Configuration reference',
    '',
    'Generated from `src/config/schema.ts` by `node scripts/docs-reference.mjs`; do not edit.',
    'Every key is optional; unknown keys are errors. README.md "Configuration" shows the',
    'same keys as a commented YAML file.',
    '',
    '| key | type | default | constraints |',
    '|---|---|---|---|',
    ...rows.map((r) => `| \`${r.key}\` | ${r.type} | ${r.def} | ${r.notes} |`),
    '',
  ].join('\n');
}

const sources = (dir) => readdirSync(dir).flatMap((e) => {
  const p = join(dir, e);
  return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
});

/** Metric definitions found in src/: `new Counter|Gauge|Histogram({ name: 'edgeway_…', help: '…', labelNames: [...] })`. */
export function metricDefs() {
  const defs = new Map();
  for (const f of sources(join(root, 'src')).sort()) {
    const text = readFileSync(f, 'utf8');
    const all = [...text.matchAll(/new (Counter|Gauge|Histogram|Summary)(?:<[^>]*>)?\(\{\s*name:\s*'(edgeway_[a-z0-9_]+)'/g)];
    all.forEach((m, i) => {
      const body = text.slice(m.index, all[i + 1]?.index ?? m.index + 800);
      const help = /help:\s*'((?:[^'\\]|\\.)*)'/.exec(body)?.[1] ?? '';
      const labels = [.../labelNames:\s*\[([^\]]*)\]/.exec(body)?.[1]?.matchAll(/'([a-z_]+)'/g) ?? []].map((x) => x[1]);
      defs.set(m[2], { name: m[2], type: m[1].toLowerCase(), labels, help: help.replace(/\\'/g, "'"), file: f.slice(root.length) });
    });
  }
  return [...defs.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function metricsDoc() {
  const defs = metricDefs();
  return [
    '# Metrics reference',
    '',
    'Generated from the metric definitions in `src/` by `node scripts/docs-reference.mjs`;',
    'do not edit. Served on `/metrics` at `metrics.listen`. Process metrics (prom-client',
    'defaults) are added as `edgeway_process_*` (e.g. `edgeway_process_process_resident_memory_bytes`).',
    'Which series exist depends on the subsystems a process runs (agent, relay, data-plane mode).',
    '',
    '| metric | type | labels | help | defined in |',
    '|---|---|---|---|---|',
    ...defs.map((d) => `| \`${d.name}\` | ${d.type} | ${d.labels.map((l) => `\`${l}\``).join(', ')} | ${d.help.replace(/\|/g, '\\|')} | \`${d.file}\` |`),
    '',
  ].join('\n');
}

const outputs = { 'docs/configuration.md': configDoc(), 'docs/metrics.md': metricsDoc() };
if (process.argv.includes('--check')) {
  const stale = Object.entries(outputs).filter(([p, text]) => !existsSync(join(root, p)) || readFileSync(join(root, p), 'utf8') !== text).map(([p]) => p);
  if (stale.length) { console.error(`out of date: ${stale.join(', ')} (npm run build && node scripts/docs-reference.mjs)`); process.exit(1); }
} else {
  for (const [p, text] of Object.entries(outputs)) writeFileSync(join(root, p), text);
  console.log(`wrote ${Object.keys(outputs).join(', ')}`);
}
