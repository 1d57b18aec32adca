/**
 * DNS wire format on the hot path, without building objects: parse the header,
 * the single question and the EDNS0 OPT record of a query, and assemble a response
 * from the query's own question bytes plus a prebuilt body. dns-packet is used to
 * *build* bodies once (zone, cache); per-query work is a few buffer copies.
 *
 * Names are keyed by their wire form lower-cased as a latin1 string
 * ("\x03web\x07default\x03svc…\x00"): unambiguous (a dot inside a label cannot
 * collide with a label boundary) and as cheap as a string slice.
 */

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
export const CLASS_IN = 1;
export const CLASS_ANY = 255;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** Extended rcode 16 (upper 8 bits go in the OPT record). */
export const RCODE_BADVERS = 16;

const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
export function rcodeName(rcode: number): string {
  return rcode === RCODE_BADVERS ? 'BADVERS' : (RCODE_NAMES[rcode] ?? `RCODE${rcode}`);
}

const TYPE_NAMES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 65: 'HTTPS', 64: 'SVCB', 255: 'ANY' };
/** Bounded label set for metrics: well-known types by name, everything else "other". */
export function typeLabel(qtype: number): string {
  return TYPE_NAMES[qtype] ?? 'other';
}

/** Largest UDP answer we send to an EDNS client (DNS flag day 2020: avoids fragmentation). */
export const EDNS_UDP_SIZE = 1232;
/** Classic DNS UDP limit for clients without EDNS0. */
export const PLAIN_UDP_SIZE = 512;
const HEADER = 12;
const MAX_NAME = 255;

export interface Edns {
  readonly udpSize: number;
  readonly version: number;
  readonly dnssecOk: boolean;
}

export interface Query {
  readonly id: number;
  /** Header flags word as received. */
  readonly flags: number;
  /** Lower-cased wire name (latin1), the index key. */
  readonly key: string;
  readonly qtype: number;
  readonly qclass: number;
  /** Offset just past QTYPE/QCLASS: bytes [12, questionEnd) are echoed verbatim. */
  readonly questionEnd: number;
  readonly edns: Edns | undefined;
}

export type DropReason = 'short' | 'response';
export type ParseResult =
  | { readonly ok: true; readonly query: Query }
  /** Not even a query header: count and drop silently. */
  | { readonly ok: false; readonly drop: DropReason }
  /** The header parsed but the rest did not (or is unsupported): answer with this rcode. */
  | { readonly ok: false; readonly drop?: undefined; readonly rcode: number; readonly reason: string; readonly edns?: Edns; readonly questionEnd?: number };

/** Skip a (possibly compressed) name starting at `off`; returns the offset after it, or -1. */
export function skipName(buf: Buffer, off: number): number {
  let hops = 0;
  for (;;) {
    if (off >= buf.length) return -1;
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    if ((len & 0xc0) !== 0) return -1;
    off += 1 + len;
    if (++hops > 128) return -1;
  }
}

/** Parse a query. Never throws: every malformed input maps to a drop or an error rcode. */
export function parseQuery(buf: Buffer): ParseResult {
  if (buf.length < HEADER) return { ok: false, drop: 'short' };
  const flags = buf.readUInt16BE(2);
  if (flags & 0x8000) return { ok: false, drop: 'response' };
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return { ok: false, rcode: RCODE.NOTIMP, reason: 'opcode' };
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  if (qd !== 1) return { ok: false, rcode: RCODE.FORMERR, reason: 'qdcount' };
  // Question name: no compression pointers (nothing precedes it to point at).
  let off = HEADER;
  for (;;) {
    if (off >= buf.length) return { ok: false, rcode: RCODE.FORMERR, reason: 'name' };
    const len = buf[off]!;
    if (len === 0) { off++; break; }
    if (len > 63) return { ok: false, rcode: RCODE.FORMERR, reason: 'name' };
    off += 1 + len;
  }
  if (off - HEADER > MAX_NAME) return { ok: false, rcode: RCODE.FORMERR, reason: 'name' };
  if (off + 4 > buf.length) return { ok: false, rcode: RCODE.FORMERR, reason: 'question' };
  const key = buf.toString('latin1', HEADER, off).toLowerCase();
  const qtype = buf.readUInt16BE(off);
  const qclass = buf.readUInt16BE(off + 2);
  const questionEnd = off + 4;
  let edns: Edns | undefined;
  if (an !== 0 || ns !== 0 || ar !== 0) {
    // Walk the other sections only to find the OPT record.
    off = questionEnd;
    for (let i = 0; i < an + ns + ar; i++) {
      const start = off;
      off = skipName(buf, off);
      if (off < 0 || off + 10 > buf.length) return { ok: false, rcode: RCODE.FORMERR, reason: 'record', questionEnd };
      const type = buf.readUInt16BE(off);
      const rdlen = buf.readUInt16BE(off + 8);
      if (off + 10 + rdlen > buf.length) return { ok: false, rcode: RCODE.FORMERR, reason: 'record', questionEnd };
      if (type === TYPE.OPT) {
        if (i < an + ns || edns || buf[start] !== 0) return { ok: false, rcode: RCODE.FORMERR, reason: 'opt', questionEnd };
        edns = { udpSize: buf.readUInt16BE(off + 2), version: buf[off + 5]!, dnssecOk: (buf.readUInt16BE(off + 6) & 0x8000) !== 0 };
      }
      off += 10 + rdlen;
    }
    if (edns && edns.version !== 0) return { ok: false, rcode: RCODE_BADVERS, reason: 'badvers', edns, questionEnd };
  }
  return { ok: true, query: { id: buf.readUInt16BE(0), flags, key, qtype, qclass, questionEnd, edns } };
}

