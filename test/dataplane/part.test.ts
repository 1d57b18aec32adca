/**
 * The agent's data-plane part wired to a real CatalogStore, the real proxy part's
 * listeners, and a fake at the process boundary (the nft executor model, a
 * recording iptables exec). The ordering case: every rule write finds the proxy
 * already listening on the userspace port the rule points at.
 * IP plan (data only, nothing is dialled): ClusterIP 10.96.0.10, endpoint
 * 10.244.1.5 on this node (n1) or on n2 (another LAN: remote → userspace port).
 */
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { CatalogStore } from '../../src/catalog/store.js';
import { convertEndpointSlice, convertService } from '../../src/catalog/convert.js';
import { parseConfig } from '../../src/config/load.js';
import { createDataplanePart } from '../../src/dataplane/part.js';
import { FakeNftExecutor } from '../helpers/fake-nft-executor.js';
import { silentLogger } from '../../src/util/log.js';
import { listenerOrder, recordingExecutor } from './listener-order.js';

const service = { metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] } };
const slice = (node: string) => ({
  metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
  addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: [{ addresses: ['10.244.1.5'], nodeName: node }],
});

async function until(pred: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) { if (await pred()) return; await new Promise((r) => setTimeout(r, 10)); }
  throw new Error('condition not met');
}

describe('data-plane agent part', () => {
  it.each([
    { mode: 'none', present: false },
    { mode: 'iptables', present: true },
    { mode: 'nftables', present: true },
    { mode: 'ebpf', present: true },
  ])('mode $mode → part present: $present', async ({ mode, present }) => {
    const config = parseConfig({ nodeName: 'n1', dataplane: { mode } }, 'test.yaml');
    const store = new CatalogStore({ logger: silentLogger(), registry: new Registry() });
    const part = await createDataplanePart({ config, logger: silentLogger(), registry: new Registry(), store }, new FakeNftExecutor());
    expect(part !== undefined).toBe(present);
  });

  it('writes nothing until the catalog syncs, then the services; readiness follows', async () => {
    const config = parseConfig({ nodeName: 'n1', dataplane: { mode: 'nftables', minSyncIntervalMs: 0 } }, 'test.yaml');
    const store = new CatalogStore({ logger: silentLogger(), registry: new Registry(), coalesceMs: 0 });
    const sink = store.sink('test');
    const fake = new FakeNftExecutor();
    const part = (await createDataplanePart({ config, logger: silentLogger(), registry: new Registry(), store }, fake))!;
    await part.start();
    const svc = convertService(service, 'FilterIfLabelExists');
    const sl = convertEndpointSlice(slice('n1'));
    if (!svc.ok || !sl.ok) throw new Error('fixture invalid');
    sink.upsert('service', 'default/web', svc.value);
    await new Promise((r) => setTimeout(r, 50));
    expect(fake.history).toHaveLength(0);
    expect(part.readiness.check().ready).toBe(false);
    sink.upsert('slice', 'default/web-1', sl.value);
    sink.setState('synced');
    await until(() => part.readiness.check().ready);
    const d = fake.dump()!;
    expect(Object.values(d.sets.svc4!)).toEqual([{ goto: { target: 'lb_1' } }]);
    expect(Object.values(d.sets.ep4_tcp!)).toEqual([{ concat: ['10.244.1.5', 8080] }]);
    sink.remove('slice', 'default/web-1');
    await until(async () => Object.values(fake.dump()!.sets.svc4!)[0] !== undefined && JSON.stringify(fake.dump()!.sets.svc4).includes('no_endpoints'));
    expect(part.syncer!.lastResult?.kind).toBe('incremental');
    await part.stop();
    await store.close();
  });

  // Each rule write records whether the proxy listened on the port it redirects to.
  it.each(['nftables', 'iptables'] as const)('%s: the proxy listens on the userspace port before any rule points at it; closes it after', async (mode) => {
    const r = await listenerOrder(mode, { nft: (record) => recordingExecutor(new FakeNftExecutor(), record) });
    expect(r.pointing).toBeGreaterThan(0);
    expect(r.pointingWithoutListener).toBe(0);
    expect(r.lastWriteBeforeCloseHadListener).toBe(true);
  });

});
