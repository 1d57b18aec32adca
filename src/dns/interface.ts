/**
 * The dummy interface that carries the node DNS address (EdgeMesh's
 * 169.254.96.16 by default), so pods can reach it and nothing outside the node
 * can: a /32 on a dummy device is local only. Created on start, removed on stop.
 *
 * Only listen addresses that no interface holds yet go on the dummy: loopback
 * and already-assigned addresses need nothing. Idempotent: an interface left by a
 * crashed agent is reused (and removed on stop).
 */
import { execFile } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';
import { normalizeIp } from '../catalog/ip.js';
import { DnsInterfaceError } from './errors.js';
import { parseHostPort } from './forwarder.js';

const pexec = promisify(execFile);

export type Exec = (cmd: string, args: readonly string[]) => Promise<void>;
const defaultExec: Exec = async (cmd, args) => { await pexec(cmd, [...args], { timeout: 10_000 }); };

/** Listen addresses that need the dummy interface (not loopback, not wildcard, not on any interface). */
export function addressesNeedingInterface(listen: readonly string[], present: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const l of listen) {
    const ip = normalizeIp(parseHostPort(l).host);
    if (!ip || ip.startsWith('127.') || ip === '::1' || ip === '0.0.0.0' || ip === '::' || present.has(ip)) continue;
    if (!out.includes(ip)) out.push(ip);
  }
  return out;
}

function presentAddresses(): Set<string> {
  const s = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) { const n = normalizeIp(a.address); if (n) s.add(n); }
  return s;
}

function ownAddresses(name: string): Set<string> {
  return new Set((networkInterfaces()[name] ?? []).map((a) => normalizeIp(a.address) ?? ''));
}

export class DnsInterface {
  private owned = false;
  /** Device type used: dummy, or bridge where the kernel lacks dummy. */
  kind: 'dummy' | 'bridge' = 'dummy';

  constructor(private readonly name: string, private readonly listen: readonly string[], private readonly exec: Exec = defaultExec) {}

  /** Create the interface and add the addresses that need it. Returns the addresses added. Idempotent. */
  async ensure(): Promise<string[]> {
    const need = addressesNeedingInterface(this.listen, presentAddresses());
    if (need.length === 0) {
      // Left by a previous agent (crash) with our addresses on it: adopt it, so stop removes it.
      if (this.listen.some((l) => ownAddresses(this.name).has(normalizeIp(parseHostPort(l).host) ?? ''))) this.owned = true;
      return [];
    }
    try {
      const exists = await this.exec('ip', ['link', 'show', 'dev', this.name]).then(() => true, () => false);
      // Already there (left by a previous run): reuse it.
      if (!exists) {
        await this.exec('ip', ['link', 'add', this.name, 'type', 'dummy']).catch(async (err: unknown) => {
          // Kernels built without CONFIG_DUMMY ("Unknown device type"): a bridge
          // without ports is just as local — its addresses get local routes and
          // nothing can reach it from outside the node.
          if (!/unknown device type/i.test(String((err as Error).message ?? err))) throw err;
          await this.exec('ip', ['link', 'add', this.name, 'type', 'bridge']);
          this.kind = 'bridge';
        });
      }
      this.owned = true;
      for (const ip of need) {
        await this.exec('ip', ['addr', 'replace', `${ip}/${ip.includes(':') ? 128 : 32}`, 'dev', this.name, ...(ip.includes(':') ? ['nodad'] : [])]);
      }
      await this.exec('ip', ['link', 'set', this.name, 'up']);
      return need;
    } catch (err) {
      throw new DnsInterfaceError(`cannot set up ${this.name} with ${need.join(', ')}: ${String((err as Error).message ?? err)}`, err);
    }
  }

  /** Remove the interface if this process created or adopted it. Idempotent. */
  async remove(): Promise<void> {
    if (!this.owned) return;
    this.owned = false;
    try {
      await this.exec('ip', ['link', 'del', this.name]);
    } catch (err) {
      throw new DnsInterfaceError(`cannot remove ${this.name}: ${String((err as Error).message ?? err)}`, err);
    }
  }
}
