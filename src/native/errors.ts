/** Errors of the native accelerators, each with a stable `code`. */

export class NativeUnavailableError extends Error {
  readonly code = 'ERR_NATIVE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NativeUnavailableError';
  }
}

/**
 * The accelerator could not take the connection over; nothing was moved yet, so
 * the caller may try the next forwarder on the same sockets.
 */
export class HandoverError extends Error {
  readonly code = 'ERR_FORWARD_HANDOVER';
  /** errno name when the kernel refused (EMFILE: no fd left for the pool's copies). */
  readonly errno?: string;
  constructor(readonly kind: string, message: string, options?: { cause?: unknown; errno?: string }) {
    super(message, options);
    this.name = 'HandoverError';
    if (options?.errno !== undefined) this.errno = options.errno;
  }
}

/** Forwarding failed after it started (peer reset, write to a closed peer, …). */
export class ForwardError extends Error {
  readonly code = 'ERR_FORWARD_FAILED';
  constructor(
    readonly kind: string,
    message: string,
    readonly bytesIn: number,
    readonly bytesOut: number,
    /** errno name when it came from the kernel (ECONNRESET, EPIPE, …). */
    readonly errno?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ForwardError';
  }
}

/** Forwarding was stopped by the caller (AbortSignal) or by shutdown. */
export class ForwardCancelledError extends Error {
  readonly code = 'ERR_FORWARD_CANCELLED';
  constructor(readonly kind: string, readonly bytesIn: number, readonly bytesOut: number) {
    super(`${kind} forwarding cancelled`);
    this.name = 'ForwardCancelledError';
  }
}
