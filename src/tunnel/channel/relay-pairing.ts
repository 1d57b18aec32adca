/**
 * The blind side of `edgeway relay`: a data port where two peers' TCP connections
 * are joined byte for byte. The relay never holds a channel key — it forwards the
 * EWC1 records of the two agents unread (splice in the kernel when the native addon
 * is present, Node streams with backpressure otherwise).
 *
 * Pairing: an agent that holds a reservation registers single-use random tokens
 * for a target peer that holds one too (`/edgeway/relay-pair/1.0.0`, over the
 * authenticated libp2p connection); both agents then connect to the data port and
 * send a token; the second arrival of a token is joined with the first, both get
 * one PAIRED byte, and from then on the relay only moves bytes. Unknown, expired or
 * reused tokens are refused and counted; tokens, waiting sockets and pairs are capped.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { peerIdFromString } from '@libp2p/peer-id';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../../util/log.js';
import type { Forwarder } from '../../native/forwarder.js';
import type { TunnelLibp2p } from '../node.js';
import { abortQuietly, closeQuietly } from '../stream-io.js';
import { field, PAIRED, readJson, readSocketPrefix, RELAY_PAIR_PROTOCOL, sendJson, TOKEN_BYTES, tokensField } from './wire.js';

/** Tokens one request may register (a peer's warm pool refill). */
export const MAX_TOKENS_PER_REQUEST = 64;
/** A token not used by both ends within this time is dropped. */
const TOKEN_TTL_MS = 30_000;
/** A connected socket must send its token within this time. */
const TOKEN_READ_MS = 10_000;

export type PairRefusal = 'unknown-token' | 'no-reservation' | 'bad-request' | 'over-limit';

export interface RelayPairingOptions {
  node: TunnelLibp2p;
  /** Data port to listen on (all the relay's listen addresses). */
  port: number;
  hosts: string[];
  maxPairs: number;
  /** Does this peer hold a reservation on the relay? */
  hasReservation: (peer: PeerId) => boolean;
  forwarder: Forwarder;
  logger: Logger;
  registry: Registry;
}

interface TokenEntry {
  readonly a: string;
  readonly b: string;
  readonly expires: number;
  waiting?: net.Socket;
}

export class RelayPairing {
  private readonly tokens = new Map<string, TokenEntry>();
  private readonly servers: net.Server[] = [];
  private readonly live = new Set<net.Socket>();
  private pairs = 0;
  private readonly refusals: Counter<'reason'>;
  private readonly paired: Counter<'result'>;
  private readonly bytes: Counter<'path'>;
  private sweep?: NodeJS.Timeout;
  private readonly gauges: () => void;

  constructor(private readonly o: RelayPairingOptions) {
    const r = [o.registry];
    const pairs = new Gauge({ name: 'edgeway_relay_data_pairs_open', help: 'Blind data channel pairs being forwarded now', registers: r });
    const tokens = new Gauge({ name: 'edgeway_relay_data_tokens', help: 'Pairing tokens registered and not yet used', registers: r });
    this.gauges = (): void => { pairs.set(this.pairs); tokens.set(this.tokens.size); };
    this.refusals = new Counter({ name: 'edgeway_relay_data_refusals_total', help: 'Data port connections or pairing requests refused, by reason', labelNames: ['reason'], registers: r });
    this.paired = new Counter({ name: 'edgeway_relay_data_pairs_total', help: 'Blind pairs ended, by result', labelNames: ['result'], registers: r });
    this.bytes = new Counter({ name: 'edgeway_relay_data_bytes_total', help: 'Ciphertext bytes forwarded between paired peers, by forwarder', labelNames: ['path'], registers: r });
  }

  get port(): number {
    return this.o.port;
  }

