/** Hole-punching errors: one class, a stable `code`, and the counted `reason`. */
import { TunnelError } from '../errors.js';

/** Why a punch did not produce a socket; also the `result` label of `edgeway_tunnel_punch_total`. */
export type PunchFailure =
  | 'unavailable' // no native addon (connectFrom) in this process
  | 'no-connection' // no libp2p connection to the peer to signal over
  | 'no-address' // we or the peer know no observed address
  | 'busy' // a punch with this peer is already running, or too many at once
  | 'refused' // the peer declined (not authorised, busy, unavailable)
  | 'protocol' // malformed or unexpected message
  | 'failed' // every attempt ended without a connected socket on both sides
  | 'aborted';

export class PunchError extends TunnelError {
  override readonly code = 'ERR_TUNNEL_PUNCH';
  constructor(readonly reason: PunchFailure, message: string, options?: { cause?: unknown }) {
    super(`hole punch ${reason}: ${message}`, options);
    this.name = 'PunchError';
  }
}
