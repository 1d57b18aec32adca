/**
 * SOCKS5 as an agent part (off by default). Passwords are read once at start from
 * each user's passwordFile (first line); a missing or empty file stops the agent
 * with a clear error rather than running without that user's password.
 */
import { readFile } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { Snapshot } from '../catalog/types.js';
import type { Logger } from '../util/log.js';
import type { RemoteDialer } from '../proxy/remote-dialer.js';
import { Socks5Server } from './server.js';

export interface Socks5PartContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly store: { readonly snapshot: Snapshot };
  readonly dialer: () => RemoteDialer | undefined;
}

export async function createSocks5Part(ctx: Socks5PartContext): Promise<{ name: string; start(): Promise<void>; stop(): Promise<void> } | undefined> {
  const c = ctx.config.socks5;
  if (!c.enabled) return undefined;
  const users = new Map<string, string>();
  for (const u of c.users) {
    const pw = (await readFile(u.passwordFile, 'utf8')).split('\n')[0]!.trim();
    if (!pw) throw new Error(`socks5.users[${u.name}].passwordFile ${u.passwordFile} is empty`);
    users.set(u.name, pw);
  }
  const log = ctx.logger.child({ part: 'socks5' });
  const server = new Socks5Server({
    nodeName: ctx.config.nodeName, users, allowPorts: c.allowPorts, snapshot: () => ctx.store.snapshot, dialer: ctx.dialer, registry: ctx.registry, logger: log,
  });
  return {
    name: 'socks5',
    async start() {
      const i = c.listen.lastIndexOf(':');
      const host = c.listen.slice(0, i).replace(/^\[|\]$/g, '');
      const a = await server.listen(host, Number(c.listen.slice(i + 1)));
      log.info({ listen: `${a.address}:${a.port}`, users: users.size, allowPorts: c.allowPorts }, 'socks5 listening');
    },
    stop: () => server.close(),
  };
}
