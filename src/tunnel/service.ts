/**
 * The agent's tunnel: identity, libp2p node, relays + rendezvous, peer directory,
 * inbound server, dialer (the proxy's RemoteDialer) and the state it reports
 * (metrics, and `tunnel-state.json` under stateDir for operators and tests).
 */
import './polyfill.js';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { Snapshot } from '../catalog/types.js';
import type { Logger } from '../util/log.js';
import { writeFileAtomic } from '../catalog/persist.js';
import { createTunnelNode, type TunnelLibp2p } from './node.js';
import { loadOrCreateIdentity, loadPsk } from './identity.js';
import { createTunnelMetrics, type TunnelMetrics } from './metrics.js';
import { RelayManager } from './relays.js';
import { PeerDirectory } from './peers.js';
import { isNodeAccess } from './node-access.js';
import { TunnelServer } from './server.js';
import { TunnelDialer, connectionPath } from './dialer.js';
import { toMultiaddr } from './addrs.js';
import { ChannelManager, type ChannelStatus } from './channel/manager.js';
import type { AeadSource } from './channel/handover.js';
import { createHolePuncher, type HolePuncher } from './punch/puncher.js';
import { createPunchMetrics } from './punch/metrics.js';

/** The data channel's TCP port: `tunnel.dataPort`, or listenPort + 1 when 0. */
export function dataPortOf(t: Config['tunnel']): number {
  return t.dataPort || t.listenPort + 1;
}
import { BindingStore } from './bindings.js';
import { PeerActivity } from './peer-activity.js';
import { PeerIdleReaper, type IdleCloseResult } from './peer-idle.js';
import { ListenAddrs } from './listen-addrs.js';

export const STATE_FILE = 'tunnel-state.json';

export interface TunnelState {
  readonly nodeName: string;
  readonly peerId: string;
  readonly listen: string[];
  readonly relays: ReturnType<RelayManager['status']>;
  /** libp2p connections by path (`paths`) and the data channel's path when one is up (`channel`). */
  readonly peers: { peerId: string; nodeName?: string; paths: string[]; everRelayed: boolean; channel?: string }[];
  /** Data channels this node opened (path: lan | punched | relayed; absent = down, flows use libp2p). */
  readonly channels: ChannelStatus[];
  readonly inboundFlows: number;
  /** Tunnel streams open now (in = served here, out = opened by this node's dialer). */
  readonly streamsOpen: { in: number; out: number };
  /** Tunnel streams ever opened (any result). */
  readonly streamsTotal: { in: number; out: number };
  readonly refusals: Record<string, number>;
  readonly upgrades: { attempts: number; successes: number };
  readonly udpDropped: Record<string, number>;
  readonly updatedAt: string;
}

export interface TunnelServiceOptions {
  config: Config;
  logger: Logger;
  registry: Registry;
  snapshot: () => Snapshot;
  /** This agent publishes its peer id as a Node annotation (Kubernetes source with RBAC). */
  canAnnotate?: boolean;
  /** The addon's EWC1 record pump for the data channel's bulk bytes (the proxy's accelerator), when it has one. */
  aead?: AeadSource;
}

/** Agent's first-use bindings of node names to peer ids (no PSK), under stateDir. */
export const PEER_BINDINGS_FILE = 'peer-bindings.json';

export class TunnelService {
  node?: TunnelLibp2p;
  dialer?: TunnelDialer;
  relays?: RelayManager;
  directory?: PeerDirectory;
  private server?: TunnelServer;
  channel?: ChannelManager;
  private puncher?: HolePuncher;
  private bindings?: BindingStore;
  readonly metrics: TunnelMetrics;
  private stateTimer?: NodeJS.Timeout;
  private stateDirty = true;
  private writing: Promise<void> = Promise.resolve();
  private peerId = '';
  /** Peers that had a relayed connection at some point (tests prove LAN peers never do). */
  private readonly everRelayed = new Set<string>();
  /** Open flows and last use per peer: the one input of idle peer closes. */
  readonly activity = new PeerActivity();
  private reaper?: PeerIdleReaper;
  private addrs?: ListenAddrs;

