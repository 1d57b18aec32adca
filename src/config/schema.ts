/**
 * The configuration contract (DESIGN.md "Contract"). Every key is optional; the
 * defaults here are the ones README.md documents. Unknown keys are rejected so a
 * typo never silently falls back to a default.
 */
import { z } from 'zod';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port (IPv6 as [addr]:port)');

const cidr = z
  .string()
  .regex(/^([0-9.]+\/\d{1,2}|[0-9a-fA-F:]+\/\d{1,3})$/, 'expected a CIDR such as 10.0.0.0/8 or fd00::/8');

const port = z.number().int().min(1).max(65535);

export const kubernetesSourceSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Path to a kubeconfig; empty = $KUBECONFIG, ~/.kube/config, then in-cluster. */
    kubeconfig: z.string().default(''),
    /** Plain API URL without auth, e.g. KubeEdge's metaServer http://127.0.0.1:10550. */
    apiServer: z.string().url().or(z.literal('')).default(''),
    /** Initial backoff after an informer failure; doubles up to maxBackoffMs. */
    minBackoffMs: z.number().int().min(10).default(500),
    maxBackoffMs: z.number().int().min(100).default(30_000),
  })
  .strict();

export const staticSourceSchema = z
  .object({
    paths: z.array(z.string().min(1)).default([]),
    /** Poll interval for file changes (fs.watch misses renames on some editors). */
    pollMs: z.number().int().min(50).default(1000),
  })
  .strict();

export const relayNodeSchema = z
  .object({
    nodeName: z.string().min(1),
    advertiseAddress: z.array(z.string().min(1)).default([]),
    /** Peer id of the relay when known in advance (else learnt on first dial). */
    peerId: z.string().optional(),
  })
  .strict();

/** The userspace proxy (iptables mode, L7 policies, remote endpoints). */
export const proxySchema = z
  .object({
    /** Per connect attempt to an endpoint. */
    connectTimeoutMs: z.number().int().min(10).default(3_000),
    /** Attempts per flow, each on another endpoint. */
    maxConnectAttempts: z.number().int().min(1).max(16).default(3),
    /** TCP flow closed after this long without a byte (0 = never). */
    idleTimeoutMs: z.number().int().min(0).default(3_600_000),
    udpSessionIdleMs: z.number().int().min(100).default(30_000),
    /** TCP flows at once (each holds two fds; the process fd limit may be 20k). */
    maxFlows: z.number().int().min(1).default(9_000),
    maxUdpSessions: z.number().int().min(1).default(4_096),
    /** Per-service metric labels; turn off for large clusters. */
    perServiceLabels: z.boolean().default(true),
    /** iptables mode backend; auto = the one the host's rules use. */
    iptablesBackend: z.enum(['auto', 'legacy', 'nft']).default('auto'),
  })
  .strict();

export const relayServerSchema = z
  .object({
    /** Reservations held at once (libp2p default 15 is far too few for a cluster). */
    maxReservations: z.number().int().min(1).default(4096),
    /** Bytes per relayed connection; 0 = unlimited (the libp2p 128 KiB default cuts tunnel flows). */
    dataLimitBytes: z.number().int().min(0).default(0),
    /** Lifetime of a relayed connection; 0 = unlimited (the libp2p 2 min default cuts tunnel flows). */
    durationLimitMs: z.number().int().min(0).default(0),
    reservationTtlMs: z.number().int().min(10_000).default(2 * 60 * 60 * 1000),
    /** Relayed connections (HOP/STOP streams) at once. */
    maxCircuits: z.number().int().min(1).default(4096),
    /** Rendezvous records held (one per node). */
    maxRendezvousRecords: z.number().int().min(1).default(65_536),
  })
  .strict();

export const channelSchema = z
  .object({
    /** Carry flows over the fast data channel (TLS 1.3 PSK) when a path exists; libp2p streams otherwise. */
    enabled: z.boolean().default(true),
    /** Established channel connections kept ready per peer, so a new flow pays no handshake. */
    warmConnections: z.number().int().min(1).max(64).default(8),
    /** Relay data pairs at once (`edgeway relay`). */
    maxRelayPairs: z.number().int().min(1).default(8192),
  })
  .strict();

