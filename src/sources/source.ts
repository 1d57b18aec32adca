/** The contract every catalog source implements. */
export interface Source {
  readonly name: string;
  /** Begin feeding the sink; resolves once started (not necessarily synced). Idempotent. */
  start(): Promise<void>;
  /** Stop watching; the records already given stay in the catalog. */
  stop(): Promise<void>;
}
