/**
 * Rendezvous by node name through the relays, for clusters where the agent cannot
 * write its Node annotation (static setups, KubeEdge metaServer): every agent
 * registers `nodeName → its peer id + listen addresses` on each relay it is
 * connected to, and looks peers up there by name or by peer id.
 *
 * The peer id of a registration is the authenticated remote peer of the
 * connection (Noise), never a claimed value. With a PSK only cluster members can
 * connect at all; a name held by a connected peer cannot be taken by another.
 * Without a PSK the relay keeps persisted first-use bindings (bindings.ts): a
 * name once registered by a peer is never given to another, connected or not,
 * until an operator removes the binding.
 *
 * Wire: one request and one reply per stream, each a u32 length + JSON.
 */
import type { Connection, Stream } from '@libp2p/interface';
import type { PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import type { TunnelLibp2p } from './node.js';
import { closeQuietly, abortQuietly, readPrefix } from './stream-io.js';
import type { Logger } from '../util/log.js';
import type { BindingStore } from './bindings.js';

export const RENDEZVOUS_PROTOCOL = '/edgeway/rendezvous/1.0.0';
const MAX_MESSAGE = 1 << 20;
const MAX_ADDRS = 16;

export interface PeerRecord {
  readonly nodeName: string;
  readonly peerId: string;
  readonly addrs: readonly string[];
}

export type RendezvousRequest =
  | { op: 'register'; nodeName: string; addrs: string[] }
  | { op: 'lookup'; nodeName?: string; peerId?: string };

export type RendezvousReply = { ok: true; records: PeerRecord[] } | { ok: false; error: string };

export function encodeMessage(obj: unknown): Uint8Array {
  const body = Buffer.from(JSON.stringify(obj));
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

export function decodeMessage(buf: Uint8Array): { value: unknown; used: number } | undefined {
  if (buf.length < 4) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = b.readUInt32BE(0);
  if (len > MAX_MESSAGE) throw new Error(`rendezvous message of ${len} bytes`);
  if (b.length < 4 + len) return undefined;
  return { value: JSON.parse(b.subarray(4, 4 + len).toString('utf8')) as unknown, used: 4 + len };
}

function validRequest(v: unknown): RendezvousRequest | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  if (o.op === 'register' && typeof o.nodeName === 'string' && o.nodeName.length > 0 && o.nodeName.length <= 253 && Array.isArray(o.addrs)) {
    return { op: 'register', nodeName: o.nodeName, addrs: o.addrs.filter((a): a is string => typeof a === 'string' && a.length < 256).slice(0, MAX_ADDRS) };
  }
  if (o.op === 'lookup' && (typeof o.nodeName === 'string' || typeof o.peerId === 'string')) {
    return { op: 'lookup', ...(typeof o.nodeName === 'string' ? { nodeName: o.nodeName } : {}), ...(typeof o.peerId === 'string' ? { peerId: o.peerId } : {}) };
  }
  return undefined;
}

/** The relay side: an in-memory registry with a TTL (agents re-register periodically). */
export class RendezvousServer {
  private readonly byName = new Map<string, PeerRecord & { at: number }>();
  constructor(private readonly opts: { ttlMs: number; maxRecords: number; logger: Logger; onRequest?: (op: string, result: string) => void; bindings?: BindingStore }) {}

  get size(): number {
    return this.byName.size;
  }

  private node?: TunnelLibp2p;

  async start(node: TunnelLibp2p): Promise<void> {
    this.node = node;
    await node.handle(RENDEZVOUS_PROTOCOL, (stream: Stream, connection: Connection) => {
      this.serve(stream, connection).catch((err: unknown) => {
        this.opts.onRequest?.('unknown', 'error');
        abortQuietly(stream, err);
      });
    }, { runOnLimitedConnection: false, maxInboundStreams: 1024, maxOutboundStreams: 16 });
  }

  /**
   * Pure registry operations (unit-tested). A name held by another peer that is
   * still connected (`isLive`) is not taken over: a peer with the PSK cannot
   * hijack a live node's name; a node that re-created its identity gets its name
   * once the old peer is gone (or its record expired).
   */
  register(peerId: string, nodeName: string, addrs: readonly string[], now = Date.now(), isLive: (peerId: string) => boolean = () => false): void {
    const b = this.opts.bindings;
    if (b && b.bind(nodeName, peerId) === 'conflict') {
      throw new Error(`node name ${nodeName} is bound to another peer (first-use binding in ${b.file}; an operator must remove it)`);
    }
    const held = this.byName.get(nodeName);
    if (held && held.peerId !== peerId && now - held.at <= this.opts.ttlMs && isLive(held.peerId)) {
      throw new Error(`node name ${nodeName} is held by another connected peer`);
    }
    for (const [name, rec] of this.byName) if (rec.peerId === peerId && name !== nodeName) this.byName.delete(name);
    if (!this.byName.has(nodeName) && this.byName.size >= this.opts.maxRecords) throw new Error('rendezvous registry full');
    this.byName.set(nodeName, { nodeName, peerId, addrs: [...addrs], at: now });
  }

  lookup(q: { nodeName?: string; peerId?: string }, now = Date.now()): PeerRecord[] {
    this.expire(now);
    const out: PeerRecord[] = [];
    for (const r of this.byName.values()) {
      if ((q.nodeName === undefined || r.nodeName === q.nodeName) && (q.peerId === undefined || r.peerId === q.peerId)) {
        out.push({ nodeName: r.nodeName, peerId: r.peerId, addrs: r.addrs });
      }
    }
    return out;
  }

  private expire(now: number): void {
    for (const [name, r] of this.byName) if (now - r.at > this.opts.ttlMs) this.byName.delete(name);
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const { value } = await readPrefix(stream, decodeMessage, { maxBytes: MAX_MESSAGE + 4, timeoutMs: 10_000 });
    const req = validRequest(value);
    let reply: RendezvousReply;
    if (!req) reply = { ok: false, error: 'bad request' };
    else if (req.op === 'register') {
      try {
        this.register(connection.remotePeer.toString(), req.nodeName, req.addrs, Date.now(),
          (id) => this.node?.getConnections(peerIdFromString(id)).some((c) => c.status === 'open') ?? false);
        reply = { ok: true, records: [] };
      } catch (err) {
        reply = { ok: false, error: (err as Error).message };
      }
    } else reply = { ok: true, records: this.lookup(req) };
    this.opts.onRequest?.(req?.op ?? 'invalid', reply.ok ? 'ok' : 'error');
    stream.send(encodeMessage(reply));
    closeQuietly(stream);
  }
}

/** One request to one relay. */
export async function rendezvousCall(node: TunnelLibp2p, relay: PeerId, req: RendezvousRequest, timeoutMs = 5000): Promise<PeerRecord[]> {
  const signal = AbortSignal.timeout(timeoutMs);
  const stream = await node.dialProtocol(relay, RENDEZVOUS_PROTOCOL, { signal });
  try {
    stream.send(encodeMessage(req));
    const { value } = await readPrefix(stream, decodeMessage, { maxBytes: MAX_MESSAGE + 4, timeoutMs, signal });
    const reply = value as RendezvousReply;
    if (!reply || typeof reply !== 'object' || reply.ok !== true) throw new Error(`rendezvous ${req.op} failed: ${(reply as { error?: string })?.error ?? 'bad reply'}`);
    return Array.isArray(reply.records) ? reply.records.filter((r) => r && typeof r.peerId === 'string' && typeof r.nodeName === 'string' && Array.isArray(r.addrs)) : [];
  } finally {
    closeQuietly(stream);
  }
}
