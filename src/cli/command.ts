/**
 * The shape of a sub-command and the shared plumbing: argument parsing with
 * node:util parseArgs, exit codes per the contract (0 ok, 2 bad usage or invalid
 * config, 1 runtime failure).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from '../config/errors.js';

export const EXIT_OK = 0;
export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Full help text (usage line, options, notes). */
  readonly help: string;
  readonly options: Options;
  run(values: Record<string, string | boolean | (string | boolean)[] | undefined>, positionals: string[]): Promise<number>;
}

export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Parse and run one command; maps errors to exit codes and prints them to stderr. */
export async function runCommand(cmd: Command, argv: string[], io: { out: (s: string) => void; err: (s: string) => void }): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: { ...cmd.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    io.err(`edgeway ${cmd.name}: ${(err as Error).message}\n\n${cmd.help}\n`);
    return EXIT_USAGE;
  }
  if (parsed.values.help) {
    io.out(`${cmd.help}\n`);
    return EXIT_OK;
  }
  try {
    return await cmd.run(parsed.values, parsed.positionals);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      io.err(`edgeway ${cmd.name}: ${err.message}\n`);
      return EXIT_USAGE;
    }
    io.err(`edgeway ${cmd.name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_RUNTIME;
  }
}

/** The `--config FILE` option most commands take, and common overrides. */
export const configOptions = {
  config: { type: 'string', short: 'c' },
  'node-name': { type: 'string' },
  'state-dir': { type: 'string' },
  'log-level': { type: 'string' },
} as const satisfies Options;

export const configHelp = `  -c, --config FILE     YAML config file (required)
      --node-name NAME    override nodeName (else $NODE_NAME, the file, the hostname)
      --state-dir DIR     override stateDir
      --log-level LEVEL   trace|debug|info|warn|error|silent`;

/** Long-running commands (agent, relay): the config options plus the metrics listener. */
export const daemonOptions = { ...configOptions, 'metrics-listen': { type: 'string' } } as const satisfies Options;

export const daemonHelp = `${configHelp}
      --metrics-listen ADDR   override metrics.listen (host:port, '' disables)`;

/**
 * Resolves with the signal name at the first SIGINT/SIGTERM. Call it first thing in
 * a daemon: a stop during start-up then waits for what started so far and releases
 * it, instead of the default action killing the process mid-way.
 */
export function stopSignal(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

export function requireString(values: Record<string, unknown>, key: string): string {
  const v = values[key];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${key} is required`);
  return v;
}

export function optString(values: Record<string, unknown>, key: string): string | undefined {
  const v = values[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}
