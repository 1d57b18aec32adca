/**
 * Which upstreams to forward to: the configured ones, else the node's
 * /etc/resolv.conf nameservers — never ourselves. An upstream equal to one of our
 * listen addresses would send every forwarded query back to us (a loop that only
 * ends with timeouts), so it is refused and reported.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { normalizeIp } from '../catalog/ip.js';
import { parseHostPort, type Upstream } from './forwarder.js';

/** `nameserver` entries of a resolv.conf text (scope ids dropped), port 53. */
export function parseResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const host = m[1]!.replace(/%.*$/, '');
    if (isIP(host)) out.push({ host, port: 53 });
  }
  return out;
}

function sameAddress(a: Upstream, b: Upstream): boolean {
  if (a.port !== b.port) return false;
  const na = normalizeIp(a.host);
  const nb = normalizeIp(b.host);
  if (!na || !nb) return a.host === b.host;
  // A wildcard listen address (0.0.0.0 / ::) answers on every local address.
  if (nb === '0.0.0.0' || nb === '::') return isLocalish(na);
  return na === nb;
}

function isLocalish(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip === '0.0.0.0' || ip === '::';
}

export interface UpstreamChoice {
  readonly upstreams: Upstream[];
  /** Where they came from. */
  readonly from: 'config' | 'resolv.conf' | 'none';
  /** Candidates refused because they are us. */
  readonly refused: string[];
}

/** Pick upstreams. Pure apart from reading `resolvConfPath` when config gives none. */
export async function chooseUpstreams(configured: readonly string[], listen: readonly string[], resolvConfPath: string): Promise<UpstreamChoice> {
  const ours = listen.map((l) => parseHostPort(l));
  const refused: string[] = [];
  const keep = (u: Upstream): boolean => {
    if (ours.some((o) => sameAddress(u, o))) { refused.push(`${u.host}:${u.port}`); return false; }
    return true;
  };
  if (configured.length > 0) {
    return { upstreams: configured.map((c) => parseHostPort(c)).filter(keep), from: 'config', refused };
  }
  let text = '';
  try { text = await readFile(resolvConfPath, 'utf8'); } catch { /* no resolv.conf: nothing to forward to */ }
  const ups = parseResolvConf(text).filter(keep);
  return { upstreams: ups, from: ups.length || refused.length ? 'resolv.conf' : 'none', refused };
}
