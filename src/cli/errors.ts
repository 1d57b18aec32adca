/** Errors the agent's composition raises itself, with stable codes. */
export type AgentErrorCode =
  /** The tunnel started without a single listening address (libp2p's NO_FATAL fault tolerance hides the failure). */
  | 'ERR_TUNNEL_LISTEN'
  /** stateDir is not a directory the agent can write. */
  | 'ERR_STATE_DIR';

export class AgentError extends Error {
  constructor(readonly code: AgentErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AgentError';
  }
}
