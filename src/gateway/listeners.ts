/**
 * Listening sockets: one per (node address × gateway port), bound to the address
 * itself (never the wildcard), so `gateway.addresses` decides which NICs take
 * outside traffic (EdgeMesh's multi-NIC). Addresses are re-read periodically; a new
 * address gets listeners, a vanished one loses them, and connections in progress
 * are never cut by a change. Bind failures are logged and retried on the next pass.
 */
import net from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { cidrContains } from '../catalog/ip.js';
import type { Logger } from '../util/log.js';

const CIDR = /^([0-9.]+\/\d{1,2}|[0-9a-fA-F:]+\/\d{1,3})$/;

/**
 * Addresses chosen by `wanted` (interface names or CIDRs) from the node's
 * interfaces; empty = every non-loopback address. IPv6 link-local addresses are
 * skipped (they need a scope to bind and are not reachable from outside the link). Pure.
 */
export function selectAddresses(ifaces: Readonly<Record<string, readonly NetworkInterfaceInfo[] | undefined>>, wanted: readonly string[]): string[] {
  const out = new Set<string>();
  for (const [name, addrs] of Object.entries(ifaces)) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80')) continue;
      const pick = wanted.length === 0
        ? !a.internal
        : wanted.some((w) => (CIDR.test(w) ? cidrContains(w, a.address) : w === name));
      if (pick) out.add(a.address);
    }
  }
  return [...out].sort();
}

export type Accept = (port: number, socket: net.Socket) => void;

export class ListenerSet {
  private readonly servers = new Map<string, net.Server>();
  private ports: readonly number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly failedOnce = new Set<string>();

  constructor(
    private readonly wanted: readonly string[],
    private readonly pollMs: number,
    private readonly accept: Accept,
    private readonly log: Logger,
    private readonly onCount: (n: number) => void,
    private readonly readInterfaces: () => Record<string, NetworkInterfaceInfo[] | undefined> = networkInterfaces,
  ) {}

  /** Listen on these ports on every selected address (idempotent); resolves when the binds of this pass are done. */
  async setPorts(ports: readonly number[]): Promise<void> {
    this.ports = [...ports].sort((a, b) => a - b);
    await this.sync();
    if (!this.timer && this.pollMs > 0) this.schedule();
  }

  /** Addresses listened on now (for logs and tests). */
  get bound(): string[] {
    return [...this.servers.keys()].sort();
  }

  private schedule(): void {
    this.timer = setTimeout(() => { void this.sync().finally(() => { if (this.timer) this.schedule(); }); }, this.pollMs);
    this.timer.unref();
  }

  private async sync(): Promise<void> {
    const addrs = selectAddresses(this.readInterfaces(), this.wanted);
    const want = new Set<string>();
    for (const a of addrs) for (const p of this.ports) want.add(key(a, p));
    for (const [k, s] of this.servers) {
      if (want.has(k)) continue;
      s.close();
      this.servers.delete(k);
      this.log.info({ listen: k }, 'gateway listener closed');
    }
    const binds: Promise<void>[] = [];
    for (const k of want) if (!this.servers.has(k)) binds.push(this.listen(k));
    await Promise.all(binds);
    this.onCount(this.servers.size);
  }

  private listen(k: string): Promise<void> {
    const [host, port] = split(k);
    return new Promise((resolve) => {
      const s = net.createServer({ noDelay: true, allowHalfOpen: true }, (sock) => this.accept(port, sock));
      s.on('error', (err: NodeJS.ErrnoException) => {
        // EMFILE on accept and similar: counted by the process, never fatal.
        if (this.servers.get(k) === s) { this.log.warn({ listen: k, err: err.code ?? err.message }, 'gateway listener error'); return; }
        if (!this.failedOnce.has(k)) this.log.error({ listen: k, err: err.code ?? err.message }, 'gateway cannot listen; retrying on the next address pass');
        this.failedOnce.add(k);
        resolve();
      });
      s.listen({ host, port }, () => {
        this.servers.set(k, s);
        this.failedOnce.delete(k);
        this.log.info({ listen: k }, 'gateway listening');
        resolve();
      });
    });
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const s of this.servers.values()) s.close();
    this.servers.clear();
    this.onCount(0);
  }
}

function key(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

function split(k: string): [string, number] {
  const i = k.lastIndexOf(':');
  const h = k.slice(0, i);
  return [h.startsWith('[') ? h.slice(1, -1) : h, Number(k.slice(i + 1))];
}
