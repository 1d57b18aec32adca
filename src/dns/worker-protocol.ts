/**
 * Messages between the main thread and DNS worker threads (workers.ts, worker.ts).
 * Everything here is structured-cloneable; no functions, no sockets.
 */
import type { Snapshot } from '../catalog/types.js';
import type { DnsCounters } from './metrics.js';
import type { Upstream } from './forwarder.js';
import type { ZoneOptions } from './zone.js';
import type { BoundAddress } from './server.js';

/** What every worker serves with (the part's `dns` settings). */
export interface DnsServeSettings {
  readonly zone: ZoneOptions;
  readonly upstreams: readonly Upstream[];
  readonly upstreamTimeoutMs: number;
  /** Per worker (each has its own cache). */
  readonly cacheSize: number;
  readonly maxTcpConnections: number;
}

/** `workerData` of a DNS worker. */
export interface WorkerInit extends DnsServeSettings {
  readonly index: number;
  /** host:port; port 0 only for the first worker (the others get the port it bound). */
  readonly listen: readonly string[];
  /** Only the first worker serves TCP (little traffic; Node 20 cannot share a TCP port). */
  readonly tcp: boolean;
  /** Ask the main thread for each UDP socket (addon) instead of dgram's reusePort. */
  readonly fdFromMain: boolean;
  /** Serve UDP in batches through the native addon (loaded in the worker). */
  readonly batch: boolean;
  readonly snapshot: Snapshot;
  readonly logLevel: string;
}

export type ToWorker =
  | { readonly t: 'snapshot'; readonly snapshot: Snapshot }
  | { readonly t: 'fd'; readonly id: number; readonly fd?: number; readonly error?: string; readonly code?: string }
  | { readonly t: 'counters'; readonly id: number }
  | { readonly t: 'stop' };

export type FromWorker =
  | { readonly t: 'ready'; readonly addresses: readonly BoundAddress[] }
  | { readonly t: 'failed'; readonly message: string; readonly code?: string; readonly errno?: string }
  | { readonly t: 'openUdp'; readonly id: number; readonly host: string; readonly port: number }
  | { readonly t: 'counters'; readonly id: number; readonly counters: DnsCounters }
  | { readonly t: 'stopped' };

/** Only what the zone needs (no nodes, never gateway objects or secrets). */
export function slimSnapshot(s: Snapshot): Snapshot {
  return { version: s.version, revision: s.revision, builtAt: s.builtAt, origin: s.origin, services: s.services, nodes: [] };
}
