/**
 * One small HTTP server: `/metrics` (Prometheus text format), `/healthz` (process
 * alive) and `/readyz` (catalog synced or persisted snapshot loaded, and every
 * registered readiness check passing). Bound to `metrics.listen` (loopback by default).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  /** Short name shown in the /readyz detail. */
  readonly name: string;
  /** Current state; `detail` explains (e.g. "serving persisted snapshot"). */
  check(): { ready: boolean; detail?: string };
}

export interface MetricsServer {
  readonly address: AddressInfo;
  addReadiness(check: ReadinessCheck): void;
  close(): Promise<void>;
}

export function splitHostPort(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(listen);
  if (!m) throw new Error(`bad listen address "${listen}"`);
  return { host: m[1]!, port: Number(m[2]) };
}

export async function startMetricsServer(registry: Registry, listen: string): Promise<MetricsServer> {
  const checks: ReadinessCheck[] = [];
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(err)}\n`),
      );
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const results = checks.map((c) => ({ name: c.name, ...safeCheck(c) }));
      const ready = results.length > 0 && results.every((r) => r.ready);
      const body = results.map((r) => `[${r.ready ? '+' : '-'}]${r.name}${r.detail ? `: ${r.detail}` : ''}`).join('\n');
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(`${body}\n${ready ? 'ready' : 'not ready'}\n`);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  const { host, port } = splitHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  return {
    address: server.address() as AddressInfo,
    addReadiness: (c) => { checks.push(c); },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

function safeCheck(c: ReadinessCheck): { ready: boolean; detail?: string } {
  try {
    return c.check();
  } catch (err) {
    return { ready: false, detail: `check failed: ${String(err)}` };
  }
}
