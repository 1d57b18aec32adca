/**
 * Demo client (run inside the "pod" namespace): for each service name, resolve it
 * through the node DNS, then measure request latency (sequential whoami requests:
 * connect + one round trip) and bulk throughput (seeded bytes, SHA-256 checked).
 * Prints one JSON line (ProbeResult[]). Every step has a timeout: the loops end.
 * Usage: node dist/demo/probe.js --dns IP --names a,b --rtt N --bulk BYTES
 */
import net from 'node:net';
import { Resolver } from 'node:dns/promises';
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { seededSha256 } from './bytes.js';

export interface ProbeResult {
  name: string;
  address?: string;
  dnsMs?: number;
  /** Backend id and the address it saw the connection come from. */
  backend?: string;
  seenFrom?: string;
  requests: number;
  errors: number;
  /** 0-based indexes of the requests that failed (the first flow to a new peer is special). */
  failed: number[];
  p50Ms?: number;
  p99Ms?: number;
  bulkBytes?: number;
  bytesPerSecond?: number;
  sha256ok?: boolean;
  error?: string;
}

const TIMEOUT_MS = 10_000;

function request(host: string, line: string, onData: (d: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port: 80 });
    const t = setTimeout(() => { sock.destroy(); reject(new Error('timeout')); }, TIMEOUT_MS * 6);
    sock.on('connect', () => sock.write(line));
    sock.on('data', onData);
    sock.on('end', () => { clearTimeout(t); sock.destroy(); resolve(); });
    sock.on('error', (e) => { clearTimeout(t); reject(e); });
  });
}

async function whoami(host: string): Promise<{ ms: number; backend: string; seenFrom: string }> {
  const t0 = process.hrtime.bigint();
  let text = '';
  await request(host, 'whoami\n', (d) => { text += d.toString(); });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const [backend = '', seenFrom = ''] = text.trim().split(' ');
  if (!backend) throw new Error('empty answer');
  return { ms, backend, seenFrom };
}

async function bulk(host: string, bytes: number, seed: number): Promise<{ bytesPerSecond: number; ok: boolean; got: number }> {
  const h = createHash('sha256');
  let got = 0;
  const t0 = process.hrtime.bigint();
  await request(host, `bulk ${bytes} ${seed}\n`, (d) => { h.update(d); got += d.length; });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { bytesPerSecond: got / s, ok: got === bytes && h.digest('hex') === seededSha256(bytes, seed), got };
}

const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function probe(resolver: Resolver, name: string, rtt: number, bulkBytes: number, seed: number): Promise<ProbeResult> {
  const r: ProbeResult = { name, requests: 0, errors: 0, failed: [] };
  try {
    const t0 = process.hrtime.bigint();
    const [addr] = await resolver.resolve4(name);
    r.dnsMs = Number(process.hrtime.bigint() - t0) / 1e6;
    r.address = addr;
  } catch (err) {
    r.error = `DNS: ${(err as Error).message}`;
    return r;
  }
  const times: number[] = [];
  for (let i = 0; i < rtt; i++) {
    r.requests++;
    try {
      const w = await whoami(r.address!);
      times.push(w.ms);
      r.backend = w.backend;
      r.seenFrom = w.seenFrom;
    } catch (err) {
      r.errors++;
      r.failed.push(i);
      r.error ??= (err as Error).message;
    }
  }
  if (times.length > 0) { r.p50Ms = pct(times, 50); r.p99Ms = pct(times, 99); }
  if (bulkBytes > 0 && times.length > 0) {
    try {
      const b = await bulk(r.address!, bulkBytes, seed);
      r.bulkBytes = b.got;
      r.bytesPerSecond = b.bytesPerSecond;
      r.sha256ok = b.ok;
    } catch (err) {
      r.errors++;
      r.error ??= `bulk: ${(err as Error).message}`;
    }
  }
  return r;
}

const { values } = parseArgs({ options: { dns: { type: 'string' }, names: { type: 'string' }, rtt: { type: 'string' }, bulk: { type: 'string' } } });
const resolver = new Resolver({ timeout: 2000, tries: 3 });
resolver.setServers([values.dns ?? '169.254.96.16']);
const out: ProbeResult[] = [];
let seed = 1;
for (const name of (values.names ?? '').split(',').filter(Boolean)) out.push(await probe(resolver, name, Number(values.rtt ?? 20), Number(values.bulk ?? 0), seed++));
process.stdout.write(`${JSON.stringify(out)}\n`);
