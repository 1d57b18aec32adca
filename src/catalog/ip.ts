/** IP helpers shared by the catalog, plan and DNS. Pure. */
import { isIP } from 'node:net';

/** Canonical text form of an IP (lower-case, compressed IPv6), or undefined when unparsable. */
export function normalizeIp(ip: string): string | undefined {
  const family = isIP(ip);
  if (family === 4) {
    // Reject leading zeros ("010.0.0.1" is octal to some parsers).
    return ip.split('.').some((o) => o.length > 1 && o.startsWith('0')) ? undefined : ip;
  }
  if (family === 6) return expandIpv6(ip) ? compressIpv6(expandIpv6(ip)!) : undefined;
  return undefined;
}

export function ipFamily(ip: string): 4 | 6 | undefined {
  const f = isIP(ip);
  return f === 4 ? 4 : f === 6 ? 6 : undefined;
}

/** Eight 16-bit groups of an IPv6 address (an embedded IPv4 tail is converted). */
export function expandIpv6(ip: string): number[] | undefined {
  let text = ip.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    text = text.slice(0, v4.index) + ((o[0]! << 8) | o[1]!).toString(16) + ':' + ((o[2]! << 8) | o[3]!).toString(16);
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = text.includes('::') ? 8 - h.length - t.length : 0;
  const groups = [...h, ...Array<string>(Math.max(0, fill)).fill('0'), ...t].map((g) => parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

function compressIpv6(groups: number[]): string {
  // RFC 5952: compress the longest run (>= 2) of zero groups, first one on ties.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Whether `ip` lies inside `cidr` (same family only). */
export function cidrContains(cidr: string, ip: string): boolean {
  const [base, lenText] = cidr.split('/') as [string, string | undefined];
  const len = Number(lenText);
  const fb = ipFamily(base);
  if (fb === undefined || fb !== ipFamily(ip)) return false;
  const a = toBytes(base);
  const b = toBytes(ip);
  if (!Number.isInteger(len) || len < 0 || len > a.length * 8) return false;
  for (let bit = 0; bit < len; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    if ((a[byte]! & mask) !== (b[byte]! & mask)) return false;
  }
  return true;
}

/** Network-order bytes of an IPv4 (4) or IPv6 (16) address. */
export function toBytes(ip: string): number[] {
  if (ipFamily(ip) === 4) return ip.split('.').map(Number);
  const g = expandIpv6(ip) ?? [];
  return g.flatMap((x) => [x >> 8, x & 0xff]);
}
