#!/usr/bin/env bash
# CI: the native addons under AddressSanitizer + UBSan. Builds both addons with
# -fsanitize=address,undefined into native/build-asan (EDGEWAY_SANITIZE=ON), then
# runs the suites that drive native code with the loader pointed there
# (EDGEWAY_NATIVE_BUILD) and Debian's libasan preloaded into every node process
# (Node itself is not instrumented; ASan must be the first library loaded).
# Leak detection is off: Node does not free everything at exit, and LeakSanitizer
# would report Node's own allocations. Any ASan or UBSan report fails the run.
#   scripts/ci-asan.sh [vitest file …]   (default: the native suites — addon exit, EWC1 record pump —, forwarder, sockmap, hole-punch socket and DNS batch socket suites)
set -euo pipefail
cd "$(dirname "$0")/.."
build=native/build-asan
node node_modules/cmake-js/bin/cmake-js compile -d native -O "$build" -p 2 --CDEDGEWAY_SANITIZE=ON >"$build.log" 2>&1 \
  || { tail -40 "$build.log"; exit 1; }
sh scripts/build-bpf.sh
asan=$(gcc -print-file-name=libasan.so)
[[ -e "$asan" ]] || { echo "ci-asan: libasan not found (gcc -print-file-name=libasan.so → $asan)"; exit 1; }
export EDGEWAY_NATIVE_BUILD="$PWD/$build"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=86
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87
# The loader must pick the sanitizer build, or this step proves nothing.
LD_PRELOAD="$asan" node --input-type=module -e "
  const { loadNative } = await import('./dist/native/addon.js');
  const n = loadNative();
  for (const [what, path] of [['edgeway_native.node', n.addonPath], ['edgeway_bpf.node', n.bpfPath]]) {
    if (!path?.startsWith(process.env.EDGEWAY_NATIVE_BUILD)) { console.error('ci-asan: loader did not pick the sanitizer build of', what, '→', path ?? n.addonReason ?? n.bpfReason); process.exit(1); }
  }
  console.log('ci-asan: loader uses', n.addonPath, 'and', n.bpfPath);
  const { loadNftAddon } = await import('./dist/dataplane/nftables/native-nft.js');
  const nft = loadNftAddon();
  if (!nft.path?.startsWith(process.env.EDGEWAY_NATIVE_BUILD)) { console.error('ci-asan: loader did not pick the sanitizer build of edgeway_nft.node →', nft.path ?? nft.reason); process.exit(1); }
  console.log('ci-asan: nftables in-process from', nft.path);"
files=("$@")
if [[ ${#files[@]} -eq 0 ]]; then
  files=(test/dataplane/nft-inprocess.kernel.test.ts test/native test/dataplane/forwarders.kernel.test.ts test/dataplane/sockmap.kernel.test.ts
         test/dataplane/origdst.kernel.test.ts test/proxy/accelerated.kernel.test.ts test/ebpf/libbpf-backend.test.ts
         test/tunnel/punch.test.ts test/dns/udp-batch.test.ts)
fi
LD_PRELOAD="$asan" npx vitest run "${files[@]}"
