// The agent part: plan per snapshot → listeners (+ iptables restore through a fake
// exec, the process boundary). Backends: identity-echo children on 127.0.0.1.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import { createProxyPart } from '../../src/proxy/part.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { emptySnapshot, type Snapshot } from '../../src/catalog/types.js';
import type { CatalogStore } from '../../src/catalog/store.js';
import type { PlannedServicePort } from '../../src/plan/types.js';
import { silentLogger } from '../../src/util/log.js';
import { ep, freePort, servicePort, startBackends, stopBackends, whoami, type Backend } from './util.js';

let backends: Backend[] = [];
beforeAll(async () => { backends = await startBackends(['a', 'b']); });
afterAll(async () => { await stopBackends(backends); });

/** Just what the part reads from the store. */
class FakeStore extends EventEmitter {
  snapshot: Snapshot = emptySnapshot();
  publish(revision: number): void {
    this.snapshot = { ...emptySnapshot(), revision };
    this.emit('snapshot', this.snapshot);
  }
}

function config(mode: 'iptables' | 'nftables'): Config {
  return { ...configSchema.parse({ dataplane: { mode, minSyncIntervalMs: 0 } }), nodeName: 'n1' };
}

describe('proxy agent part', () => {
  it('follows snapshots: listeners and endpoints per plan; iptables written with one save + one restore per sync', async () => {
    const port = await freePort();
    const store = new FakeStore();
    const calls: string[] = [];
    const plans = new Map<number, PlannedServicePort[]>([
      [0, []],
      [1, [servicePort({ userspacePort: port, endpoints: [ep('127.0.0.1', backends[0]!.port)] })]],
      [2, [servicePort({ userspacePort: port, endpoints: [ep('127.0.0.1', backends[1]!.port)] })]],
    ]);
    const factory = createProxyPart({
      planFor: (s) => ({ servicePorts: plans.get(s.revision) ?? [] }),
      iptables: () => true,
      exec: async (cmd, _args, input) => {
        calls.push(cmd);
        if (cmd.endsWith('-save')) return '';
        expect(input).toContain('*nat');
        return '';
      },
    });
    const cfg = config('iptables');
    cfg.proxy.iptablesBackend = 'legacy';
    const part = await factory({ config: cfg, logger: silentLogger(), registry: new Registry(), store: store as unknown as CatalogStore });
    expect(part).toBeDefined();
    await part!.start();
    try {
      expect(part!.readiness.check().ready).toBe(true);
      store.publish(1);
      await part!.settled();
      expect(await whoami(port)).toBe('a');
      store.publish(2);
      await part!.settled();
      expect(await whoami(port)).toBe('b');
      // 3 syncs × v4 (save + restore); v6 has nothing to do (save only).
      expect(calls.filter((c) => c === 'iptables-legacy-restore')).toHaveLength(3);
      expect(calls.filter((c) => c === 'iptables-legacy-save')).toHaveLength(3);
      expect(calls.filter((c) => c === 'ip6tables-legacy-restore')).toHaveLength(0);
    } finally {
      await part!.stop();
    }
    await expect(whoami(port, { timeoutMs: 1_000 })).rejects.toThrow(/ECONNREFUSED/);
  });

  it('is disabled (undefined) without a plan builder', async () => {
    const part = await createProxyPart({})({ config: config('nftables'), logger: silentLogger(), registry: new Registry(), store: new FakeStore() as unknown as CatalogStore });
    expect(part).toBeUndefined();
  });
});
