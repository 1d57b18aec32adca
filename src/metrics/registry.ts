/**
 * The Prometheus registry. One per process, created by the composition root and
 * injected into every subsystem (no global default registry), so tests can make
 * their own and names never collide.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

export { Registry };

export function createRegistry(opts: { defaultMetrics?: boolean } = {}): Registry {
  const reg = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: reg, prefix: 'edgeway_process_' });
  return reg;
}
