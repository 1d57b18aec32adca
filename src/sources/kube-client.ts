/**
 * Kubernetes API access for the source: which credentials to use, and plain JSON
 * GETs through the same agent and headers `@kubernetes/client-node`'s Watch uses.
 *
 * Lists are fetched raw rather than through the generated typed client on purpose:
 * the typed client deserialises into class instances (Date timestamps) and drops
 * fields its model does not know, so list objects and watch objects (plain JSON)
 * would differ. Raw lists give the converters one shape, exactly the wire's.
 */
import { existsSync } from 'node:fs';
import { request as httpRequest, type Agent as HttpAgent } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { KubeApiError, SourceError } from './errors.js';

export interface KubeAuthOptions {
  /** Plain API URL without auth (KubeEdge's metaServer), e.g. http://127.0.0.1:10550. */
  apiServer: string;
  /** Path to a kubeconfig file. */
  kubeconfig: string;
}

const SERVICEACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Credentials, in order: `apiServer` (no auth), `kubeconfig` file, then
 * $KUBECONFIG / ~/.kube/config, then the in-cluster service account. Throws
 * SourceError ERR_KUBE_CONFIG when none applies or the file is unusable (the
 * client would otherwise silently fall back to http://localhost:8080).
 */
export function loadKubeConfig(opts: KubeAuthOptions): { kc: KubeConfig; via: string } {
  const kc = new KubeConfig();
  try {
    if (opts.apiServer) {
      const url = new URL(opts.apiServer);
      // client-node refuses plain http unless skipTLSVerify is set; for https keep verification on.
      kc.loadFromOptions({
        clusters: [{ name: 'api', server: opts.apiServer.replace(/\/+$/, ''), skipTLSVerify: url.protocol === 'http:' }],
        users: [{ name: 'anonymous' }],
        contexts: [{ name: 'api', cluster: 'api', user: 'anonymous' }],
        currentContext: 'api',
      });
      return { kc, via: `apiServer ${opts.apiServer}` };
    }
    if (opts.kubeconfig) {
      kc.loadFromFile(opts.kubeconfig);
      if (!kc.getCurrentCluster()) throw new Error('no current context/cluster');
      return { kc, via: `kubeconfig ${opts.kubeconfig}` };
    }
    const envFile = process.env.KUBECONFIG?.split(':').find((f) => f);
    const homeFile = join(homedir(), '.kube', 'config');
    if (!envFile && !existsSync(homeFile) && !existsSync(SERVICEACCOUNT_TOKEN)) {
      throw new Error('no apiServer or kubeconfig configured, no $KUBECONFIG or ~/.kube/config, and not running in a cluster');
    }
    kc.loadFromDefault();
    if (!kc.getCurrentCluster()) throw new Error('no current context/cluster');
    return { kc, via: envFile ? `$KUBECONFIG ${envFile}` : existsSync(homeFile) ? `kubeconfig ${homeFile}` : 'in-cluster service account' };
  } catch (err) {
    if (err instanceof SourceError) throw err;
    throw new SourceError('ERR_KUBE_CONFIG', `kubernetes source: ${(err as Error).message}`, { cause: err });
  }
}

/** GET `path` from the current cluster and parse the JSON body. Throws KubeApiError. */
export function getJson(kc: KubeConfig, path: string, signal: AbortSignal, timeoutMs = 60_000): Promise<unknown> {
  return requestJson(kc, 'GET', path, undefined, signal, timeoutMs);
}

/** JSON merge patch (RFC 7386) of the object at `path`; returns the patched object. Throws KubeApiError. */
export function mergePatch(kc: KubeConfig, path: string, patch: unknown, signal: AbortSignal, timeoutMs = 30_000): Promise<unknown> {
  return requestJson(kc, 'PATCH', path, patch, signal, timeoutMs);
}

/** URL, headers and agent of a request to the current cluster, as client-node's own requests make them. */
async function prepare(kc: KubeConfig, path: string): Promise<{ url: URL; headers: Record<string, string>; agent: HttpAgent | undefined; request: typeof httpRequest }> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new SourceError('ERR_KUBE_CONFIG', 'kubernetes source: no current cluster');
  const url = new URL(cluster.server + path);
  const init = (await kc.applyToFetchOptions({})) as { agent?: unknown; headers?: unknown };
  const headers: Record<string, string> = { accept: 'application/json' };
  if (init.headers && typeof (init.headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [k, v] of init.headers as Iterable<[string, string]>) headers[k] = v;
  }
  return { url, headers, agent: init.agent as HttpAgent | undefined, request: url.protocol === 'https:' ? httpsRequest : httpRequest };
}

