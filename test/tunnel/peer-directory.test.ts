/**
 * The peer directory's rendezvous cache (src/tunnel/peers.ts): who an inbound peer
 * is when the rendezvous is slow to answer or has forgotten. A relay that restarts
 * knows nobody until the nodes register again — that must not refuse flows between
 * nodes already known (the fleet saw "peer is not a cluster node" refusals after a
 * relay restart) — while a different answer for a name takes effect at once.
 * The rendezvous is the network edge here: its answers are scripted, the clock too.
 */
import { describe, expect, it } from 'vitest';
import { PeerDirectory } from '../../src/tunnel/peers.js';
import type { RelayManager } from '../../src/tunnel/relays.js';
import type { PeerRecord } from '../../src/tunnel/rendezvous.js';
import type { TunnelLibp2p } from '../../src/tunnel/node.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { BindingStore } from '../../src/tunnel/bindings.js';
import { createTunnelMetrics, type TunnelMetrics } from '../../src/tunnel/metrics.js';
import { createLogger } from '../../src/util/log.js';
import type { Node } from '../../src/catalog/types.js';
import { snapshot } from './helpers.js';

const P1 = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo';
const P2 = '12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9gLM3ynxVhXmo';
/** A configured relay's peer id. */
const R = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK';

interface Harness {
  dir: PeerDirectory; answers: Map<string, PeerRecord>; clock: { now: number }; asked: string[];
  metrics: TunnelMetrics; warnings: string[];
}

function directory(nodes: string[] = ['b'], bindings?: BindingStore, o: { annotations?: Record<string, string> } = {}): Harness {
  const answers = new Map<string, PeerRecord>();
  const clock = { now: 1_000_000 };
  const asked: string[] = [];
  const metrics = createTunnelMetrics(new Registry());
  const warnings: string[] = [];
  const logger = createLogger('warn', new Writable({ write(chunk: Buffer, _enc, cb) { warnings.push(String((JSON.parse(chunk.toString()) as { msg: string }).msg)); cb(); } }));
  const relays = {
    isRelay: (id: string) => id === R,
    lookup: async (q: { nodeName?: string; peerId?: string }): Promise<PeerRecord[]> => {
      asked.push(q.peerId ?? q.nodeName ?? '');
      const r = q.peerId ? [...answers.values()].find((x) => x.peerId === q.peerId) : answers.get(q.nodeName ?? '');
      return r ? [r] : [];
    },
  } as unknown as RelayManager;
  const snap = snapshot([], nodes.map((name): Node => {
    const peerId = o.annotations?.[name];
    return { name, addresses: [{ type: 'InternalIP', address: '10.1.0.2' }], ready: true, ...(peerId ? { peerId } : {}) };
  }));
  const dir = new PeerDirectory({
    node: undefined as unknown as TunnelLibp2p, nodeName: 'a', listenPort: 1, snapshot: () => snap, relays, now: () => clock.now,
    metrics, logger, ...(bindings ? { bindings } : {}),
  });
  return { dir, answers, clock, asked, metrics, warnings };
}

const count = async (m: TunnelMetrics): Promise<number> => (await m.relayClaims.get()).values[0]?.value ?? 0;

