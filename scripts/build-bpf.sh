#!/bin/sh
# Build the eBPF objects bpf/<name>.c into bpf/build/<name>.bpf.o. Idempotent: an object is rebuilt
# only when its entry file or a header under bpf/lib/ is newer. Exits 0 with a
# message (and no object) when clang is missing, so install never fails on it;
# the data plane then reports the missing object and falls back to nftables.
#   scripts/build-bpf.sh [--force]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/bpf"
out="$src/build"
CLANG=${CLANG:-clang}
ARCH_INC=/usr/include/$(uname -m)-linux-gnu

if ! command -v "$CLANG" >/dev/null 2>&1; then
  echo "build-bpf: $CLANG not found; skipping eBPF objects (socket-LB unavailable)" >&2
  exit 0
fi
mkdir -p "$out"
force=${1:-}
for entry in "$src"/*.c; do
  [ -e "$entry" ] || continue
  name=$(basename "$entry" .c)
  obj="$out/$name.bpf.o"
  if [ "$force" != "--force" ] && [ -f "$obj" ]; then
    stale=0
    for dep in "$entry" "$src"/lib/*.h; do
      if [ "$dep" -nt "$obj" ]; then stale=1; break; fi
    done
    [ "$stale" = 0 ] && continue
  fi
  # Write to a temp file and rename so a concurrent loader never reads half an object.
  "$CLANG" -O2 -g -Wall -Werror -target bpf -I"$ARCH_INC" -I"$src" -c "$entry" -o "$obj.tmp.$$"
  mv -f "$obj.tmp.$$" "$obj"
  echo "build-bpf: built ${obj#"$root"/}"
done
