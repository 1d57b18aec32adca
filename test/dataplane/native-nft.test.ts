/**
 * The edgeway_nft.node loader says why the in-process path is not there, and the
 * executor factory falls back to the CLI for each reason (nothing is run here).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNftAddon } from '../../src/dataplane/nftables/native-nft.js';
import { createNftExecutor, InProcessNftExecutor } from '../../src/dataplane/nftables/inprocess-executor.js';
import type { NativeNftContext } from '../../src/dataplane/nftables/native-nft.js';
import { TxBuilder } from '../../src/dataplane/nftables/transaction.js';
import { FakeNftExecutor } from '../helpers/fake-nft-executor.js';
import { CliNftExecutor } from '../../src/dataplane/nftables/executor.js';

const saved = { ...process.env };
afterEach(() => {
  for (const k of ['EDGEWAY_NATIVE', 'EDGEWAY_NATIVE_NFT', 'EDGEWAY_NFT_ADDON', 'EDGEWAY_NATIVE_BUILD']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  loadNftAddon({ reload: true });
});

describe('loadNftAddon', () => {
  it.each([
    { name: 'EDGEWAY_NATIVE=off', env: { EDGEWAY_NATIVE: 'off' }, reason: /^disabled by EDGEWAY_NATIVE=off$/ },
    { name: 'EDGEWAY_NATIVE_NFT=off', env: { EDGEWAY_NATIVE_NFT: 'off' }, reason: /^disabled by EDGEWAY_NATIVE_NFT=off$/ },
  ])('$name → a reason, and the factory picks the CLI', ({ env, reason }) => {
    Object.assign(process.env, env);
    const load = loadNftAddon({ reload: true });
    expect('reason' in load && load.reason).toMatch(reason);
    const choice = createNftExecutor();
    expect(choice.kind).toBe('cli');
    expect(choice.executor).toBeInstanceOf(CliNftExecutor);
    expect(choice.reason).toMatch(reason);
  });

  it('a file that is not an addon → "failed to load" with the loader\'s message', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ew-nft-addon-'));
    try {
      const bogus = join(dir, 'edgeway_nft.node');
      await writeFile(bogus, 'not an ELF object');
      process.env.EDGEWAY_NFT_ADDON = bogus;
      const load = loadNftAddon({ reload: true });
      expect('reason' in load && load.reason).toMatch(/^edgeway_nft\.node failed to load: /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('cached: a second call without reload returns the same answer', () => {
    expect(loadNftAddon()).toBe(loadNftAddon());
  });
});

describe('InProcessNftExecutor routing', () => {
  /** The addon at its boundary: records what it was asked to run, answers ok. */
  const fakeCtx = (): NativeNftContext & { calls: string[] } => {
    const calls: string[] = [];
    return { calls, run: async (c) => { calls.push(c); return { ok: true, output: '', error: '' }; }, close: () => undefined };
  };
  const tx = (n: number) => new TxBuilder().addTable().addSet({ name: 'hairpin4', kind: 'set', type: ['ipv4_addr', 'ipv4_addr'] })
    .addElements('hairpin4', Array.from({ length: n }, (_, i) => ({ key: { concat: [`10.244.0.${i}`, `10.244.0.${i}`] } }))).build();

  it.each([
    { name: 'at the limit: in-process', n: 10, inProcess: true },
    { name: 'above the limit: the CLI', n: 11, inProcess: false },
  ])('$name ($n elements, limit 10)', async ({ n, inProcess }) => {
    const ctx = fakeCtx();
    const cli = new FakeNftExecutor();
    const ex = new InProcessNftExecutor(ctx, { cli, cliAboveElements: 10 });
    await ex.run(tx(n));
    expect(ctx.calls.length > 0).toBe(inProcess);
    expect(cli.history.length > 0).toBe(!inProcess);
    const sent = inProcess ? ctx.calls.join('') : JSON.stringify(cli.history);
    expect(sent).toContain(`10.244.0.${n - 1}`);
  });

  it.each([
    { name: 'deep, a large table: the CLI', deep: true, elements: 11, inProcess: false },
    { name: 'deep, a small table: in-process', deep: true, elements: 10, inProcess: true },
    { name: 'deep, size unknown: in-process', deep: true, elements: undefined, inProcess: true },
    { name: 'shallow, a large table: in-process', deep: false, elements: 11, inProcess: true },
  ])('inspect $name', async ({ deep, elements, inProcess }) => {
    // The addon answers every listing with an empty ruleset; the CLI side is a
    // model that holds three elements, so the answer says which way was taken.
    const calls: string[] = [];
    const ctx: NativeNftContext = { run: async (c) => { calls.push(c); return { ok: true, output: '{"nftables":[]}', error: '' }; }, close: () => undefined };
    const cli = new FakeNftExecutor();
    await cli.run(tx(3));
    const ex = new InProcessNftExecutor(ctx, { cli, cliAboveElements: 10 });
    const got = await ex.inspect({ deep, ...(elements === undefined ? {} : { elements }) });
    expect(calls.length > 0).toBe(inProcess);
    expect(got?.elements.get('hairpin4')).toBe(inProcess ? undefined : 3);
  });
});
