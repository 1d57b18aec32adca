/**
 * nftables in-process: the same commands the CLI executor sends, through
 * libnftables (edgeway_nft.node) instead of an `nft` process. One endpoint change
 * costs a fraction of a millisecond instead of the 15–40 ms of a process start
 * (README "Numbers"). The addon runs each call on a libuv worker and serializes
 * them; this class queues whole operations too, so transactions reach the kernel
 * in the order they were issued, each in one piece. `createNftExecutor` picks this path when the addon
 * loads and the `nft` CLI otherwise, and says which once in the log.
 */
import type { Logger } from '../../util/log.js';
import { nftFailure, NftError } from './errors.js';
import { CliNftExecutor, NftCommandExecutor, type InspectOptions, type NftExecutor } from './executor.js';
import { loadNftAddon, type NativeNftContext } from './native-nft.js';
import type { Transaction } from './transaction.js';
import type { TableSummary } from './compile.js';

/**
 * Transactions with more elements than this (full syncs above ~1k services) go
 * through the `nft` CLI, whose malloc gets transparent huge pages (executor.ts
 * hugePages), which the agent's own heap cannot have. Measured here, the same full
 * apply cost nft 2–3× less CPU that way (1k services: 30 vs 79 ms; 10k: 200 vs
 * 555 ms; 50k: wall 2.2 s vs 7.6 s) and the CLI was as fast in wall time from
 * ~2k services on, its process start included. Small transactions (endpoint
 * changes: a few elements) stay in-process, where they cost no process start.
 * nft's transient heap (~3 KB per element) then also lives and dies in its own
 * process instead of the agent.
 */
export const CLI_ABOVE_ELEMENTS = 3_000;

export interface InProcessOptions {
  /** Where large transactions go (see CLI_ABOVE_ELEMENTS); none: everything in-process. */
  readonly cli?: NftExecutor;
  readonly cliAboveElements?: number;
}

/** Elements a transaction adds (what nft's cost follows). */
function elementCount(tx: Transaction): number {
  let n = 0;
  for (const c of tx.commands) {
    const el = 'add' in c ? (c.add as { element?: { elem?: readonly unknown[] } }).element : undefined;
    if (el?.elem) n += el.elem.length;
  }
  return n;
}

export class InProcessNftExecutor extends NftCommandExecutor {
  private tail: Promise<unknown> = Promise.resolve();

  /** `ctx` from edgeway_nft.node (`new NftContext(netnsPath?)`). */
  constructor(private readonly ctx: NativeNftContext, private readonly opts: InProcessOptions = {}) {
    super();
  }

  /** One operation at a time, in call order: a transaction's two steps (declare, JSON) are never split by another's. */
  private serial<T>(op: () => Promise<T>): Promise<T> {
    const p = this.tail.then(op);
    this.tail = p.catch(() => undefined);
    return p;
  }

  override run(tx: Transaction): Promise<void> {
    const { cli, cliAboveElements = CLI_ABOVE_ELEMENTS } = this.opts;
    if (cli && elementCount(tx) > cliAboveElements) return this.serial(() => cli.run(tx));
    return this.serial(() => super.run(tx));
  }

  /**
   * A deep listing of a large table goes through the CLI too: nft builds the whole
   * listing in its heap, which huge pages make cheaper there (50k services: 20 s
   * vs 27 s in-process on the busy box, bench/results/nft-sync.json) and which then
   * never lands in the agent's heap.
   */
  override inspect(opts: InspectOptions = {}): Promise<TableSummary | undefined> {
    const { cli, cliAboveElements = CLI_ABOVE_ELEMENTS } = this.opts;
    if (cli && opts.deep && (opts.elements ?? 0) > cliAboveElements) return this.serial(() => cli.inspect(opts));
    return this.serial(() => super.inspect(opts));
  }

  override deleteTable(): Promise<boolean> {
    return this.serial(() => super.deleteTable());
  }

  private async call(commands: string, json: boolean, what: string): Promise<string> {
    let r;
    try {
      r = await this.ctx.run(commands, json);
    } catch (err) {
      // The call could not be made at all (closed context, setns): not nft's verdict.
      throw new NftError('ERR_NFT_UNAVAILABLE', `nft in-process ${what}: ${(err as Error).message}`, '', { cause: err });
    }
    if (!r.ok) throw nftFailure(`nft in-process ${what} failed`, r.error);
    return r.output;
  }

  protected command(args: readonly string[], json: boolean): Promise<string> {
    return this.call(args.join(' '), json, args.join(' '));
  }

  protected async script(content: string, json: boolean): Promise<void> {
    await this.call(content, json, json ? '-j -f' : '-f');
  }

  /** Release the libnftables context (calls in flight finish). */
  close(): void {
    this.ctx.close();
  }
}

export interface NftExecutorChoice {
  readonly executor: NftExecutor;
  readonly kind: 'in-process' | 'cli';
  /** Why the CLI was chosen (absent for in-process). */
  readonly reason?: string;
}

let announced = false;

/**
 * The agent's executor: in-process when edgeway_nft.node loads, else the `nft`
 * CLI (logged once per process: it is a degraded but complete mode). `netns`
 * (a name under /run/netns) points either at that namespace (tests, benchmarks).
 */
export function createNftExecutor(opts: { logger?: Logger; netns?: string; preferCli?: boolean } = {}): NftExecutorChoice {
  // (In-process, transactions above CLI_ABOVE_ELEMENTS still go through the CLI.)
  const cli = (): CliNftExecutor => new CliNftExecutor(opts.netns ? { prefix: ['nsenter', `--net=/run/netns/${opts.netns}`] } : {});
  let choice: NftExecutorChoice;
  if (opts.preferCli) {
    choice = { executor: cli(), kind: 'cli', reason: 'requested' };
  } else {
    const load = loadNftAddon();
    if ('addon' in load) {
      try {
        const ctx = new load.addon.NftContext(opts.netns ? `/run/netns/${opts.netns}` : undefined);
        choice = { executor: new InProcessNftExecutor(ctx, { cli: cli() }), kind: 'in-process' };
      } catch (err) {
        choice = { executor: cli(), kind: 'cli', reason: `edgeway_nft.node: ${(err as Error).message}` };
      }
    } else {
      choice = { executor: cli(), kind: 'cli', reason: load.reason };
    }
  }
  if (!announced && opts.logger) {
    announced = true;
    if (choice.kind === 'in-process') opts.logger.info({ nft: 'in-process' }, 'nftables updates through libnftables in-process (edgeway_nft.node)');
    else opts.logger.warn({ nft: 'cli', reason: choice.reason }, 'nftables updates through the nft CLI (a process per sync)');
  }
  return choice;
}
