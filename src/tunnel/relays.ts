/**
 * Keeps a connection to every configured relay (reconnect with backoff), and on
 * every (re)connection registers this node on the relay's rendezvous. Relay
 * reservations themselves are made by the circuit-relay transport when it sees a
 * connected relay (node.ts asks for one reservation per configured relay); when a
 * relay comes back, the reconnect here is what gives the reservation back.
 */
import type { Connection, PeerId } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { peerIdFromString } from '@libp2p/peer-id';
import type { TunnelLibp2p } from './node.js';
import { isCircuit, isUsableRemote, toMultiaddr, withoutPeer } from './addrs.js';
import { rendezvousCall, type PeerRecord } from './rendezvous.js';
import { Backoff, sleep } from '../util/backoff.js';
import type { Logger } from '../util/log.js';
import type { TunnelMetrics } from './metrics.js';

export interface RelayConfig {
  readonly nodeName: string;
  readonly advertiseAddress: readonly string[];
  readonly peerId?: string;
}

interface RelayState {
  readonly config: RelayConfig;
  readonly addrs: Multiaddr[];
  peerId?: PeerId;
  /** Address of the last successful connection (for circuit addresses). */
  addr?: string;
  connected: boolean;
  registeredAt?: number;
}

export interface RelayManagerOptions {
  node: TunnelLibp2p;
  nodeName: string;
  relays: readonly RelayConfig[];
  defaultPort: number;
  logger: Logger;
  metrics?: TunnelMetrics;
  /** Re-register this often while connected (registrations expire on the relay). */
  registerIntervalMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onChange?: () => void;
  /** This node's addresses (default: asked of libp2p on every call; the agent passes its cache). */
  listenAddrs?: () => Multiaddr[];
}

export class RelayManager {
  private readonly states: RelayState[];
  private abort = new AbortController();
  private loops: Promise<void>[] = [];

  constructor(private readonly o: RelayManagerOptions) {
    this.states = o.relays.map((config) => ({
      config,
      addrs: config.advertiseAddress.map((a) => toMultiaddr(a, o.defaultPort, config.peerId)),
      ...(config.peerId ? { peerId: peerIdFromString(config.peerId) } : {}),
      connected: false,
    }));
  }

