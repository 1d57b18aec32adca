#!/usr/bin/env node
// Headline figures from bench/results/*.json → docs/benchmarks.svg (bar chart of
// ratios against each benchmark's own baseline, measured in the same run) and the
// table between the bench markers in README.md. `--check` fails (exit 1) when either
// is out of date instead of writing (test/docs/docs.test.ts runs it).
// Node built-ins only. Figures come from a noisy shared 2-core box: ratios, not absolutes.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const res = (n) => {
  const p = join(root, 'bench/results', `${n}.json`);
  return existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')) : undefined;
};
const rows = []; // { bench, what, ratio?, value?, baseline }
const add = (bench, what, ratio, baseline, value) => { if (Number.isFinite(ratio) || value) rows.push({ bench, what, ratio, baseline, value }); };

const dp = res('dataplane');
for (const r of dp?.rows ?? []) if (/bulk|new conns/.test(r.metric)) add('dataplane', `ClusterIP via nftables DNAT, ${r.metric}`, r.ratio, 'direct');
const eb = res('ebpf');
for (const r of eb?.rows ?? []) if (r.mode !== 'direct') add('ebpf', `new conns/s, ${r.mode}`, r.ratio, 'direct');
const px = res('proxy')?.result;
// Figures are { min, median, max } (older results: plain numbers).
const pxv = (r, k) => (typeof r?.[k] === 'number' ? r[k] : r?.[k]?.median);
if (px?.direct) {
  for (const [k, what, ref] of [['edgeway (addon)', 'the edgeway proxy (L4, addon)', 'haproxy'], ['edgeway', 'the edgeway proxy (L4)', 'haproxy'], ['haproxy', 'HAProxy mode tcp', undefined], ['socat', 'socat', undefined], ['edgeway http', 'the edgeway HTTP path (L7)', 'haproxy http'], ['haproxy http', 'HAProxy mode http', undefined]]) {
    if (!px[k]) continue;
    if (pxv(px[k], 'gbps')) add('proxy', `bulk through ${what}`, pxv(px[k], 'gbps') / pxv(px.direct, 'gbps'), 'direct');
    add('proxy', `new conns/s through ${what}`, pxv(px[k], 'connPerSec') / pxv(px.direct, 'connPerSec'), 'direct');
    if (ref && px[ref]) {
      add('proxy', `keep-alive req/s through ${what}`, pxv(px[k], 'keepAliveRps') / pxv(px[ref], 'keepAliveRps'), ref);
      add('proxy', `new conns/s through ${what}`, pxv(px[k], 'connPerSec') / pxv(px[ref], 'connPerSec'), ref);
    }
  }
}
const ac = res('accel');
const acDirect = ac?.rows?.find((r) => r.name === 'direct');
for (const r of ac?.rows ?? []) if (r.name !== 'direct' && acDirect) add('accel', `bulk, ${r.name}`, r.gbps / acDirect.gbps, 'direct');
for (const r of res('dns')?.rows ?? []) if (r.server !== 'dnsmasq') add('dns', `QPS, ${r.set}, ${r.server}`, r.ratio, 'dnsmasq');
// Per CPU-second of the server: far less sensitive than QPS to other load on a shared box.
for (const r of res('dns')?.rows ?? []) if (r.server !== 'dnsmasq' && r.cpuRatio) add('dns', `queries per CPU-second, ${r.set}, ${r.server}`, r.cpuRatio, 'dnsmasq');
const tn = res('tunnel');
if (tn?.ratios) {
  add('tunnel', 'cross-LAN bulk, tunnel direct', tn.ratios.directBulk, 'raw TCP');
  add('tunnel', 'cross-LAN bulk, tunnel relayed', tn.ratios.relayedBulk, 'raw TCP');
}
const msText = (x) => (x < 10 ? x.toFixed(1) : String(Math.round(x)));
for (const r of res('nft-sync')?.results ?? []) {
  if (r.nftCli4kFull) {
    // The agent's way: full applies through the nft CLI (huge pages), changes in-process.
    add('nft-sync', `${r.services} services: full apply (nft CLI) / one change (in-process)`, undefined, '', `${Math.round(r.nftCli.fullMs)} ms / ${msText(r.nft.oneChangeMs)} ms (full apply in-process: ${Math.round(r.nft.fullMs)} ms; CLI on 4 KiB pages: ${Math.round(r.nftCli4kFull.median)} ms)`);
  } else {
    const cli = r.nftCli ? ` (nft CLI: ${Math.round(r.nftCli.fullMs)} ms / ${Math.round(r.nftCli.oneChangeMs)} ms)` : '';
    add('nft-sync', `${r.services} services: full apply / one change${r.nftCli ? ', in-process' : ''}`, undefined, '', `${Math.round(r.nft.fullMs)} ms / ${msText(r.nft.oneChangeMs)} ms${cli}`);
  }
  if (r.staticEdit) add('nft-sync', `${r.services} services: one edit in a static file, end to end`, undefined, '', `${Math.round(r.staticEdit.total.median)} ms`);
}
for (const r of res('ebpf-apply')?.rows ?? []) add('ebpf-apply', `${r.services} services via ${r.backend}: fresh apply`, undefined, '', `${Math.round(r.freshMs)} ms`);

