/**
 * The agent's cache of its own multiaddrs (src/tunnel/listen-addrs.ts) on a real
 * libp2p node: same answer as libp2p, not rebuilt within the TTL, rebuilt after
 * it or after an address event, and detached on close.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { generateKeyPair } from '@libp2p/crypto/keys';
import '../../src/tunnel/polyfill.js';
import { createTunnelNode, type TunnelLibp2p } from '../../src/tunnel/node.js';
import { ADDRESS_EVENTS, ListenAddrs } from '../../src/tunnel/listen-addrs.js';

describe('ListenAddrs', () => {
  let node: TunnelLibp2p;
  beforeAll(async () => {
    node = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] });
  });
  afterAll(async () => { await node?.stop(); });

  it('answers what libp2p answers, and asks libp2p again only after the TTL', () => {
    let t = 1_000;
    const spy = vi.spyOn(node, 'getMultiaddrs');
    const cache = new ListenAddrs(node, 5000, () => t);
    try {
      const first = cache.get().map(String);
      expect(first).toEqual(node.getMultiaddrs().map(String));
      expect(first.some((a) => a.startsWith('/ip4/127.0.0.1/tcp/'))).toBe(true);
      spy.mockClear();
      t += 4999;
      cache.get();
      cache.get();
      expect(spy).not.toHaveBeenCalled();
      t += 1;
      expect(cache.get().map(String)).toEqual(first);
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      cache.close();
      spy.mockRestore();
    }
  });

  it.each(ADDRESS_EVENTS)('drops its answer on %s, and stops listening on close', (type) => {
    const spy = vi.spyOn(node, 'getMultiaddrs');
    const cache = new ListenAddrs(node, 60_000, () => 0);
    try {
      cache.get();
      spy.mockClear();
      node.dispatchEvent(new CustomEvent(type, { detail: undefined }));
      cache.get();
      expect(spy).toHaveBeenCalledTimes(1);
      cache.close();
      cache.get();
      expect(spy).toHaveBeenCalledTimes(2);
      node.dispatchEvent(new CustomEvent(type, { detail: undefined }));
      cache.get();
      expect(spy).toHaveBeenCalledTimes(2);
    } finally {
      spy.mockRestore();
    }
  });
});
