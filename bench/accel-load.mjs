#!/usr/bin/env node
// Bench load generator (runs in the client namespace), prints one JSON line.
//   accel-load.mjs rate HOST PORT SECONDS CONCURRENCY  → new connections/s (connect, 1 B echo, close)
//   accel-load.mjs rr HOST PORT COUNT                  → 1-byte request/response latency p50/p99 (µs)
import net from 'node:net';

const [mode, host, portS, a, b] = process.argv.slice(2);
const port = Number(portS);

function once(sock, ev) { return new Promise((resolve, reject) => { sock.once(ev, resolve); sock.once('error', reject); }); }

if (mode === 'rate') {
  const until = Date.now() + Number(a) * 1000;
  let done = 0;
  let errors = 0;
  const worker = async () => {
    while (Date.now() < until) {
      try {
        const s = net.connect({ host, port });
        await once(s, 'connect');
        s.write('x');
        await once(s, 'data');
        s.end();
        await once(s, 'close');
        done++;
      } catch { errors++; }
    }
  };
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Number(b) }, worker));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ rate: done / secs, errors }));
} else if (mode === 'rr') {
  const n = Number(a);
  const s = net.connect({ host, port, noDelay: true });
  await once(s, 'connect');
  s.setNoDelay(true);
  const lat = new Float64Array(n);
  const one = Buffer.from('x');
  /** @type {(v?: unknown) => void} */
  let wake = () => undefined;
  s.on('data', () => wake());
  s.on('error', (err) => { console.error(err.message); process.exit(1); });
  for (let i = 0; i < n + 200; i++) {
    const t0 = process.hrtime.bigint();
    const got = new Promise((r) => { wake = r; });
    s.write(one);
    await got;
    if (i >= 200) lat[i - 200] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  s.destroy();
  lat.sort();
  console.log(JSON.stringify({ p50: lat[Math.floor(n * 0.5)], p99: lat[Math.floor(n * 0.99)] }));
} else {
  console.error('usage: accel-load.mjs rate|rr ...');
  process.exit(2);
}
