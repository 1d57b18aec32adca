#!/usr/bin/env bash
# CI check of the optional accelerators (run after `npm ci`, as root on Linux):
# `npm ci` must have built the addon and the BPF object with cmake-js (the install
# step never fails, so check here), node-gyp must build the same sources from the
# top-level binding.gyp against the local headers, and both builds must load.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f native/build/Release/edgeway_native.node || ! -f native/build/Release/edgeway_bpf.node || ! -f bpf/build/sockmap_verdict.bpf.o ]]; then
  echo "ci-native: npm ci did not build the accelerators"
  cat native/build/install.log 2>/dev/null || true
  exit 1
fi
bash scripts/build-native.sh --gyp >/tmp/edgeway-gyp.log 2>&1 || { tail -40 /tmp/edgeway-gyp.log; exit 1; }
# Two addons, loaded apart: edgeway_native.node must not need libbpf (splice keeps
# working on a host where libbpf cannot be loaded).
for dir in native/build build; do
  if readelf -d "$dir/Release/edgeway_native.node" | grep -q 'NEEDED.*libcrypto'; then
    echo "ci-native: $dir/Release/edgeway_native.node links libcrypto (it must use Node's own OpenSSL)"; exit 1
  fi
  if readelf -d "$dir/Release/edgeway_native.node" | grep -q 'NEEDED.*libbpf'; then
    echo "ci-native: $dir/Release/edgeway_native.node links libbpf"; exit 1
  fi
  node -e "
    const n = require('./$dir/Release/edgeway_native.node'), b = require('./$dir/Release/edgeway_bpf.node');
    if (n.abi !== 3 || typeof n.Pool !== 'function' || typeof n.SockmapLink !== 'function' || typeof n.getOriginalDst !== 'function') process.exit(1);
    // The EWC1 record pump finds Node's own OpenSSL (nothing links libcrypto).
    if (typeof n.Pool.prototype.aeadPair !== 'function' || n.aeadReason !== null) { console.error('ci-native: aead pump unusable:', n.aeadReason); process.exit(1); }
    if (b.abi !== 3 || typeof b.Sockmap !== 'function' || typeof b.bpf?.mapOps !== 'function') process.exit(1);
    console.log('ci-native: both addons load from $dir/Release')"
done
# edgeway_nft.node (libnftables in-process) is built by both builds where
# libnftables-dev is installed (.ci/run installs it), and only it links libnftables:
# a host without libnftables1 keeps splice and libbpf.
if [[ -f /usr/include/nftables/libnftables.h ]]; then
  for dir in native/build build; do
    [[ -f "$dir/Release/edgeway_nft.node" ]] || { echo "ci-native: $dir/Release/edgeway_nft.node not built"; exit 1; }
    for other in edgeway_native edgeway_bpf; do
      if readelf -d "$dir/Release/$other.node" | grep -q 'NEEDED.*libnftables'; then echo "ci-native: $dir/Release/$other.node links libnftables"; exit 1; fi
    done
    node -e "
      const m = require('./$dir/Release/edgeway_nft.node');
      if (m.abi !== 3 || typeof m.NftContext !== 'function') process.exit(1);
      console.log('ci-native: edgeway_nft.node loads from $dir/Release')"
  done
fi
