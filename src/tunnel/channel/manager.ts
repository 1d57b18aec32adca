/**
 * The agent's data channels: the data listener (LAN peers), the control protocol
 * `/edgeway/channel/1.0.0` (session keys, relay pairing requests), one PeerChannel
 * per peer this node sends flows to, and the paths they use. libp2p stays the
 * control plane and the fallback: `open()` answers undefined when no channel can
 * be had, and the dialer then uses a libp2p stream.
 */
import { setMaxListeners } from 'node:events';
import net from 'node:net';
import type { Connection, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Logger } from '../../util/log.js';
import type { RemoteTarget } from '../../proxy/remote-dialer.js';
import type { TunnelLibp2p } from '../node.js';
import type { PeerDirectory } from '../peers.js';
import type { RelayManager } from '../relays.js';
import type { TunnelServer } from '../server.js';
import type { TunnelMetrics } from '../metrics.js';
import type { TunnelProto } from '../protocol.js';
import { TunnelRefusedError } from '../errors.js';
import { abortQuietly, closeQuietly } from '../stream-io.js';
import { connectionPath } from '../path.js';
import type { HolePuncher } from '../punch/puncher.js';
import { ChannelError } from './errors.js';
import { CredentialStore } from './credentials.js';
import { ChannelServer } from './channel-server.js';
import { startFlow } from './flow.js';
import { connectMany, PeerChannel, type ChannelPath, type PathDialer } from './peer-channel.js';
import { ewcServer, type EwcHooks, type PskCredential } from './ewc-handshake.js';
import type { EwcSocket } from './ewc-codec.js';
import { tryHandOver, type AeadSource } from './handover.js';
import { Backoff } from '../../util/backoff.js';
import { newToken, MAX_TOKENS_PER_REQUEST } from './relay-pairing.js';
import { CHANNEL_PROTOCOL, field, PAIRED, readJson, readSocketPrefix, RELAY_PAIR_PROTOCOL, requestJson, sendJson, tokensField } from './wire.js';

const CONTROL_TIMEOUT_MS = 10_000;
/** How long a flow waits for a channel being set up before it takes the libp2p path. */
const FIRST_FLOW_WAIT_MS = 500;
/**
 * How long a flow waits for a warm connection when the pool is empty (a refill is
 * on its way: a relay pairing or a hole punch) before it takes libp2p — well inside
 * the proxy's connect timeout (3 s by default), which would reset the client.
 */
const TAKE_WAIT_MS = 2000;
/** Idle warm connections: the client replaces them after IDLE, the server drops them after 2×IDLE. */
const WARM_IDLE_MS = 120_000;
/** Rate limit of warnings about bad handshakes and records (the counters have every case). */
const LOG_EVERY_MS = 10_000;

export interface ChannelManagerOptions {
  node: TunnelLibp2p;
  dataPort: number;
  listenHosts: string[];
  warm: number;
  directory: PeerDirectory;
  relays: RelayManager;
  server: TunnelServer;
  metrics: TunnelMetrics;
  logger: Logger;
  /** The libp2p connection to a node's peer (the dialer's, direct preferred). */
  connect(nodeName: string, signal?: AbortSignal): Promise<Connection>;
  /**
   * TCP hole punching (punch/puncher.ts): the data listener shares its port with
   * punch sockets, and a relayed channel upgrades to punched sockets in the
   * background. Absent or unavailable (no addon): LAN and relayed paths only.
   */
  puncher?: HolePuncher;
  directDialTimeoutMs?: number;
  statusTimeoutMs?: number;
  udpIdleTimeoutMs?: number;
  /** The addon's EWC1 record pump (the agent's accelerator), asked per flow; absent or undefined: the JS codec. */
  aead?: AeadSource;
  /** Inbound channel connections at once (warm ones included); over it new ones are closed and counted. */
  maxInbound?: number;
  onChange?: () => void;
}

export interface ChannelStatus {
  peerId: string;
  nodeName: string;
  path?: ChannelPath;
  via?: string;
  warm: number;
}

