#!/usr/bin/env node
// Bench helper: a TCP proxy on one forwarding path of dist/src/native.
//   accel-proxy.mjs KIND LISTEN_PORT:TARGET_HOST:TARGET_PORT [...]
// KIND: node | splice | sockmap (with the per-connection fallback the agent uses).
// Prints "ready" once listening; SIGTERM stops it.
import net from 'node:net';
import { Accelerators } from '../dist/native/accelerator.js';
import { connectPaused } from '../dist/native/forwarder.js';

const [argKind, ...maps] = process.argv.slice(2);
const kind = /** @type {import('../dist/native/forwarder.js').ForwarderKind} */ (argKind);
const accel = new Accelerators({ threads: Number(process.env.THREADS ?? 2), pipeSize: Number(process.env.PIPE_SIZE ?? 1 << 20) });
if (kind !== 'node' && !accel.get(kind)) {
  console.error(`forwarder ${kind} unavailable: ${accel.status.map((s) => `${s.kind}=${s.reason ?? 'ok'}`).join(' ')}`);
  process.exit(1);
}
const fwd = kind === 'node' ? accel.get('node') : accel.pick(kind);
const servers = [];
for (const m of maps) {
  const [lport, host, tport] = m.split(':');
  const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (c) => {
    c.on('error', () => c.destroy());
    connectPaused({ host, port: Number(tport) })
      .then((u) => fwd.forward(c, u))
      .catch(() => c.destroy());
  });
  srv.listen({ port: Number(lport), host: '0.0.0.0', backlog: 4096 });
  servers.push(srv);
}
await Promise.all(servers.map((s) => new Promise((r) => s.once('listening', r))));
console.log('ready');
process.on('SIGTERM', () => { for (const s of servers) s.close(); accel.close(); process.exit(0); });
