/** Tunnel errors: one class per condition, each with a stable `code`. */

export class TunnelError extends Error {
  readonly code: string = 'ERR_TUNNEL';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TunnelError';
  }
}

/** The persisted identity file exists but cannot be used. */
export class IdentityError extends TunnelError {
  override readonly code = 'ERR_TUNNEL_IDENTITY';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IdentityError';
  }
}

/** The PSK file is missing or malformed. */
export class PskError extends TunnelError {
  override readonly code = 'ERR_TUNNEL_PSK';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PskError';
  }
}

/** A tunnel header could not be decoded. */
export class ProtocolError extends TunnelError {
  override readonly code = 'ERR_TUNNEL_PROTOCOL';
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** The far agent answered with a non-OK status. */
export class TunnelRefusedError extends TunnelError {
  override readonly code = 'ERR_TUNNEL_REFUSED';
  constructor(readonly status: string, message: string) {
    super(`tunnel refused (${status}): ${message}`);
    this.name = 'TunnelRefusedError';
  }
}

/** No peer id or no path is known for a node. */
export class PeerUnknownError extends TunnelError {
  override readonly code = 'ERR_TUNNEL_PEER_UNKNOWN';
  constructor(readonly nodeName: string, detail = '') {
    super(`no tunnel peer known for node ${nodeName}${detail ? `: ${detail}` : ''}`);
    this.name = 'PeerUnknownError';
  }
}

/** Every path to a peer failed. */
export class DialFailedError extends TunnelError {
  override readonly code = 'ERR_TUNNEL_DIAL';
  constructor(readonly nodeName: string, options?: { cause?: unknown }) {
    super(`cannot reach node ${nodeName} through the tunnel`, options);
    this.name = 'DialFailedError';
  }
}

/** The tunnel is not started (or stopped). */
export class NotRunningError extends TunnelError {
  override readonly code = 'ERR_TUNNEL_NOT_RUNNING';
  constructor() {
    super('tunnel is not running');
    this.name = 'NotRunningError';
  }
}