  constructor(private readonly o: TunnelServiceOptions) {
    this.metrics = createTunnelMetrics(o.registry);
  }

  async start(): Promise<void> {
    const { config, logger } = this.o;
    const t = config.tunnel;
    const identity = await loadOrCreateIdentity(config.stateDir);
    this.peerId = identity.peerId;
    const psk = t.psk.path ? await loadPsk(t.psk.path) : undefined;
    const node = await createTunnelNode({
      privateKey: identity.privateKey,
      listen: t.listenAddresses.map((a) => toMultiaddr(a, t.listenPort).toString()),
      announce: t.announce.map((a) => toMultiaddr(a, t.listenPort).toString()),
      ...(psk ? { psk } : {}),
      relayReservations: t.relayNodes.length,
    });
    this.node = node;
    const addrs = new ListenAddrs(node);
    this.addrs = addrs;
    const onChange = (): void => { this.stateDirty = true; };
    this.relays = new RelayManager({ node, nodeName: config.nodeName, relays: t.relayNodes, defaultPort: t.listenPort, logger, metrics: this.metrics, onChange, listenAddrs: () => addrs.get() });
    const bindings = psk ? undefined : await BindingStore.open(config.stateDir, PEER_BINDINGS_FILE);
    this.bindings = bindings;
    this.directory = new PeerDirectory({
      node, nodeName: config.nodeName, listenPort: t.listenPort, snapshot: this.o.snapshot, relays: this.relays, logger, metrics: this.metrics,
      ...(bindings ? { bindings } : {}),
    });
    this.warnProtection(Boolean(psk), bindings);
    const directory = this.directory;
    this.server = new TunnelServer({
      node, nodeName: config.nodeName, snapshot: this.o.snapshot, authorise: (p) => directory.authorise(p),
      metrics: this.metrics, logger, udpIdleTimeoutMs: t.udpIdleTimeoutMs, maxFlows: t.maxFlows,
      nodeAccess: (req) => isNodeAccess(req, config.nodeName, config.socks5, this.o.snapshot()),
      // The dialing side gives up after its proxy connect timeout; so does the backend connect here.
      connectTimeoutMs: config.proxy.connectTimeoutMs,
      activity: this.activity,
    });
    // Derived from the proxy's connect timeout: a flow never waits longer than that.
    this.dialer = new TunnelDialer({
      node, nodeName: config.nodeName, directory, relays: this.relays, metrics: this.metrics, logger,
      directDialTimeoutMs: t.directDialTimeoutMs, dialBudgetMs: config.proxy.connectTimeoutMs, onPathChange: onChange,
      activity: this.activity,
    });
    node.addEventListener('connection:close', onChange);
    node.addEventListener('connection:open', (evt) => {
      const peer = evt.detail.remotePeer.toString();
      if (connectionPath(evt.detail) === 'relayed') this.everRelayed.add(peer);
      // A connection that never carries a flow (the far side dialled, then did nothing) idles from now.
      this.activity.seen(peer);
    });
    node.addEventListener('self:peer:update', onChange);
    await this.server.start();
    this.dialer.start();
    if (t.channel.enabled) {
      const dialer = this.dialer;
      // Hole punching upgrades relayed channels (LAN → punched → relayed); without the addon it logs why and stays off.
      this.puncher = createHolePuncher({
        node, dataPort: dataPortOf(t), logger, metrics: createPunchMetrics(this.o.registry),
        isRelay: (id) => this.relays?.isRelay(id) ?? false, authorise: (p) => directory.authorise(p),
        onInbound: (_peer, r) => { if (this.channel) this.channel.acceptPunched(r.socket); else r.socket.destroy(); },
      });
      await this.puncher.start();
      this.channel = new ChannelManager({
        node, dataPort: dataPortOf(t), listenHosts: t.listenAddresses, warm: t.channel.warmConnections, directory, relays: this.relays,
        server: this.server, metrics: this.metrics, logger: logger.child({ part: 'channel' }),
        connect: (nodeName, signal) => dialer.connection(nodeName, signal),
        directDialTimeoutMs: t.directDialTimeoutMs, udpIdleTimeoutMs: t.udpIdleTimeoutMs, onChange, puncher: this.puncher,
        // Every inbound flow may come with a few warm connections of its peer.
        maxInbound: t.maxFlows * 2,
        ...(this.o.aead ? { aead: this.o.aead } : {}),
      });
      await this.channel.start();
      this.dialer.channel = this.channel;
    }
    this.relays.start();
    this.reaper = new PeerIdleReaper({
      idleMs: t.peerIdleMs, activity: this.activity, closes: this.metrics.peerIdleCloses, logger,
      candidates: () => this.idleCandidates(), close: (peer) => this.closeIdlePeer(peer),
      nodeNameOf: (peer) => this.directory?.knownNodeName(peer),
    });
    this.reaper.start();
    this.metrics.peers.reset();
    this.stateTimer = setInterval(() => { this.refreshGauges(); void this.writeState(); }, 1000);
    this.stateTimer.unref();
    logger.info({ peerId: identity.peerId, created: identity.created, listen: node.getMultiaddrs().map(String), relays: t.relayNodes.map((r) => r.nodeName), psk: Boolean(psk) }, 'tunnel started');
  }

