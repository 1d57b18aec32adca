/** Hole-punching metrics (`edgeway_tunnel_punch_*`), created on an injected registry. */
import { Counter, type Registry } from 'prom-client';
import type { PunchFailure } from './errors.js';

export type PunchResultLabel = 'ok' | PunchFailure;

export interface PunchMetrics {
  /** side: `outbound` (we asked) or `inbound` (the peer asked). */
  readonly punches: Counter<'side' | 'result'>;
}

export function createPunchMetrics(registry: Registry): PunchMetrics {
  return {
    punches: new Counter({
      name: 'edgeway_tunnel_punch_total',
      help: 'TCP hole punches by side and result (ok, unavailable, no-connection, no-address, busy, refused, protocol, failed, aborted)',
      labelNames: ['side', 'result'],
      registers: [registry],
    }),
  };
}
