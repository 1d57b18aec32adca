/**
 * The soak's load generator (run inside the client node's namespace), driven by
 * line commands on stdin; one JSON line on stdout answers each:
 *   open N   — open N TCP flows to the echo service and hold them: each sends a
 *              seeded first chunk and is held once its echo came back whole.
 *   close    — finish every held flow: a second seeded chunk, half-close, and the
 *              sha256 of everything echoed must equal the sha256 of what was sent.
 *   mix N    — N short flows of each kind: TCP (64 KiB seeded, sha256 of the echo),
 *              UDP request/response (seeded datagram echoed as is), HTTP POST (16 KiB
 *              seeded body; the backend answers its sha256).
 * A flow that fails must fail cleanly: an error, a reset or an early EOF within its
 * deadline; one still hanging at the deadline is counted as `timeout`.
 * Usage: node dist/lab/soak-client.js --tcp IP --udp IP --http IP
 */
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { seededChunks } from '../demo/bytes.js';

const { values } = parseArgs({ options: { tcp: { type: 'string' }, udp: { type: 'string' }, http: { type: 'string' } } });
const FIRST = 1024;
const SECOND = 4096;
const OPEN_TIMEOUT_MS = 20_000;
const FLOW_TIMEOUT_MS = 30_000;
const CONCURRENCY = 200;

export interface Tally { ok: number; failed: number; bad: number; errors: Record<string, number> }
const tally = (): Tally => ({ ok: 0, failed: 0, bad: 0, errors: {} });
const fail = (t: Tally, why: string): void => { t.failed++; t.errors[why] = (t.errors[why] ?? 0) + 1; };

const seeded = (n: number, seed: number): Buffer => Buffer.concat([...seededChunks(n, seed)]);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const codeOf = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/**
 * A flow's end, taken once: `cleanup(why)` runs, the flow is counted in `t` (a
 * reason is a failure; `corrupt` is also counted as bad bytes), the flow's promise
 * resolves. Later ends (a close after an error, the deadline after the end) are ignored.
 */
class FlowEnd {
  done = false;
  constructor(private readonly t: Tally, private readonly cleanup: (why?: string) => void, private readonly resolve: () => void) {}
  readonly finish = (why?: string): void => {
    if (this.done) return;
    this.done = true;
    this.cleanup(why);
    if (why === 'corrupt') this.t.bad++;
    if (why) fail(this.t, why); else this.t.ok++;
    this.resolve();
  };
}

interface Held { sock: net.Socket; seed: number; got: Buffer[]; gotBytes: number; broken?: string }
const held = new Set<Held>();
let nextSeed = 1;
/** Held flows that ended (error, reset, EOF) before `close`. */
let lostWhileHeld: Record<string, number> = {};

async function pool(n: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, n) }, async () => { while (next < n) await fn(next++); }));
}

function openOne(t: Tally): Promise<void> {
  const seed = nextSeed++;
  return new Promise((resolve) => {
    const sock = net.connect({ host: values.tcp!, port: 80, allowHalfOpen: true });
    const h: Held = { sock, seed, got: [], gotBytes: 0 };
    const end = new FlowEnd(t, (why) => { clearTimeout(timer); if (why) sock.destroy(); else held.add(h); }, resolve);
    const { finish } = end;
    const timer = setTimeout(() => finish('timeout'), OPEN_TIMEOUT_MS);
    sock.on('connect', () => sock.write(seeded(FIRST, seed)));
    sock.on('data', (d: Buffer) => {
      h.got.push(d);
      h.gotBytes += d.length;
      if (!end.done && h.gotBytes >= FIRST) finish(Buffer.concat(h.got).subarray(0, FIRST).equals(seeded(FIRST, seed)) ? undefined : 'corrupt');
    });
    sock.on('end', () => { if (!end.done) finish('eof'); else if (held.has(h) && !h.broken) h.broken = 'eof'; });
    sock.on('error', (e) => { if (!end.done) finish(codeOf(e)); else if (held.has(h)) h.broken ??= codeOf(e); });
    sock.on('close', () => { if (held.has(h) && !h.broken) h.broken = 'closed'; });
  });
}

function closeOne(h: Held, t: Tally): Promise<void> {
  held.delete(h);
  if (h.broken) { lostWhileHeld[h.broken] = (lostWhileHeld[h.broken] ?? 0) + 1; fail(t, `lost:${h.broken}`); return Promise.resolve(); }
  return new Promise((resolve) => {
    const want = sha(Buffer.concat([seeded(FIRST, h.seed), seeded(SECOND, h.seed + 1_000_000)]));
    const { finish } = new FlowEnd(t, () => { clearTimeout(timer); h.sock.destroy(); }, resolve);
    const timer = setTimeout(() => finish('timeout'), FLOW_TIMEOUT_MS);
    h.sock.removeAllListeners('end').removeAllListeners('error').removeAllListeners('close');
    h.sock.on('end', () => { const got = Buffer.concat(h.got); finish(sha(got) === want ? undefined : (verdict(got, Buffer.concat([seeded(FIRST, h.seed), seeded(SECOND, h.seed + 1_000_000)])) ?? 'corrupt')); });
    h.sock.on('error', (e) => finish(codeOf(e)));
    h.sock.on('close', () => finish('closed'));
    h.sock.end(seeded(SECOND, h.seed + 1_000_000));
  });
}

