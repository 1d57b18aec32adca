#!/usr/bin/env node
// `npm run bench [name...]`: runs bench/<name>.mjs scripts (all when none given).
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const dir = new URL('.', import.meta.url).pathname;
const all = readdirSync(dir).filter((f) => f.endsWith('.mjs') && f !== 'run.mjs').map((f) => f.replace(/\.mjs$/, ''));
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : all;
let failed = 0;
for (const name of wanted) {
  if (!all.includes(name)) { console.error(`no benchmark "${name}"; have: ${all.join(', ')}`); failed++; continue; }
  console.log(`\n## bench/${name}`);
  const r = spawnSync(process.execPath, [`${dir}${name}.mjs`], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
if (all.length === 0) console.log('no benchmarks yet');
process.exit(failed ? 1 : 0);
