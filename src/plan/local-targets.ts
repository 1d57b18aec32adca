/**
 * Which targets a tunnel may reach on this node: the far side of the tunnel asks
 * "is ip:port an endpoint of this service port, on this node, and is that the
 * port the plan would pick?" with the plan's own port rule (`resolveTargetPort`,
 * including the single-port fallback), so a flow the dialing node's plan sends
 * here is never refused for reading the snapshot differently. Pure; memoised
 * per snapshot object (snapshots are immutable).
 *
 * Deliberately not filtered by zone hints or internalTrafficPolicy: those choose
 * among endpoints on the *dialing* node; any ready or serving endpoint that is
 * really on this node is a legitimate target.
 */
import type { Protocol, Snapshot } from '../catalog/types.js';
import { resolveTargetPort } from './build.js';

export interface LocalTarget {
  readonly serviceKey: string;
  readonly servicePort: number;
  readonly protocol: Protocol;
  readonly ip: string;
  readonly port: number;
}

const keyOf = (t: LocalTarget): string => `${t.serviceKey}|${t.servicePort}|${t.protocol}|${t.ip}|${t.port}`;

const memo = new WeakMap<Snapshot, Map<string, ReadonlySet<string>>>();

/** Every (service port, endpoint ip, target port) the plan places on `nodeName`. */
export function localTargetKeys(snapshot: Snapshot, nodeName: string): ReadonlySet<string> {
  let byNode = memo.get(snapshot);
  if (!byNode) memo.set(snapshot, (byNode = new Map()));
  const hit = byNode.get(nodeName);
  if (hit) return hit;
  const out = new Set<string>();
  for (const svc of snapshot.services) {
    const single = svc.ports.length === 1;
    for (const sp of svc.ports) {
      for (const ep of svc.endpoints) {
        if (ep.nodeName !== nodeName || !(ep.ready || ep.serving)) continue;
        const port = resolveTargetPort(sp, ep, single);
        if (port !== undefined) out.add(keyOf({ serviceKey: svc.key, servicePort: sp.port, protocol: sp.protocol, ip: ep.ip, port }));
      }
    }
  }
  byNode.set(nodeName, out);
  return out;
}

/** Is `t` a target the plan places on `nodeName`? (the tunnel's "never an open proxy" check) */
export function isLocalTarget(snapshot: Snapshot, nodeName: string, t: LocalTarget): boolean {
  return localTargetKeys(snapshot, nodeName).has(keyOf(t));
}
