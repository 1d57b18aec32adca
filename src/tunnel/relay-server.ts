/**
 * `edgeway relay`: a circuit-relay-v2 server with limits fit for tunnel data,
 * reservation caps, the rendezvous by node name, and its own metrics.
 */
import './polyfill.js';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import { createTunnelNode, type TunnelLibp2p } from './node.js';
import { loadOrCreateIdentity, loadPsk } from './identity.js';
import { RendezvousServer } from './rendezvous.js';
import { BindingStore } from './bindings.js';

/** Relay's first-use bindings of node names (no PSK), under stateDir. */
export const RENDEZVOUS_BINDINGS_FILE = 'rendezvous-bindings.json';
import { toMultiaddr } from './addrs.js';
import type { PeerId } from '@libp2p/interface';
import { acceleratorsFromConfig } from '../native/accelerator.js';
import { RelayPairing } from './channel/relay-pairing.js';
import { dataPortOf } from './service.js';

const HOP = '/libp2p/circuit/relay/0.2.0/hop';
const PIPE_PATCH_MARKER = 'edgeway-pipe-patch';
const BACKPRESSURE_PATCH_MARKER = 'edgeway-relay-backpressure-patch';

/**
 * Is the @libp2p/utils pipe() leak fix (scripts/patch-deps.mjs) in the copy the
 * circuit relay loads? Node resolution, by hand: walk up from this module, and at
 * each node_modules prefer a copy nested under @libp2p/circuit-relay-v2.
 */
export async function pipePatchApplied(): Promise<boolean> {
  const rel = join('@libp2p', 'utils', 'dist', 'src', 'stream-utils.js');
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    for (const f of [join(dir, 'node_modules', '@libp2p', 'circuit-relay-v2', 'node_modules', rel), join(dir, 'node_modules', rel)]) {
      const text = await readFile(f, 'utf8').catch(() => undefined);
      if (text !== undefined) return text.includes(PIPE_PATCH_MARKER) && text.includes(BACKPRESSURE_PATCH_MARKER);
    }
    const up = dirname(dir);
    if (up === dir) return false;
    dir = up;
  }
}

export interface RelayServerHandle {
  readonly node: TunnelLibp2p;
  readonly peerId: string;
  /** The blind data-pairing port (absent when the channel is disabled). */
  readonly dataPort?: number;
  stop(): Promise<void>;
}

export async function startRelayServer(config: Config, logger: Logger, registry: Registry): Promise<RelayServerHandle> {
  const t = config.tunnel;
  const r = t.relayServer;
  const identity = await loadOrCreateIdentity(config.stateDir);
  const psk = t.psk.path ? await loadPsk(t.psk.path) : undefined;
  const patched = await pipePatchApplied();
  if (!patched) logger.warn('the @libp2p/utils pipe() fix is not installed (run `node scripts/patch-deps.mjs`): relayed bytes will be held in memory until each circuit closes');
  const node = await createTunnelNode({
    privateKey: identity.privateKey,
    listen: t.listenAddresses.map((a) => toMultiaddr(a, t.listenPort).toString()),
    announce: t.announce.map((a) => toMultiaddr(a, t.listenPort).toString()),
    ...(psk ? { psk } : {}),
    relayServer: { maxReservations: r.maxReservations, dataLimitBytes: r.dataLimitBytes, durationLimitMs: r.durationLimitMs, reservationTtlMs: r.reservationTtlMs, maxCircuits: r.maxCircuits },
    maxConnections: r.maxReservations * 2 + 64,
  });
  const rzCounter = new Counter({ name: 'edgeway_relay_rendezvous_requests_total', help: 'Rendezvous requests served, by op and result', labelNames: ['op', 'result'], registers: [registry] });
  // Without a PSK anyone who reaches the relay may register: names are bound to
  // the first peer id that registers them, persisted (bindings.ts).
  const bindings = psk ? undefined : await BindingStore.open(config.stateDir, RENDEZVOUS_BINDINGS_FILE, r.maxRendezvousRecords);
  if (!psk) logger.warn({ bindings: bindings!.file }, 'no tunnel PSK: any peer that reaches this relay may use it; node names are bound to the first peer id that registers them');
  const rendezvous = new RendezvousServer({ ttlMs: 10 * 60_000, maxRecords: r.maxRendezvousRecords, logger, onRequest: (op, result) => rzCounter.inc({ op, result }), ...(bindings ? { bindings } : {}) });
  await rendezvous.start(node);
  const relayService = (node.services as Record<string, { reservations?: { size: number; has(p: PeerId): boolean } }>).relay;
  // Blind data pairs: ciphertext moved by splice when the addon is there (sockmap
  // is for the proxy's short flows; splice measured faster for bulk), else Node streams.
  const { accelerators, forwarder } = acceleratorsFromConfig({ ...config.accelerator, sockmap: false }, { registry, logger });
  const pairing = t.channel.enabled
    ? new RelayPairing({
      node, port: dataPortOf(t), hosts: t.listenAddresses, maxPairs: t.channel.maxRelayPairs, forwarder, logger, registry,
      hasReservation: (p) => relayService?.reservations?.has(p) ?? false,
    })
    : undefined;
  await pairing?.start();
  new Gauge({ name: 'edgeway_relay_reservations', help: 'Reservations held', registers: [registry], collect() { this.set(relayService?.reservations?.size ?? 0); } });
  new Gauge({ name: 'edgeway_relay_connections', help: 'Open connections', registers: [registry], collect() { this.set(node.getConnections().length); } });
  new Gauge({
    name: 'edgeway_relay_circuits', help: 'Relayed connections open (HOP streams)', registers: [registry],
    collect() { this.set(node.getConnections().reduce((n, c) => n + c.streams.filter((s) => s.protocol === HOP).length, 0)); },
  });
  new Gauge({ name: 'edgeway_relay_rendezvous_records', help: 'Nodes registered on the rendezvous', registers: [registry], collect() { this.set(rendezvous.size); } });
  new Gauge({ name: 'edgeway_relay_pipe_patch_applied', help: '1 when the @libp2p/utils pipe() memory fix is installed', registers: [registry] }).set(patched ? 1 : 0);
  logger.info({ peerId: identity.peerId, listen: node.getMultiaddrs().map(String), limits: { dataBytes: r.dataLimitBytes || 'unlimited', durationMs: r.durationLimitMs || 'unlimited', maxReservations: r.maxReservations }, psk: Boolean(psk), pipePatch: patched, dataPort: pairing?.port, forwarder: forwarder.kind }, 'relay started');
  return {
    node, peerId: identity.peerId, ...(pairing ? { dataPort: pairing.port } : {}),
    stop: async () => { await pairing?.stop(); await node.stop(); accelerators.close(); await bindings?.flush(); },
  };
}
