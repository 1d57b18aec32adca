/**
 * The executor: the boundary to nftables. `run` declares the text-only sets
 * (idempotent `add`, its own nft call) and then applies the JSON commands as one
 * atomic transaction; nft's error text becomes an NftError with a code. Two
 * implementations share everything but the call itself: `CliNftExecutor` runs
 * the `nft` binary, `InProcessNftExecutor` (inprocess-executor.ts) libnftables
 * through edgeway_nft.node.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAMILY, TABLE } from './model.js';
import { declareText } from './render.js';
import type { Transaction } from './transaction.js';
import { nftFailure, NftError } from './errors.js';
import type { TableSummary } from './compile.js';

export interface NftExecutor {
  /** Apply a transaction atomically (the JSON part); throws NftError. */
  run(tx: Transaction): Promise<void>;
  /**
   * Our table's chains; with `deep`, also rule counts and element counts (a full
   * listing: seconds at 10k services). Undefined when the table is absent.
   * `elements`: how many elements the caller expects (lets an executor pick the
   * cheaper way for a large listing).
   */
  inspect(opts?: InspectOptions): Promise<TableSummary | undefined>;
  /** Remove our table; false when it was not there. */
  deleteTable(): Promise<boolean>;
}

export interface InspectOptions {
  readonly deep?: boolean;
  readonly elements?: number;
}

export interface CliExecutorOptions {
  /** nft binary (default `nft`). */
  readonly nft?: string;
  /** Prefix command, e.g. ['ip', 'netns', 'exec', 'ns1'] (benchmarks, tests). */
  readonly prefix?: readonly string[];
  readonly timeoutMs?: number;
  /**
   * Let nft's malloc back its heap with transparent huge pages (glibc ≥ 2.35
   * `glibc.malloc.hugetlb=1`; older glibc ignores the tunable). Default true:
   * nft holds ~3 KB per element while it builds a transaction, and with 4 KiB
   * pages a 50k-service full apply spent half its CPU in page faults and in
   * malloc walking a fragmented heap (README "Numbers"); with huge pages its user
   * time halves. Only the nft child gets it, never the agent.
   */
  readonly hugePages?: boolean;
}

/** `GLIBC_TUNABLES` for an nft child: the caller's, plus huge pages for malloc. */
export function nftChildEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const prev = base['GLIBC_TUNABLES'];
  if (prev?.includes('glibc.malloc.hugetlb=')) return base;
  return { ...base, GLIBC_TUNABLES: prev ? `${prev}:glibc.malloc.hugetlb=1` : 'glibc.malloc.hugetlb=1' };
}

interface NftJsonItem {
  chain?: { name: string; table: string; family: string };
  rule?: { chain: string; table: string; family: string };
  set?: { name: string; table: string; family: string; elem?: unknown[] };
  map?: { name: string; table: string; family: string; elem?: unknown[] };
}

/**
 * run / inspect / deleteTable on top of two primitives, so the CLI and the
 * in-process path send byte-identical commands and parse the same listings.
 */
export abstract class NftCommandExecutor implements NftExecutor {
  /** `nft [-j] ARGS…` (a listing or a single command); resolves stdout, rejects with NftError. */
  protected abstract command(args: readonly string[], json: boolean): Promise<string>;
  /** `nft [-j] -f` of a whole script or JSON document (one atomic transaction); rejects with NftError. */
  protected abstract script(content: string, json: boolean): Promise<void>;

  async run(tx: Transaction): Promise<void> {
    if (tx.declare.length) await this.script(declareText(tx.declare), false);
    if (tx.commands.length) await this.script(JSON.stringify({ nftables: tx.commands }), true);
  }

  async inspect(opts: InspectOptions = {}): Promise<TableSummary | undefined> {
    if (!opts.deep) {
      // `list chains` needs no set/rule cache: milliseconds whatever the table size.
      const items = (JSON.parse(await this.command(['list', 'chains', FAMILY], true)) as { nftables: NftJsonItem[] }).nftables;
      const names = items.filter((i) => i.chain && i.chain.table === TABLE).map((i) => i.chain!.name);
      // (`list tables` would fetch the whole cache too; our table always has base chains.)
      if (names.length === 0) return undefined;
      return { chains: new Map(names.map((n) => [n, undefined])), elements: new Map(), deep: false };
    }
    let text: string;
    try {
      text = await this.command(['list', 'table', FAMILY, TABLE], true);
    } catch (err) {
      if (err instanceof NftError && err.code === 'ERR_NFT_NOT_FOUND') return undefined;
      throw err;
    }
    const items = (JSON.parse(text) as { nftables: NftJsonItem[] }).nftables;
    const chains = new Map<string, number>();
    const elements = new Map<string, number>();
    for (const it of items) {
      if (it.chain) chains.set(it.chain.name, chains.get(it.chain.name) ?? 0);
      else if (it.rule) chains.set(it.rule.chain, (chains.get(it.rule.chain) ?? 0) + 1);
      else if (it.set) elements.set(it.set.name, it.set.elem?.length ?? 0);
      else if (it.map) elements.set(it.map.name, it.map.elem?.length ?? 0);
    }
    return { chains, elements, deep: true };
  }

  async deleteTable(): Promise<boolean> {
    try {
      await this.command(['delete', 'table', FAMILY, TABLE], false);
      return true;
    } catch (err) {
      if (err instanceof NftError && err.code === 'ERR_NFT_NOT_FOUND') return false;
      throw err;
    }
  }
}

/** The `nft` binary: one process per call. */
export class CliNftExecutor extends NftCommandExecutor {
  private readonly argv0: string;
  private readonly pre: string[];
  private readonly timeoutMs: number;
  private readonly hugePages: boolean;

  constructor(opts: CliExecutorOptions = {}) {
    super();
    const cmd = [...(opts.prefix ?? []), opts.nft ?? 'nft'];
    this.argv0 = cmd[0]!;
    this.pre = cmd.slice(1);
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.hugePages = opts.hugePages !== false;
  }

  /** Run nft with args and stdin; resolves stdout, rejects with a coded NftError. */
  exec(args: readonly string[], input?: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.argv0, [...this.pre, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...(this.hugePages ? { env: nftChildEnv() } : {}) });
      const out: Buffer[] = [];
      let err = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs);
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-16_384); });
      child.stdin.on('error', () => undefined);
      child.on('error', (e) => { clearTimeout(timer); reject(new NftError('ERR_NFT_UNAVAILABLE', `cannot run ${this.argv0}: ${e.message}`, '', { cause: e })); });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) return resolve(Buffer.concat(out).toString());
        reject(nftFailure(`nft ${args.join(' ')} failed (${signal ?? code})`, err));
      });
      child.stdin.end(input ?? '');
    });
  }

  protected command(args: readonly string[], json: boolean): Promise<string> {
    return this.exec(json ? ['-j', ...args] : args);
  }

  /**
   * `nft [-j] -f FILE` from a private temp file: nft's JSON reader opens
   * /dev/stdin, which fails (ENXIO) when stdin is the socket Node gives children.
   */
  protected async script(content: string, json: boolean): Promise<void> {
    const file = join(tmpdir(), `edgeway-nft-${process.pid}-${randomBytes(6).toString('hex')}`);
    await writeFile(file, content, { mode: 0o600 });
    try {
      await this.exec([...(json ? ['-j'] : []), '-f', file]);
    } finally {
      await rm(file, { force: true });
    }
  }
}
