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
import { createProxyPart } from '../proxy/part.js';

export interface AgentContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  /** Snapshots arrive as `store.on('snapshot', …)`; `store.snapshot` is the current one. */
  readonly store: CatalogStore;
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

/** Registered parts, in start order. */
export const agentParts: AgentPartFactory[] = [
  // Userspace proxy (+ iptables REDIRECTs in iptables mode). Disabled until a plan builder is wired.
  // TODO(lead): wire plan/build.ts once merged, e.g.
  //   planFor: (snapshot) => buildPlan(snapshot, { nodeName: config.nodeName, routableCIDRs: config.dataplane.routableCIDRs,
  //     userspacePorts: config.dataplane.userspacePorts, mode }),
  // (the factory gets ctx.config; build the closure inside a wrapper factory), and
  // remoteDialer: () => tunnel (the tunnel part's RemoteDialer), iptables: (config) => the detected mode is iptables.
  createProxyPart({}),
];
