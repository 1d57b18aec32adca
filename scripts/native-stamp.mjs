// What the native build was made from, so a later `npm start` / `npm test` can tell
// a missing or stale addon (scripts/ensure-ready.mjs → install-native.mjs
// --if-stale) — e.g. after `npm test` installed clang on a box where `npm ci` ran
// without it. Node built-ins only: it runs before the dependencies exist.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

/** Files the addons and BPF objects are built from (relative to the package root). */
const INPUT_DIRS = ['native/src', 'bpf/lib'];
const INPUT_FILES = ['native/CMakeLists.txt', 'scripts/build-native.sh', 'scripts/build-bpf.sh'];

/** What a complete build leaves behind. */
export const OUTPUTS = ['native/build/Release/edgeway_native.node', 'native/build/Release/edgeway_bpf.node', 'bpf/build/sockmap_verdict.bpf.o', 'bpf/build/sock_lb.bpf.o'];

export function stampPath(root) {
  return join(root, 'native', 'build', 'edgeway-build.json');
}

function files(root, dir) {
  const abs = join(root, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(root, join(dir, e.name)) : [join(dir, e.name)]));
}

/** sha256 over the inputs' names and bytes, plus the Node-API version built against. */
export function inputsDigest(root) {
  const h = createHash('sha256');
  const bpfEntries = existsSync(join(root, 'bpf')) ? readdirSync(join(root, 'bpf')).filter((f) => f.endsWith('.c')).map((f) => join('bpf', f)) : [];
  const all = [...INPUT_DIRS.flatMap((d) => files(root, d)), ...INPUT_FILES, ...bpfEntries].filter((f) => existsSync(join(root, f))).sort();
  for (const f of all) h.update(`${relative(root, join(root, f))}\0`).update(readFileSync(join(root, f))).update('\0');
  h.update(`napi ${process.versions.napi ?? '?'}`);
  // edgeway_nft.node is built only where libnftables-dev is: installing it later makes the build stale.
  h.update(existsSync('/usr/include/nftables/libnftables.h') ? ' libnftables' : '');
  return h.digest('hex');
}

/** undefined when every output exists and was built from the current inputs; else why not. */
export function staleReason(root) {
  const missing = OUTPUTS.filter((o) => !existsSync(join(root, o)));
  if (missing.length > 0) return `missing ${missing.join(', ')}`;
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(stampPath(root), 'utf8'));
  } catch {
    return 'no build stamp';
  }
  return stamp.inputs === inputsDigest(root) ? undefined : 'sources changed since the last build';
}

export function writeStamp(root) {
  const p = stampPath(root);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, `${JSON.stringify({ inputs: inputsDigest(root), node: process.version, builtAt: new Date().toISOString() }, null, 2)}\n`);
}
