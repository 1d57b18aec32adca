/**
 * Who is who: node name ↔ peer id, and the direct addresses to try for a node.
 * Sources, in order of trust: the catalog (Node annotation `edgeway.io/peer-id`),
 * then the relays' rendezvous (cached briefly). A rendezvous record binds a name
 * only when something protects it: the PSK (only cluster members connect at all)
 * or, without one, the persisted first-use binding (`bindings`, bindings.ts): a
 * record naming another peer id than the one first seen for that name is refused.
 * Authorisation of inbound streams lives here too: only peers that are a catalog
 * node are let in. A configured relay is a relay, never a node, in either direction:
 * a relay holding the PSK could register a node's name at the rendezvous, and the
 * agent would then send that node's flows to the relay.
 */
import { peerIdFromString } from '@libp2p/peer-id';
import type { PeerId } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Snapshot } from '../catalog/types.js';
import type { TunnelLibp2p } from './node.js';
import type { RelayManager } from './relays.js';
import { isUsableRemote, toMultiaddr, withoutPeer } from './addrs.js';
import { PeerUnknownError } from './errors.js';
import type { PeerRecord } from './rendezvous.js';
import type { BindingStore } from './bindings.js';
import type { Logger } from '../util/log.js';
import type { TunnelMetrics } from './metrics.js';

const POSITIVE_TTL_MS = 30_000;
const NEGATIVE_TTL_MS = 2_000;
/**
 * How long after its expiry a rendezvous answer still speaks for a peer when the
 * rendezvous has no answer at all: a restarted relay knows nobody until the nodes
 * register again, and a relay out of reach answers nothing — neither revokes a
 * binding, so flows between known nodes go on. A different answer replaces it at once.
 */
const STALE_MS = 10 * 60_000;
/** Why resolve() refuses a peer id that is one of the configured relays. */
const RELAY_CLAIM = 'the peer id named for this node is a configured relay (a relay relays, it is never a node)';
/** Node address types that can carry tunnel traffic (Hostname is not an address). */
const ADDRESS_TYPES = new Set(['InternalIP', 'ExternalIP']);

export interface ResolvedPeer {
  readonly nodeName: string;
  readonly peerId: PeerId;
}

interface CacheEntry {
  record?: PeerRecord;
  expires: number;
  /** Until when `record` answers while the rendezvous answers nothing (STALE_MS). */
  staleUntil?: number;
  /** `record` is such a fallback: the rendezvous did not confirm it on the last ask. */
  stale?: boolean;
  /** The last answer was refused because it named a configured relay (for resolve()'s error). */
  relayClaim?: boolean;
}

/**
 * The by-name cache with a reverse index (peer id → names whose cached record
 * names it), kept on every set/delete, so a positive answer finds the names that
 * pointed at its peer id without scanning every cached name.
 */
class NameCache extends Map<string, CacheEntry> {
  private readonly names = new Map<string, Set<string>>();

  override set(name: string, entry: CacheEntry): this {
    this.unindex(name);
    super.set(name, entry);
    const id = entry.record?.peerId;
    if (id !== undefined) {
      let s = this.names.get(id);
      if (!s) this.names.set(id, (s = new Set()));
      s.add(name);
    }
    return this;
  }

  override delete(name: string): boolean {
    this.unindex(name);
    return super.delete(name);
  }

  override clear(): void {
    this.names.clear();
    super.clear();
  }

  /** Names whose cached record names `peerId` (usually at most one). */
  namesOf(peerId: string): readonly string[] {
    return [...(this.names.get(peerId) ?? [])];
  }

  private unindex(name: string): void {
    const id = super.get(name)?.record?.peerId;
    if (id === undefined) return;
    const s = this.names.get(id);
    s?.delete(name);
    if (s?.size === 0) this.names.delete(id);
  }
}

export interface PeerDirectoryOptions {
  node: TunnelLibp2p;
  nodeName: string;
  listenPort: number;
  snapshot: () => Snapshot;
  relays: RelayManager;
  now?: () => number;
  /** First-use bindings; set when no PSK protects the tunnel (then they decide). */
  bindings?: BindingStore;
  logger?: Logger;
  metrics?: TunnelMetrics;
}

export class PeerDirectory {
  private readonly byName = new NameCache();
  private readonly byPeer = new Map<string, CacheEntry>();
  private readonly now: () => number;

