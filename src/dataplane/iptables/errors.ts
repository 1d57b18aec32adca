/** Errors of the iptables data plane, each with a stable `code`. */
export class IptablesError extends Error {
  constructor(readonly code: 'ERR_IPTABLES_APPLY' | 'ERR_IPTABLES_SAVE' | 'ERR_IPTABLES_UNAVAILABLE', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IptablesError';
  }
}