export const tunnelSchema = z
  .object({
    enabled: z.boolean().default(true),
    listenPort: port.default(20006),
    /** Addresses to listen on (the port is listenPort). */
    listenAddresses: z.array(z.string().min(1)).default(['0.0.0.0']),
    /** Addresses announced to peers instead of the listen ones (host or host:port or multiaddr). */
    announce: z.array(z.string().min(1)).default([]),
    psk: z.object({ path: z.string().default('') }).strict().default({ path: '' }),
    relayNodes: z.array(relayNodeSchema).default([]),
    /** mDNS discovery on the LAN: not built yet; `true` is refused rather than ignored. */
    mdns: z.boolean().refine((v) => !v, 'mDNS discovery is not built in this version').default(false),
    /** A direct dial slower than this falls back to a relay (then upgrades in the background). */
    directDialTimeoutMs: z.number().int().min(50).default(1500),
    /** A UDP session through the tunnel with no datagram for this long is closed (its stream too). */
    udpIdleTimeoutMs: z.number().int().min(100).default(60_000),
    /**
     * A peer connection (libp2p connections and the data channel's warm pool; not
     * relays) with no open flow for this long is closed; the next flow dials again.
     * 0 = never.
     */
    peerIdleMs: z.number().int().min(0).default(300_000),
    /** Inbound tunnel flows at once. */
    maxFlows: z.number().int().min(1).default(8192),
    /** Write `tunnel-state.json` (peers by path, relays, counters) under stateDir. */
    stateFile: z.boolean().default(true),
    /**
     * TCP port of the data channel (agents: TLS data listener for LAN peers;
     * relay: the blind pairing port). 0 = listenPort + 1.
     */
    dataPort: z.number().int().min(0).max(65_535).default(0),
    channel: channelSchema.default(() => channelSchema.parse({})),
    relayServer: relayServerSchema.default(() => relayServerSchema.parse({})),
  })
  .strict();

/** The edge gateway (`edgeway gateway`): Istio Gateway/VirtualService and Gateway API ingress. */
export const gatewaySchema = z
  .object({
    /**
     * Where listeners bind: interface names (eth0) or CIDRs (192.168.0.0/16);
     * empty = every non-loopback address of the node (multi-NIC). Followed as
     * addresses come and go.
     */
    addresses: z.array(z.string().min(1)).default([]),
    /** How often the node's addresses are re-read. */
    addressPollMs: z.number().int().min(100).default(2_000),
    /** This gateway's labels, matched against Istio Gateway `spec.selector` (an empty selector matches every gateway). */
    labels: z.record(z.string(), z.string()).default({ istio: 'ingressgateway' }),
    /** Gateway API Gateways served: those of this class. */
    gatewayClassName: z.string().min(1).default('edgeway'),
    /** Per connect attempt to an endpoint. */
    connectTimeoutMs: z.number().int().min(10).default(3_000),
    /** Connect attempts per request, each on another endpoint. */
    maxConnectAttempts: z.number().int().min(1).max(16).default(3),
    /** A client connection silent this long is closed (0 = never). */
    idleTimeoutMs: z.number().int().min(0).default(300_000),
    /** Client connections at once (each proxied one holds two fds). */
    maxConnections: z.number().int().min(1).default(9_000),
    /** Idle keep-alive connections kept per backend endpoint. */
    maxIdlePerEndpoint: z.number().int().min(0).default(128),
  })
  .strict();

/** SOCKS5 on the agent: CONNECT to `<nodeName>:<port>` through the tunnel (ssh to edge nodes). */
export const socks5Schema = z
  .object({
    enabled: z.boolean().default(false),
    /** Loopback by default: it is a door into every node. */
    listen: hostPort.default('127.0.0.1:1080'),
    /** RFC 1929 users; the password is the first line of passwordFile. At least one is required when enabled. */
    users: z.array(z.object({ name: z.string().min(1).max(255), passwordFile: z.string().min(1) }).strict()).default([]),
    /** Ports a CONNECT may reach on a node (the far agent checks them too). */
    allowPorts: z.array(port).default([22]),
  })
  .strict()
  .refine((s) => !s.enabled || s.users.length > 0, 'socks5.users must name at least one user when socks5 is enabled (no anonymous proxy)');

