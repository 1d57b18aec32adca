#!/usr/bin/env node
// Top frames of a V8 .cpuprofile (node --cpu-prof): self time per function, and
// inclusive ("total") time for the frames that matter, as % of the samples.
//   cpuprofile-top.mjs FILE.cpuprofile [N=25]
import { readFileSync } from 'node:fs';

const [file, nArg] = process.argv.slice(2);
if (!file) { console.error('usage: cpuprofile-top.mjs FILE.cpuprofile [N]'); process.exit(2); }
const N = Number(nArg ?? 25);
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const hits = new Map();
for (const id of prof.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
const total = prof.samples.length;
const label = (n) => {
  const cf = n.callFrame;
  const where = cf.url ? `${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^node:/, '')}:${cf.lineNumber + 1}` : '';
  return `${cf.functionName || '(anonymous)'} ${where}`.trim();
};
const self = new Map();
const incl = new Map();
for (const [id, h] of hits) {
  const n = byId.get(id);
  self.set(label(n), (self.get(label(n)) ?? 0) + h);
  // Inclusive: count each distinct label once per stack.
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(byId.get(cur));
    if (seen.has(l)) continue;
    seen.add(l);
    incl.set(l, (incl.get(l) ?? 0) + h);
  }
}
const pct = (h) => `${((100 * h) / total).toFixed(1).padStart(5)}%`;
const idle = self.get('(idle)') ?? 0;
console.log(`${file}: ${total} samples, ${((prof.endTime - prof.startTime) / 1e6).toFixed(1)} s, idle ${pct(idle)}`);
console.log('self:');
for (const [l, h] of [...self].sort((a, b) => b[1] - a[1]).slice(0, N)) console.log(`  ${pct(h)}  ${l}`);
console.log('total (inclusive):');
for (const [l, h] of [...incl].filter(([l]) => !/^\((root|program|idle)\)/.test(l)).sort((a, b) => b[1] - a[1]).slice(0, N)) console.log(`  ${pct(h)}  ${l}`);
