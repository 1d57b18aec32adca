#!/usr/bin/env bash
# System packages edgeway's build, tests and benchmarks use (Debian 12). Idempotent;
# skips apt entirely when everything is already installed.
set -euo pipefail
pkgs=(
  nftables iptables iproute2 kmod procps   # data plane, namespaces
  clang llvm libbpf-dev bpftool make cmake g++ python3  # BPF objects and the native addon
  libnftables-dev                           # edgeway_nft.node: nftables updates in-process
  dnsutils                                  # dig, for DNS tests
  openssl                                   # certificates made by the gateway TLS tests
  prometheus                                # promtool, and the scrape test runs a real Prometheus
)
# `kubectl kustomize` renders deploy/kubernetes in the manifest test. Debian's
# kubernetes-client (kubectl 1.20) when no kubectl is installed: another package's
# /usr/bin/kubectl (e.g. a cloud SDK's) would make dpkg refuse the install.
command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(haproxy socat wrk iperf3 dnsperf dnsmasq unbound nginx)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "system packages present"; exit 0; fi
if [ "$(id -u)" -ne 0 ]; then echo "missing packages: ${missing[*]} (run as root to install)"; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
