/**
 * The tunnel as an agent part. Other parts (the proxy) reach remote endpoints
 * through the part's `remoteDialer()` once it has started. No module state: two
 * agents in one process (tests) each have their own tunnel.
 */
import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { Snapshot } from '../catalog/types.js';
import type { Logger } from '../util/log.js';
import type { RemoteDialer } from '../proxy/remote-dialer.js';
import { TunnelService } from './service.js';
import type { AeadSource } from './channel/handover.js';
import { PEER_ID_ANNOTATION } from '../catalog/convert.js';

/** What the part needs from the agent (structurally the agent's AgentContext; nothing imports cli/). */
export interface TunnelPartContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly store: { readonly snapshot: Snapshot };
  /** Publishes the peer id as the Node annotation edgeway.io/peer-id (Kubernetes source only). */
  readonly annotateNode?: (key: string, value: string) => Promise<void>;
  /** The addon's EWC1 record pump (set up by the proxy part, asked per flow). */
  readonly aead?: AeadSource;
}

/** Structurally the agent's AgentPart. */
export interface TunnelPart {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly readiness: { readonly name: string; check(): { ready: boolean; detail?: string } };
  readonly service: TunnelService;
  /** The running tunnel's dialer (undefined until started, and after stop). */
  remoteDialer(): RemoteDialer | undefined;
}

export async function createTunnelPart(ctx: TunnelPartContext): Promise<TunnelPart | undefined> {
  if (!ctx.config.tunnel.enabled) return undefined;
  const service = new TunnelService({
    config: ctx.config, logger: ctx.logger.child({ part: 'tunnel' }), registry: ctx.registry, snapshot: () => ctx.store.snapshot,
    canAnnotate: ctx.annotateNode !== undefined,
    ...(ctx.aead ? { aead: ctx.aead } : {}),
  });
  let started = false;
  return {
    name: 'tunnel',
    service,
    remoteDialer: () => (started ? service.dialer : undefined),
    async start() {
      await service.start();
      started = true;
      // Peers resolve node name → peer id from this annotation; without RBAC for it
      // (or without an API) they find us through the relays' rendezvous instead.
      if (ctx.annotateNode) {
        const peerId = (await service.state()).peerId;
        ctx.annotateNode(PEER_ID_ANNOTATION, peerId).then(
          () => ctx.logger.info({ peerId, annotation: PEER_ID_ANNOTATION }, 'peer id published on the Node'),
          (err: unknown) => ctx.logger.warn({ err: String(err), annotation: PEER_ID_ANNOTATION }, 'cannot publish the peer id on the Node; peers find it through the relays'),
        );
      }
    },
    async stop() {
      started = false;
      await service.stop();
    },
    readiness: { name: 'tunnel', check: () => (service.node?.status === 'started' ? { ready: true } : { ready: false, detail: 'tunnel not started' }) },
  };
}
