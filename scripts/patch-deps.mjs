#!/usr/bin/env node
// Patches applied to installed dependencies, run by the package's own `install`
// script (npm 11 runs the root package's scripts; no patch-package needed).
// Idempotent: a patched file carries a marker and is left alone. Never fails the
// install: a file that does not match is reported and skipped (the relay reports
// the patch state in its metrics and logs).
//
// 1. @libp2p/utils pipe(): `pipe(src, dst, src)` (the circuit relay's
//    createLimitedRelay) wrapped the same message stream in two duplexes; the
//    second one's source was never read, so the relay held every relayed byte
//    until the circuit closed (1.2 GiB RSS after 1 GiB relayed). Fix: one duplex
//    per message stream. Regression test: test/tunnel/relay-pipe.test.ts.
import { readFileSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const MARKER = 'edgeway-pipe-patch';

const ORIGINAL = `export function pipe(...input) {
    const sources = input.map(source => {
        if (isMessageStream(source)) {
            return messageStreamToDuplex(source);
        }
        return source;
    });`;

const PATCHED = `export function pipe(...input) {
    // ${MARKER}: one duplex per message stream, so pipe(a, b, a) does not leave an
    // unread copy of a's messages buffering forever.
    const duplexes = new Map();
    const sources = input.map(source => {
        if (isMessageStream(source)) {
            let duplex = duplexes.get(source);
            if (duplex == null) {
                duplex = messageStreamToDuplex(source);
                duplexes.set(source, duplex);
            }
            return duplex;
        }
        return source;
    });`;

/** Every installed copy of @libp2p/utils' stream-utils.js. */
function findCopies(dir, depth = 0, out = []) {
  if (depth > 6 || !existsSync(dir)) return out;
  const f = join(dir, '@libp2p', 'utils', 'dist', 'src', 'stream-utils.js');
  if (existsSync(f)) out.push(f);
  let entries = [];
  try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return out; }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const sub = join(dir, e.name);
    if (e.name.startsWith('@')) {
      for (const s of readdirSync(sub, { withFileTypes: true })) if (s.isDirectory()) findCopies(join(sub, s.name, 'node_modules'), depth + 1, out);
    } else findCopies(join(sub, 'node_modules'), depth + 1, out);
  }
  return out;
}

export function patchFile(file) {
  const text = readFileSync(file, 'utf8');
  if (text.includes(MARKER)) return 'already';
  if (!text.includes(ORIGINAL)) return 'mismatch';
  writeFileSync(file, text.replace(ORIGINAL, PATCHED));
  return 'patched';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const copies = findCopies(join(root, 'node_modules'));
  if (copies.length === 0) console.log('edgeway: @libp2p/utils not installed; nothing to patch');
  for (const f of copies) {
    let r;
    try { r = patchFile(f); } catch (err) { r = `error: ${err.message}`; }
    console.log(`edgeway: @libp2p/utils pipe() fix: ${r} (${f.slice(root.length + 1)})`);
  }
}