describe('peer directory: rendezvous answers and their lifetime', () => {
  it('keeps a known peer authorised while the rendezvous answers nothing, for a bounded time', async () => {
    const { dir, answers, clock, asked } = directory();
    answers.set('b', { nodeName: 'b', peerId: P1, addrs: [] });
    expect(await dir.authorise(P1)).toBe(true);
    answers.clear(); // the relay restarted: it knows nobody yet
    clock.now += 31_000; // past the positive TTL: asked again, no answer
    expect(await dir.authorise(P1)).toBe(true);
    // Asked by peer id (no answer), then by name to confirm the fallback (no answer either).
    expect(asked).toEqual([P1, P1, 'b']);
    clock.now += 9 * 60_000; // still within the stale window
    expect(await dir.authorise(P1)).toBe(true);
    clock.now += 2 * 60_000; // past it: no longer vouched for
    expect(await dir.authorise(P1)).toBe(false);
  });

  it('an unknown peer is refused when the rendezvous has no answer', async () => {
    const { dir } = directory();
    expect(await dir.authorise(P2)).toBe(false);
  });

  it('a name answered by another peer id: the old id stops speaking for it at once', async () => {
    const { dir, answers, clock } = directory();
    answers.set('b', { nodeName: 'b', peerId: P1, addrs: [] });
    expect(await dir.authorise(P1)).toBe(true);
    answers.set('b', { nodeName: 'b', peerId: P2, addrs: [] }); // the node changed identity
    clock.now += 31_000;
    expect((await dir.resolve('b')).peerId.toString()).toBe(P2);
    expect(await dir.authorise(P1)).toBe(false);
    expect(await dir.authorise(P2)).toBe(true);
  });
});

describe('peer directory: a failed dial', () => {
  it('asks the rendezvous again, but a missing answer keeps the node known', async () => {
    const { dir, answers, asked } = directory();
    answers.set('b', { nodeName: 'b', peerId: P1, addrs: [] });
    expect((await dir.resolve('b')).peerId.toString()).toBe(P1);
    answers.clear();
    dir.expire('b', P1); // what the dialer does when no path reached the node
    expect((await dir.resolve('b')).peerId.toString()).toBe(P1);
    expect(await dir.authorise(P1)).toBe(true);
    expect(asked).toEqual(['b', 'b', P1]);
    // A binding conflict forgets it for good.
    dir.invalidate('b', P1);
    await expect(dir.resolve('b')).rejects.toThrow(/no rendezvous record/);
  });
});

describe('peer directory: identity changes with only inbound traffic', () => {
  it('a node that came back with a new id: its old id is refused once the name answers the new one', async () => {
    const { dir, answers, clock } = directory();
    answers.set('b', { nodeName: 'b', peerId: P1, addrs: [] });
    expect(await dir.authorise(P1)).toBe(true);
    answers.set('b', { nodeName: 'b', peerId: P2, addrs: [] }); // re-registered as P2; the rendezvous forgot P1
    clock.now += 31_000;
    expect(await dir.authorise(P1)).toBe(false);
    clock.now += 5 * 60_000;
    expect(await dir.authorise(P1)).toBe(false);
    expect(await dir.authorise(P2)).toBe(true);
  });

  it('a peer that now answers another name no longer resolves as its old name', async () => {
    const { dir, answers, clock } = directory(['b', 'c']);
    answers.set('b', { nodeName: 'b', peerId: P1, addrs: [] });
    expect((await dir.resolve('b')).peerId.toString()).toBe(P1);
    answers.clear();
    answers.set('c', { nodeName: 'c', peerId: P1, addrs: [] });
    clock.now += 31_000;
    expect(await dir.nodeNameOf(P1)).toBe('c');
    await expect(dir.resolve('b')).rejects.toThrow(/no rendezvous record/);
  });

  it('without a PSK, an answer the first-use binding refuses leaves the bound peer known', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'ew-pd-'));
    try {
      const bindings = await BindingStore.open(tmp, 'b.json');
      const { dir, answers, clock } = directory(['b'], bindings);
      answers.set('b', { nodeName: 'b', peerId: P1, addrs: [] });
      expect((await dir.resolve('b')).peerId.toString()).toBe(P1); // binds b → P1
      answers.set('b', { nodeName: 'b', peerId: P2, addrs: [] }); // an impostor's registration
      clock.now += 31_000;
      expect((await dir.resolve('b')).peerId.toString()).toBe(P1);
      expect(await dir.authorise(P2)).toBe(false);
      answers.clear(); // then the relay restarts
      clock.now += 31_000;
      expect(await dir.authorise(P1)).toBe(true);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});

