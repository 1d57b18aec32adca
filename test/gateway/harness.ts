/**
 * Gateway test harness: real backends on loopback (port 0), a static catalog file
 * (Services + EndpointSlices pointing at them + the test's Istio/Gateway API
 * objects and Secrets), the real `edgeway gateway` process listening on 127.0.0.1,
 * certificates made with the openssl CLI in a temp dir (never committed).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { AgentProcess, ensureBuilt } from '../helpers/agent-process.js';

const pexec = promisify(execFile);
export const NODE = 'gw-node';

export interface Backend {
  readonly name: string;
  /** A 127.x address: endpoints of one service need distinct IPs (the catalog keys endpoints by IP). */
  readonly host: string;
  readonly port: number;
  readonly server: net.Server;
}

/** An HTTP backend answering JSON {backend, url, method, headers}. */
export async function httpBackend(name: string, handler?: http.RequestListener, host = '127.0.0.1'): Promise<Backend> {
  const server = http.createServer(handler ?? ((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ backend: name, url: req.url, method: req.method, headers: req.headers }));
    });
  }));
  return listen(name, server, host);
}

export async function listen(name: string, server: net.Server, host = '127.0.0.1'): Promise<Backend> {
  await new Promise<void>((r) => server.listen(0, host, r));
  return { name, host, port: (server.address() as net.AddressInfo).port, server };
}

/** A port free right now on 127.0.0.1 (the gateway binds it a moment later). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

let ipSeq = 10;
/** Service + EndpointSlice (endpoints on this gateway's node, 127.0.0.1:backend port). */
export function serviceObjects(name: string, ns: string, backends: readonly Backend[], opts: { port?: number; portName?: string; appProtocol?: string } = {}): object[] {
  const port = opts.port ?? 80;
  const portName = opts.portName ?? 'http';
  // Cluster IPs are only catalog data here: nothing ever connects to them.
  const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { clusterIP: `10.96.0.${ipSeq++}`, ports: [{ name: portName, port, ...(opts.appProtocol ? { appProtocol: opts.appProtocol } : {}) }] } };
  const slices = backends.map((b, i) => ({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: `${name}-${i}`, namespace: ns, labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4', ports: [{ name: portName, port: b.port }],
    // One slice per backend (each has its own port).
    endpoints: [{ addresses: [b.host], nodeName: NODE }],
  }));
  return [svc, ...slices];
}

export class GatewayLab {
  readonly dir = mkdtempSync(join(tmpdir(), 'edgeway-gw-'));
  gateway: AgentProcess | undefined;
  readonly closers: (() => Promise<void> | void)[] = [];

  get catalogFile(): string { return join(this.dir, 'catalog.yaml'); }

  /** Replace the catalog atomically (the static source polls it). */
  writeCatalog(objects: readonly object[]): void {
    const tmp = `${this.catalogFile}.tmp`;
    writeFileSync(tmp, objects.map((o) => stringify(o)).join('---\n'));
    renameSync(tmp, this.catalogFile);
  }

  async start(objects: readonly object[], extra: Record<string, unknown> = {}): Promise<AgentProcess> {
    await ensureBuilt();
    this.writeCatalog(objects);
    const config = join(this.dir, 'gateway.yaml');
    writeFileSync(config, stringify({
      nodeName: NODE, stateDir: join(this.dir, 'state'), log: { level: 'info' },
      sources: { kubernetes: { enabled: false }, static: { paths: [this.catalogFile], pollMs: 100 } },
      tunnel: { enabled: false }, metrics: { listen: '127.0.0.1:0' },
      gateway: { addresses: ['127.0.0.1/32'], addressPollMs: 500, ...extra },
    }));
    this.gateway = await AgentProcess.start(config, 20_000, 'gateway');
    await this.waitLog((l) => l.msg === 'gateway routes applied');
    return this.gateway;
  }

  async waitLog(pred: (l: { msg: string; [k: string]: unknown }) => boolean, timeoutMs = 15_000, from = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.gateway!.logs.slice(from).some(pred)) {
      if (Date.now() > deadline) throw new Error(`gateway log not seen; logs: ${this.gateway!.logs.map((x) => `${x.msg} ${JSON.stringify(x.reason ?? x.err ?? '')}`).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async metric(name: string): Promise<string[]> {
    const { text } = await this.gateway!.get('/metrics');
    return text.split('\n').filter((l) => l.startsWith(name));
  }

  /** Stop the gateway (its exit code is returned: the test checks it is 0), close backends, remove files. */
  async stop(): Promise<number | undefined> {
    const code = await this.gateway?.stop();
    for (const c of this.closers.splice(0).reverse()) await c();
    rmSync(this.dir, { recursive: true, force: true });
    return code;
  }
}

/** A self-signed certificate (or one signed by `ca`) for `names`, made with the openssl CLI. */
export async function makeCert(dir: string, base: string, cn: string, names: readonly string[], ca?: { cert: string; key: string }): Promise<{ cert: string; key: string; certFile: string; keyFile: string }> {
  const keyFile = join(dir, `${base}.key`);
  const certFile = join(dir, `${base}.crt`);
  const san = names.length ? ['-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`] : [];
  if (!ca) {
    await pexec('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${cn}`, ...san]);
  } else {
    const csr = join(dir, `${base}.csr`);
    const caCert = join(dir, `${base}-ca.crt`);
    const caKey = join(dir, `${base}-ca.key`);
    writeFileSync(caCert, ca.cert);
    writeFileSync(caKey, ca.key);
    await pexec('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${cn}`]);
    await pexec('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '2']);
  }
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile };
}

export function tlsSecret(name: string, ns: string, c: { cert: string; key: string }, ca?: string): object {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, type: 'kubernetes.io/tls', stringData: { 'tls.crt': c.cert, 'tls.key': c.key, ...(ca ? { 'ca.crt': ca } : {}) } };
}

/** GET over a given agent (keep-alive control), JSON body parsed. */
export function get(port: number, path: string, headers: Record<string, string> = {}, agent?: http.Agent, method = 'GET'): Promise<{ status: number; body: { backend?: string; url?: string; headers?: Record<string, string>; method?: string }; headers: http.IncomingHttpHeaders; socket: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, method, ...(agent ? { agent } : {}) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => {
        let body = {};
        try { body = text ? JSON.parse(text) as object : {}; } catch { body = { raw: text }; }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers, socket: req.socket });
      });
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('request timeout')));
    req.end();
  });
}
