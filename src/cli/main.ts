/** `edgeway` CLI entry: dispatches to sub-commands. */
import { runCommand, EXIT_OK, EXIT_USAGE } from './command.js';
import { commands, type CommandEntry } from './commands/index.js';

const io = { out: (s: string) => void process.stdout.write(s), err: (s: string) => void process.stderr.write(s) };

function usage(list: readonly CommandEntry[]): string {
  const width = Math.max(...list.map((c) => c.name.length));
  return [
    'edgeway — edge service mesh with a kernel data plane',
    '',
    'Usage: edgeway <command> [options]   (edgeway <command> --help for details)',
    '',
    'Commands:',
    ...list.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Exit codes: 0 success, 2 bad usage or invalid config, 1 runtime failure.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.out(`${usage(commands)}\n`);
    return name ? EXIT_OK : EXIT_USAGE;
  }
  if (name === '--version' || name === 'version') {
    const { createRequire } = await import('node:module');
    const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
    io.out(`${pkg.version}\n`);
    return EXIT_OK;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    io.err(`edgeway: unknown command "${name}"\n\n${usage(commands)}\n`);
    return EXIT_USAGE;
  }
  return runCommand(await cmd.load(), rest, io);
}
