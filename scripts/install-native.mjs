#!/usr/bin/env node
// The package's own install step (npm runs it after the dependencies). It exists so
// npm never falls back to its implicit `node-gyp rebuild` for the top-level
// binding.gyp (which would try to download Node headers). It builds the optional
// accelerators (scripts/build-native.sh) when the toolchain is there and prints one
// line either way. It never fails the install: without the addon the agent forwards
// with plain Node streams. EDGEWAY_SKIP_NATIVE=1 skips the build.
//   --if-stale  build only when an output is missing or the sources changed since
//               the last build (native/build/edgeway-build.json); scripts/ensure-ready.mjs
//               runs this before `npm start` / `npm test`, so an addon appears once
//               the toolchain does.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { staleReason, writeStamp } from './native-stamp.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fallback = 'using plain Node streams';

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function missing() {
  const out = [];
  if (process.platform !== 'linux') return ['Linux'];
  for (const cmd of ['clang', 'cmake', 'c++']) if (!has(cmd)) out.push(cmd);
  if (!existsSync('/usr/include/bpf/libbpf.h')) out.push('libbpf-dev');
  for (const pkg of ['cmake-js', 'node-addon-api']) {
    if (!existsSync(join(root, 'node_modules', pkg, 'package.json'))) out.push(`npm:${pkg}`);
  }
  return out;
}

function main() {
  if (process.env.EDGEWAY_SKIP_NATIVE === '1') {
    console.log(`edgeway: native accelerators skipped (EDGEWAY_SKIP_NATIVE=1); ${fallback}`);
    return;
  }
  if (process.argv.includes('--if-stale')) {
    const why = staleReason(root);
    if (!why) return;  // up to date: nothing to say
    if (missing().length === 0) console.log(`edgeway: (re)building the native accelerators: ${why}`);
  }
  const lacking = missing();
  if (lacking.length > 0) {
    console.log(`edgeway: native accelerators not built (missing: ${lacking.join(', ')}); ${fallback}`);
    return;
  }
  const r = spawnSync('bash', [join(root, 'scripts', 'build-native.sh')], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status === 0) {
    writeStamp(root);
    console.log('edgeway: native accelerators built (native/build/Release/edgeway_native.node, edgeway_bpf.node, bpf/build/*.bpf.o)');
    return;
  }
  const log = join(root, 'native', 'build', 'install.log');
  try {
    mkdirSync(dirname(log), { recursive: true });
    writeFileSync(log, `${r.stdout ?? ''}\n${r.stderr ?? ''}\n${r.error ? String(r.error) : ''}`);
  } catch { /* the line below still says what happened */ }
  console.log(`edgeway: native accelerators failed to build (see ${log}); ${fallback}`);
}

try {
  main();
} catch (err) {
  console.log(`edgeway: native accelerators not built (${(err instanceof Error ? err.message : String(err)).split('\n')[0]}); ${fallback}`);
}
