/**
 * nftables in-process (libnftables through edgeway_nft.node) against the `nft`
 * CLI, in namespaces this test creates: the same transactions must leave the
 * same ruleset, failures must carry nft's own error text and code, and with the
 * addon disabled (EDGEWAY_NATIVE=off) the agent's executor falls back to the CLI.
 * Nothing is dialled: the rules are only written and listed.
 *
 * IP plan (only ever inside the test's namespaces): cluster IPs 10.96.0.0/16 and
 * fd00:96::/64, endpoints 10.244.0.0/16 and fd00:244::/64.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Lab, kernelSkipReason, run } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';
import { prng } from '../helpers/prng.js';
import { compile } from '../../src/dataplane/nftables/compile.js';
import { diffTransaction, fullTransaction, type Transaction } from '../../src/dataplane/nftables/transaction.js';
import { CliNftExecutor } from '../../src/dataplane/nftables/executor.js';
import { createNftExecutor, InProcessNftExecutor } from '../../src/dataplane/nftables/inprocess-executor.js';
import { loadNftAddon } from '../../src/dataplane/nftables/native-nft.js';
import { NftError } from '../../src/dataplane/nftables/errors.js';
import { mutate, randomPlan } from './random-plan.js';

const load = loadNftAddon();
const skip = requirement('nftables in-process kernel test', kernelSkipReason(),
  'addon' in load ? undefined : `edgeway_nft.node: ${load.reason}`,
  existsSync('dist/dataplane/nftables/inprocess-executor.js') ? undefined : 'dist/ missing: run `npm run build` first');

/** `nft -j list table inet edgeway` in `ns`, order-insensitive where the kernel's order is not ours (set elements, hash seeds). */
async function listing(ns: string): Promise<unknown[]> {
  const r = await run('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'table', 'inet', 'edgeway']);
  const items = (JSON.parse(r.stdout) as { nftables: Record<string, Record<string, unknown>>[] }).nftables.filter((i) => !('metainfo' in i));
  const perChain = new Map<string, number>();
  const keyed = items.map((item) => {
    const [kind, body] = Object.entries(item)[0]!;
    const { handle: _h, ...rest } = body;
    if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e) => JSON.stringify(e)).sort();
    // Rules keep their order within a chain; everything else is keyed by name.
    const n = kind === 'rule' ? perChain.get(String(rest.chain)) ?? 0 : 0;
    if (kind === 'rule') perChain.set(String(rest.chain), n + 1);
    return { key: `${kind} ${String(kind === 'rule' ? rest.chain : rest.name)} ${n}`, item: { [kind]: rest } };
  });
  return keyed.sort((a, b) => (a.key < b.key ? -1 : 1)).map((k) => k.item);
}

/** The part of nft's message after "Error:" (the CLI prefixes a file position, libnftables "internal:0:0-0"). */
const nftText = (e: unknown): string => (e as Error).message.replace(/^.*?Error: /, '');

async function rejection(p: Promise<unknown>): Promise<NftError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(NftError);
  return err as NftError;
}

