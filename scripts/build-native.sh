#!/usr/bin/env bash
# Builds the optional accelerators: BPF objects (bpf/*.c → bpf/build/*.bpf.o) and
# the native addon (native/ → native/build/Release/edgeway_native.node) with
# cmake-js against the local Node headers (no download). Exits non-zero on failure;
# scripts/install-native.mjs wraps it so `npm install` never fails.
#   --gyp   build the addon with node-gyp instead (binding.gyp, into build/Release)
set -euo pipefail
cd "$(dirname "$0")/.."
sh scripts/build-bpf.sh
if [[ "${1:-}" == "--gyp" ]]; then
  gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
  node "$gyp" rebuild --nodedir="${npm_config_nodedir:-/usr}" -j 2
else
  node node_modules/cmake-js/bin/cmake-js compile -d native -O native/build -p 2
fi
