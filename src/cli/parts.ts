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
import { createTunnelPart } from '../tunnel/part.js';

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
export const agentParts: AgentPartFactory[] = [createTunnelPart];