describe('peer directory: a configured relay is never a node', () => {
  it('a rendezvous record naming a relay\'s peer id for a node is refused, counted, logged once a minute', async () => {
    const { dir, answers, clock, metrics, warnings } = directory();
    answers.set('b', { nodeName: 'b', peerId: R, addrs: [] }); // the relay registered b's name itself
    await expect(dir.resolve('b')).rejects.toThrow(/is a configured relay/);
    expect(await dir.nodeNameOf(R)).toBeUndefined();
    clock.now += 3_000; // past the negative TTL: asked again, refused again
    await expect(dir.resolve('b')).rejects.toThrow(/is a configured relay/);
    expect(await count(metrics)).toBe(2);
    expect(warnings.filter((w) => /configured relay/.test(w))).toHaveLength(1);
    clock.now += 60_000;
    await expect(dir.resolve('b')).rejects.toThrow(/is a configured relay/);
    expect(warnings.filter((w) => /configured relay/.test(w))).toHaveLength(2);
  });

  it('a relay\'s claim does not displace the node\'s last real answer, nor take its first-use binding', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'ew-pd-'));
    try {
      const bindings = await BindingStore.open(tmp, 'b.json');
      const { dir, answers, clock } = directory(['b', 'c'], bindings);
      answers.set('c', { nodeName: 'c', peerId: R, addrs: [] });
      await expect(dir.resolve('c')).rejects.toThrow(/is a configured relay/);
      expect(bindings.bindings.get('c')).toBeUndefined();
      answers.set('c', { nodeName: 'c', peerId: P2, addrs: [] }); // the real node registers
      clock.now += 3_000;
      expect((await dir.resolve('c')).peerId.toString()).toBe(P2);
      answers.set('b', { nodeName: 'b', peerId: P1, addrs: [] });
      expect((await dir.resolve('b')).peerId.toString()).toBe(P1);
      answers.set('b', { nodeName: 'b', peerId: R, addrs: [] }); // then the relay claims b
      clock.now += 31_000;
      expect((await dir.resolve('b')).peerId.toString()).toBe(P1);
      expect(await dir.authorise(P1)).toBe(true);
      expect(await dir.authorise(R)).toBe(false);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });

  it('a Node annotation naming a relay\'s peer id is refused too', async () => {
    const { dir, metrics } = directory(['b'], undefined, { annotations: { b: R } });
    await expect(dir.resolve('b')).rejects.toThrow(/is a configured relay/);
    expect(await dir.nodeNameOf(R)).toBeUndefined();
    expect(await count(metrics)).toBe(1);
  });
});

describe('peer directory: the peer id → name index', () => {
  it('a name that moved to another id is not dropped when its old id later answers a third name', async () => {
    const { dir, answers, clock } = directory(['b', 'c']);
    answers.set('b', { nodeName: 'b', peerId: P1, addrs: [] });
    expect((await dir.resolve('b')).peerId.toString()).toBe(P1);
    answers.set('b', { nodeName: 'b', peerId: P2, addrs: [] });
    clock.now += 31_000;
    expect((await dir.resolve('b')).peerId.toString()).toBe(P2);
    answers.set('c', { nodeName: 'c', peerId: P1, addrs: [] });
    expect(await dir.nodeNameOf(P1)).toBe('c');
    answers.clear(); // b is served from the cache only
    expect((await dir.resolve('b')).peerId.toString()).toBe(P2);
  });

  it('a forgotten name leaves the index too: its old id answering another name does not drop it', async () => {
    const { dir, answers } = directory(['b', 'c']);
    answers.set('b', { nodeName: 'b', peerId: P1, addrs: [] });
    expect((await dir.resolve('b')).peerId.toString()).toBe(P1);
    dir.invalidate('b'); // a binding conflict forgot it
    answers.set('b', { nodeName: 'b', peerId: P2, addrs: [] });
    expect((await dir.resolve('b')).peerId.toString()).toBe(P2);
    answers.set('c', { nodeName: 'c', peerId: P1, addrs: [] });
    expect((await dir.resolve('c')).peerId.toString()).toBe(P1);
    answers.clear();
    expect((await dir.resolve('b')).peerId.toString()).toBe(P2);
  });
});