describe.skipIf(!!skip)('nftables in-process (libnftables) vs the nft CLI', () => {
  const lab = new Lab();
  let nsIn = '';
  let nsCli = '';
  let inproc: InProcessNftExecutor;
  let cli: CliNftExecutor;

  beforeAll(async () => {
    nsIn = await lab.ns('ni');
    nsCli = await lab.ns('nc');
    const choice = createNftExecutor({ netns: nsIn });
    expect(choice.kind).toBe('in-process');
    inproc = choice.executor as InProcessNftExecutor;
    cli = new CliNftExecutor({ prefix: ['nsenter', `--net=/run/netns/${nsCli}`] });
  });

  afterAll(async () => {
    inproc?.close();
    await lab.destroy();
  });

  const both = async (tx: Transaction): Promise<void> => {
    await inproc.run(tx);
    await cli.run(tx);
  };

  it('a full apply, seeded incremental syncs and a resync leave the same ruleset both ways', async () => {
    const rnd = prng(0x5eed16);
    let plan = randomPlan(rnd, 300, 1);
    let prev = compile(plan);
    await both(fullTransaction(prev));
    const first = await listing(nsIn);
    expect(first.length).toBeGreaterThan(10);
    expect(first).toEqual(await listing(nsCli));
    let incremental = 0;
    for (let step = 0; step < 8; step++) {
      plan = mutate(rnd, plan);
      const next = compile(plan);
      const tx = diffTransaction(prev, next);
      incremental += tx.commands.length;
      await both(tx);
      expect(await listing(nsIn), `after step ${step}`).toEqual(await listing(nsCli));
      prev = next;
    }
    expect(incremental).toBeGreaterThan(0);
    expect(await listing(nsIn)).not.toEqual(first);
    // A resync of the populated table, stale per-service chains found by inspect().
    const chainsIn = await inproc.inspect({ deep: false });
    const chainsCli = await cli.inspect({ deep: false });
    expect([...chainsIn!.chains.keys()].sort()).toEqual([...chainsCli!.chains.keys()].sort());
    await inproc.run(fullTransaction(prev, [...chainsIn!.chains.keys()]));
    await cli.run(fullTransaction(prev, [...chainsCli!.chains.keys()]));
    expect(await listing(nsIn)).toEqual(await listing(nsCli));
    const deep = await inproc.inspect({ deep: true });
    expect(deep).toEqual(await cli.inspect({ deep: true }));
  }, 600_000);  // ~20 nft listings: minutes under ASan on a loaded box

  const T = { family: 'inet', table: 'edgeway' } as const;
  it.each([
    { name: 'element delete in a map that does not exist', code: 'ERR_NFT_NOT_FOUND', commands: [{ delete: { element: { ...T, name: 'nosuchmap', elem: ['10.96.9.9'] } } }] },
    { name: 'jump to a chain that does not exist', code: 'ERR_NFT_NOT_FOUND', commands: [{ add: { rule: { ...T, chain: 'services', expr: [{ jump: { target: 'nosuchchain' } }] } } }] },
    { name: 'a chain added twice with create', code: 'ERR_NFT_EXISTS', commands: [{ create: { chain: { ...T, name: 'services' } } }] },
  ])('errors carry nft\'s message and code, and change nothing: $name', async ({ code, commands }) => {
    const before = await listing(nsIn);
    const tx = { declare: [], commands } as unknown as Transaction;
    const a = await rejection(inproc.run(tx));
    const b = await rejection(cli.run(tx));
    expect(a.code).toBe(code);
    expect(b.code).toBe(code);
    expect(a.message).toMatch(/^nft in-process -j -f failed: .*Error: /);
    expect(nftText(a)).toBe(nftText(b));
    expect(a.stderr).toContain('Error:');
    expect(await listing(nsIn)).toEqual(before);
  });

  it('a listing of a missing table is ERR_NFT_NOT_FOUND both ways (inspect → undefined)', async () => {
    const empty = await lab.ns('ne');
    const e = createNftExecutor({ netns: empty });
    expect(e.kind).toBe('in-process');
    expect(await e.executor.inspect({ deep: true })).toBeUndefined();
    expect(await e.executor.inspect({ deep: false })).toBeUndefined();
    expect(await e.executor.deleteTable()).toBe(false);
    (e.executor as InProcessNftExecutor).close();
  });

  it('with EDGEWAY_NATIVE=off the executor falls back to the nft CLI and writes the same ruleset', async () => {
    const ns = await lab.ns('nf');
    const script = `
      const { createNftExecutor } = await import('./dist/dataplane/nftables/inprocess-executor.js');
      const { compile } = await import('./dist/dataplane/nftables/compile.js');
      const { fullTransaction } = await import('./dist/dataplane/nftables/transaction.js');
      const c = createNftExecutor({ netns: ${JSON.stringify(ns)} });
      await c.executor.run(fullTransaction(compile(JSON.parse(process.argv[1]))));
      console.log(JSON.stringify({ kind: c.kind, reason: c.reason }));`;
    const plan = randomPlan(prng(7), 50, 1);
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(plan)], { env: { ...process.env, EDGEWAY_NATIVE: 'off' }, timeout: 60_000 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
    });
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ kind: 'cli', reason: 'disabled by EDGEWAY_NATIVE=off' });
    // The same plan in-process, in a fresh namespace: identical listing.
    const ref = await lab.ns('nr');
    const e = createNftExecutor({ netns: ref });
    await e.executor.run(fullTransaction(compile(plan)));
    (e.executor as InProcessNftExecutor).close();
    expect(await listing(ns)).toEqual(await listing(ref));
  });

  it('calls issued together reach the kernel in order (one context, serialized)', async () => {
    const ns = await lab.ns('no');
    const e = createNftExecutor({ netns: ns }).executor as InProcessNftExecutor;
    const plans = Array.from({ length: 6 }, (_, i) => compile(randomPlan(prng(100 + i), 30, i + 1)));
    await e.run(fullTransaction(plans[0]!));
    // Not awaited one by one: each diff is only valid after the one before it.
    await Promise.all(plans.slice(1).map((p, i) => e.run(diffTransaction(plans[i]!, p))));
    const ref = await lab.ns('nq');
    const c = new CliNftExecutor({ prefix: ['nsenter', `--net=/run/netns/${ref}`] });
    await c.run(fullTransaction(plans.at(-1)!));
    expect(await listing(ns)).toEqual(await listing(ref));
    e.close();
  });
});
