/**
 * Agent parts: each subsystem (data plane, DNS, proxy, tunnel) plugs into the agent
 * through one factory here. A factory returns undefined when the config disables it.
 * The agent starts parts in this order and stops them in reverse.
 */
import type { Config } from '../config/schema.js';
import type { CatalogStore } from '../catalog/store.js';
import type { Logger } from '../util/log.js';
import type { Registry } from '../metrics/registry.js';
import type { ReadinessCheck } from '../metrics/server.js';
import type { ResolvedMode } from '../dataplane/mode.js';
import type { PlanFor } from '../plan/memo.js';

export interface AgentContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  /** Snapshots arrive as `store.on('snapshot', …)`; `store.snapshot` is the current one. */
  readonly store: CatalogStore;
  /** The data-plane mode resolved at start (doctor's decision). */
  readonly mode: ResolvedMode;
  /** The plan of a snapshot, built once and shared by every part. */
  readonly planFor: PlanFor;
  /** Set an annotation on this node's Node object (only with the Kubernetes source). */
  readonly annotateNode?: (key: string, value: string) => Promise<void>;
}

export interface AgentPart {
  readonly name: string;
  /** Start serving; must not throw for conditions the part can retry on its own. */
  start(): Promise<void>;
  /** Stop and release everything (sockets, interfaces); kernel state is kept unless the part says otherwise. */
  stop(): Promise<void>;
  readonly readiness?: ReadinessCheck;
}

export type AgentPartFactory = (ctx: AgentContext) => Promise<AgentPart | undefined>;

/**
 * Each agent's tunnel part, for the proxy of the same agent: keyed by the agent's
 * catalog store (each factory gets a context object of its own; the store is the
 * agent's one), so two agents in one process never share a tunnel.
 */
const tunnels = new WeakMap<CatalogStore, import('../tunnel/part.js').TunnelPart>();

/** Registered parts, in start order. */
export const agentParts: AgentPartFactory[] = [
  // Kernel data plane: nftables, plus eBPF socket-LB when the mode enables it.
  async (ctx) => {
    const { createDataplanePart } = await import('../dataplane/part.js');
    const { config, registry, logger } = ctx;
    return createDataplanePart({
      ...ctx,
      socketLb: async () => {
        const { SocketLb } = await import('../dataplane/ebpf/socket-lb.js');
        const cgroup = config.dataplane.ebpf.cgroupPath;
        return new SocketLb({ registry, logger, pinDir: config.dataplane.ebpf.pinDir, ...(cgroup ? { cgroup } : {}) });
      },
    });
  },
  // Tunnel to nodes in other LANs (libp2p); the proxy dials remote endpoints through it.
  async (ctx) => {
    const part = await (await import('../tunnel/part.js')).createTunnelPart(ctx);
    if (part) tunnels.set(ctx.store, part);
    return part;
  },
  // Userspace proxy: serves every service port the plan sends to userspace (L7
  // policies, remote endpoints through the tunnel, everything in iptables mode).
  async (ctx) => {
    // Without a kernel data plane nothing is redirected to the proxy's ports.
    if (ctx.mode.base === 'none') return undefined;
    const { createProxyPart } = await import('../proxy/part.js');
    // Accelerated forwarding (splice/sockmap) when the addon is usable and allowed.
    const { config, registry, logger } = ctx;
    let accel: import('../native/accelerator.js').Accelerators | undefined;
    let forwarder: import('../native/forwarder.js').Forwarder | undefined;
    if (config.accelerator.mode !== 'node') {
      const { acceleratorsFromConfig } = await import('../native/accelerator.js');
      const a = acceleratorsFromConfig(config.accelerator, { registry, logger });
      if (a.accelerators.status.some((st) => st.kind !== 'node' && st.available)) ({ accelerators: accel, forwarder } = a);
      else a.accelerators.close();
    }
    const part = await createProxyPart({
      planFor: ctx.planFor,
      iptables: () => ctx.mode.base === 'iptables',
      remoteDialer: () => tunnels.get(ctx.store)?.remoteDialer(),
      forwarder: () => forwarder,
    })(ctx);
    if (!part) { accel?.close(); return undefined; }
    return { ...part, name: part.name, readiness: part.readiness, start: () => part.start(), stop: async () => { await part.stop(); accel?.close(); } };
  },
  // Node-local DNS on dns.listen (the catalog's cluster zone, forwarding the rest).
  async (ctx) => (await import('../dns/part.js')).createDnsPart(ctx),
];