/** The Status message of an error body, else the HTTP reason phrase. */
function statusMessage(text: string, fallback: string): string {
  try { return String((JSON.parse(text) as { message?: unknown }).message ?? fallback); } catch { return fallback; }
}

async function requestJson(kc: KubeConfig, method: 'GET' | 'PATCH', path: string, body: unknown, signal: AbortSignal, timeoutMs: number): Promise<unknown> {
  const { url, headers, agent, request } = await prepare(kc, path);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload !== undefined) headers['content-type'] = 'application/merge-patch+json';
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent, signal, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(new KubeApiError(`${method} ${path}: ${err.message}`, undefined, { cause: err })));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const code = res.statusCode ?? 0;
        if (code !== 200) {
          const message = statusMessage(text, res.statusMessage ?? '');
          reject(new KubeApiError(`${method} ${path}: HTTP ${code}${message ? ` ${message}` : ''}`, code));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(new KubeApiError(`${method} ${path}: response is not JSON`, code, { cause: err }));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    req.on('error', (err) => reject(new KubeApiError(`${method} ${path}: ${err.message}`, undefined, { cause: err })));
    req.end(payload);
  });
}

type WatchCallback = Parameters<Watch['watch']>[2];

/**
 * client-node's `Watch` (the transport its `ListWatch` informer uses), with every
 * request tied to the source's AbortSignal from the moment it is sent. The stock
 * one creates its AbortController only once the response headers are in, and
 * `ListWatch.stop()` aborts only a watch it already holds: a stop between a list
 * and its watch (a one-shot command stopping at the first sync, an agent stopped
 * early) left that watch open for good and the process never exited. Same wire
 * behaviour otherwise: `?watch=true&<params>`, newline-delimited events, a non-200
 * answer is an error carrying `statusCode` (410 → the informer relists), the end of
 * the stream calls `done(null)` (the informer resumes from its resourceVersion).
 */
export class AbortableWatch extends Watch {
  constructor(private readonly kc: KubeConfig, private readonly signal: AbortSignal) {
    super(kc);
  }

  override async watch(path: string, queryParams: Record<string, string | number | boolean | undefined>, callback: WatchCallback, done: (err: unknown) => void): Promise<AbortController> {
    const controller = new AbortController();
    let finished = false;
    const finish = (err: unknown): void => {
      if (finished) return;
      finished = true;
      controller.abort();
      done(err);
    };
    if (this.signal.aborted) {
      finish(new KubeApiError(`watch ${path}: source stopped`));
      return controller;
    }
    const { url, headers, agent, request } = await prepare(this.kc, path);
    url.searchParams.set('watch', 'true');
    for (const [k, v] of Object.entries(queryParams)) if (v !== undefined) url.searchParams.set(k, String(v));
    const req = request(url, { method: 'GET', headers, agent, signal: AbortSignal.any([controller.signal, this.signal]) }, (res) => {
      res.on('error', finish);
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const code = res.statusCode ?? 0;
          finish(new KubeApiError(`watch ${path}: HTTP ${code} ${statusMessage(Buffer.concat(chunks).toString('utf8'), res.statusMessage ?? '')}`, code));
        });
        return;
      }
      // A silently dead path is noticed by TCP keepalive (as client-node's Watch does).
      res.socket.setKeepAlive(true, 30_000);
      const lines = createInterface({ input: res, crlfDelay: Infinity });
      lines.on('error', finish); // readline re-emits the response's errors (an aborted stream)
      lines.on('line', (line) => {
        let ev: { type?: unknown; object?: unknown };
        try { ev = JSON.parse(line) as typeof ev; } catch { return; } // client-node ignores unparsable lines too
        if (typeof ev.type === 'string') callback(ev.type, ev.object, ev);
      });
      lines.on('close', () => finish(null));
    });
    req.on('error', (err) => finish(new KubeApiError(`watch ${path}: ${err.message}`, undefined, { cause: err })));
    req.end();
    return controller;
  }
}

/**
 * Objects as plain JSON: list items from a typed client are class instances with
 * Date timestamps, watch objects are plain. Converters read fields by name, so the
 * shapes only need to agree on values; this makes them identical.
 */
export function toPlainObject(o: unknown): unknown {
  if (o === null || typeof o !== 'object') return o;
  if (isPlain(o)) return o;
  return JSON.parse(JSON.stringify(o)) as unknown;
}

function isPlain(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return true;
  if (Array.isArray(v)) return v.every(isPlain);
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  return Object.values(v as Record<string, unknown>).every(isPlain);
}
