/**
 * Kubernetes source — placeholder with the final interface; the informer-based
 * implementation replaces this file.
 */
import type { Logger } from '../util/log.js';
import type { SourceSink } from '../catalog/store.js';
import type { ServiceFilterMode } from '../catalog/convert.js';
import type { Source } from './source.js';
import { SourceError } from './errors.js';

export interface KubernetesSourceOptions {
  kubeconfig: string;
  apiServer: string;
  filterMode: ServiceFilterMode;
  logger: Logger;
  minBackoffMs: number;
  maxBackoffMs: number;
}

export class KubernetesSource implements Source {
  readonly name = 'kubernetes';
  constructor(private readonly sink: SourceSink, private readonly opts: KubernetesSourceOptions) {}
  async start(): Promise<void> {
    this.sink.setState('degraded', 'kubernetes source not built yet');
    throw new SourceError('ERR_KUBE_CONFIG', 'the kubernetes source is not built yet');
  }
  async stop(): Promise<void> {}
}