  async start(): Promise<void> {
    await this.o.node.handle(RELAY_PAIR_PROTOCOL, (stream: Stream, conn: Connection) => {
      this.onPairRequest(stream, conn).catch((err: unknown) => {
        this.refusals.inc({ reason: 'bad-request' });
        try { sendJson(stream, { ok: false, reason: String((err as Error).message ?? err) }); } catch { /* gone */ }
        closeQuietly(stream);
        setTimeout(() => abortQuietly(stream, err), 5000).unref();
      });
    }, { runOnLimitedConnection: false });
    for (const host of this.o.hosts) {
      const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (s) => this.onData(s));
      srv.on('error', (err) => this.o.logger.warn({ err: String(err) }, 'relay data listener error'));
      await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen(this.o.port, host, () => { srv.off('error', reject); resolve(); }); });
      this.servers.push(srv);
    }
    this.sweep = setInterval(() => this.expire(), 5000);
    this.sweep.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.sweep);
    await this.o.node.unhandle(RELAY_PAIR_PROTOCOL).catch(() => undefined);
    for (const s of this.servers) s.close();
    for (const s of this.live) s.destroy();
    for (const t of this.tokens.values()) t.waiting?.destroy();
    this.tokens.clear();
  }

  private expire(): void {
    this.gauges();
    const now = Date.now();
    for (const [k, t] of this.tokens) {
      if (t.expires < now) { t.waiting?.destroy(); this.tokens.delete(k); this.refusals.inc({ reason: 'expired' }); }
    }
  }

  private async onPairRequest(stream: Stream, conn: Connection): Promise<void> {
    const req = await readJson(stream, 10_000);
    const target = field(req, 'peer', 'string');
    const tokens = tokensField(req, MAX_TOKENS_PER_REQUEST);
    const from = conn.remotePeer;
    let targetId: PeerId;
    try { targetId = peerIdFromString(target); } catch { throw new Error('bad peer id'); }
    const answer = (msg: object): void => { sendJson(stream, msg); closeQuietly(stream); };
    if (!this.o.hasReservation(from) || !this.o.hasReservation(targetId)) {
      this.refusals.inc({ reason: 'no-reservation' });
      answer({ ok: false, reason: 'both peers need a reservation on this relay' });
      return;
    }
    if (this.tokens.size + tokens.length > this.o.maxPairs * 2) {
      this.refusals.inc({ reason: 'over-limit' });
      answer({ ok: false, reason: 'relay pairing table full' });
      return;
    }
    const expires = Date.now() + TOKEN_TTL_MS;
    for (const t of tokens) if (!this.tokens.has(t)) this.tokens.set(t, { a: from.toString(), b: target, expires });
    answer({ ok: true, dataPort: this.o.port });
  }

  private onData(sock: net.Socket): void {
    sock.on('error', () => undefined);
    if (this.live.size >= this.o.maxPairs * 2) { this.refusals.inc({ reason: 'over-limit' }); sock.destroy(); return; }
    this.live.add(sock);
    sock.once('close', () => this.live.delete(sock));
    readSocketPrefix(sock, (b) => (b.length >= TOKEN_BYTES ? { value: b.subarray(0, TOKEN_BYTES).toString('hex'), used: TOKEN_BYTES } : undefined), { maxBytes: TOKEN_BYTES, timeoutMs: TOKEN_READ_MS }).then((token) => {
      const t = this.tokens.get(token);
      if (!t || t.expires < Date.now()) {
        this.refusals.inc({ reason: 'unknown-token' });
        sock.destroy();
        return;
      }
      if (!t.waiting || t.waiting.destroyed) { t.waiting = sock; return; }
      this.tokens.delete(token);
      this.join(t.waiting, sock);
    }, () => {
      this.refusals.inc({ reason: 'bad-request' });
      sock.destroy();
    });
  }

  private join(a: net.Socket, b: net.Socket): void {
    if (this.pairs >= this.o.maxPairs) { this.refusals.inc({ reason: 'over-limit' }); a.destroy(); b.destroy(); return; }
    this.pairs++;
    this.gauges();
    const ack = Buffer.of(PAIRED);
    let flushed = 0;
    // The forwarder takes the fds over: our one-byte writes must have left Node first.
    const go = (): void => {
      if (++flushed < 2) return;
      this.o.forwarder.forward(a, b).then((r) => {
        this.bytes.inc({ path: r.kind }, r.bytesIn + r.bytesOut);
        this.paired.inc({ result: 'ok' });
      }, (err: { bytesIn?: number; bytesOut?: number; kind?: string }) => {
        this.bytes.inc({ path: err.kind ?? 'node' }, (err.bytesIn ?? 0) + (err.bytesOut ?? 0));
        this.paired.inc({ result: 'error' });
      }).finally(() => { this.pairs--; this.gauges(); });
    };
    for (const s of [a, b]) s.write(ack, (err) => { if (err) { a.destroy(); b.destroy(); } go(); });
  }
}

/** A fresh pairing token (hex). */
export function newToken(): string {
  return randomBytes(TOKEN_BYTES).toString('hex');
}