export const configSchema = z
  .object({
    nodeName: z.string().min(1).optional(),
    clusterDomain: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, 'expected a DNS domain such as cluster.local')
      .default('cluster.local'),
    stateDir: z.string().min(1).default('/var/lib/edgeway'),
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
    sources: z
      .object({
        kubernetes: kubernetesSourceSchema.default(kubernetesSourceSchema.parse({})),
        static: staticSourceSchema.default(staticSourceSchema.parse({})),
      })
      .strict()
      .default({ kubernetes: kubernetesSourceSchema.parse({}), static: staticSourceSchema.parse({}) }),
    serviceFilter: z
      .object({ mode: z.enum(['FilterIfLabelExists', 'FilterIfLabelDoesNotExists']).default('FilterIfLabelExists') })
      .strict()
      .default({ mode: 'FilterIfLabelExists' }),
    dataplane: z
      .object({
        mode: z.enum(['auto', 'ebpf', 'nftables', 'iptables', 'none']).default('auto'),
        /** Endpoints inside these CIDRs are reached by kernel DNAT even when on another node. */
        routableCIDRs: z.array(cidr).default([]),
        /**
         * Local ports the kernel redirects userspace-served service ports to (remote
         * endpoints through the tunnel, L7 policies, iptables mode): one port per
         * service port, allocated by the plan. Keep it outside the NodePort range.
         */
        userspacePorts: z
          .string()
          .regex(/^\d{1,5}-\d{1,5}$/, 'expected a port range such as 20100-24999')
          .refine((r) => { const [a, b] = r.split('-').map(Number) as [number, number]; return a >= 1 && b <= 65535 && a <= b; }, 'range must be ascending within 1-65535')
          .default('20100-24999'),
        /** Minimum time between two kernel syncs; bursts in between are coalesced. */
        minSyncIntervalMs: z.number().int().min(0).default(250),
        /** eBPF socket-LB (mode ebpf, or auto when the host supports it). */
        ebpf: z
          .object({
            /** cgroup v2 directory the programs attach to; '' = the cgroup v2 root (every process on the node). */
            cgroupPath: z.string().default(''),
            /** bpffs directory for this agent's pins (maps and programs survive restarts there). */
            pinDir: z.string().regex(/^\/[^.]*$/, 'expected an absolute path without dots').default('/sys/fs/bpf/edgeway'),
          })
          .strict()
          .default({ cgroupPath: '', pinDir: '/sys/fs/bpf/edgeway' }),
        /** Period of the drift check (our table gone or altered → full resync). */
        driftCheckIntervalMs: z.number().int().min(100).default(30_000),
      })
      .strict()
      .default(() => ({ mode: 'auto' as const, routableCIDRs: [], userspacePorts: '20100-24999', ebpf: { cgroupPath: '', pinDir: '/sys/fs/bpf/edgeway' }, minSyncIntervalMs: 250, driftCheckIntervalMs: 30_000 })),
    dns: z
      .object({
        enabled: z.boolean().default(true),
        listen: z.array(hostPort).default(['169.254.96.16:53']),
        /** Dummy interface that carries the DNS address; created and removed by the agent. */
        interface: z.string().min(1).max(15).default('edgeway0'),
        upstreams: z.array(hostPort).default([]),
        ttl: z.number().int().min(0).max(86_400).default(30),
        cacheSize: z.number().int().min(0).default(10_000),
        /** TTL of negative cluster answers (the zone SOA's TTL and MINIMUM, RFC 2308). */
        negativeTtl: z.number().int().min(0).max(86_400).default(5),
        /** Read when `upstreams` is empty (our own addresses are skipped). */
        resolvConf: z.string().min(1).default('/etc/resolv.conf'),
        /** Per upstream and attempt; the next upstream is tried after it. */
        upstreamTimeoutMs: z.number().int().min(10).max(60_000).default(2000),
        maxTcpConnections: z.number().int().min(1).max(10_000).default(256),
        /**
         * Threads answering queries, each on its own socket sharing the port
         * (SO_REUSEPORT); 1 = the main thread only. `auto`: the main thread when
         * UDP is batched through the native addon (the most queries per
         * CPU-second), else one per core. Each worker has its own cache of
         * `cacheSize` entries.
         */
        workers: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto'),
      })
      .strict()
      .default(() => ({
        enabled: true, listen: ['169.254.96.16:53'], interface: 'edgeway0', upstreams: [], ttl: 30, cacheSize: 10_000,
        negativeTtl: 5, resolvConf: '/etc/resolv.conf', upstreamTimeoutMs: 2000, maxTcpConnections: 256, workers: 'auto' as const,
      })),
    tunnel: tunnelSchema.default(() => tunnelSchema.parse({})),
    /**
     * How the userspace proxy moves bytes (src/native): `auto` takes the
     * fastest available path per connection (splice, sockmap, Node streams), a kind
     * starts there and falls back to slower ones; `node` never uses the addon.
     */
    accelerator: z
      .object({
        mode: z.enum(['auto', 'splice', 'sockmap', 'node']).default('auto'),
        /** epoll threads of the native pool, shared by every connection. */
        threads: z.number().int().min(1).max(64).default(2),
        /** splice pipe size per direction (F_SETPIPE_SZ; the kernel caps it at fs.pipe-max-size). */
        pipeSize: z.number().int().min(4096).max(1 << 20).default(1 << 20),
        /** Load the sockmap BPF program (needs CAP_BPF and CAP_NET_ADMIN). */
        sockmap: z.boolean().default(true),
      })
      .strict()
      .default(() => ({ mode: 'auto' as const, threads: 2, pipeSize: 1 << 20, sockmap: true })),
    proxy: proxySchema.default(() => proxySchema.parse({})),
    gateway: gatewaySchema.default(() => gatewaySchema.parse({})),
    socks5: socks5Schema.default(() => socks5Schema.parse({})),
    metrics: z
      .object({ listen: hostPort.or(z.literal('')).default('127.0.0.1:9464') })
      .strict()
      .default({ listen: '127.0.0.1:9464' }),
  })
  .strict();

/** Config file as written (every key optional). */
export type ConfigInput = z.input<typeof configSchema>;
/** Config after defaults; `nodeName` is always resolved by the loader. */
export type Config = z.output<typeof configSchema> & { nodeName: string };