  /**
   * Say once, loudly, what protects the tunnel when no PSK does: Node annotations
   * (written through the API) if this agent can publish its own, else only the
   * first-use bindings.
   */
  private warnProtection(psk: boolean, bindings: BindingStore | undefined): void {
    if (psk) return;
    const annotated = this.o.canAnnotate === true || this.o.snapshot().nodes.some((n) => n.peerId);
    this.o.logger.warn({
      psk: false, annotations: annotated, bindings: bindings?.file,
    }, annotated
      ? 'tunnel has no PSK: peers are trusted by the edgeway.io/peer-id Node annotation, and by first-use bindings for nodes without one; set tunnel.psk.path to close the tunnel to non-members'
      : 'tunnel has no PSK and no Node annotations: a node name is bound to the first peer id seen for it (first-use bindings); an impostor that claims a name before the real node ever did holds it; set tunnel.psk.path');
  }

  /** Peers holding a libp2p connection, a channel or warm connections here; relays never. */
  private idleCandidates(): string[] {
    const relays = new Set(this.relays?.relayIds().map(String) ?? []);
    const peers = new Set(this.node?.getConnections().map((c) => c.remotePeer.toString()) ?? []);
    for (const p of this.channel?.peers() ?? []) peers.add(p);
    return [...peers].filter((p) => !relays.has(p));
  }

  /**
   * Close everything held for an idle peer: the channel's warm pools both ways
   * (END, an orderly close the far side does not count as an error) and the libp2p
   * connections (the far side sees them go and dials again for its next flow).
   */
  private async closeIdlePeer(peer: string): Promise<IdleCloseResult> {
    const warm = this.channel?.closeIdlePeer(peer) ?? 0;
    const conns = this.node?.getConnections().filter((c) => c.remotePeer.toString() === peer) ?? [];
    await Promise.all(conns.map((c) => c.close().catch((err: unknown) => c.abort(err instanceof Error ? err : new Error(String(err))))));
    if (conns.length > 0) this.stateDirty = true;
    return { connections: conns.length, warm };
  }

  async stop(): Promise<void> {
    clearInterval(this.stateTimer);
    await this.reaper?.stop();
    this.dialer?.stop();
    // Punches in flight first: the channel's background upgrades wait on them, and a
    // punch through a symmetric NAT would otherwise run all its attempts (~13 s).
    await this.puncher?.stop();
    await this.channel?.stop();
    await this.relays?.stop();
    await this.server?.stop();
    await this.node?.stop();
    this.addrs?.close();
    await this.writing;
    await this.bindings?.flush();
  }