  start(): void {
    this.abort = new AbortController();
    this.loops = this.states.map((s) => this.run(s));
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error('stopping'));
    await Promise.allSettled(this.loops);
  }

  /** Peer ids of the relays (known once connected, or configured). */
  relayIds(): PeerId[] {
    return this.states.flatMap((s) => (s.peerId ? [s.peerId] : []));
  }

  private addrs(): Multiaddr[] {
    return this.o.listenAddrs?.() ?? this.o.node.getMultiaddrs();
  }

  isRelay(peerId: string): boolean {
    return this.states.some((s) => s.peerId?.toString() === peerId);
  }

  /** Circuit addresses to reach `target` through every connected relay. */
  circuitAddrs(target: string): Multiaddr[] {
    return this.states.filter((s) => s.connected && s.peerId && s.addr).map((s) => toMultiaddr(`${s.addr!}/p2p/${s.peerId!.toString()}/p2p-circuit/p2p/${target}`, 0));
  }

  /** Relays we currently hold a reservation on (our circuit listen addresses). */
  reservedRelays(): string[] {
    const ids = new Set<string>();
    for (const ma of this.addrs()) {
      const s = ma.toString();
      const m = /\/p2p\/([^/]+)\/p2p-circuit/.exec(s);
      if (m) ids.add(m[1]!);
    }
    return [...ids];
  }

  status(): { nodeName: string; peerId?: string; connected: boolean; reserved: boolean }[] {
    const reserved = new Set(this.reservedRelays());
    return this.states.map((s) => ({
      nodeName: s.config.nodeName,
      ...(s.peerId ? { peerId: s.peerId.toString() } : {}),
      connected: s.connected,
      reserved: s.peerId ? reserved.has(s.peerId.toString()) : false,
    }));
  }

  /** Ask every connected relay; first non-empty answer wins. */
  async lookup(q: { nodeName?: string; peerId?: string }): Promise<PeerRecord[]> {
    for (const s of this.states) {
      if (!s.connected || !s.peerId) continue;
      try {
        const recs = await rendezvousCall(this.o.node, s.peerId, { op: 'lookup', ...q });
        this.o.metrics?.rendezvous.inc({ op: 'lookup', result: 'ok' });
        if (recs.length > 0) return recs;
      } catch (err) {
        this.o.metrics?.rendezvous.inc({ op: 'lookup', result: 'error' });
        this.o.logger.debug({ relay: s.config.nodeName, err: String(err) }, 'rendezvous lookup failed');
      }
    }
    return [];
  }

  /** This node's own direct addresses, as announced to the rendezvous. */
  ownAddrs(): string[] {
    return [...new Set(this.addrs().filter((m) => !isCircuit(m) && isUsableRemote(m)).map((m) => withoutPeer(m)))];
  }

  private async connect(s: RelayState, signal: AbortSignal): Promise<Connection> {
    let last: unknown;
    for (const addr of s.addrs) {
      try {
        const conn = await this.o.node.dial(addr, { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) });
        s.addr = withoutPeer(addr);
        return conn;
      } catch (err) {
        last = err;
      }
    }
    throw last ?? new Error('relay has no advertiseAddress');
  }

  private waitClosed(conn: Connection, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const node = this.o.node;
      const finish = (): void => {
        clearTimeout(t);
        node.removeEventListener('connection:close', onClose);
        signal.removeEventListener('abort', finish);
        resolve();
      };
      const onClose = (evt: CustomEvent<Connection>): void => { if (evt.detail.id === conn.id) finish(); };
      const t = setTimeout(finish, ms);
      node.addEventListener('connection:close', onClose);
      signal.addEventListener('abort', finish, { once: true });
      if (conn.status !== 'open') finish();
    });
  }

  private async run(s: RelayState): Promise<void> {
    const signal = this.abort.signal;
    const backoff = new Backoff(this.o.minBackoffMs ?? 500, this.o.maxBackoffMs ?? 15_000);
    const log = this.o.logger.child({ relay: s.config.nodeName });
    // A failed registration is retried soon, not at the next interval: until it
    // lands, other agents cannot tell who this node is and refuse its flows.
    const interval = this.o.registerIntervalMs ?? 60_000;
    const retry = new Backoff(Math.min(1000, interval), interval);
    while (!signal.aborted) {
      try {
        const conn = await this.connect(s, signal);
        const firstTime = !s.connected;
        s.peerId = conn.remotePeer;
        s.connected = true;
        backoff.reset();
        if (firstTime) { log.info({ peerId: conn.remotePeer.toString(), addr: s.addr }, 'connected to relay'); this.o.onChange?.(); retry.reset(); }
        let wait = interval;
        try {
          await rendezvousCall(this.o.node, conn.remotePeer, { op: 'register', nodeName: this.o.nodeName, addrs: this.ownAddrs() });
          s.registeredAt = Date.now();
          this.o.metrics?.rendezvous.inc({ op: 'register', result: 'ok' });
          retry.reset();
        } catch (err) {
          this.o.metrics?.rendezvous.inc({ op: 'register', result: 'error' });
          wait = retry.next();
          log.warn({ err: String(err), retryInMs: wait }, 'rendezvous registration failed');
        }
        await this.waitClosed(conn, wait, signal);
        if (conn.status !== 'open') {
          s.connected = false;
          log.warn('relay connection lost; reconnecting');
          this.o.onChange?.();
        }
      } catch (err) {
        if (signal.aborted) break;
        if (s.connected) { s.connected = false; this.o.onChange?.(); }
        const delay = backoff.next();
        log.debug({ err: String(err), retryInMs: delay }, 'relay unreachable');
        await sleep(delay, signal).catch(() => undefined);
      }
    }
  }
}
