#!/usr/bin/env node
// The tunnel data channel's byte path on loopback, one process pair, no netns:
//   source ─► [hop 1] ─► link ─► [hop 2] ─► sink
// where the two hops are what the two agents do to a flow:
//   raw     source → sink directly (the baseline of the same run)
//   splice  splice / splice (the blind path: no crypto)
//   aead    EWC1 record pump encrypt / decrypt (native/src/aead-pump.cc)
//   js      EWC1 records sealed and opened in JS (node:crypto, the reference codec)
// Source and sink live in a child process (seeded bytes, sha256 checked: a wrong
// byte fails the run); the hops run in this process, whose CPU (all threads, the
// addon's pool included) is reported per GB. Interleaved rounds, min/median/max.
// Figures only, never a gate. Usage: npm run build && node bench/aead-pump.mjs
// Env: BYTES_MB (256), REPS (3), MODES=raw,splice,aead,js
import { fork } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Transform, pipeline } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const BYTES = Number(process.env.BYTES_MB ?? 256) * 1024 * 1024;
const REPS = Number(process.env.REPS ?? 3);
const MODES = (process.env.MODES ?? 'raw,splice,aead,js').split(',');
const BLOCK = 4 << 20;

/** The payload: a seeded 4 MiB block repeated (the same in both processes). */
function payloadBlock() {
  let a = 0x5eed;
  const b = Buffer.allocUnsafe(BLOCK);
  for (let i = 0; i < BLOCK; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    b[i] = (t ^ (t >>> 14)) & 0xff;
  }
  return b;
}

if (process.argv[2] === 'endpoints') {
  // Child: a sink server, and a source on demand.
  const block = payloadBlock();
  const sink = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d) => { h.update(d); n += d.length; });
    s.on('end', () => { s.end(); process.send?.({ sink: { bytes: n, sha: h.digest('hex'), at: performance.now() } }); });
  });
  sink.listen(0, '127.0.0.1', () => process.send?.({ sinkPort: /** @type {net.AddressInfo} */ (sink.address()).port }));
  process.on('message', (/** @type {any} */ m) => {
    if (m.stop) { sink.close(); process.disconnect?.(); return; }
    const c = net.connect({ port: m.port, host: '127.0.0.1', allowHalfOpen: true }, () => {
      process.send?.({ started: performance.now() });
      let left = m.bytes;
      const more = () => {
        while (left > 0) {
          const n = Math.min(left, BLOCK);
          left -= n;
          if (!c.write(n === BLOCK ? block : block.subarray(0, n))) return void c.once('drain', more);
        }
        c.end();
      };
      more();
    });
    c.resume();
    c.on('error', () => undefined);
  });
} else {
  await main();
}

