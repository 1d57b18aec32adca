/**
 * A half-started agent does not stay up: when a part cannot start, the real
 * `edgeway agent` releases everything it started so far, newest first, and exits
 * 1 with the reason (no lingering handle: the bounded-exit warning of
 * bin/edgeway.js must not appear). One case per failing part; each cause is real
 * (a state dir that is a file, a port held by another socket).
 * IP plan: loopback only (127.0.0.1); the catalog is a static file with one
 * service (ClusterIP 10.96.0.10, data only, never dialled).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBuilt, type LogLine } from '../helpers/agent-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
let dir = '';
const held: (net.Server | dgram.Socket)[] = [];

beforeAll(async () => { await ensureBuilt(); }, 120_000);

afterEach(async () => {
  for (const h of held.splice(0)) await new Promise<void>((r) => h.close(() => r()));
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = '';
});

const catalog = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { clusterIP: 10.96.0.10, ports: [{ name: http, port: 80 }] }
`;

async function writeConfig(lines: string[], stateDir?: string): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'edgeway-start-'));
  await writeFile(join(dir, 'services.yaml'), catalog);
  const file = join(dir, 'agent.yaml');
  await writeFile(file, [
    'nodeName: edge-1',
    `stateDir: ${stateDir ?? join(dir, 'state')}`,
    `sources: { kubernetes: { enabled: false }, static: { paths: [${join(dir, 'services.yaml')}], pollMs: 100 } }`,
    'dataplane: { mode: none }',
    'metrics: { listen: "127.0.0.1:0" }',
    ...lines,
  ].join('\n'));
  return file;
}

/** A TCP port held by a listening socket of this test. */
async function heldTcpPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  held.push(s);
  return (s.address() as net.AddressInfo).port;
}

/** A UDP port held by a bound socket of this test. */
async function heldUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  held.push(s);
  return s.address().port;
}

async function freeTcpPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * Run the agent to its exit (SIGKILL after 60 s: the test then fails on the code).
 * `termOn`: send SIGTERM when a log line with this message appears.
 */
function runAgent(config: string, termOn?: string): Promise<{ code: number; logs: LogLine[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/edgeway.js', 'agent', '--config', config], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let termSent = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (termOn && !termSent && stderr.includes(`"msg":"${termOn}"`)) { termSent = true; child.kill('SIGTERM'); }
    });
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => {
      clearTimeout(timer);
      const logs = stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
      resolve({ code: code ?? -1, logs, stderr });
    });
  });
}

const released = (logs: LogLine[]): string[] => logs.filter((l) => l.msg === 'released').map((l) => String(l.part));

describe('agent start failures: stop what started, newest first, exit 1', () => {
  it('state dir is a file: fails before anything starts', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'edgeway-statefile-')), 'not-a-dir');
    await writeFile(file, 'x');
    try {
      const r = await runAgent(await writeConfig(['dns: { enabled: false }', 'tunnel: { enabled: false }'], file));
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`edgeway agent: stateDir ${file} is not a usable directory`);
      expect(r.logs.find((l) => l.msg === 'agent start failed; stopping what started')?.code).toBe('ERR_STATE_DIR');
      expect(r.logs.some((l) => l.msg === 'metrics listening')).toBe(false);
      expect(released(r.logs)).toEqual([]);
      expect(r.stderr).not.toContain('handles still open');
    } finally {
      await rm(join(file, '..'), { recursive: true, force: true });
    }
  });

  it('tunnel cannot listen (port in use): not reported started; sources, metrics and catalog released', async () => {
    const port = await heldTcpPort();
    // The data channel's port explicitly: listenPort + 1 may be another test's port.
    const r = await runAgent(await writeConfig(['dns: { enabled: false }', `tunnel: { enabled: true, listenPort: ${port}, dataPort: ${await freeTcpPort()}, listenAddresses: ["127.0.0.1"] }`]));
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`edgeway agent: tunnel: tunnel could not listen on 127.0.0.1:${port}`);
    expect(r.logs.find((l) => l.msg === 'agent start failed; stopping what started')?.code).toBe('ERR_TUNNEL_LISTEN');
    expect(released(r.logs)).toEqual(['tunnel', 'source static', 'metrics', 'catalog']);
    expect(r.stderr).not.toContain('handles still open');
  });

  it('DNS address in use: the tunnel started before it is stopped too', async () => {
    const [dnsPort, tunnelPort] = [await heldUdpPort(), await freeTcpPort()];
    const r = await runAgent(await writeConfig([
      `dns: { enabled: true, listen: ["127.0.0.1:${dnsPort}"], upstreams: ["127.0.0.1:9"], interface: ewt${process.pid % 100000} }`,
      `tunnel: { enabled: true, listenPort: ${tunnelPort}, dataPort: ${await freeTcpPort()}, listenAddresses: ["127.0.0.1"] }`,
    ]));
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`edgeway agent: dns: cannot listen on udp 127.0.0.1:${dnsPort}`);
    expect(r.logs.find((l) => l.msg === 'agent start failed; stopping what started')?.code).toBe('ERR_DNS_LISTEN');
    expect(r.logs.some((l) => l.msg === 'tunnel started')).toBe(true);
    expect(released(r.logs)).toEqual(['dns', 'tunnel', 'source static', 'metrics', 'catalog']);
    expect(r.stderr).not.toContain('handles still open');
    // The tunnel port is free again (released by the agent, not only by its exit).
    const s = net.createServer();
    await new Promise<void>((res, rej) => { s.once('error', rej); s.listen(tunnelPort, '127.0.0.1', res); });
    await new Promise((res) => s.close(res));
  });

  it('SIGTERM during start-up: what started is released newest first and the agent exits 0', async () => {
    const [dnsPort, tunnelPort] = [await heldUdpPort(), await freeTcpPort()];
    // The UDP port is only reserved here; freed for the agent's DNS.
    await new Promise<void>((r) => (held.pop() as dgram.Socket).close(() => r()));
    // The signal comes right after the mode decision, while the rest starts.
    const r = await runAgent(await writeConfig([
      `dns: { enabled: true, listen: ["127.0.0.1:${dnsPort}"], upstreams: ["127.0.0.1:9"], interface: ewu${process.pid % 100000} }`,
      `tunnel: { enabled: true, listenPort: ${tunnelPort}, dataPort: ${await freeTcpPort()}, listenAddresses: ["127.0.0.1"] }`,
    ]), 'data-plane mode');
    expect(r.code, r.stderr).toBe(0);
    expect(r.logs.at(-1)?.msg).toBe('stopped');
    const order = ['catalog', 'metrics', 'source static', 'tunnel', 'dns'];
    const rel = released(r.logs);
    // Whatever had started when the signal came, released in exactly the reverse order.
    expect(rel).toEqual(order.slice(0, rel.length).reverse());
    expect(r.stderr).not.toContain('handles still open');
  });
});
