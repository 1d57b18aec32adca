#!/usr/bin/env node
// bench/dns-fuzz: the DNS fuzz test (test/dns/fuzz.test.ts) with a longer run.
//   npm run bench dns-fuzz
//   DNS_FUZZ_COUNT=5000000 DNS_FUZZ_SEED=123 node bench/dns-fuzz.mjs
// CI runs 100k packets with the default seed; this runs 2M (default) with a random
// seed printed first, so a failure can be replayed with DNS_FUZZ_SEED.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const count = process.env.DNS_FUZZ_COUNT ?? '2000000';
const seed = process.env.DNS_FUZZ_SEED ?? String(Math.floor(Math.random() * 2 ** 31));
console.log(`dns fuzz: ${count} packets, seed ${seed}`);
const t0 = Date.now();
const r = spawnSync('npx', ['vitest', 'run', 'test/dns/fuzz.test.ts', '--testTimeout', '3600000'], {
  cwd: root, stdio: 'inherit', env: { ...process.env, DNS_FUZZ_COUNT: count, DNS_FUZZ_SEED: seed },
});
console.log(`dns fuzz: ${r.status === 0 ? 'passed' : 'FAILED'} in ${((Date.now() - t0) / 1000).toFixed(1)} s (replay: DNS_FUZZ_SEED=${seed} DNS_FUZZ_COUNT=${count})`);
process.exit(r.status ?? 1);
