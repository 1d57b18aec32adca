#!/usr/bin/env node
// Makes `npm start` / `npm test` work as the first commands on a fresh checkout:
// installs system packages (as root, when missing), runs `npm ci` when
// node_modules is absent or older than package-lock.json, and builds when dist/ is
// older than the sources, and (re)builds the native addons when they are missing or
// stale and the toolchain is there — also when the toolchain arrived after `npm ci`
// (e.g. `npm start` on a bare box, then `npm test` installs clang). Uses only Node
// built-ins (it runs before dependencies exist).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const sh = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

if (process.argv.includes('--system') && process.getuid?.() === 0) sh(join(root, 'scripts/install-system-deps.sh'), []);
if (mtime(join(root, 'node_modules/.package-lock.json')) < mtime(join(root, 'package-lock.json'))) sh('npm', ['ci', '--no-audit', '--no-fund']);
if (process.env.EDGEWAY_SKIP_NATIVE !== '1') sh(process.execPath, [join(root, 'scripts/install-native.mjs'), '--if-stale']);
if (!existsSync(join(root, 'dist/cli/main.js')) || mtime(join(root, 'dist/cli/main.js')) < newest(join(root, 'src'))) sh('npm', ['run', 'build']);
