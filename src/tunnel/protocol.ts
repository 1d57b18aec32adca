/**
 * Wire format of `/edgeway/tunnel/1.0.0` (pure; no I/O).
 *
 * Request (dialer → far agent), once per stream:
 *   u16 length of the rest, then
 *   u8 version (1) · u8 proto (0 tcp, 1 udp) · u16 service port · u16 target port ·
 *   u8 family (4|6) · 4|16 bytes target ip · u8 len + node name (utf8) ·
 *   u16 len + service key `namespace/name` (utf8)
 * Reply (far agent → dialer): u8 status · u8 len + reason (utf8, ≤ 255 bytes).
 * Then raw bytes with half-close (tcp), or datagrams each framed as u16 length +
 * payload (udp), so datagram boundaries survive the byte stream.
 */
import { isIP } from 'node:net';
import { ProtocolError } from './errors.js';

export const TUNNEL_PROTOCOL = '/edgeway/tunnel/1.0.0';
export const TUNNEL_VERSION = 1;
/** A header larger than this is refused before it is buffered (node name + service key bound it). */
export const MAX_HEADER_BYTES = 1024;
/** Largest UDP payload (IPv4 65535 − 20 − 8). */
export const MAX_DATAGRAM = 65_507;
/**
 * Datagrams queued on a stream before new ones are dropped (counted). A short
 * muxer backpressure blip must not drop UDP (it did at `writableNeedsDrain`:
 * 18 % of a 50-session burst); a stalled peer must not grow memory without bound.
 */
export const UDP_MAX_QUEUED_BYTES = 512 * 1024;
/** SO_RCVBUF of tunnel UDP sockets (capped by net.core.rmem_max). */
export const UDP_RECV_BUFFER_BYTES = 4 * 1024 * 1024;

export type TunnelProto = 'tcp' | 'udp';

export interface TunnelRequest {
  readonly version: number;
  readonly proto: TunnelProto;
  readonly nodeName: string;
  readonly serviceKey: string;
  readonly servicePort: number;
  readonly ip: string;
  readonly port: number;
}

/** Reply codes. Stable: they appear in metrics as refusal reasons. */
export const Status = {
  ok: 0,
  /** Remote peer is not a cluster node nor a configured relay. */
  unauthorised: 1,
  /** Target is not an endpoint the far catalog places on the far node. */
  notLocal: 2,
  /** Header malformed or unsupported version. */
  badRequest: 3,
  /** Backend refused or timed out. */
  connectFailed: 4,
  /** The far agent is shutting down or over its flow limit. */
  unavailable: 5,
} as const;
/** Status names as they appear in errors and metrics (same words as refusal reasons). */
export type StatusName = 'ok' | 'unauthorised' | 'not-local' | 'bad-request' | 'connect-failed' | 'unavailable';
const statusNames: Record<number, StatusName> = {
  [Status.ok]: 'ok', [Status.unauthorised]: 'unauthorised', [Status.notLocal]: 'not-local',
  [Status.badRequest]: 'bad-request', [Status.connectFailed]: 'connect-failed', [Status.unavailable]: 'unavailable',
};

