/**
 * Demo backend (run inside a lab namespace): a TCP server that answers
 *   "whoami\n"          → "<id> <address the connection came from>\n"
 *   "bulk <N> <seed>\n" → N seeded bytes (bytes.ts), then FIN.
 * The peer address tells the demo which path a request took (pod address: kernel
 * DNAT; the backend node's own address: delivered by the far agent, i.e. the
 * tunnel). Prints "listening <host> <port>" once bound; exits 0 on SIGTERM.
 * With --http-port, also an HTTP server answering every request with the same
 * "<id> <peer address>" line (the gateway step's backend).
 * Usage: node dist/demo/backend.js --id NAME --port P [--host ADDR] [--http-port P]
 */
import http from 'node:http';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { seededChunks } from './bytes.js';

const { values } = parseArgs({ options: { id: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, 'http-port': { type: 'string' } } });
const id = values.id ?? 'backend';
const MAX_BULK = 1 << 30;

const server = net.createServer({ allowHalfOpen: true }, (sock) => {
  sock.on('error', () => sock.destroy());
  let head = '';
  const onData = (d: Buffer): void => {
    head += d.toString('latin1');
    const nl = head.indexOf('\n');
    if (nl < 0) {
      if (head.length > 256) sock.destroy();
      return;
    }
    sock.off('data', onData);
    const [cmd, a, b] = head.slice(0, nl).split(' ');
    if (cmd === 'whoami') {
      sock.end(`${id} ${sock.remoteAddress?.replace(/^::ffff:/, '') ?? '?'}\n`);
    } else if (cmd === 'bulk' && Number(a) > 0 && Number(a) <= MAX_BULK) {
      const chunks = seededChunks(Number(a), Number(b) || 1);
      // Honour backpressure: write until the socket buffer is full, resume on drain.
      const pump = (): void => {
        for (let r = chunks.next(); !r.done; r = chunks.next()) {
          if (!sock.write(r.value)) { sock.once('drain', pump); return; }
        }
        sock.end();
      };
      pump();
      sock.resume();
    } else {
      sock.end('error unknown request\n');
    }
  };
  sock.on('data', onData);
});
const web = values['http-port'] ? http.createServer((req, res) => {
  req.resume();
  res.end(`${id} ${req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '?'}\n`);
}) : undefined;
web?.listen({ port: Number(values['http-port']), host: values.host ?? '0.0.0.0' });
server.listen({ port: Number(values.port ?? 8080), host: values.host ?? '0.0.0.0' }, () => {
  process.stdout.write(`listening ${values.host ?? '0.0.0.0'} ${values.port ?? 8080}\n`);
});
const stop = (): void => { web?.close(); server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 1000).unref(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
