/** Errors of the sources subsystem, each with a stable code. */
export class SourceError extends Error {
  constructor(readonly code: 'ERR_STATIC_PARSE' | 'ERR_STATIC_READ' | 'ERR_KUBE_CONFIG' | 'ERR_KUBE_API', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SourceError';
  }
}

/**
 * A failed Kubernetes API request. `statusCode` is the HTTP status (undefined when
 * the server could not be reached); the informer code of `@kubernetes/client-node`
 * reads the same property name (410 → relist).
 */
export class KubeApiError extends SourceError {
  constructor(message: string, readonly statusCode?: number, options?: { cause?: unknown }) {
    super('ERR_KUBE_API', message, options);
    this.name = 'KubeApiError';
  }
}
