/**
 * Node access through the tunnel (SOCKS5 on the agent: ssh to an edge node by its
 * name). The dialer sends the ordinary tunnel header with the reserved service key
 * NODE_ACCESS_KEY (never a `namespace/name`), this node's name, and the port. The
 * far agent serves it only when its own config enables SOCKS5 node access, the port
 * is in its own `socks5.allowPorts`, the node name is its own, and the address is
 * loopback or one of its own catalog addresses: it connects to itself only, never
 * on — not an open proxy. Pure.
 */
import type { Snapshot } from '../catalog/types.js';
import type { TunnelRequest } from './protocol.js';

/** Reserved service key of a node-access request. */
export const NODE_ACCESS_KEY = '@node';

export interface NodeAccessPolicy {
  readonly enabled: boolean;
  readonly allowPorts: readonly number[];
}

export function isNodeAccess(req: Pick<TunnelRequest, 'proto' | 'serviceKey' | 'nodeName' | 'ip' | 'port'>, nodeName: string, policy: NodeAccessPolicy, snap: Snapshot): boolean {
  if (!policy.enabled || req.serviceKey !== NODE_ACCESS_KEY || req.proto !== 'tcp' || req.nodeName !== nodeName) return false;
  if (!policy.allowPorts.includes(req.port)) return false;
  if (req.ip === '127.0.0.1' || req.ip === '::1') return true;
  return snap.nodes.some((n) => n.name === nodeName && n.addresses.some((a) => a.address === req.ip));
}
