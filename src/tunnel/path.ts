/** Which path a libp2p connection takes (pure). */
import type { Connection } from '@libp2p/interface';
import type { PeerPath } from './metrics.js';
import { isCircuit } from './addrs.js';

export function connectionPath(conn: Connection): PeerPath {
  return conn.direct === false || isCircuit(conn.remoteAddr) ? 'relayed' : 'direct';
}
