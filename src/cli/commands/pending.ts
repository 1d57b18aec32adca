/**
 * Contract commands whose subsystem has not been built yet: they answer --help and
 * fail with a clear message and exit 1, never pretend to work.
 */
import { EXIT_RUNTIME, type Command } from '../command.js';

export function pendingCommand(name: string, summary: string, usage: string): Command {
  return {
    name,
    summary: `${summary} (not built yet)`,
    help: `Usage: ${usage}\n\n${summary}.\nThis build does not include it yet; it exits 1.`,
    options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' }, format: { type: 'string' }, 'state-dir': { type: 'string' } },
    async run() {
      process.stderr.write(`edgeway ${name}: not built in this version\n`);
      return EXIT_RUNTIME;
    },
  };
}
