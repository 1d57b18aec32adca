/**
 * Structured JSON-lines logging (pino) to stderr; stdout is kept for command output
 * (`edgeway catalog --json`, `render`). Levels are honoured; nothing per packet or
 * per query is logged at info.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = 'info', destination: NodeJS.WritableStream | number = 2): Logger {
  const dest = typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination;
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
