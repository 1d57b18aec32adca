/** Public surface of the userspace proxy. */
export { UserspaceProxy, type UserspaceProxyOptions, type ApplyResult } from './proxy.js';
export { createBalancer, type Balancer, type PickInput } from './balancer.js';
export { ProxyMetrics } from './metrics.js';
export { ProxyError } from './errors.js';
export type { OriginalDstResolver, OriginalDst } from './original-dst.js';
export type { RemoteDialer } from './remote-dialer.js';