  /** Peers by path, from the live connections. */
  peers(): TunnelState['peers'] {
    const node = this.node;
    if (!node) return [];
    const relayIds = new Set(this.relays?.relayIds().map(String) ?? []);
    const by = new Map<string, Set<string>>();
    for (const c of node.getConnections()) {
      if (c.status !== 'open') continue;
      const id = c.remotePeer.toString();
      if (relayIds.has(id)) continue;
      let s = by.get(id);
      if (!s) by.set(id, (s = new Set()));
      s.add(connectionPath(c));
    }
    return [...by].map(([peerId, paths]) => {
      const nodeName = this.directory?.knownNodeName(peerId);
      const channel = this.channel?.pathOf(peerId);
      return { peerId, ...(nodeName ? { nodeName } : {}), paths: [...paths].sort(), everRelayed: this.everRelayed.has(peerId), ...(channel ? { channel } : {}) };
    });
  }

  private refreshGauges(): void {
    const peers = this.peers();
    this.metrics.peers.set({ path: 'direct' }, peers.filter((p) => p.paths.includes('direct')).length);
    this.metrics.peers.set({ path: 'relayed' }, peers.filter((p) => !p.paths.includes('direct')).length);
    this.metrics.reservations.set(this.relays?.reservedRelays().length ?? 0);
    const channels = this.channel?.status() ?? [];
    for (const path of ['lan', 'punched', 'relayed']) this.metrics.channelPeers.set({ path }, channels.filter((c) => c.path === path).length);
    this.metrics.channelWarm.set(channels.reduce((n, c) => n + c.warm, 0));
  }

  async state(): Promise<TunnelState> {
    const counter = async (c: { get(): Promise<{ values: { labels: Record<string, string | number>; value: number }[] }> }, label: string): Promise<Record<string, number>> => {
      const out: Record<string, number> = {};
      for (const v of (await c.get()).values) { const k = String(v.labels[label]); out[k] = (out[k] ?? 0) + v.value; }
      return out;
    };
    const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
    return {
      nodeName: this.o.config.nodeName,
      peerId: this.peerId,
      listen: this.addrs?.get().map(String) ?? [],
      relays: this.relays?.status() ?? [],
      peers: this.peers(),
      channels: this.channel?.status() ?? [],
      inboundFlows: this.server?.openFlows ?? 0,
      streamsOpen: await (async () => {
        const o = await counter(this.metrics.streamsOpen, 'direction');
        return { in: o.in ?? 0, out: o.out ?? 0 };
      })(),
      refusals: await counter(this.metrics.refusals, 'reason'),
      upgrades: { attempts: sum(await counter(this.metrics.holePunchAttempts, 'method')), successes: sum(await counter(this.metrics.holePunchSuccesses, 'method')) },
      streamsTotal: await (async () => {
        const o = await counter(this.metrics.streams, 'direction');
        return { in: o.in ?? 0, out: o.out ?? 0 };
      })(),
      udpDropped: await counter(this.metrics.udpDropped, 'reason'),
      updatedAt: new Date().toISOString(),
    };
  }

  private last = '';
  private writeState(): Promise<void> {
    if (!this.o.config.tunnel.stateFile) return Promise.resolve();
    this.writing = this.writing.then(async () => {
      const s = await this.state();
      const { updatedAt: _u, ...cmp } = s;
      const key = JSON.stringify(cmp);
      if (key === this.last && !this.stateDirty) return;
      this.last = key;
      this.stateDirty = false;
      await writeFileAtomic(join(this.o.config.stateDir, STATE_FILE), JSON.stringify(s, null, 2), 0o644);
    }).catch((err: unknown) => this.o.logger.warn({ err: String(err) }, 'cannot write tunnel state file'));
    return this.writing;
  }
}
