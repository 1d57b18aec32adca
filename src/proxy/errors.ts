/** Errors of the userspace proxy, each with a stable `code`. */
export type ProxyErrorCode =
  | 'ERR_PROXY_NO_ENDPOINTS'
  | 'ERR_PROXY_CONNECT_TIMEOUT'
  | 'ERR_PROXY_CONNECT'
  | 'ERR_PROXY_NO_REMOTE_DIALER'
  | 'ERR_PROXY_LISTEN'
  | 'ERR_PROXY_HTTP_PARSE';

export class ProxyError extends Error {
  constructor(readonly code: ProxyErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProxyError';
  }
}
