#!/usr/bin/env bash
# CI check of the optional accelerators (run after `npm ci`, as root on Linux):
# `npm ci` must have built the addon and the BPF object with cmake-js (the install
# step never fails, so check here), node-gyp must build the same sources from the
# top-level binding.gyp against the local headers, and both builds must load.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f native/build/Release/edgeway_native.node || ! -f bpf/build/sockmap_verdict.bpf.o ]]; then
  echo "ci-native: npm ci did not build the accelerators"
  cat native/build/install.log 2>/dev/null || true
  exit 1
fi
bash scripts/build-native.sh --gyp >/tmp/edgeway-gyp.log 2>&1 || { tail -40 /tmp/edgeway-gyp.log; exit 1; }
for addon in native/build/Release/edgeway_native.node build/Release/edgeway_native.node; do
  node -e "const a = require('./$addon'); if (a.abi !== 1 || typeof a.Pool !== 'function' || typeof a.getOriginalDst !== 'function' || typeof a.bpf?.mapOps !== 'function') process.exit(1); console.log('ci-native: loads', '$addon')"
done