/** A prebuilt response body: the resource records after the question. */
export interface Body {
  readonly an: number;
  readonly ns: number;
  readonly ar: number;
  readonly bytes: Buffer;
}

export const EMPTY_BODY: Body = { an: 0, ns: 0, ar: 0, bytes: Buffer.alloc(0) };

const OPT_LEN = 11;

/**
 * Assemble a response: the query's header (ID, RD, CD kept), its question bytes
 * exactly as asked (case included), then `body`, then our OPT record when the
 * client sent one. Over `limit` bytes the answer is cut to header + question
 * with TC set, so the client retries over TCP.
 */
export function respond(
  q: Buffer,
  questionEnd: number,
  rcode: number,
  aa: boolean,
  body: Body,
  edns: Edns | undefined,
  limit: number,
): Buffer {
  const opt = edns !== undefined;
  let size = questionEnd + body.bytes.length + (opt ? OPT_LEN : 0);
  const tc = size > limit;
  if (tc) size = questionEnd + (opt ? OPT_LEN : 0);
  const out = Buffer.allocUnsafe(size);
  q.copy(out, 0, 0, questionEnd);
  const qflags = q.readUInt16BE(2);
  // QR | opcode 0 | AA | TC | RD (copied) | RA | CD (copied) | rcode (low 4 bits)
  out.writeUInt16BE(0x8000 | (aa ? 0x0400 : 0) | (tc ? 0x0200 : 0) | (qflags & 0x0100) | 0x0080 | (qflags & 0x0010) | (rcode & 0xf), 2);
  out.writeUInt16BE(questionEnd > HEADER ? 1 : 0, 4);
  let off = questionEnd;
  if (tc) {
    out.writeUInt32BE(0, 6);
    out.writeUInt16BE(opt ? 1 : 0, 10);
  } else {
    out.writeUInt16BE(body.an, 6);
    out.writeUInt16BE(body.ns, 8);
    out.writeUInt16BE(body.ar + (opt ? 1 : 0), 10);
    body.bytes.copy(out, off);
    off += body.bytes.length;
  }
  if (opt) writeOpt(out, off, rcode >> 4, edns.dnssecOk);
  return out;
}

function writeOpt(out: Buffer, off: number, extRcode: number, dnssecOk: boolean): void {
  out[off] = 0;
  out.writeUInt16BE(TYPE.OPT, off + 1);
  out.writeUInt16BE(EDNS_UDP_SIZE, off + 3);
  out[off + 5] = extRcode & 0xff;
  out[off + 6] = 0; // version
  out.writeUInt16BE(dnssecOk ? 0x8000 : 0, off + 7);
  out.writeUInt16BE(0, off + 9);
}

/** Error response to a query whose header parsed: question echoed when it parsed, else none. */
export function errorResponse(q: Buffer, rcode: number, questionEnd: number | undefined, edns: Edns | undefined): Buffer {
  // Without a parsed question, echo only the header (QDCOUNT 0).
  const end = questionEnd ?? HEADER;
  return respond(q, end, rcode, false, EMPTY_BODY, edns, 65535);
}

/** The UDP size limit for a response to this query. */
export function udpLimit(edns: Edns | undefined): number {
  if (!edns) return PLAIN_UDP_SIZE;
  return Math.max(PLAIN_UDP_SIZE, Math.min(edns.udpSize, 4096));
}

/** Wire form of a dotted name ("web.default.svc.cluster.local", trailing dot optional), as a key. */
export function nameKey(name: string): string {
  const labels = name.replace(/\.$/, '').split('.').filter((l) => l.length > 0);
  let out = '';
  for (const l of labels) out += String.fromCharCode(l.length) + l.toLowerCase();
  return out + '\0';
}

/** Dotted name of a wire key (for logs and the slow path). */
export function keyName(key: string): string {
  const labels: string[] = [];
  let i = 0;
  while (i < key.length) {
    const len = key.charCodeAt(i);
    if (len === 0) break;
    labels.push(key.slice(i + 1, i + 1 + len));
    i += 1 + len;
  }
  return labels.join('.') + '.';
}

/** True when `key` is `suffix` or a name below it, on label boundaries. */
export function keyUnder(key: string, suffix: string): boolean {
  if (key === suffix) return true;
  if (!key.endsWith(suffix)) return false;
  const cut = key.length - suffix.length;
  let i = 0;
  while (i < cut) i += 1 + key.charCodeAt(i);
  return i === cut;
}
