/**
 * The ordering scenario shared by the unit test (nft executor model, recording
 * iptables exec) and the kernel test (real nft in a namespace): the real proxy
 * part's listeners and the real data-plane part over a real CatalogStore; every
 * rule write records whether it points at the userspace port and whether the
 * proxy was listening on it at that moment (read from the kernel's socket table).
 * IP plan (data only, nothing is dialled): ClusterIP 10.96.0.10, endpoint
 * 10.244.1.5 on node n2 (another LAN: remote → the proxy's userspace port).
 */
import { readFile } from 'node:fs/promises';
import { Registry } from 'prom-client';
import { CatalogStore } from '../../src/catalog/store.js';
import { convertEndpointSlice, convertService } from '../../src/catalog/convert.js';
import { parseConfig } from '../../src/config/load.js';
import { createDataplanePart } from '../../src/dataplane/part.js';
import { createProxyPart } from '../../src/proxy/part.js';
import type { NftExecutor } from '../../src/dataplane/nftables/executor.js';
import type { Transaction } from '../../src/dataplane/nftables/transaction.js';
import type { Exec } from '../../src/dataplane/iptables/exec.js';
import { silentLogger } from '../../src/util/log.js';
import { freePort } from '../proxy/util.js';

export interface Write { readonly points: boolean; readonly listening: boolean }

/**
 * Is a TCP socket in LISTEN state on `port` in this namespace? Read from the
 * kernel's table (a connect probe would race the proxy's reset of a flow it
 * cannot route, and count as a flow).
 */
export async function listening(port: number): Promise<boolean> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(f, 'utf8').catch(() => '');
    // Columns: sl local_address rem_address st …; st 0A = LISTEN.
    if (text.split('\n').some((l) => { const c = l.trim().split(/\s+/); return c[1]?.endsWith(hex) && c[3] === '0A'; })) return true;
  }
  return false;
}

/** An executor that records, before each transaction, whether it points at the port and the proxy listens. */
export function recordingExecutor(inner: NftExecutor, record: (tx: Transaction) => Promise<void>): NftExecutor {
  return {
    run: async (tx) => { await record(tx); return inner.run(tx); },
    inspect: (o) => inner.inspect(o),
    deleteTable: () => inner.deleteTable(),
  };
}

async function until(pred: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 1000; i++) { if (await pred()) return; await new Promise((r) => setTimeout(r, 10)); }
  throw new Error('condition not met');
}

export interface OrderResult {
  /** Rule writes that pointed at the userspace port. */
  readonly pointing: number;
  /** …of which found no listener: must be 0. */
  readonly pointingWithoutListener: number;
  /** After the service went away: the last write came while the listener was still open. */
  readonly lastWriteBeforeCloseHadListener: boolean;
}

export interface OrderOptions {
  /** The nft executor to record around (nftables mode only). */
  readonly nft?: (record: (tx: Transaction) => Promise<void>) => NftExecutor;
  /** The iptables process boundary (iptables mode); default: answers '' to everything. */
  readonly iptables?: Exec;
  /** Look at the kernel once the first plan is written. */
  readonly afterFirstSync?: (port: number) => Promise<void>;
}

export async function listenerOrder(mode: 'nftables' | 'iptables', opts: OrderOptions): Promise<OrderResult> {
  const port = await freePort();
  const config = parseConfig({ nodeName: 'n1', dataplane: { mode, minSyncIntervalMs: 0, userspacePorts: `${port}-${port}` }, proxy: { iptablesBackend: 'legacy' } }, 'test.yaml');
  const registry = new Registry();
  const store = new CatalogStore({ logger: silentLogger(), registry, coalesceMs: 0 });
  const proxy = await createProxyPart({ listenHost: '127.0.0.1' })({ config, logger: silentLogger(), registry });
  const writes: Write[] = [];
  const nft = mode !== 'nftables' ? undefined : opts.nft?.(async (tx) => {
    // The userspace port appears in the usp4 map elements the transaction adds.
    writes.push({ points: JSON.stringify(tx).includes(`${port}`), listening: await listening(port) });
  });
  const inner: Exec = opts.iptables ?? (async () => '');
  const iptablesExec: Exec = async (cmd, args, input) => {
    if (cmd.endsWith('-restore') && input) writes.push({ points: input.includes(`--to-ports ${port}`), listening: await listening(port) });
    return inner(cmd, args, input);
  };
  const part = (await createDataplanePart({ config, logger: silentLogger(), registry, store, listeners: proxy.listeners, iptablesExec }, nft))!;
  const sink = store.sink('test');
  await proxy.start();
  await part.start();
  try {
    const svc = convertService({ metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] } }, 'FilterIfLabelExists');
    const sl = convertEndpointSlice({
      metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
      addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [{ addresses: ['10.244.1.5'], nodeName: 'n2' }],
    });
    if (!svc.ok || !sl.ok) throw new Error('fixture invalid');
    sink.upsert('service', 'default/web', svc.value);
    sink.upsert('slice', 'default/web-1', sl.value);
    sink.setState('synced');
    await until(() => part.readiness.check().ready);
    await part.settled();
    await opts.afterFirstSync?.(port);
    const first = writes.splice(0);
    // The service goes away: the listener closes only after the rules stopped pointing at it.
    sink.remove('slice', 'default/web-1');
    sink.remove('service', 'default/web');
    await until(async () => !(await listening(port)));
    await part.settled();
    return {
      pointing: first.filter((w) => w.points).length,
      pointingWithoutListener: first.filter((w) => w.points && !w.listening).length,
      lastWriteBeforeCloseHadListener: writes.length > 0 && writes.at(-1)!.listening,
    };
  } finally {
    await part.stop();
    await proxy.stop();
    await store.close();
  }
}
