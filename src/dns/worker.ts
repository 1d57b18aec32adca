/**
 * A DNS worker thread: one DnsServer (zone, forwarder with its own cache, metrics)
 * on UDP sockets that share their ports with the other workers (SO_REUSEPORT), so
 * every core answers queries. The zone is rebuilt here from each snapshot the main
 * thread posts (a zone is lazily materialised and memoised, so it is not shared).
 * Counters go to the main thread on request (scrape time). On `stop` the server
 * closes and the thread ends by itself (exit code 0).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../util/log.js';
import { loadNative } from '../native/addon.js';
import { Forwarder } from './forwarder.js';
import { DnsMetrics } from './metrics.js';
import { DnsServer } from './server.js';
import { batchAddon } from './udp-batch.js';
import { Zone } from './zone.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker-protocol.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const post = (m: FromWorker): void => port.postMessage(m);
const logger = createLogger(init.logLevel).child({ dnsWorker: init.index });
const metrics = new DnsMetrics(undefined, { keepLatency: true });
const forwarder = new Forwarder({ upstreams: init.upstreams, timeoutMs: init.upstreamTimeoutMs, cacheSize: init.cacheSize, metrics });

let nextId = 1;
const fdWaits = new Map<number, { resolve: (fd: number) => void; reject: (err: Error) => void }>();
const openUdpFd = (host: string, p: number): Promise<number> => new Promise((resolve, reject) => {
  const id = nextId++;
  fdWaits.set(id, { resolve, reject });
  post({ t: 'openUdp', id, host, port: p });
});

// The main thread checked the addon has UdpBatch; this thread loads its own instance.
const addon = init.batch ? loadNative().addon : undefined;
const batch = batchAddon(addon);
if (init.batch && !batch) logger.warn('native UdpBatch not loadable in this worker: serving with dgram');

const server = new DnsServer({
  listen: init.listen, zone: Zone.of(init.snapshot, init.zone), forwarder, logger, metrics,
  maxTcpConnections: init.maxTcpConnections, tcp: init.tcp, reusePort: init.fdFromMain ? { openUdpFd } : {}, batch,
});

let stopping = false;
port.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'snapshot':
      server.setZone(Zone.of(m.snapshot, init.zone));
      return;
    case 'fd': {
      const w = fdWaits.get(m.id);
      fdWaits.delete(m.id);
      if (m.fd !== undefined) w?.resolve(m.fd);
      else w?.reject(Object.assign(new Error(m.error ?? 'no socket'), { code: m.code }));
      return;
    }
    case 'counters':
      post({ t: 'counters', id: m.id, counters: metrics.counters({ cacheEntries: forwarder.cache.size, tcpConnections: server.tcpConnections }) });
      return;
    case 'stop':
      if (stopping) return;
      stopping = true;
      void server.stop().finally(() => {
        post({ t: 'stopped' });
        // Nothing else holds the loop once the port closes: the thread ends (code 0).
        port.close();
      });
  }
});

server.start().then(
  () => post({ t: 'ready', addresses: server.addresses() }),
  (err: unknown) => {
    const e = err as Error & { code?: string; cause?: NodeJS.ErrnoException };
    post({ t: 'failed', message: e.message, code: e.code, errno: e.cause?.code });
    port.close();
  },
);
