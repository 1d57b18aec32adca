/**
 * The proxy as a part of `edgeway agent`: it owns the userspace proxy and hands
 * the data plane its listeners (`listeners.open(plan)` / `listeners.prune(plan)`).
 * It writes no kernel rule and follows no snapshot itself: the data-plane sync
 * engine calls `open` before it writes rules that point at the ports and `prune`
 * once they no longer do, in every mode (nftables, ebpf, iptables).
 *
 * Stopping closes the listeners at once and gives flows in progress
 * `closeDeadlineMs` to finish before they are cut (UserspaceProxy.close).
 *
 * The part is shaped like cli/parts.ts `AgentPart` without importing cli/.
 */
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import type { Registry } from '../metrics/registry.js';
import type { Plan } from '../plan/types.js';
import type { DatagramSession, RemoteDialer } from './remote-dialer.js';
import type { OriginalDstResolver } from './original-dst.js';
import { ProxyError } from './errors.js';
import { UserspaceProxy } from './proxy.js';
import type { Forwarder } from '../native/forwarder.js';

export interface ProxyPartContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
}

export interface ProxyPartDeps {
  /** The tunnel, when running (looked up per flow, so it may start after the proxy). */
  readonly remoteDialer?: () => RemoteDialer | undefined;
  readonly originalDst?: { readonly port: number; readonly resolver: OriginalDstResolver };
  /** Accelerated TCP forwarding (splice/sockmap) when the native addon is usable. */
  readonly forwarder?: () => Forwarder | undefined;
  /** How long stop() lets flows finish (default 5 s). */
  readonly closeDeadlineMs?: number;
  /** TCP listen address (default '::', every address; tests use loopback). */
  readonly listenHost?: string;
}

/** What the data plane's sync engine drives (structurally its UserspaceListeners). */
export interface ProxyListeners {
  open(plan: Pick<Plan, 'servicePorts'>): Promise<{ readonly failed: readonly string[] }>;
  prune(plan: Pick<Plan, 'servicePorts'>): Promise<void>;
}

export interface ProxyPart {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly readiness: { readonly name: string; check(): { ready: boolean; detail?: string } };
  readonly listeners: ProxyListeners;
  readonly proxy: UserspaceProxy;
}

/** A RemoteDialer that asks `get` for the tunnel on every call and fails fast without one. */
function lazyDialer(get: () => RemoteDialer | undefined): RemoteDialer {
  const none = (): ProxyError => new ProxyError('ERR_PROXY_NO_REMOTE_DIALER', 'endpoint is in another LAN and no tunnel is running');
  return {
    dialStream: (t, s) => get()?.dialStream(t, s) ?? Promise.reject(none()),
    openDatagramSession: (t, s): Promise<DatagramSession> => get()?.openDatagramSession(t, s) ?? Promise.reject(none()),
  };
}

/** Factory for cli/parts.ts. */
export function createProxyPart(deps: ProxyPartDeps = {}) {
  return async (ctx: ProxyPartContext): Promise<ProxyPart> => {
    const log = ctx.logger.child({ part: 'proxy' });
    const p = ctx.config.proxy;
    const forwarder = deps.forwarder?.();
    const proxy = new UserspaceProxy({
      logger: log, registry: ctx.registry,
      ...(deps.remoteDialer ? { remoteDialer: lazyDialer(deps.remoteDialer) } : {}),
      ...(deps.originalDst ? { originalDst: deps.originalDst } : {}),
      ...(forwarder ? { forwarder } : {}),
      ...(deps.closeDeadlineMs !== undefined ? { closeDeadlineMs: deps.closeDeadlineMs } : {}),
      ...(deps.listenHost ? { listenHost: deps.listenHost } : {}),
      connectTimeoutMs: p.connectTimeoutMs, maxConnectAttempts: p.maxConnectAttempts, idleTimeoutMs: p.idleTimeoutMs,
      udpSessionIdleMs: p.udpSessionIdleMs, maxFlows: p.maxFlows, maxUdpSessions: p.maxUdpSessions, perServiceLabels: p.perServiceLabels,
    });
    let opened = false;
    let failed: readonly string[] = [];
    const listeners: ProxyListeners = {
      async open(plan) {
        const r = await proxy.apply(plan.servicePorts, { keepOthers: true });
        opened = true;
        failed = r.failed;
        return { failed: r.failed };
      },
      async prune(plan) {
        const r = await proxy.apply(plan.servicePorts);
        failed = r.failed;
      },
    };
    return {
      name: 'proxy',
      proxy,
      listeners,
      // Listeners open with the data plane's first sync; nothing to wait for here.
      async start() { /* see above */ },
      async stop() { await proxy.close(); },
      readiness: {
        name: 'proxy',
        check: () => (opened
          ? { ready: true, ...(failed.length ? { detail: `listeners failed (retried): ${failed.join(', ')}` } : {}) }
          : { ready: false, detail: 'waiting for the data plane\'s first sync' }),
      },
    };
  };
}
