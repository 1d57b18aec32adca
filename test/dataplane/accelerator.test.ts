/**
 * Accelerator selection without root: status and metrics when the addon is absent
 * or partly broken, and the per-connection fallback (a fake addon at the process
 * boundary refuses the hand-over; the connection still completes on Node streams).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { Accelerators, acceleratorsFromConfig, describeAccelerators } from '../../src/native/accelerator.js';
import { configSchema } from '../../src/config/schema.js';
import type { BpfAddon, NativeAddon, NativeBpf, NativePool, NativeSockmap } from '../../src/native/addon.js';
import { ForwardHarness, receiveAll, sendRandom, withTimeout } from './forward-harness.js';

function fakeAddon(opts: { spliceErrno?: number }): NativeAddon {
  class Pool implements NativePool {
    active = 0;
    splice(): number { throw Object.assign(new Error('splice: refused'), { errno: opts.spliceErrno ?? 95 }); }
    sockmap(): number { throw new Error('sockmap link: refused'); }
    cancel(): void {}
    close(): void {}
  }
  class SockmapLink { close(): void {} }
  return { abi: 2, Pool, SockmapLink, getOriginalDst: () => null };
}

function fakeBpfAddon(sockmapLoad = 'sockmap: load: Operation not permitted'): BpfAddon {
  class Sockmap {
    constructor() { throw new Error(sockmapLoad); }
  }
  return { abi: 2, Sockmap: Sockmap as unknown as new (p: string) => NativeSockmap, bpf: {} as NativeBpf };
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => { for (const c of cleanup.splice(0).reverse()) await c(); });

describe('Accelerators', () => {
  it.each([
    { name: 'addon absent', native: { addonReason: 'addon not built' }, want: { splice: 0, sockmap: 0, node: 1 } },
    { name: 'sockmap load refused', native: { addon: fakeAddon({}), bpf: fakeBpfAddon(), sockmapObject: '/x.o' }, want: { splice: 1, sockmap: 0, node: 1 } },
    { name: 'BPF object missing', native: { addon: fakeAddon({}), bpf: fakeBpfAddon() }, want: { splice: 1, sockmap: 0, node: 1 } },
    { name: 'libbpf addon absent: splice stays', native: { addon: fakeAddon({}), bpfReason: 'edgeway_bpf.node failed to load: libbpf.so.1: cannot open shared object file', sockmapObject: '/x.o' }, want: { splice: 1, sockmap: 0, node: 1 } },
  ])('$name: status and edgeway_dataplane_accelerator{kind}', async ({ native, want }) => {
    const registry = new Registry();
    const accel = new Accelerators({ native, registry });
    cleanup.push(() => accel.close());
    const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'edgeway_dataplane_accelerator');
    const got = Object.fromEntries((metric?.values ?? []).map((v) => [v.labels.kind, v.value]));
    expect(got).toEqual(want);
    for (const s of accel.status) expect(Boolean(s.reason)).toBe(!s.available);
    expect(accel.available).toEqual(Object.entries(want).filter(([, v]) => v === 1).map(([k]) => k).sort((a, b) => ['splice', 'sockmap', 'node'].indexOf(a) - ['splice', 'sockmap', 'node'].indexOf(b)));
  });

  it('falls back per connection when the accelerator refuses the hand-over; the connection completes', async () => {
    const registry = new Registry();
    const accel = new Accelerators({ native: { addon: fakeAddon({}) }, registry });
    const h = new ForwardHarness(accel.pick('auto'));
    await h.start();
    cleanup.push(() => accel.close(), () => h.close());
    h.onBackend = (s) => { void receiveAll(s).then(() => s.end('pong')); };
    const c = await h.connect();
    const recv = receiveAll(c);
    await sendRandom(c, 100_000);
    expect((await withTimeout(recv, 10_000, 'reply')).bytes).toBe(4);
    const r = await withTimeout(h.results[0]!, 10_000, 'forward result');
    expect(r).toEqual({ kind: 'node', bytesIn: 100_000, bytesOut: 4 });
    const json = await registry.getMetricsAsJSON();
    const fallbacks = json.find((m) => m.name === 'edgeway_dataplane_forward_fallbacks_total')?.values ?? [];
    expect(fallbacks).toEqual([expect.objectContaining({ labels: { from: 'splice', to: 'node' }, value: 1 })]);
    const conns = json.find((m) => m.name === 'edgeway_dataplane_forwarded_connections_total')?.values ?? [];
    expect(conns).toEqual([expect.objectContaining({ labels: { kind: 'node' }, value: 1 })]);
  });

  it('originalDst needs the addon', () => {
    const accel = new Accelerators({ native: { addonReason: 'absent' } });
    expect(() => accel.originalDst({} as never)).toThrow(/needs the native addon/);
  });

  it('config `accelerator.mode: node` never uses the addon; doctor lines say why', () => {
    const cfg = configSchema.parse({ accelerator: { mode: 'node' } }).accelerator;
    expect(cfg).toEqual({ mode: 'node', threads: 2, pipeSize: 1 << 20, sockmap: true });
    const { accelerators, forwarder } = acceleratorsFromConfig(cfg);
    cleanup.push(() => accelerators.close());
    expect(forwarder.kind).toBe('node');
    expect(describeAccelerators(accelerators.status)).toEqual([
      'splice: no (disabled by configuration (accelerator.mode: node))',
      'sockmap: no (disabled by configuration (accelerator.mode: node))',
      'node: yes',
    ]);
  });

  it('config rejects an unknown mode and an oversized pipe', () => {
    expect(() => configSchema.parse({ accelerator: { mode: 'dpdk' } })).toThrow();
    expect(() => configSchema.parse({ accelerator: { pipeSize: 4 << 20 } })).toThrow();
  });
});
