/**
 * Agent parts: each subsystem (tunnel, proxy, data plane, DNS) plugs into the agent
 * through one factory here. A factory returns undefined when the config disables it.
 * The agent starts parts in this order and stops them in reverse; a part whose
 * start() throws makes the agent stop the ones started before it and exit 1.
 */
import type { Config } from '../config/schema.js';
import type { CatalogStore } from '../catalog/store.js';
import type { Logger } from '../util/log.js';
import type { Registry } from '../metrics/registry.js';
import type { ReadinessCheck } from '../metrics/server.js';
import type { ResolvedMode } from '../dataplane/mode.js';
import type { PlanFor } from '../plan/memo.js';
import type { RemoteDialer } from '../proxy/remote-dialer.js';
import type { UserspaceListeners } from '../dataplane/sync-engine.js';
import { AgentError } from './errors.js';

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
  /**
   * Start serving; must not throw for conditions the part can retry on its own,
   * and must throw (releasing what it took) for those it cannot.
   */
  start(): Promise<void>;
  /**
   * Stop and release everything (sockets, interfaces); kernel state is kept unless
   * the part says otherwise. Also called after a start() that threw or was
   * interrupted, so it must cope with a part that is half started.
   */
  stop(): Promise<void>;
  readonly readiness?: ReadinessCheck;
}

/**
 * Links between the parts of one agent, filled in as the parts are built (one
 * object per agent run: no module state). Later parts read what earlier ones set.
 */
export interface AgentWiring {
  /** The tunnel's dialer for remote endpoints (undefined until the tunnel has started). */
  remoteDialer?: () => RemoteDialer | undefined;
  /** The addon's EWC1 record pump, from the proxy's accelerators (set when the proxy part is built). */
  aead?: () => import('../native/aead-forwarder.js').AeadForwarder | undefined;
  /** The proxy's listeners: the data plane opens them before its rules point at them. */
  listeners?: UserspaceListeners;
}

export type AgentPartFactory = (ctx: AgentContext, wiring: AgentWiring) => Promise<AgentPart | undefined>;

/**
 * Registered parts, in start order (stopped in reverse): the tunnel and the proxy
 * listen before the data plane writes rules that lead traffic to them; on stop the
 * data plane stops syncing first, then the proxy closes.
 */
export const agentParts: AgentPartFactory[] = [
  // Tunnel to nodes in other LANs (libp2p); the proxy dials remote endpoints through it.
  async (ctx, wiring) => {
    // Checked before the import: with the tunnel off, libp2p is never loaded.
    if (!ctx.config.tunnel.enabled) return undefined;
    // The proxy part (built next) owns the accelerators; flows ask for the record pump when they start.
    const part = await (await import('../tunnel/part.js')).createTunnelPart({ ...ctx, aead: () => wiring.aead?.() });
    if (!part) return undefined;
    wiring.remoteDialer = () => part.remoteDialer();
    return {
      name: part.name,
      readiness: part.readiness,
      stop: () => part.stop(),
      async start() {
        await part.start();
        // libp2p runs with FaultTolerance.NO_FATAL (a relay address that cannot be
        // reserved must not kill the node), so a TCP listen that failed (address in
        // use) still "starts". Such a tunnel reaches nobody: fail the start instead.
        const t = ctx.config.tunnel;
        if (t.listenAddresses.length === 0) return;
        const addrs = part.service.node?.getMultiaddrs().map(String) ?? [];
        if (!addrs.some((a) => !a.includes('/p2p-circuit'))) {
          throw new AgentError('ERR_TUNNEL_LISTEN', `tunnel could not listen on ${t.listenAddresses.map((a) => `${a}:${t.listenPort}`).join(', ')} (address in use or not local?)`);
        }
      },
    };
  },
  // Userspace proxy: serves every service port the plan sends to userspace (L7
  // policies, remote endpoints through the tunnel, everything in iptables mode).
  async (ctx, wiring) => {
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
    // The tunnel's data channel hands bulk bytes to the same pool (EWC1 record pump).
    if (accel) wiring.aead = () => accel?.aead();
    const remote = wiring.remoteDialer;
    const part = await createProxyPart({ ...(remote ? { remoteDialer: () => remote() } : {}), forwarder: () => forwarder })(ctx);
    wiring.listeners = part.listeners;
    return {
      name: part.name,
      readiness: part.readiness,
      start: () => part.start(),
      // Flows are closed (with their deadline) before the pool that forwards them.
      stop: async () => { try { await part.stop(); } finally { accel?.close(); } },
    };
  },
  // Kernel data plane: nftables (+ eBPF socket-LB) or iptables; opens the proxy's
  // listeners before the rules that point at them.
  async (ctx, wiring) => {
    const { createDataplanePart } = await import('../dataplane/part.js');
    const { config, registry, logger } = ctx;
    return createDataplanePart({
      ...ctx,
      ...(wiring.listeners ? { listeners: wiring.listeners } : {}),
      socketLb: async () => {
        const { SocketLb } = await import('../dataplane/ebpf/socket-lb.js');
        const cgroup = config.dataplane.ebpf.cgroupPath;
        return new SocketLb({ registry, logger, pinDir: config.dataplane.ebpf.pinDir, ...(cgroup ? { cgroup } : {}) });
      },
    });
  },
  // SOCKS5 to <nodeName>:<port> through the tunnel (off by default).
  async (ctx, wiring) => ctx.config.socks5.enabled ? (await import('../socks5/part.js')).createSocks5Part({ ...ctx, dialer: () => wiring.remoteDialer?.() }) : undefined,
  // Node-local DNS on dns.listen (the catalog's cluster zone, forwarding the rest).
  async (ctx) => ctx.config.dns.enabled ? (await import('../dns/part.js')).createDnsPart(ctx) : undefined,
];