/** Host of a TCP multiaddr (ip4/ip6/dns), or undefined. */
export function hostOf(ma: Multiaddr): string | undefined {
  return ma.getComponents().find((c) => c.name === 'ip4' || c.name === 'ip6' || c.name === 'dns' || c.name === 'dns4' || c.name === 'dns6')?.value;
}

export class ChannelManager {
  private readonly creds = new CredentialStore();
  private readonly channels = new Map<string, { nodeName: string; ch: PeerChannel }>();
  private readonly listeners: net.Server[] = [];
  private readonly inbound = new Set<net.Socket>();
  private readonly channelServer: ChannelServer;
  /** Handshake failures and bad record streams: counted by reason, logged at most once per LOG_EVERY_MS. */
  private readonly hooks: EwcHooks;

  constructor(private readonly o: ChannelManagerOptions) {
    let lastLog = 0;
    const warn = (what: string, reason: string): void => {
      const now = Date.now();
      if (now - lastLog < LOG_EVERY_MS) return;
      lastLog = now;
      o.logger.warn({ reason }, `data channel ${what} (further ones for ${LOG_EVERY_MS / 1000} s only counted)`);
    };
    this.hooks = {
      onHandshakeFailure: (reason) => { o.metrics.channelHandshakeFailures.inc({ reason }); warn('handshake failed', reason); },
      onRecordError: (reason) => { o.metrics.channelRecordErrors.inc({ reason }); warn('connection reset: bad record stream', reason); },
    };
    this.channelServer = new ChannelServer({ server: o.server, metrics: o.metrics, logger: o.logger, idleMs: 2 * WARM_IDLE_MS, ...(o.aead ? { aead: o.aead } : {}), ...(o.udpIdleTimeoutMs ? { udpIdleTimeoutMs: o.udpIdleTimeoutMs } : {}) });
  }