  constructor(private readonly o: PeerDirectoryOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Peer id of a node: catalog annotation first, else the rendezvous. Never a configured relay. */
  async resolve(nodeName: string): Promise<ResolvedPeer> {
    const node = this.o.snapshot().nodes.find((n) => n.name === nodeName);
    if (node?.peerId) {
      if (this.relayClaims(nodeName, node.peerId)) throw new PeerUnknownError(nodeName, RELAY_CLAIM);
      return { nodeName, peerId: peerIdFromString(node.peerId) };
    }
    const entry = await this.cachedEntry(this.byName, nodeName, () => this.o.relays.lookup({ nodeName }));
    const rec = entry?.record;
    if (!rec) throw new PeerUnknownError(nodeName, entry?.relayClaim ? RELAY_CLAIM : node ? 'no edgeway.io/peer-id annotation and no rendezvous record' : 'not a catalog node');
    // A relay learnt after its record was cached (relay ids are known once connected).
    if (this.relayClaims(nodeName, rec.peerId)) throw new PeerUnknownError(nodeName, RELAY_CLAIM);
    if (!this.bound(nodeName, rec.peerId)) throw new PeerUnknownError(nodeName, 'the rendezvous names another peer than the one bound to this node (first-use binding)');
    return { nodeName, peerId: peerIdFromString(rec.peerId) };
  }

  /** When each kind of refusal was last logged (a hostile peer may retry at will). */
  private readonly lastLog = new Map<string, number>();

  /** One warning per kind per minute; the metrics count every case. */
  private warnLimited(kind: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.now();
    if (now - (this.lastLog.get(kind) ?? -Infinity) < 60_000) return;
    this.lastLog.set(kind, now);
    this.o.logger?.warn(fields, msg);
  }

  /** Is `peerId` a configured relay? Then it is refused as `nodeName`: counted and logged (rate-limited). */
  private relayClaims(nodeName: string, peerId: string): boolean {
    if (!this.o.relays.isRelay(peerId)) return false;
    this.o.metrics?.relayClaims.inc();
    this.warnLimited('relay-claim', { node: nodeName, claimedBy: peerId }, 'a configured relay is named as a catalog node: refused (a relay relays, it is never a node)');
    return true;
  }

  /** Does the first-use binding (when in force) let `peerId` be `nodeName`? Binds on first use. */
  private bound(nodeName: string, peerId: string): boolean {
    const b = this.o.bindings;
    if (!b || b.bind(nodeName, peerId) !== 'conflict') return true;
    this.o.metrics?.bindingConflicts.inc();
    this.warnLimited('binding-conflict', { node: nodeName, claimedBy: peerId, boundTo: b.bindings.get(nodeName), file: b.file }, 'a peer claims a node name bound to another peer id: refused (remove the entry from the file if the node really changed identity)');
    // Forget only what the impostor's answer brought; the bound peer's entry stays.
    if (this.byPeer.get(peerId)?.record?.nodeName === nodeName) this.byPeer.delete(peerId);
    return false;
  }

  /** The node name a peer id belongs to (catalog, else rendezvous), if any; never for a configured relay. */
  async nodeNameOf(peerId: string): Promise<string | undefined> {
    if (this.o.relays.isRelay(peerId)) return undefined;
    const snap = this.o.snapshot();
    const byAnnotation = snap.nodes.find((n) => n.peerId === peerId);
    if (byAnnotation) return byAnnotation.name;
    const got = await this.cachedEntry(this.byPeer, peerId, () => this.o.relays.lookup({ peerId }));
    const rec = got?.record;
    if (!rec) return undefined;
    if (got.stale) {
      // An unconfirmed answer by peer id speaks for the node only while the node's name
      // does not now answer another id (the node changed identity: the old id is out).
      const byName = await this.cachedEntry(this.byName, rec.nodeName, () => this.o.relays.lookup({ nodeName: rec.nodeName }));
      if (byName?.record?.peerId !== peerId) return undefined;
    }
    const node = snap.nodes.find((n) => n.name === rec.nodeName);
    // A node whose annotation names another id cannot be claimed through the rendezvous.
    if (!node || (node.peerId && node.peerId !== peerId)) return undefined;
    if (!node.peerId && !this.bound(node.name, peerId)) return undefined;
    return node.name;
  }

  /** The node name for a peer id from what is known now (no network). */
  knownNodeName(peerId: string): string | undefined {
    const a = this.o.snapshot().nodes.find((n) => n.peerId === peerId);
    if (a) return a.name;
    const e = this.byPeer.get(peerId);
    return e?.record?.nodeName;
  }

  /**
   * May this peer open tunnel streams to us? Only catalog nodes: a configured
   * relay relays, it never reaches local endpoints (even if it claims a node name).
   */
  async authorise(peerId: string): Promise<boolean> {
    if (this.o.relays.isRelay(peerId)) return false;
    return (await this.nodeNameOf(peerId)) !== undefined;
  }

  /**
   * Direct (non-relayed) addresses to try for a node: its catalog addresses on the
   * tunnel port, what it registered at the rendezvous, and what identify told us.
   */
  directAddrs(nodeName: string | undefined, peerId: PeerId, peerStoreAddrs: readonly Multiaddr[] = []): Multiaddr[] {
    const id = peerId.toString();
    const out = new Map<string, Multiaddr>();
    const add = (s: string): void => {
      if (!isUsableRemote(s)) return;
      const base = withoutPeer(s);
      if (!out.has(base)) out.set(base, toMultiaddr(base, this.o.listenPort, id));
    };
    const node = nodeName ? this.o.snapshot().nodes.find((n) => n.name === nodeName) : undefined;
    for (const a of node?.addresses ?? []) if (ADDRESS_TYPES.has(a.type)) add(toMultiaddr(a.address, this.o.listenPort).toString());
    const rec = (nodeName ? this.byName.get(nodeName)?.record : undefined) ?? this.byPeer.get(id)?.record;
    for (const a of rec?.addrs ?? []) add(a);
    for (const a of peerStoreAddrs) add(a.toString());
    return [...out.values()];
  }

  /** Forget cached rendezvous answers (a binding conflict: the answer is not to be used again). */
  invalidate(nodeName?: string, peerId?: string): void {
    if (nodeName) this.byName.delete(nodeName);
    if (peerId) this.byPeer.delete(peerId);
  }

  /**
   * Ask the rendezvous again before the next use (a dial failed: the node may have
   * changed identity or address). Unlike invalidate(), the answer stays as the
   * stale fallback (STALE_MS) — a dial also fails while a relay restarts, and that
   * must not make the node unknown to this agent.
   */
  expire(nodeName?: string, peerId?: string): void {
    for (const [map, key] of [[this.byName, nodeName], [this.byPeer, peerId]] as const) {
      const e = key ? map.get(key) : undefined;
      if (e) e.expires = 0;
    }
  }

  /** Lookups in flight, so a burst of flows from a new peer asks the relays once. */
  private readonly inflight = new Map<string, Promise<CacheEntry | undefined>>();

  private cachedEntry(map: Map<string, CacheEntry>, key: string, fetch: () => Promise<PeerRecord[]>): Promise<CacheEntry | undefined> {
    const hit = map.get(key);
    if (hit && hit.expires > this.now()) return Promise.resolve(hit);
    const k = `${map === this.byName ? 'name' : 'peer'}:${key}`;
    let p = this.inflight.get(k);
    if (!p) {
      p = this.fetchInto(map, key, fetch).finally(() => this.inflight.delete(k));
      this.inflight.set(k, p);
    }
    return p;
  }

  /** Does a first-use binding (no PSK) tie this record's name to another peer id? */
  private conflicts(record: PeerRecord): boolean {
    const bound = this.o.bindings?.bindings.get(record.nodeName);
    return bound !== undefined && bound !== record.peerId;
  }

  private async fetchInto(map: Map<string, CacheEntry>, key: string, fetch: () => Promise<PeerRecord[]>): Promise<CacheEntry | undefined> {
    const recs = await fetch();
    let record = recs[0];
    const now = this.now();
    let relayClaim = false;
    // Checked before anything binds: a relay's claim must never take a name's first-use binding.
    if (record && this.relayClaims(record.nodeName, record.peerId)) {
      relayClaim = true;
      record = undefined;
    } else if (record && this.conflicts(record)) {
      // Counted and logged by bound(); an answer the binding refuses changes nothing here.
      this.bound(record.nodeName, record.peerId);
      record = undefined;
    }
    if (!record) {
      const prev = map.get(key);
      // A refused answer changes nothing either: the last real answer stays the fallback.
      if (prev?.record && (prev.staleUntil ?? 0) > now) {
        // No answer is not a revocation (STALE_MS): keep it, ask again soon.
        const e: CacheEntry = { ...prev, expires: now + NEGATIVE_TTL_MS, stale: true };
        map.set(key, e);
        return e;
      }
      const e: CacheEntry = { expires: now + NEGATIVE_TTL_MS, ...(relayClaim ? { relayClaim } : {}) };
      map.set(key, e);
      return e;
    }
    // A name now answered by another peer id: the old id no longer speaks for it.
    const old = this.byName.get(record.nodeName)?.record;
    if (old && old.peerId !== record.peerId) this.byPeer.delete(old.peerId);
    // A peer id now answering another name: its old name no longer resolves to it.
    for (const name of this.byName.namesOf(record.peerId)) if (name !== record.nodeName) this.byName.delete(name);
    const entry: CacheEntry = { record, expires: now + POSITIVE_TTL_MS, staleUntil: now + POSITIVE_TTL_MS + STALE_MS };
    map.set(key, entry);
    // Fill the other index as well.
    this.byName.set(record.nodeName, entry);
    this.byPeer.set(record.peerId, entry);
    return entry;
  }
}
