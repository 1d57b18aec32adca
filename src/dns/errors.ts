/** Errors of the DNS subsystem, each with a stable `code`. */

/** A listen address could not be bound (in use, not assigned, no permission). */
export class DnsListenError extends Error {
  readonly code = 'ERR_DNS_LISTEN';
  constructor(readonly address: string, cause: unknown) {
    super(`cannot listen on ${address}: ${String((cause as Error)?.message ?? cause)}`, { cause });
    this.name = 'DnsListenError';
  }
}

/** The upstream set would send queries back to this server. */
export class DnsLoopError extends Error {
  readonly code = 'ERR_DNS_LOOP';
  constructor(readonly upstream: string) {
    super(`upstream ${upstream} is one of our own listen addresses: forwarding to it would loop`);
    this.name = 'DnsLoopError';
  }
}

/** Creating or removing the dummy interface that carries the DNS address failed. */
export class DnsInterfaceError extends Error {
  readonly code = 'ERR_DNS_INTERFACE';
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'DnsInterfaceError';
  }
}

/** DNS worker threads could not start (script missing, a worker ended before serving). */
export class DnsWorkerError extends Error {
  readonly code = 'ERR_DNS_WORKER';
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'DnsWorkerError';
  }
}
