/** Errors of the sources subsystem, each with a stable code. */
export class SourceError extends Error {
  constructor(readonly code: 'ERR_STATIC_PARSE' | 'ERR_STATIC_READ' | 'ERR_KUBE_CONFIG' | 'ERR_KUBE_API', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SourceError';
  }
}