function tcpFlow(seed: number, t: Tally): Promise<void> {
  return new Promise((resolve) => {
    const body = seeded(65_536, seed);
    const got: Buffer[] = [];
    const sock = net.connect({ host: values.tcp!, port: 80, allowHalfOpen: true });
    const { finish } = new FlowEnd(t, () => { clearTimeout(timer); sock.destroy(); }, resolve);
    const timer = setTimeout(() => finish('timeout'), FLOW_TIMEOUT_MS);
    sock.on('connect', () => sock.end(body));
    sock.on('data', (d: Buffer) => got.push(d));
    sock.on('end', () => finish(verdict(Buffer.concat(got), body)));
    sock.on('error', (e) => finish(codeOf(e)));
  });
}

/**
 * An echo that ended: right, refused (EOF before any byte: the connection was
 * closed unanswered), truncated (a prefix of the right bytes, then FIN: bytes lost
 * without a reset) or corrupt (different bytes).
 */
function verdict(got: Buffer, want: Buffer): string | undefined {
  if (got.equals(want)) return undefined;
  if (got.length === 0) return 'eof';
  return got.length < want.length && want.subarray(0, got.length).equals(got) ? 'truncated' : 'corrupt';
}

function udpFlow(seed: number, t: Tally): Promise<void> {
  return new Promise((resolve) => {
    const msg = seeded(512, seed);
    const s = dgram.createSocket('udp4');
    let tries = 0;
    const { finish } = new FlowEnd(t, () => { clearTimeout(timer); s.close(); }, resolve);
    // Literal address: no dns.lookup per send (see PITFALLS).
    const send = (): void => { tries++; s.send(msg, 53, values.udp!, (e) => { if (e) finish(codeOf(e)); }); };
    let timer = setTimeout(function retry() { if (tries >= 3) { finish('timeout'); return; } send(); timer = setTimeout(retry, 2000); }, 2000);
    s.on('message', (m) => finish(m.equals(msg) ? undefined : 'corrupt'));
    s.on('error', (e) => finish(codeOf(e)));
    send();
  });
}

function httpFlow(seed: number, t: Tally): Promise<void> {
  return new Promise((resolve) => {
    const body = seeded(16_384, seed);
    const { finish } = new FlowEnd(t, () => undefined, resolve);
    const req = http.request({ host: values.http!, port: 80, method: 'POST', path: '/', agent: false, timeout: FLOW_TIMEOUT_MS, headers: { 'content-length': body.length } }, (res) => {
      let text = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => finish(res.statusCode === 200 && text === sha(body) ? undefined : (res.statusCode === 200 ? 'corrupt' : `http_${res.statusCode}`)));
      res.on('error', (e) => finish(codeOf(e)));
    });
    req.on('timeout', () => { req.destroy(); finish('timeout'); });
    req.on('error', (e) => finish(codeOf(e)));
    req.end(body);
  });
}

async function command(line: string): Promise<object> {
  const [op, arg] = line.trim().split(/\s+/);
  const n = Number(arg ?? 0);
  const t0 = Date.now();
  if (op === 'open') {
    const t = tally();
    await pool(n, () => openOne(t));
    return { op, ...t, held: held.size, ms: Date.now() - t0 };
  }
  if (op === 'close') {
    const t = tally();
    const all = [...held];
    await pool(all.length, (i) => closeOne(all[i]!, t));
    const lost = lostWhileHeld;
    lostWhileHeld = {};
    return { op, ...t, lostWhileHeld: lost, ms: Date.now() - t0 };
  }
  if (op === 'mix') {
    const base = 2_000_000 + nextSeed;
    nextSeed += 3 * n;
    const tcp = tally(); const udp = tally(); const web = tally();
    await pool(n, (i) => Promise.all([tcpFlow(base + i, tcp), udpFlow(base + n + i, udp), httpFlow(base + 2 * n + i, web)]).then(() => undefined));
    return { op, tcp, udp, http: web, ms: Date.now() - t0 };
  }
  return { op, error: 'unknown command' };
}

// One command at a time, in order.
let chain = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  chain = chain.then(async () => { process.stdout.write(`${JSON.stringify(await command(line))}\n`); });
}).on('close', () => { void chain.then(() => { for (const h of held) h.sock.destroy(); process.exit(0); }); });
process.on('SIGTERM', () => process.exit(0));
