/** The demo's findings: which path each call took (from the evidence), and how it is printed. */
import type { DemoService, AgentHost } from './scenario.js';
import { METRICS } from './scenario.js';
import type { ProbeResult } from './probe.js';

export interface ServiceOutcome {
  readonly name: string;
  readonly clusterIP: string;
  readonly address?: string;
  readonly backend?: string;
  /** The path as observed: kernel-local, kernel-lan, tunnel-direct, tunnel-relayed, tunnel, unknown. */
  readonly path: string;
  readonly evidence: string;
  readonly expected: string;
  readonly dnsMs?: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  readonly bytesPerSecond?: number;
  readonly sha256ok?: boolean;
  readonly requests: number;
  readonly errors: number;
  /** Indexes of the failed requests. */
  readonly failed: readonly number[];
  readonly ok: boolean;
  readonly error?: string;
}

export interface DemoReport {
  readonly services: ServiceOutcome[];
  /** Payload bytes through a1's tunnel streams during the calls (edgeway_tunnel_bytes_total on a1). */
  readonly a1TunnelBytes: number;
  readonly gateway: GatewayOutcome;
  readonly where: string[];
}

export interface GatewayOutcome {
  /** false while `edgeway gateway` is not in the build. */
  readonly ran: boolean;
  readonly ok: boolean;
  readonly detail: string;
}

/**
 * Decide the path from what the backend saw: the pod's own address → the kernel
 * DNATed the packet on a1 to a local backend; a1's LAN address → kernel DNAT across
 * the LAN (a1 masquerades its pods); the backend node's own address → the far agent
 * connected it, so the flow came through the tunnel (a1's tunnel-state.json says
 * whether that peer is direct or relayed).
 */
/**
 * `peerPaths`: a1's libp2p connections to the service's node (direct/relayed);
 * `channelPath`: the data channel that carries its flows (lan, punched, relayed).
 */
export function classify(s: DemoService, r: ProbeResult, ip: Readonly<Record<AgentHost, string>>, podIp: string, peerPaths: readonly string[], channelPath?: string): ServiceOutcome {
  let path = 'unknown';
  let evidence = r.seenFrom ? `backend saw ${r.seenFrom}` : 'no answer';
  if (r.seenFrom === podIp && s.node === 'a1') path = 'kernel-local';
  else if (r.seenFrom === ip.a1 && s.node !== 'a1') path = 'kernel-lan';
  else if (r.seenFrom === ip[s.node] && s.node !== 'a1') {
    path = channelPath === 'punched' ? 'tunnel-direct (hole-punched)' : channelPath === 'lan' ? 'tunnel-direct'
      : channelPath === 'relayed' ? 'tunnel-relayed'
        : peerPaths.includes('direct') ? 'tunnel-direct' : peerPaths.includes('relayed') ? 'tunnel-relayed' : 'tunnel';
    evidence += ` (its own agent), a1 tunnel peer ${s.node}: ${peerPaths.join('+') || 'not listed yet'}, data channel: ${channelPath ?? 'none'}`;
  }
  const ok = r.errors === 0 && r.backend === s.node && path !== 'unknown' && r.sha256ok !== false;
  return {
    name: s.name, clusterIP: s.clusterIP, address: r.address, backend: r.backend, path, evidence, expected: s.expect,
    dnsMs: r.dnsMs, p50Ms: r.p50Ms, p99Ms: r.p99Ms, bytesPerSecond: r.bytesPerSecond, sha256ok: r.sha256ok,
    requests: r.requests, errors: r.errors, failed: r.failed, ok, ...(r.error ? { error: r.error } : {}),
  };
}

export function pokeCommands(ns: Readonly<Record<string, string>>, dir: string, cli: string): string[] {
  return [
    `ip netns exec ${ns.a1} curl -s http://${METRICS}/metrics | grep ^edgeway_   # a1's metrics (same on a2, b1, relay)`,
    `ip netns exec ${ns.a1} node ${cli} render --config ${dir}/a1.json   # the ruleset a1's catalog compiles to`,
    `ip netns exec ${ns.a1} nft list table inet edgeway   # what a1's kernel holds`,
    `cat ${dir}/a1/tunnel-state.json   # a1's tunnel peers by path, relays`,
    `ip netns exec ${ns.a1} node ${cli} doctor   # kernel features and the mode they imply`,
    `ip netns exec ${ns.p1} dig @169.254.96.16 hello-remote.demo.svc.cluster.local   # the node DNS, from the pod`,
  ];
}

const fmt = (n: number | undefined, unit: string, digits = 1): string => (n === undefined ? '—' : `${n.toFixed(digits)} ${unit}`);
const rate = (bps: number | undefined): string => (bps === undefined ? '—' : bps >= 1e9 ? `${(bps / 1e9).toFixed(2)} GB/s` : `${(bps / 1e6).toFixed(1)} MB/s`);

export function formatReport(r: DemoReport, keep: boolean): string {
  const lines = ['', 'edgeway demo — a pod on a1 (LAN A) calls three services', ''];
  for (const s of r.services) {
    lines.push(`${s.ok ? '✔' : '✘'} ${s.name} (${s.clusterIP}) → backend ${s.backend ?? '—'}`);
    lines.push(`    path     ${s.path}  [${s.evidence}]`);
    lines.push(`    expected ${s.expected}`);
    lines.push(`    DNS ${fmt(s.dnsMs, 'ms', 2)} · request p50 ${fmt(s.p50Ms, 'ms', 2)} p99 ${fmt(s.p99Ms, 'ms', 2)} (${s.requests - s.errors}/${s.requests} ok) · bulk ${rate(s.bytesPerSecond)}${s.sha256ok === false ? ' (SHA-256 MISMATCH)' : s.sha256ok ? ' (SHA-256 ok)' : ''}`);
    if (s.error) lines.push(`    error    ${s.error}${s.failed.length ? ` (request${s.failed.length > 1 ? 's' : ''} #${s.failed.join(', #')})` : ''}`);
  }
  lines.push('', `a1's edgeway_tunnel_bytes_total rose by ${(r.a1TunnelBytes / 1e6).toFixed(1)} MB during the calls (only hello-remote uses the tunnel).`);
  lines.push('', `${r.gateway.ran ? (r.gateway.ok ? '✔' : '✘') : '–'} gateway: ${r.gateway.detail}`, '', `Where to look${keep ? '' : ' (run with --keep to leave the mesh up for these)'}:`, ...r.where.map((w) => `  ${w}`), '',
    'Figures come from one machine whose cores the whole mesh shares; compare paths, not absolutes.', '');
  return lines.join('\n');
}
