/**
 * Peek at a TLS ClientHello (RFC 8446 §4.1.2) for the server name (SNI, RFC 6066)
 * and ALPN protocols, without consuming it: the gateway decides per connection
 * whether to pass the bytes through untouched (TLS passthrough by SNI) or to
 * terminate. Pure; bounds-checked at every read; only the first record is read
 * (a ClientHello split over several records is reported as `bad`).
 */

export type HelloPeek =
  | { readonly status: 'more' }
  | { readonly status: 'bad'; readonly reason: string }
  | { readonly status: 'ok'; readonly sni?: string; readonly alpn: readonly string[] };

/** Largest TLS record plus its header. */
export const MAX_HELLO_BYTES = 16_384 + 5;

export function peekClientHello(buf: Buffer): HelloPeek {
  if (buf.length < 5) return { status: 'more' };
  if (buf[0] !== 0x16) return { status: 'bad', reason: 'not a TLS handshake record' };
  const recLen = buf.readUInt16BE(3);
  if (recLen > 16_384) return { status: 'bad', reason: 'record too long' };
  if (buf.length < 5 + recLen) return { status: 'more' };
  const rec = buf.subarray(5, 5 + recLen);
  let p = 0;
  const need = (n: number): boolean => p + n <= rec.length;
  if (!need(4) || rec[0] !== 0x01) return { status: 'bad', reason: 'not a ClientHello' };
  const hsLen = (rec[1]! << 16) | (rec[2]! << 8) | rec[3]!;
  p = 4;
  if (hsLen > rec.length - 4) return { status: 'bad', reason: 'ClientHello split over several records' };
  p += 2 + 32; // legacy_version, random
  if (!need(1)) return { status: 'bad', reason: 'truncated' };
  p += 1 + rec[p]!; // session id
  if (!need(2)) return { status: 'bad', reason: 'truncated' };
  p += 2 + rec.readUInt16BE(p); // cipher suites
  if (!need(1)) return { status: 'bad', reason: 'truncated' };
  p += 1 + rec[p]!; // compression methods
  if (p === 4 + hsLen) return { status: 'ok', alpn: [] }; // no extensions
  if (!need(2)) return { status: 'bad', reason: 'truncated' };
  const extEnd = p + 2 + rec.readUInt16BE(p);
  p += 2;
  if (extEnd > rec.length) return { status: 'bad', reason: 'truncated extensions' };
  let sni: string | undefined;
  const alpn: string[] = [];
  while (p + 4 <= extEnd) {
    const type = rec.readUInt16BE(p);
    const len = rec.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) return { status: 'bad', reason: 'truncated extension' };
    const ext = rec.subarray(p, p + len);
    p += len;
    if (type === 0 && ext.length >= 2) {
      let q = 2;
      const end = Math.min(ext.length, 2 + ext.readUInt16BE(0));
      while (q + 3 <= end) {
        const nt = ext[q]!;
        const nl = ext.readUInt16BE(q + 1);
        q += 3;
        if (q + nl > end) return { status: 'bad', reason: 'truncated server_name' };
        if (nt === 0) sni = ext.subarray(q, q + nl).toString('ascii').toLowerCase();
        q += nl;
      }
    } else if (type === 16 && ext.length >= 2) {
      let q = 2;
      const end = Math.min(ext.length, 2 + ext.readUInt16BE(0));
      while (q + 1 <= end) {
        const l = ext[q]!;
        q += 1;
        if (q + l > end) return { status: 'bad', reason: 'truncated ALPN' };
        alpn.push(ext.subarray(q, q + l).toString('ascii'));
        q += l;
      }
    }
  }
  if (sni !== undefined && !/^[a-z0-9.*-]{1,253}$/.test(sni)) return { status: 'bad', reason: 'server_name is not a host name' };
  return sni === undefined ? { status: 'ok', alpn } : { status: 'ok', sni, alpn };
}
