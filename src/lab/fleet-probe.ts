/**
 * Fleet probe (run inside a node's namespace): for each target "<ClusterIP>=<node>",
 * connect to port 80, send seeded bytes, half-close, and expect the backend's
 * name and the sha256 of exactly those bytes. Retries (bounded by --deadline-ms)
 * until the first success, then measures one more flow on the now-established
 * path. Prints one JSON line: FleetProbeResult[].
 * Usage: node dist/lab/fleet-probe.js --targets ip=node,... --bytes N --seed S --deadline-ms T
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { seededChunks, seededSha256 } from '../demo/bytes.js';
import { backendAnswer } from './fleet.js';

export interface FleetProbeResult {
  target: string;
  node: string;
  ok: boolean;
  /** ms from the probe's start until the first correct answer. */
  firstOkMs?: number;
  attempts: number;
  /** A flow after the first success: connect to answer, ms. */
  warmMs?: number;
  /** Flows after the first success that failed (reset, timeout) before one answered. */
  warmResets: number;
  /** Last failure, if any. */
  error?: string;
  /** What the first failed flow after the first success saw (with ms since the probe's start). */
  warmError?: string;
}

const ATTEMPT_TIMEOUT_MS = 10_000;

function once(ip: string, bytes: number, seed: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: ip, port: 80, allowHalfOpen: true });
    let out = '';
    const t = setTimeout(() => { sock.destroy(); reject(new Error('timeout')); }, ATTEMPT_TIMEOUT_MS);
    sock.on('connect', () => {
      const chunks = seededChunks(bytes, seed);
      const pump = (): void => {
        for (let r = chunks.next(); !r.done; r = chunks.next()) if (!sock.write(r.value)) { sock.once('drain', pump); return; }
        sock.end();
      };
      pump();
    });
    sock.on('data', (d: Buffer) => { out += d.toString('latin1'); if (out.length > 4096) sock.destroy(new Error('answer too long')); });
    sock.on('end', () => { clearTimeout(t); sock.destroy(); resolve(out.trim()); });
    sock.on('error', (err) => { clearTimeout(t); reject(err); });
  });
}

async function probe(target: string, node: string, bytes: number, seed: number, start: number, deadline: number): Promise<FleetProbeResult> {
  const want = backendAnswer(node, seededSha256(bytes, seed));
  const r: FleetProbeResult = { target, node, ok: false, attempts: 0, warmResets: 0 };
  while (Date.now() < deadline) {
    r.attempts++;
    try {
      const got = await once(target, bytes, seed);
      if (got === want) { r.ok = true; r.firstOkMs = Date.now() - start; delete r.error; break; }
      r.error = `unexpected answer: ${got.slice(0, 120)}`;
      break; // a wrong answer is not a timing problem: never retried into a pass
    } catch (err) {
      r.error = (err as Error).message;
      await new Promise((res) => setTimeout(res, 250));
    }
  }
  // A flow after the first success: it must answer correctly too. A reset here (the
  // path came up, then a flow on it failed) is counted, and retried until the deadline.
  while (r.ok && r.warmMs === undefined && (r.warmResets === 0 || Date.now() < deadline)) {
    const t0 = process.hrtime.bigint();
    try {
      const got = await once(target, bytes, seed + 1);
      if (got !== backendAnswer(node, seededSha256(bytes, seed + 1))) { r.ok = false; r.error = `unexpected answer on the warm flow: ${got.slice(0, 120)}`; break; }
      r.warmMs = Number(process.hrtime.bigint() - t0) / 1e6;
    } catch (err) {
      r.warmResets++;
      r.error = `warm flow: ${(err as Error).message}`;
      r.warmError ??= `${(err as Error).message} at ${new Date().toISOString()} (${Date.now() - start} ms into the probe)`;
      await new Promise((res) => setTimeout(res, 250));
    }
  }
  if (r.ok && r.warmMs === undefined) r.ok = false;
  if (r.ok) delete r.error;
  return r;
}

const { values } = parseArgs({ options: { targets: { type: 'string' }, bytes: { type: 'string' }, seed: { type: 'string' }, 'deadline-ms': { type: 'string' } } });
const start = Date.now();
const deadline = start + Number(values['deadline-ms'] ?? 60_000);
const bytes = Number(values.bytes ?? 65_536);
const seed = Number(values.seed ?? 1);
const targets = (values.targets ?? '').split(',').filter(Boolean).map((t) => t.split('=') as [string, string]);
const results = await Promise.all(targets.map(([ip, node], i) => probe(ip, node, bytes, seed + i * 2, start, deadline)));
process.stdout.write(`${JSON.stringify(results)}\n`);
