/** Errors of the data-plane part itself (each mode has its own errors.ts too), with stable codes. */
export class DataplaneError extends Error {
  constructor(readonly code: 'ERR_SOCKET_LB_START', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DataplaneError';
  }
}
