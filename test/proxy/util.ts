/**
 * Shared pieces of the proxy socket tests: planned service ports built by hand,
 * free ports, the identity-echo backends (test/helpers/fixtures/echo-server.mjs)
 * started as child processes, and small clients.
 */
import net from 'node:net';
import { createHash } from 'node:crypto';
import { prng } from '../helpers/prng.js';
import dgram from 'node:dgram';
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import type { PlannedEndpoint, PlannedPolicy, PlannedServicePort } from '../../src/plan/types.js';
import type { Protocol } from '../../src/catalog/types.js';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type http from 'node:http';
import { Registry } from 'prom-client';
import { UserspaceProxy } from '../../src/proxy/proxy.js';
import { silentLogger } from '../../src/util/log.js';

export const ECHO = new URL('../helpers/fixtures/echo-server.mjs', import.meta.url).pathname;

/** A port free right now on 127.0.0.1 for both TCP and UDP (bound and released). */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '0.0.0.0', () => { const a = s.address() as net.AddressInfo; s.close(() => resolve(a.port)); });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => { u.close(); resolve(false); });
      u.bind(port, '0.0.0.0', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free port');
}

export function ep(ip: string, port: number, extra: Partial<PlannedEndpoint> = {}): PlannedEndpoint {
  return { ip, family: ip.includes(':') ? 6 : 4, port, class: 'local', ready: true, nodeName: 'n1', ...extra };
}

export function servicePort(opts: { name?: string; protocol?: Protocol; port?: number; userspacePort: number; endpoints: PlannedEndpoint[]; policy?: PlannedPolicy; clusterIPs?: string[] }): PlannedServicePort {
  const name = opts.name ?? 'svc';
  const protocol = opts.protocol ?? 'TCP';
  const port = opts.port ?? 80;
  return {
    id: `default/${name}:${port}/${protocol}`, serviceKey: `default/${name}`, namespace: 'default', name, portName: '', protocol, port,
    clusterIPs: opts.clusterIPs ?? ['10.96.0.10'], endpoints: opts.endpoints, policy: opts.policy ?? { kind: 'random' },
    target: 'userspace', userspaceReason: 'iptables-mode', userspacePort: opts.userspacePort,
  };
}

export interface Backend { id: string; port: number; proc: ChildProcess }

/** Start identity-echo backends (TCP, or TCP+UDP with udp) on 127.0.0.1. */
export async function startBackends(ids: string[], udp = false): Promise<Backend[]> {
  return Promise.all(ids.map(async (id) => {
    const port = await freePort();
    const proc = spawn(process.execPath, [ECHO, '--id', id, '--port', String(port), '--host', '127.0.0.1', ...(udp ? ['--udp'] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`backend ${id} did not start`)), 10_000);
      proc.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('listening')) { clearTimeout(t); resolve(); } });
      proc.once('exit', (c) => { clearTimeout(t); reject(new Error(`backend ${id} exited ${c}`)); });
    });
    return { id, port, proc };
  }));
}

export async function stopBackends(bs: Backend[]): Promise<void> {
  await Promise.all(bs.map((b) => new Promise<void>((resolve) => {
    if (b.proc.exitCode !== null || b.proc.signalCode !== null) return resolve();
    b.proc.once('exit', () => resolve());
    b.proc.kill('SIGKILL');
  })));
}

/** Connect, send `whoami\n`, return the identity line (rejects after timeoutMs). */
export function whoami(port: number, opts: { localAddress?: string; host?: string; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: opts.host ?? '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    let buf = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error('whoami timeout')); }, opts.timeoutMs ?? 5_000);
    s.on('connect', () => s.write('whoami\n'));
    s.on('data', (d) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) { clearTimeout(t); s.destroy(); resolve(buf.slice(0, i)); }
    });
    s.on('error', (e) => { clearTimeout(t); reject(e); });
  });
}

/** Send `payload`, half-close, collect everything echoed until the proxy's FIN. */
export function echoThrough(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => { s.end(); resolve(Buffer.concat(chunks)); });
    s.on('error', reject);
    s.on('connect', () => s.end(payload));
  });
}

/** Open file descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Poll `cond` every 2 ms until true or timeoutMs (then reject with `what`). */
export async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timeout: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const ROOT = new URL('../../', import.meta.url).pathname;

/** Build dist/ when the proxy or iptables sources are newer than it (fixtures that run in other processes import dist). */
export function ensureBuilt(): void {
  const newest = (dir: string): number => Math.max(0, ...readdirSync(dir).map((f) => statSync(`${dir}/${f}`).mtimeMs));
  const built = existsSync(`${ROOT}dist/proxy/proxy.js`) ? statSync(`${ROOT}dist/proxy/proxy.js`).mtimeMs : 0;
  if (built < Math.max(newest(`${ROOT}src/proxy`), newest(`${ROOT}src/dataplane/iptables`))) {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  }
}

/** `n` bytes from the seeded PRNG (reproducible payloads for sha256 checks). */
export function seededBytes(seed: number, n: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Write `payload` on an open flow and read the same number of echoed bytes. */
export function roundTrip(sock: net.Socket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer): void => {
      chunks.push(d);
      got += d.length;
      if (got >= payload.length) { sock.off('data', onData); sock.off('error', reject); resolve(Buffer.concat(chunks)); }
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.write(payload);
  });
}

/**
 * A proxy on 127.0.0.1 serving one service port with `policy` over backends on
 * 127.0.0.1 at `ports`; pushed to `proxies` for the caller's afterEach to close.
 */
export async function proxyOver(proxies: UserspaceProxy[], ports: readonly number[], policy: PlannedPolicy): Promise<number> {
  const proxy = new UserspaceProxy({ logger: silentLogger(), registry: new Registry(), listenHost: '127.0.0.1' });
  proxies.push(proxy);
  const port = await freePort();
  await proxy.apply([servicePort({ userspacePort: port, policy, endpoints: ports.map((p) => ep('127.0.0.1', p)) })]);
  return port;
}

/**
 * In-process HTTP backends `a`, `b`, `c` made by `make`, started before the file's
 * tests and closed after; `httpProxy(policy)` puts a proxy in front of them (closed
 * after each test, as are those pushed to `proxies`).
 */
export function useHttpBackends(make: (id: string) => Promise<{ srv: http.Server; port: number }>): { list: { srv: http.Server; port: number }[]; proxies: UserspaceProxy[]; httpProxy(policy: PlannedPolicy): Promise<number> } {
  const proxies: UserspaceProxy[] = [];
  const fx = {
    proxies,
    list: [] as { srv: http.Server; port: number }[],
    httpProxy: (policy: PlannedPolicy) => proxyOver(proxies, fx.list.map((b) => b.port), policy),
  };
  beforeAll(async () => { fx.list = await Promise.all(['a', 'b', 'c'].map(make)); });
  afterAll(() => { for (const b of fx.list) { b.srv.closeAllConnections(); b.srv.close(); } });
  afterEach(async () => { for (const p of proxies.splice(0)) await p.close(); });
  return fx;
}
