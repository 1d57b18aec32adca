# edgeway container image (agent, relay, gateway: one image, the command picks).
# NOT BUILT OR RUN HERE: the development machine has no container runtime and no
# registry other than npm and Debian's. Kept minimal; verify on a machine with
# Docker/BuildKit before relying on it:  docker build -t edgeway:0.1.0 .
#
# Stage 1 builds the TypeScript, the native addon (splice, sockmap, libbpf) and the
# eBPF objects; stage 2 is a slim Debian 12 runtime with the tools the data plane
# calls (nft, iptables, ip) and only production dependencies.

FROM node:22-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev libnftables-dev cmake g++ make python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json binding.gyp ./
COPY scripts ./scripts
COPY native ./native
COPY bpf ./bpf
# npm ci runs the package's install script: it builds the addon (scripts/install-native.mjs).
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
RUN npm run build && sh scripts/build-bpf.sh && npm prune --omit=dev --no-audit --no-fund

FROM node:22-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables libnftables1 iptables iproute2 libbpf1 bpftool ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/edgeway
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
COPY --from=build /src/native/build ./native/build
COPY --from=build /src/bpf/build ./bpf/build
# The manifests mount the config at /etc/edgeway and the state at /var/lib/edgeway.
ENTRYPOINT ["node", "/opt/edgeway/bin/edgeway.js"]
CMD ["--help"]