  async start(): Promise<void> {
    await this.o.node.handle(CHANNEL_PROTOCOL, (stream: Stream, conn: Connection) => {
      this.onControl(stream, conn).catch((err: unknown) => {
        try { sendJson(stream, { ok: false, reason: String((err as Error).message ?? err) }); } catch { /* gone */ }
        closeQuietly(stream);
        setTimeout(() => abortQuietly(stream, err), 5000).unref();
      });
    }, { runOnLimitedConnection: true });
    const puncher = this.o.puncher?.available ? this.o.puncher : undefined;
    for (const host of this.o.listenHosts) {
      // The peer's side of a punch may land on the listener (its SYN came first): the puncher takes it.
      const srv = net.createServer({ allowHalfOpen: true }, (raw) => { if (!puncher?.claim(raw)) this.accept(raw, 'lan'); });
      if (puncher) await puncher.listen(srv, host, this.o.dataPort);
      else await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen(this.o.dataPort, host, () => { srv.off('error', reject); resolve(); }); });
      srv.on('error', (err) => this.o.logger.warn({ err: String(err) }, 'channel data listener error'));
      this.listeners.push(srv);
    }
  }

  async stop(): Promise<void> {
    for (const c of this.channels.values()) c.ch.close();
    this.channels.clear();
    await this.o.node.unhandle(CHANNEL_PROTOCOL).catch(() => undefined);
    // close() waits for open connections: end ours first (warm ones never end by themselves).
    const closed = Promise.all(this.listeners.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const s of this.inbound) s.destroy();
    await closed;
  }

  /** Channel paths by peer, for tunnel-state.json and metrics. */
  status(): ChannelStatus[] {
    return [...this.channels.entries()].map(([peerId, { nodeName, ch }]) => ({ peerId, nodeName, ...(ch.path ? { path: ch.path } : {}), ...(ch.via ? { via: ch.via } : {}), warm: ch.warmCount }));
  }

  /** Peers with a channel from here or warm connections from them here (idle close candidates). */
  peers(): string[] {
    return [...new Set([...this.channels.keys(), ...this.channelServer.waitingPeers()])];
  }

  /**
   * An idle peer: drop this node's channel to it (its warm pool ends with END) and
   * end its warm connections here. Flows running on either are left alone. Returns
   * the warm connections closed; the next flow sets a channel up again.
   */
  closeIdlePeer(peerId: string): number {
    const e = this.channels.get(peerId);
    this.channels.delete(peerId);
    const n = (e?.ch.retireAll() ?? 0) + this.channelServer.retireWaiting(peerId);
    if (e) this.o.onChange?.();
    return n;
  }

  /** A socket punched at a peer's request: we are its EWC1 server, as on the LAN listener. */
  acceptPunched(raw: net.Socket): void {
    this.accept(raw, 'punched');
  }

  pathOf(peerId: string): ChannelPath | undefined {
    return this.channels.get(peerId)?.ch.path;
  }

  /**
   * A started flow to `target` over the channel (the header sent and answered OK),
   * or undefined when no channel is available (use libp2p). A refusal by the far
   * agent throws TunnelRefusedError, exactly as on the libp2p path.
   */
  async open(target: RemoteTarget, proto: TunnelProto, peerId: string): Promise<EwcSocket | undefined> {
    const ch = this.channelFor(peerId, target.nodeName);
    // A flow waits a little for a channel being set up, then takes libp2p (the
    // channel keeps coming up in the background for the next flows).
    const up = await Promise.race([ch.ensure(), new Promise<false>((r) => setTimeout(() => r(false), FIRST_FLOW_WAIT_MS).unref())]);
    if (!up) return undefined;
    // A warm connection may have died unseen: try a few before falling back. With
    // none at hand the flow waits TAKE_WAIT_MS at most for the next one.
    for (let i = 0; i < 3; i++) {
      const sock = await ch.take(TAKE_WAIT_MS);
      if (!sock) return undefined;
      try {
        await startFlow(sock, target, proto, this.o.statusTimeoutMs ?? 10_000);
        const fwd = proto === 'tcp' ? this.o.aead?.() : undefined;
        if (fwd) {
          sock.forwardNative = (client, opts) => {
            const native = tryHandOver(client, sock, fwd, opts);
            this.o.metrics.channelHandovers.inc({ side: 'client', result: native ? 'native' : 'declined' });
            // The pump's bytes never pass the codec: count them here, as the far side does.
            void native?.then((r) => {
              this.o.metrics.bytes.inc({ direction: 'tx' }, r.bytesIn);
              this.o.metrics.bytes.inc({ direction: 'rx' }, r.bytesOut);
            }, () => undefined);
            return native;
          };
        }
        return sock;
      } catch (err) {
        if (err instanceof TunnelRefusedError) throw err;
        this.o.logger.debug({ peer: peerId, err: String(err) }, 'channel connection failed at flow start; trying another');
      }
    }
    return undefined;
  }

  private channelFor(peerId: string, nodeName: string): PeerChannel {
    let e = this.channels.get(peerId);
    if (!e) {
      const ch: PeerChannel = new PeerChannel({
        peerId, nodeName, warm: this.o.warm, handshakeTimeoutMs: CONTROL_TIMEOUT_MS, maxIdleMs: WARM_IDLE_MS, logger: this.o.logger,
        hello: (signal) => this.hello(nodeName, signal),
        paths: (dataPort, signal) => this.paths(peerId, nodeName, dataPort, signal),
        lanPath: (dataPort) => this.lanPath(peerId, nodeName, dataPort),
        ...(this.o.puncher?.available ? { punchedPath: () => this.punchedPath(peerId, nodeName, this.o.puncher!, true) } : {}),
        onChange: () => this.o.onChange?.(),
        onClosedByPeer: () => {
          if (this.channels.get(peerId)?.ch === ch) this.channels.delete(peerId);
          this.o.onChange?.();
        },
        onHandshake: (path, ok) => this.o.metrics.channelHandshakes.inc({ side: 'client', path, result: ok ? 'ok' : 'failed' }),
        hooks: this.hooks,
      });
      e = { nodeName, ch };
      this.channels.set(peerId, e);
    }
    return e.ch;
  }

  // ---- client side: credentials and paths --------------------------------

  private async hello(nodeName: string, signal: AbortSignal): Promise<{ cred: PskCredential; dataPort: number }> {
    const conn = await this.o.connect(nodeName, signal);
    const stream = await conn.newStream(CHANNEL_PROTOCOL, { runOnLimitedConnection: true, signal });
    const res = await requestJson(stream, { op: 'hello' }, CONTROL_TIMEOUT_MS, signal);
    if (!field(res, 'ok', 'boolean')) throw new ChannelError('ERR_CHANNEL_CONTROL', `channel refused by ${nodeName}: ${String((res as { reason?: unknown }).reason)}`);
    const key = Buffer.from(field(res, 'key', 'string'), 'base64');
    const id = field(res, 'id', 'string');
    const dataPort = field(res, 'dataPort', 'number');
    if (key.length !== 32 || !/^[0-9a-f]{32}$/.test(id) || !Number.isInteger(dataPort) || dataPort < 1 || dataPort > 65535) throw new ChannelError('ERR_CHANNEL_CONTROL', 'malformed channel credentials');
    return { cred: { id, key }, dataPort };
  }

  private async paths(peerId: string, nodeName: string, dataPort: number, _signal: AbortSignal): Promise<PathDialer[]> {
    const out: PathDialer[] = [];
    const lan = await this.lanPath(peerId, nodeName, dataPort);
    if (lan) out.push(lan);
    // Preference order LAN → punched → relayed. All are tried at once (PeerChannel):
    // the relayed path usually answers first and carries flows while the punch (a
    // few round trips, seconds when it fails) runs; a punched socket then takes over.
    if (this.o.puncher?.available) out.push(this.punchedPath(peerId, nodeName, this.o.puncher));
    for (const relay of this.o.relays.reservedRelays()) out.push(this.relayedPath(peerId, nodeName, relay));
    return out;
  }

  /**
   * Sockets from a TCP hole punch with the peer (signalled over the libp2p
   * connection). Only while that connection is relayed: a direct one means a LAN
   * path (or a port forward) exists. `upgrade`: a background attempt, dropped when
   * the channel stopped being relayed meanwhile (e.g. the set-up's punch worked).
   */
  private punchedPath(peerId: string, nodeName: string, puncher: HolePuncher, upgrade = false): PathDialer {
    const node = this.o.node;
    const dial = this.o.connect.bind(this.o);
    const pathOf = (): ChannelPath | undefined => this.pathOf(peerId);
    // Reconnecting libp2p to punch again backs off while it fails (a relay down).
    const redial = new Backoff(1000, 30_000);
    let redialAt = 0;
    const d = {
      path: 'punched' as const,
      via: 'hole punch',
      async connect(n: number, signal: AbortSignal): Promise<net.Socket[]> {
        const open = (): Connection[] => node.getConnections().filter((c) => c.remotePeer.toString() === peerId && c.status === 'open');
        // The punch is signalled over libp2p. That connection may be gone while the
        // punched sockets still work (a relay restarted): connect again (through
        // the relays) to punch the next ones, instead of giving the path up.
        if (open().length === 0) {
          if (Date.now() < redialAt) throw new ChannelError('ERR_CHANNEL_NO_PATH', 'no punching: no libp2p connection to the peer (reconnect backing off)');
          try {
            await dial(nodeName, signal);
            redial.reset();
          } catch (err) {
            redialAt = Date.now() + redial.next();
            throw err;
          }
        }
        const conns = open();
        if (conns.length === 0 || conns.some((c) => connectionPath(c) === 'direct')) throw new ChannelError('ERR_CHANNEL_NO_PATH', 'no punching: the peer is not (only) relayed');
        if (upgrade) {
          await puncher.settled(peerId);
          if (pathOf() !== 'relayed') throw new ChannelError('ERR_CHANNEL_NO_PATH', 'no punching: the channel is no longer relayed');
        }
        const r = await puncher.punchMany(peerId, n, signal);
        d.via = `${r[0]!.remote.host}:${r[0]!.remote.port}`;
        return r.map((x) => x.socket);
      },
    };
    return d;
  }

  /** The peer's data listener at the addresses a direct libp2p connection or the catalog gives. */
  private async lanPath(peerId: string, nodeName: string, dataPort: number): Promise<PathDialer | undefined> {
    const hosts = new Set<string>();
    const conns = this.o.node.getConnections().filter((c) => c.remotePeer.toString() === peerId && c.status === 'open' && connectionPath(c) === 'direct');
    for (const c of conns) { const h = hostOf(c.remoteAddr); if (h) hosts.add(h); }
    const pid = conns[0]?.remotePeer ?? (await this.o.directory.resolve(nodeName).catch(() => undefined))?.peerId;
    if (pid) for (const ma of this.o.directory.directAddrs(nodeName, pid)) { const h = hostOf(ma); if (h) hosts.add(h); }
    if (hosts.size === 0) return undefined;
    const timeout = this.o.directDialTimeoutMs ?? 1500;
    const order = [...hosts];
    const d = {
      path: 'lan' as const,
      via: `${order[0]}:${dataPort}`,
      async connect(n: number, signal: AbortSignal): Promise<net.Socket[]> {
        let last: unknown;
        for (const h of order) {
          try {
            const socks = await connectMany(h, dataPort, n, timeout, signal);
            // Keep the address that works first for the next refill.
            order.splice(order.indexOf(h), 1);
            order.unshift(h);
            d.via = `${h}:${dataPort}`;
            return socks;
          } catch (err) { last = err; }
        }
        throw last instanceof Error ? last : new ChannelError('ERR_CHANNEL_NO_PATH', 'no LAN address answered');
      },
    };
    return d;
  }

  /** Blind relay: register tokens on the relay, ask the peer to join them, join them ourselves. */
  private relayedPath(peerId: string, nodeName: string, relayPeer: string): PathDialer {
    const via = this.o.relays.status().find((r) => r.peerId === relayPeer)?.nodeName ?? relayPeer;
    return {
      path: 'relayed', via,
      connect: async (n, signal) => {
        const relayConn = this.o.node.getConnections().find((c) => c.remotePeer.toString() === relayPeer && c.status === 'open' && connectionPath(c) === 'direct');
        const host = relayConn ? hostOf(relayConn.remoteAddr) : undefined;
        if (!relayConn || !host) throw new ChannelError('ERR_CHANNEL_PAIR', `no direct connection to relay ${via}`);
        const tokens = Array.from({ length: Math.min(n, MAX_TOKENS_PER_REQUEST) }, newToken);
        const pair = await requestJson(await relayConn.newStream(RELAY_PAIR_PROTOCOL, { signal }), { peer: peerId, tokens }, CONTROL_TIMEOUT_MS, signal);
        if (!field(pair, 'ok', 'boolean')) throw new ChannelError('ERR_CHANNEL_PAIR', `relay ${via} refused pairing: ${String((pair as { reason?: unknown }).reason)}`);
        const port = field(pair, 'dataPort', 'number');
        const peerConn = await this.o.connect(nodeName, signal);
        const ask = await requestJson(await peerConn.newStream(CHANNEL_PROTOCOL, { runOnLimitedConnection: true, signal }), { op: 'relay', relay: relayPeer, port, tokens }, CONTROL_TIMEOUT_MS, signal);
        if (!field(ask, 'ok', 'boolean')) throw new ChannelError('ERR_CHANNEL_PAIR', `peer refused relay pairing: ${String((ask as { reason?: unknown }).reason)}`);
        const r = await Promise.allSettled(tokens.map((t) => joinRelay(host, port, t, signal)));
        const ok = r.filter((x): x is PromiseFulfilledResult<net.Socket> => x.status === 'fulfilled').map((x) => x.value);
        if (ok.length === 0) throw (r[0] as PromiseRejectedResult).reason;
        return ok;
      },
    };
  }

  // ---- server side: control requests and inbound connections -------------

  private async onControl(stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer.toString();
    const req = await readJson(stream, CONTROL_TIMEOUT_MS);
    const op = field(req, 'op', 'string');
    const answer = (msg: object): void => { sendJson(stream, msg); closeQuietly(stream); };
    // Same gate as tunnel streams: only cluster nodes (or relays) get a channel.
    if (!(await this.o.directory.authorise(peer))) {
      // Counted apart from tunnel refusals: the flow itself is refused (and counted) on whichever path it takes next.
      this.o.metrics.channelHandshakes.inc({ side: 'server', path: 'control', result: 'unauthorised' });
      this.o.logger.warn({ peer }, 'channel request from a peer that is not a cluster node: refused');
      answer({ ok: false, reason: 'peer is not a cluster node' });
      return;
    }
    if (op === 'hello') {
      const cred = this.creds.issue(peer);
      answer({ ok: true, id: cred.id, key: cred.key.toString('base64'), dataPort: this.o.dataPort });
      return;
    }
    if (op === 'relay') {
      const relay = field(req, 'relay', 'string');
      const port = field(req, 'port', 'number');
      const tokens = tokensField(req, MAX_TOKENS_PER_REQUEST);
      const relayConn = this.o.relays.isRelay(relay) ? this.o.node.getConnections().find((c) => c.remotePeer.toString() === relay && c.status === 'open' && connectionPath(c) === 'direct') : undefined;
      const host = relayConn ? hostOf(relayConn.remoteAddr) : undefined;
      if (!host || !Number.isInteger(port) || port < 1 || port > 65535) { answer({ ok: false, reason: 'not connected to that relay' }); return; }
      answer({ ok: true });
      const signal = AbortSignal.timeout(CONTROL_TIMEOUT_MS * 2);
      // One wait per token on this signal (up to MAX_TOKENS_PER_REQUEST): no MaxListeners warning.
      setMaxListeners(MAX_TOKENS_PER_REQUEST + 1, signal);
      for (const t of tokens) joinRelay(host, port, t, signal).then((raw) => this.accept(raw, 'relayed'), (err: unknown) => this.o.logger.debug({ err: String(err) }, 'relay join failed'));
      return;
    }
    answer({ ok: false, reason: `unknown op ${op}` });
  }

  /** An inbound channel connection (LAN listener, or our end of a relay pair): EWC1 server, then one flow. */
  private accept(raw: net.Socket, path: ChannelPath): void {
    raw.on('error', () => undefined);
    if (this.inbound.size >= (this.o.maxInbound ?? 16_384)) {
      this.o.metrics.channelHandshakes.inc({ side: 'server', path, result: 'over-limit' });
      raw.destroy();
      return;
    }
    this.inbound.add(raw);
    raw.once('close', () => this.inbound.delete(raw));
    ewcServer(raw, (id) => this.creds.lookup(id), CONTROL_TIMEOUT_MS, this.hooks).then(({ socket, id }) => {
      this.o.metrics.channelHandshakes.inc({ side: 'server', path, result: 'ok' });
      const peer = this.creds.peerOf(id);
      if (!peer) { socket.destroy(); return; }
      this.channelServer.serve(socket, peer);
    }, () => {
      this.o.metrics.channelHandshakes.inc({ side: 'server', path, result: 'failed' });
    });
  }
}

/** Connect to a relay's data port, present the token, wait until the relay paired it. */
function joinRelay(host: string, port: number, token: string, signal: AbortSignal): Promise<net.Socket> {
  return connectMany(host, port, 1, CONTROL_TIMEOUT_MS, signal).then(async ([s]) => {
    const sock = s!;
    sock.write(Buffer.from(token, 'hex'));
    try {
      await readSocketPrefix(sock, (b) => (b[0] === PAIRED ? { value: true, used: 1 } : (() => { throw new ChannelError('ERR_CHANNEL_PAIR', 'relay answered garbage'); })()), { maxBytes: 1, timeoutMs: CONTROL_TIMEOUT_MS });
    } catch (err) {
      sock.destroy();
      throw err;
    }
    return sock;
  });
}
