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
import { BindingStore } from '../../src/tunnel/bindings.js';
import { snapshot } from './helpers.js';

const P1 = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo';
const P2 = '12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9gLM3ynxVhXmo';

function directory(nodes: string[] = ['b'], bindings?: BindingStore): { dir: PeerDirectory; answers: Map<string, PeerRecord>; clock: { now: number }; asked: string[] } {
  const answers = new Map<string, PeerRecord>();
  const clock = { now: 1_000_000 };
  const asked: string[] = [];
  const relays = {
    isRelay: () => false,
    lookup: async (q: { nodeName?: string; peerId?: string }): Promise<PeerRecord[]> => {
      asked.push(q.peerId ?? q.nodeName ?? '');
      const r = q.peerId ? [...answers.values()].find((x) => x.peerId === q.peerId) : answers.get(q.nodeName ?? '');
      return r ? [r] : [];
    },
  } as unknown as RelayManager;
  const snap = snapshot([], nodes.map((name) => ({ name, addresses: [{ type: 'InternalIP' as const, address: '10.1.0.2' }], ready: true })));
  const dir = new PeerDirectory({ node: undefined as unknown as TunnelLibp2p, nodeName: 'a', listenPort: 1, snapshot: () => snap, relays, now: () => clock.now, ...(bindings ? { bindings } : {}) });
  return { dir, answers, clock, asked };
}

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