export function statusName(code: number): StatusName | 'unknown' {
  return statusNames[code] ?? 'unknown';
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

function ipBytes(ip: string): Uint8Array {
  const fam = isIP(ip);
  if (fam === 4) return Uint8Array.from(ip.split('.').map(Number));
  if (fam === 6) {
    // Expand '::' and embedded v4, then pack 8 groups.
    let s = ip;
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
    if (v4) {
      const b = v4[1]!.split('.').map(Number) as [number, number, number, number];
      s = s.slice(0, -v4[1]!.length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
    }
    const [head, tail] = s.split('::') as [string, string | undefined];
    const h = head ? head.split(':') : [];
    const t = tail !== undefined ? (tail ? tail.split(':') : []) : [];
    const groups = tail !== undefined ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
    const out = new Uint8Array(16);
    groups.forEach((g, i) => { const n = parseInt(g, 16); out[i * 2] = n >> 8; out[i * 2 + 1] = n & 0xff; });
    return out;
  }
  throw new ProtocolError(`not an IP address: ${ip}`);
}

function ipString(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((b[i] ?? 0) << 8) | (b[i + 1] ?? 0)).toString(16));
  // Canonical compression of the longest zero run (RFC 5952).
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Encode a request header (with its u16 length prefix). */
export function encodeRequest(r: Omit<TunnelRequest, 'version'>): Uint8Array {
  const ip = ipBytes(r.ip);
  const node = enc.encode(r.nodeName);
  const svc = enc.encode(r.serviceKey);
  if (node.length > 255) throw new ProtocolError('node name longer than 255 bytes');
  const bodyLen = 1 + 1 + 2 + 2 + 1 + ip.length + 1 + node.length + 2 + svc.length;
  if (bodyLen + 2 > MAX_HEADER_BYTES) throw new ProtocolError('tunnel header too large');
  const out = new Uint8Array(2 + bodyLen);
  const v = new DataView(out.buffer);
  let o = 0;
  v.setUint16(o, bodyLen); o += 2;
  out[o++] = TUNNEL_VERSION;
  out[o++] = r.proto === 'udp' ? 1 : 0;
  v.setUint16(o, r.servicePort); o += 2;
  v.setUint16(o, r.port); o += 2;
  out[o++] = ip.length === 4 ? 4 : 6;
  out.set(ip, o); o += ip.length;
  out[o++] = node.length;
  out.set(node, o); o += node.length;
  v.setUint16(o, svc.length); o += 2;
  out.set(svc, o);
  return out;
}

/**
 * Try to decode a request from the front of `buf`. Returns undefined when more
 * bytes are needed, else the request and the number of bytes it used.
 * Throws ProtocolError on malformed input.
 */
export function decodeRequest(buf: Uint8Array): { request: TunnelRequest; used: number } | undefined {
  if (buf.length < 2) return undefined;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const bodyLen = v.getUint16(0);
  if (bodyLen + 2 > MAX_HEADER_BYTES) throw new ProtocolError(`header length ${bodyLen} over ${MAX_HEADER_BYTES}`);
  if (buf.length < 2 + bodyLen) return undefined;
  const end = 2 + bodyLen;
  let o = 2;
  const need = (n: number): void => { if (o + n > end) throw new ProtocolError('header truncated'); };
  need(7);
  const version = buf[o++]!;
  if (version !== TUNNEL_VERSION) throw new ProtocolError(`unsupported version ${version}`);
  const protoByte = buf[o++]!;
  if (protoByte > 1) throw new ProtocolError(`unknown proto ${protoByte}`);
  const servicePort = v.getUint16(o); o += 2;
  const port = v.getUint16(o); o += 2;
  const fam = buf[o++]!;
  if (fam !== 4 && fam !== 6) throw new ProtocolError(`unknown family ${fam}`);
  const ipLen = fam === 4 ? 4 : 16;
  need(ipLen + 1);
  const ip = ipString(buf.subarray(o, o + ipLen)); o += ipLen;
  const nodeLen = buf[o++]!;
  need(nodeLen + 2);
  let nodeName: string, serviceKey: string;
  try {
    nodeName = dec.decode(buf.subarray(o, o + nodeLen)); o += nodeLen;
    const svcLen = v.getUint16(o); o += 2;
    need(svcLen);
    serviceKey = dec.decode(buf.subarray(o, o + svcLen)); o += svcLen;
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    throw new ProtocolError('header text is not UTF-8');
  }
  if (o !== end) throw new ProtocolError('trailing bytes in header');
  if (port === 0 || servicePort === 0) throw new ProtocolError('port 0');
  return { request: { version, proto: protoByte === 1 ? 'udp' : 'tcp', servicePort, port, ip, nodeName, serviceKey }, used: end };
}

export function encodeStatus(code: number, reason = ''): Uint8Array {
  let r = enc.encode(reason);
  if (r.length > 255) r = r.subarray(0, 255);
  const out = new Uint8Array(2 + r.length);
  out[0] = code;
  out[1] = r.length;
  out.set(r, 2);
  return out;
}

/** Decode a status reply from the front of `buf`; undefined when incomplete. */
export function decodeStatus(buf: Uint8Array): { code: number; reason: string; used: number } | undefined {
  if (buf.length < 2) return undefined;
  const len = buf[1]!;
  if (buf.length < 2 + len) return undefined;
  return { code: buf[0]!, reason: new TextDecoder().decode(buf.subarray(2, 2 + len)), used: 2 + len };
}

/** Frame one datagram (u16 length + payload). */
export function frameDatagram(payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_DATAGRAM) throw new ProtocolError(`datagram of ${payload.length} bytes over ${MAX_DATAGRAM}`);
  const out = new Uint8Array(2 + payload.length);
  out[0] = payload.length >> 8;
  out[1] = payload.length & 0xff;
  out.set(payload, 2);
  return out;
}

/** The chunks of a libp2p message (a Uint8Array or a Uint8ArrayList), without copying. */
export type MessageData = Uint8Array | Iterable<Uint8Array>;
export function chunksOf(data: MessageData): Iterable<Uint8Array> {
  return data instanceof Uint8Array ? [data] : data;
}

/** Incremental decoder of framed datagrams from a byte stream (linear in the bytes fed). */
export class DatagramDecoder {
  private parts: Buffer[] = [];
  private len = 0;

  /** Feed bytes; returns every complete datagram they finish. */
  push(data: MessageData): Buffer[] {
    for (const c of chunksOf(data)) {
      if (c.byteLength === 0) continue;
      this.parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
      this.len += c.byteLength;
    }
    const out: Buffer[] = [];
    if (this.len < 2) return out;
    if (this.parts[0]!.length < 2) this.parts = [Buffer.concat(this.parts)];
    if (this.len < 2 + this.parts[0]!.readUInt16BE(0)) return out;
    let b = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    while (b.length >= 2) {
      const n = b.readUInt16BE(0);
      if (b.length < 2 + n) break;
      // Copy: the chunk may be a view on a larger muxer buffer that is reused.
      out.push(Buffer.from(b.subarray(2, 2 + n)));
      b = b.subarray(2 + n);
    }
    this.parts = b.length > 0 ? [Buffer.from(b)] : [];
    this.len = b.length;
    return out;
  }

  /** Bytes held waiting for the rest of a datagram. */
  get pending(): number {
    return this.len;
  }
}