async function main() {
  const { loadNative } = await import('../dist/native/addon.js');
  const { NativeEngine } = await import('../dist/native/native-forwarders.js');
  const { NativeAeadForwarder } = await import('../dist/native/aead-forwarder.js');
  const { connectPaused } = await import('../dist/native/forwarder.js');
  const { Ewc1Sealer, Ewc1Opener } = await import('../test/helpers/ewc1-codec.mjs');
  const native = loadNative();
  const nativeOk = native.addon && native.addon.aeadReason === null;
  if (!nativeOk) console.log(`native modes skipped: ${native.addonReason ?? native.addon?.aeadReason}`);
  const engine = nativeOk ? new NativeEngine(native.addon, { threads: 2 }) : undefined;
  const aead = engine ? new NativeAeadForwarder(engine) : undefined;

  const want = (() => {
    const h = createHash('sha256');
    const block = payloadBlock();
    for (let left = BYTES; left > 0; left -= BLOCK) h.update(left >= BLOCK ? block : block.subarray(0, left));
    return h.digest('hex');
  })();

  const child = fork(fileURLToPath(import.meta.url), ['endpoints'], { stdio: 'inherit' });
  /** @type {((m: any) => void)[]} */
  const waiters = [];
  child.on('message', (m) => { for (const w of waiters.splice(0)) w(m); });
  const next = (/** @type {string} */ key) => new Promise((r) => { const w = (m) => (key in m ? r(m[key]) : waiters.push(w)); waiters.push(w); });
  const sinkPort = await next('sinkPort');

  /** A listener whose accepted sockets Node never reads (the hops take their fds). */
  async function pausedServer() {
    const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
    await new Promise((r) => srv.listen(0, '127.0.0.1', () => r(undefined)));
    return srv;
  }
  const accept = (srv) => new Promise((r) => srv.once('connection', r));

  async function hops(mode, src, linkA, linkB, dst) {
    if (mode === 'splice') {
      const [x, y] = await Promise.all([engine.start('splice', src, linkA, {}), engine.start('splice', linkB, dst, {})]);
      return x.bytesIn + y.bytesIn;
    }
    if (mode === 'aead') {
      const k = { key: randomBytes(16), iv: randomBytes(12), bkey: randomBytes(16), biv: randomBytes(12) };
      const one = aead.forward(src, linkA, { txKey: k.key, txIv: k.iv, txSeq: 0, rxKey: k.bkey, rxIv: k.biv, rxSeq: 0 });
      const two = aead.forward(dst, linkB, { txKey: k.bkey, txIv: k.biv, txSeq: 0, rxKey: k.key, rxIv: k.iv, rxSeq: 0 });
      const [x, y] = await Promise.all([one, two]);
      return x.bytesIn + y.bytesOut;
    }
    // js: one direction is enough for the figure (the sink sends nothing back).
    const key = randomBytes(16);
    const iv = randomBytes(12);
    const sealer = new Ewc1Sealer(key, iv);
    const opener = new Ewc1Opener(key, iv);
    const seal = new Transform({
      transform(chunk, _e, cb) { for (let o = 0; o < chunk.length; o += 65536) this.push(sealer.record(chunk.subarray(o, o + 65536))); cb(); },
      flush(cb) { this.push(sealer.end()); cb(); },
    });
    const open = new Transform({
      transform(chunk, _e, cb) { try { for (const p of opener.push(chunk)) this.push(p); cb(); } catch (err) { cb(err); } },
      flush(cb) { try { opener.finish(); cb(); } catch (err) { cb(err); } },
    });
    src.resume(); linkB.resume();
    await Promise.all([
      new Promise((res, rej) => pipeline(src, seal, linkA, (e) => (e ? rej(e) : res(undefined)))),
      new Promise((res, rej) => pipeline(linkB, open, dst, (e) => (e ? rej(e) : res(undefined)))),
    ]);
    for (const s of [src, linkA, linkB, dst]) s.destroy();
    return BYTES;
  }

  async function once(mode) {
    const cpu0 = process.cpuUsage();
    let port = sinkPort;
    let work = Promise.resolve(0);
    let cleanup = () => undefined;
    if (mode !== 'raw') {
      const front = await pausedServer();
      const link = await pausedServer();
      port = /** @type {net.AddressInfo} */ (front.address()).port;
      const srcP = accept(front);
      const linkBP = accept(link);
      const linkA = await connectPaused({ port: /** @type {net.AddressInfo} */ (link.address()).port, host: '127.0.0.1' });
      const dst = await connectPaused({ port: sinkPort, host: '127.0.0.1' });
      const linkB = await linkBP;
      work = srcP.then((src) => hops(mode, src, linkA, linkB, dst));
      cleanup = () => { front.close(); link.close(); };
    }
    const sinkDone = next('sink');
    const started = next('started');
    child.send({ port, bytes: BYTES });
    const t0 = await started;
    const [sink] = await Promise.all([sinkDone, work]);
    cleanup();
    const cpu = process.cpuUsage(cpu0);
    if (sink.bytes !== BYTES || sink.sha !== want) throw new Error(`${mode}: sink got ${sink.bytes} bytes, sha256 ${sink.sha} (want ${want})`);
    const secs = (sink.at - t0) / 1000;
    return { mbs: BYTES / 1e6 / secs, cpuPerGB: mode === 'raw' ? 0 : (cpu.user + cpu.system) / 1e6 / (BYTES / 1e9) };
  }

  const results = Object.fromEntries(MODES.filter((m) => nativeOk || m === 'raw' || m === 'js').map((m) => [m, []]));
  for (let r = 0; r < REPS; r++) for (const m of Object.keys(results)) results[m].push(await once(m));
  child.send({ stop: true });
  engine?.close();
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const raw = med(results.raw?.map((x) => x.mbs) ?? [NaN]);
  console.log(`EWC1 byte path on loopback, ${BYTES >> 20} MiB × ${REPS} (MB/s min/median/max, ratio of median to raw, hops' CPU s/GB median)`);
  for (const [m, xs] of Object.entries(results)) {
    const v = xs.map((x) => x.mbs);
    console.log(`${m.padEnd(7)} ${Math.min(...v).toFixed(0)}/${med(v).toFixed(0)}/${Math.max(...v).toFixed(0)} MB/s  ${(med(v) / raw).toFixed(2)}× raw  ${med(xs.map((x) => x.cpuPerGB)).toFixed(2)} CPU s/GB`);
  }
}
