/** Tunnel metrics (`edgeway_tunnel_*`), created on an injected registry. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type PeerPath = 'direct' | 'relayed';
export type RefusalReason = 'unauthorised' | 'not-local' | 'bad-request' | 'connect-failed' | 'unavailable' | 'early-bytes-over-cap';

export interface TunnelMetrics {
  readonly peers: Gauge<'path'>;
  readonly streamsOpen: Gauge<'direction' | 'proto'>;
  readonly streams: Counter<'direction' | 'proto' | 'result'>;
  readonly bytes: Counter<'direction'>;
  readonly dialSeconds: Histogram<'path'>;
  readonly holePunchAttempts: Counter<'method'>;
  readonly holePunchSuccesses: Counter<'method'>;
  readonly refusals: Counter<'reason'>;
  readonly reservations: Gauge;
  readonly udpDropped: Counter<'reason'>;
  readonly rendezvous: Counter<'op' | 'result'>;
  readonly channelHandshakes: Counter<'side' | 'path' | 'result'>;
  readonly channelFlows: Counter<'path'>;
  readonly channelPeers: Gauge<'path'>;
  readonly channelWarm: Gauge;
  readonly channelHandshakeFailures: Counter<'reason'>;
  readonly channelRecordErrors: Counter<'reason'>;
  readonly channelHandovers: Counter<'side' | 'result'>;
  /** Peer connections closed for idleness (`tunnel.peerIdleMs`). */
  readonly peerIdleCloses: Counter;
  /** Rendezvous answers refused because the name is bound to another peer (first-use binding). */
  readonly bindingConflicts: Counter;
  /** Node names resolved to a configured relay's peer id (refused: a relay is never a node). */
  readonly relayClaims: Counter;
}

export function createTunnelMetrics(registry: Registry): TunnelMetrics {
  const r = [registry];
  return {
    peers: new Gauge({ name: 'edgeway_tunnel_peers', help: 'Connected tunnel peers by path (a peer with any direct connection counts as direct)', labelNames: ['path'], registers: r }),
    streamsOpen: new Gauge({ name: 'edgeway_tunnel_streams_open', help: 'Tunnel streams currently open', labelNames: ['direction', 'proto'], registers: r }),
    streams: new Counter({ name: 'edgeway_tunnel_streams_total', help: 'Tunnel streams by result', labelNames: ['direction', 'proto', 'result'], registers: r }),
    bytes: new Counter({ name: 'edgeway_tunnel_bytes_total', help: 'Payload bytes through tunnel streams (tx = towards the peer)', labelNames: ['direction'], registers: r }),
    dialSeconds: new Histogram({ name: 'edgeway_tunnel_dial_duration_seconds', help: 'Time to get a connection to a peer (new connections only)', labelNames: ['path'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: r }),
    holePunchAttempts: new Counter({ name: 'edgeway_tunnel_holepunch_attempts_total', help: 'Attempts to upgrade a relayed peer to a direct connection', labelNames: ['method'], registers: r }),
    holePunchSuccesses: new Counter({ name: 'edgeway_tunnel_holepunch_successes_total', help: 'Relayed peers upgraded to a direct connection', labelNames: ['method'], registers: r }),
    refusals: new Counter({ name: 'edgeway_tunnel_refusals_total', help: 'Inbound tunnel requests refused, by reason', labelNames: ['reason'], registers: r }),
    reservations: new Gauge({ name: 'edgeway_tunnel_relay_reservations', help: 'Relays holding a reservation for this node', registers: r }),
    udpDropped: new Counter({ name: 'edgeway_tunnel_udp_dropped_total', help: 'Datagrams dropped (stream backpressure, oversize)', labelNames: ['reason'], registers: r }),
    rendezvous: new Counter({ name: 'edgeway_tunnel_rendezvous_requests_total', help: 'Rendezvous requests to relays', labelNames: ['op', 'result'], registers: r }),
    channelHandshakes: new Counter({ name: 'edgeway_tunnel_channel_handshakes_total', help: 'Data channel EWC1 handshakes, by side, path and result', labelNames: ['side', 'path', 'result'], registers: r }),
    channelFlows: new Counter({ name: 'edgeway_tunnel_channel_flows_total', help: 'Outbound flows by carrier: the data channel path (lan, punched, relayed) or libp2p (fallback)', labelNames: ['path'], registers: r }),
    channelPeers: new Gauge({ name: 'edgeway_tunnel_channel_peers', help: 'Peers with a data channel up, by path', labelNames: ['path'], registers: r }),
    channelWarm: new Gauge({ name: 'edgeway_tunnel_channel_warm_connections', help: 'Established channel connections waiting for a flow', registers: r }),
    channelHandshakeFailures: new Counter({ name: 'edgeway_tunnel_channel_handshake_failures_total', help: 'Data channel EWC1 handshakes that failed, by reason (timeout, closed, garbled, unknown-id, bad-confirm, bad-key)', labelNames: ['reason'], registers: r }),
    channelRecordErrors: new Counter({ name: 'edgeway_tunnel_channel_record_errors_total', help: 'Data channel connections reset for a bad record stream, by reason (length, tag, truncated, after-end)', labelNames: ['reason'], registers: r }),
    channelHandovers: new Counter({ name: 'edgeway_tunnel_channel_handovers_total', help: 'Channel flows offered to the native EWC1 record pump, by side (client, server) and result (native, declined: the flow stayed on the JS codec)', labelNames: ['side', 'result'], registers: r }),
    peerIdleCloses: new Counter({ name: 'edgeway_tunnel_peer_idle_closes_total', help: 'Peer connections (libp2p connections and warm data channel connections) closed after tunnel.peerIdleMs without a flow', registers: r }),
    bindingConflicts: new Counter({ name: 'edgeway_tunnel_binding_conflicts_total', help: 'Peers claiming a node name bound to another peer id (refused)', registers: r }),
    relayClaims: new Counter({ name: 'edgeway_tunnel_relay_claims_total', help: 'Node names that resolved to a configured relay\'s peer id (refused: a relay is never a node)', registers: r }),
  };
}
