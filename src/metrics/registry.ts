/**
 * The Prometheus registry. One per process, created by the composition root and
 * injected into every subsystem (no global default registry), so tests can make
 * their own and names never collide.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

export { Registry };

export function createRegistry(opts: { defaultMetrics?: boolean } = {}): Registry {
  const reg = new Registry();
  if (opts.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: reg, prefix: 'edgeway_process_' });
    // prom-client names three gauges `*_total`, which Prometheus reserves for counters
    // (promtool's linter rejects them). Drop them; the same figures are not needed.
    for (const n of ['handles', 'requests', 'resources']) reg.removeSingleMetric(`edgeway_process_nodejs_active_${n}_total`);
  }
  return reg;
}