const table = [
  '| bench | measurement | figure | baseline |',
  '|---|---|---|---|',
  ...rows.map((r) => `| ${r.bench} | ${r.what} | ${r.value ?? `${r.ratio.toFixed(2)}×`} | ${r.baseline || '—'} |`),
].join('\n');

const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
function svg() {
  const bars = rows.filter((r) => Number.isFinite(r.ratio));
  const W = 760, L = 330, H = 22, top = 40, max = Math.max(1.5, ...bars.map((b) => b.ratio));
  const x = (v) => L + (v / max) * (W - L - 60);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${top + bars.length * H + 30}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="20" font-size="14" font-weight="bold">edgeway benchmarks: ratio to each baseline, same run (noisy shared 2-core box)</text>`,
    `<line x1="${x(1)}" y1="${top - 6}" x2="${x(1)}" y2="${top + bars.length * H}" stroke="#888" stroke-dasharray="4 3"/>`,
    `<text x="${x(1) + 3}" y="${top - 8}" fill="#555">1× baseline</text>`];
  bars.forEach((b, i) => {
    const y = top + i * H;
    out.push(`<text x="${L - 6}" y="${y + 14}" text-anchor="end">${esc(`${b.bench}: ${b.what}`)}</text>`,
      `<rect x="${L}" y="${y + 3}" width="${Math.max(1, x(b.ratio) - L).toFixed(1)}" height="${H - 6}" fill="${b.ratio >= 0.9 ? '#2e8b57' : b.ratio >= 0.5 ? '#d9a400' : '#c0392b'}"/>`,
      `<text x="${(x(b.ratio) + 4).toFixed(1)}" y="${y + 14}">${b.ratio.toFixed(2)}× ${esc(b.baseline)}</text>`);
  });
  out.push(`<text x="10" y="${top + bars.length * H + 20}" fill="#555">Generated by scripts/bench-report.mjs from bench/results/*.json.</text>`, '</svg>', '');
  return out.join('\n');
}

const readmePath = join(root, 'README.md');
const readme = readFileSync(readmePath, 'utf8');
const BEGIN = '<!-- bench:begin (generated by scripts/bench-report.mjs) -->';
const END = '<!-- bench:end -->';
const i = readme.indexOf(BEGIN);
const j = readme.indexOf(END);
if (i < 0 || j < i) { console.error(`README.md lacks the ${BEGIN} … ${END} markers`); process.exit(1); }
const newReadme = `${readme.slice(0, i + BEGIN.length)}\n${table}\n${readme.slice(j)}`;
const svgPath = join(root, 'docs/benchmarks.svg');
const newSvg = svg();
if (process.argv.includes('--check')) {
  const stale = [newReadme !== readme && 'README.md bench table', (!existsSync(svgPath) || readFileSync(svgPath, 'utf8') !== newSvg) && 'docs/benchmarks.svg'].filter(Boolean);
  if (stale.length) { console.error(`out of date: ${stale.join(', ')} (run node scripts/bench-report.mjs)`); process.exit(1); }
  process.exit(0);
}
writeFileSync(readmePath, newReadme);
writeFileSync(svgPath, newSvg);
console.log(`${rows.length} rows → README.md, docs/benchmarks.svg`);
