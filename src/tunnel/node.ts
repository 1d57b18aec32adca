/**
 * The libp2p node factory shared by the agent and the relay: TCP + Noise + yamux,
 * optional private-network PSK, identify, ping, circuit-relay-v2 (client, and
 * server when asked), DCUtR. Limits are set for a tunnel carrying thousands of
 * flows, not for a DHT peer (see PITFALLS.md "js-libp2p v3").
 */
import './polyfill.js';
import { createLibp2p, type Libp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import { ping } from '@libp2p/ping';
import { dcutr } from '@libp2p/dcutr';
import { preSharedKey } from '@libp2p/pnet';
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { FaultTolerance, type PrivateKey, type ServiceMap, type TopologyFilter } from '@libp2p/interface';

/**
 * yamux per-stream window. The window may grow up to `maxStreamWindowSize`; when a
 * paused stream's peer keeps sending up to the window, the read buffer must hold
 * it or the stream aborts (StreamBufferError). So window ≤ read buffer, always.
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
export const STREAM_READ_BUFFER_BYTES = STREAM_WINDOW_BYTES;
/** Streams per connection per protocol: thousands of flows share one connection per peer. */
export const MAX_STREAMS_PER_CONNECTION = 16_384;

export interface NodeOptions {
  privateKey: PrivateKey;
  /** Listen addresses (multiaddrs). */
  listen: string[];
  /** Addresses to announce instead of the listen ones (optional). */
  announce?: string[];
  psk?: Uint8Array;
  /** Reserve a slot on this many relays (client). 0 = no reservations. */
  relayReservations?: number;
  /** Run a circuit-relay-v2 server with these settings. */
  relayServer?: {
    maxReservations: number;
    /** 0 = no limit. */
    dataLimitBytes: number;
    /** 0 = no limit. */
    durationLimitMs: number;
    reservationTtlMs: number;
    maxCircuits: number;
  };
  /** Maximum connections (agents: peers + relays). */
  maxConnections?: number;
}

/**
 * Relay discovery remembers every relay it saw in a bloom filter and never reports
 * it again; a relay that restarts would then never get a reservation back. This
 * filter lets every (re)connection through.
 */
const noFilter: TopologyFilter = { has: () => false, add: () => undefined, remove: () => undefined };

export type TunnelLibp2p = Libp2p<ServiceMap>;

export async function createTunnelNode(opts: NodeOptions): Promise<TunnelLibp2p> {
  const reservations = opts.relayReservations ?? 0;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- heterogeneous service factories
  const services: Record<string, (components: any) => unknown> = {
    identify: identify({ runOnLimitedConnection: true, maxInboundStreams: 256, maxOutboundStreams: 256 }),
    ping: ping({ runOnLimitedConnection: true, maxInboundStreams: 256, maxOutboundStreams: 256 }),
    dcutr: dcutr(),
  };
  if (opts.relayServer) {
    const r = opts.relayServer;
    services.relay = circuitRelayServer({
      maxInboundHopStreams: r.maxCircuits,
      maxOutboundHopStreams: r.maxCircuits,
      maxOutboundStopStreams: r.maxCircuits,
      reservations: {
        maxReservations: r.maxReservations,
        reservationTtl: r.reservationTtlMs,
        // The 128 KiB / 2 min defaults cut tunnel flows: apply limits only when configured.
        applyDefaultLimit: r.dataLimitBytes > 0 || r.durationLimitMs > 0,
        ...(r.dataLimitBytes > 0 ? { defaultDataLimit: BigInt(r.dataLimitBytes) } : {}),
        ...(r.durationLimitMs > 0 ? { defaultDurationLimit: r.durationLimitMs } : {}),
      },
    });
  }
  const listen = [...opts.listen];
  // One '/p2p-circuit' listen address = one relay reservation wanted.
  for (let i = 0; i < reservations; i++) listen.push('/p2p-circuit');
  const maxConnections = opts.maxConnections ?? 1024;
  const node = await createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen, ...(opts.announce && opts.announce.length > 0 ? { announce: opts.announce } : {}) },
    transports: [
      tcp({ maxConnections }),
      circuitRelayTransport({ discoveryFilter: noFilter, reservationConcurrency: Math.max(1, reservations), maxInboundStopStreams: 4096, maxOutboundStopStreams: 4096 }),
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [
      yamux({
        maxInboundStreams: MAX_STREAMS_PER_CONNECTION,
        maxOutboundStreams: MAX_STREAMS_PER_CONNECTION,
        // Larger frames cut per-frame overhead on bulk transfers.
        maxMessageSize: 256 * 1024,
        // Streams that arrive before the upgrader listens on a new connection; over
        // the limit (default 10) the whole connection is aborted
        // (MaxEarlyStreamsError): a burst of flows on a fresh relayed connection
        // killed it. Bounded by the stream limit instead.
        maxEarlyStreams: MAX_STREAMS_PER_CONNECTION,
        streamOptions: {
          initialStreamWindowSize: 256 * 1024,
          maxStreamWindowSize: STREAM_WINDOW_BYTES,
          maxReadBufferLength: STREAM_READ_BUFFER_BYTES,
        },
      }),
    ],
    ...(opts.psk ? { connectionProtector: preSharedKey({ psk: opts.psk }) } : {}),
    connectionManager: {
      maxConnections,
      // Default 5/s per IP: a NAT router fronts a whole LAN of agents.
      inboundConnectionThreshold: 1000,
      maxIncomingPendingConnections: 256,
      dialTimeout: 10_000,
      // Reconnection is ours (relays.ts, dialer.ts), with backoff.
      reconnectRetries: 0,
    },
    // The connection monitor pings every connection each 10 s and, by default,
    // aborts the whole connection when one ping fails: over 5 s, or its stream
    // refused/closed by a busy peer. On a loaded tunnel the ping's bytes queue
    // behind every stream's window of bulk data: it aborted connections carrying
    // 16 flows mid-transfer (every flow reset; downloads arrived truncated). It
    // still measures RTT; a dead peer's connection ends by TCP keepalive/timeouts
    // (a known gap: flows to it fail until then; README "Failure detection").
    // Every 30 s, not 10: nothing reads the RTT, and each ping is a stream both ways
    // (open, protocol select, 32 bytes, close) on every connection — with the
    // relay's pings, a third of an idle agent's CPU and 20 streams/s on a relay
    // serving 100 nodes. 30 s still keeps NAT mappings of idle connections warm.
    connectionMonitor: { abortConnectionOnPingFailure: false, pingInterval: 30_000 },
    transportManager: { faultTolerance: FaultTolerance.NO_FATAL },
    services,
  });
  return node as TunnelLibp2p;
}
