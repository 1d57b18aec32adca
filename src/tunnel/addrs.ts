/** Address helpers (pure). */
import { isIP } from 'node:net';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';

/**
 * A relay or peer address from config: a multiaddr (`/ip4/…/tcp/…[/p2p/ID]`),
 * `host:port`, `[v6]:port` or a bare host (then `defaultPort`).
 */
export function toMultiaddr(addr: string, defaultPort: number, peerId?: string): Multiaddr {
  let ma: string;
  if (addr.startsWith('/')) ma = addr;
  else {
    let host = addr;
    let port = defaultPort;
    const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(addr);
    if (v6) { host = v6[1]!; if (v6[2]) port = Number(v6[2]); }
    else if (isIP(addr) !== 6) {
      const i = addr.lastIndexOf(':');
      if (i > 0) { host = addr.slice(0, i); port = Number(addr.slice(i + 1)); }
    }
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`bad port in address ${addr}`);
    const fam = isIP(host);
    ma = `/${fam === 4 ? 'ip4' : fam === 6 ? 'ip6' : 'dns'}/${host}/tcp/${port}`;
  }
  if (peerId && !ma.includes('/p2p/')) ma += `/p2p/${peerId}`;
  return multiaddr(ma);
}

export function isCircuit(ma: Multiaddr | string): boolean {
  return ma.toString().includes('/p2p-circuit');
}

/** Loopback and unspecified addresses are never dial candidates for another node. */
export function isUsableRemote(ma: Multiaddr | string): boolean {
  const s = ma.toString();
  return !isCircuit(s) && !/^\/ip4\/(127\.|0\.0\.0\.0)/.test(s) && !/^\/ip6\/(::1|::)\//.test(s);
}

/** Strip a trailing `/p2p/ID` (and anything after it). */
export function withoutPeer(ma: Multiaddr | string): string {
  const s = ma.toString();
  const i = s.indexOf('/p2p/');
  return i >= 0 ? s.slice(0, i) : s;
}
