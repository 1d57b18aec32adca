/**
 * raceAbort (src/tunnel/dialer.ts): a flow whose connect timeout had already fired
 * still started a peer lookup; raceAbort returned at once and left the lookup's
 * rejection unhandled, which killed the agent (found by bench/soak at the fd limit,
 * where lookups fail). Every rejection of the raced promise must be handled.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { raceAbort } from '../../src/tunnel/dialer.js';

describe('raceAbort', () => {
  const seen: unknown[] = [];
  const onUnhandled = (reason: unknown): void => { seen.push(reason); };
  afterEach(() => { process.off('unhandledRejection', onUnhandled); seen.length = 0; });

  it('with a signal aborted already: rejects with its reason and leaves no unhandled rejection behind', async () => {
    process.on('unhandledRejection', onUnhandled);
    const ac = new AbortController();
    ac.abort(new Error('connect timeout'));
    const lookup = new Promise<number>((_, reject) => setTimeout(() => reject(new Error('peer unknown')), 10));
    await expect(raceAbort(lookup, ac.signal)).rejects.toThrow('connect timeout');
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual([]);
  });

  it('aborted while waiting: rejects with the reason; the later rejection is handled too', async () => {
    process.on('unhandledRejection', onUnhandled);
    const ac = new AbortController();
    const lookup = new Promise<number>((_, reject) => setTimeout(() => reject(new Error('peer unknown')), 30));
    const raced = raceAbort(lookup, ac.signal);
    ac.abort(new Error('connect timeout'));
    await expect(raced).rejects.toThrow('connect timeout');
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual([]);
  });

  it('resolves with the value when it comes first', async () => {
    await expect(raceAbort(Promise.resolve(7), new AbortController().signal)).resolves.toBe(7);
  });
});
