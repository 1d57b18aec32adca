/**
 * The soak's backend (run inside the far node's namespace): a TCP echo (the client
 * checks the sha256 of what came back against what it sent), a UDP echo and an HTTP
 * server answering the sha256 of each request body. Holds as many connections as
 * its fd limit allows; prints "listening" once all three are bound; exits 0 on SIGTERM.
 * Usage: node dist/lab/soak-backend.js --host IP --tcp 8080 --udp 8053 --http 8081
 */
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { host: { type: 'string' }, tcp: { type: 'string' }, udp: { type: 'string' }, http: { type: 'string' } } });
const host = values.host ?? '0.0.0.0';

const tcp = net.createServer({ allowHalfOpen: true }, (sock) => {
  sock.on('error', () => sock.destroy());
  // pipe() keeps backpressure and ends the echo after the client's half-close.
  sock.pipe(sock);
});
const udp = dgram.createSocket('udp4');
udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
const web = http.createServer((req, res) => {
  const h = createHash('sha256');
  req.on('data', (c: Buffer) => h.update(c));
  req.on('end', () => res.end(h.digest('hex')));
  req.on('error', () => res.destroy());
});
web.keepAliveTimeout = 1000;

await Promise.all([
  new Promise<void>((r) => tcp.listen({ host, port: Number(values.tcp ?? 8080), backlog: 4096 }, r)),
  new Promise<void>((r) => udp.bind(Number(values.udp ?? 8053), host, r)),
  new Promise<void>((r) => web.listen({ host, port: Number(values.http ?? 8081), backlog: 4096 }, r)),
]);
console.log('listening');
process.on('SIGTERM', () => process.exit(0));
