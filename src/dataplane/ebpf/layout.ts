/**
 * TypeScript mirror of bpf/lib/layout.h (ABI v1): struct layouts field by field,
 * map and program names, and a small codec that turns values into the exact
 * bytes the BPF side reads. test/ebpf/layout.test.ts checks every struct here
 * against the BTF of the built object, so a change on one side without the other
 * fails CI instead of corrupting maps.
 *
 * Bump SOCK_LB_ABI (and the `_v<N>` suffixes) together with EW_SOCK_LB_ABI in C.
 */
import { endianness } from 'node:os';
import { ipFamily, normalizeIp, toBytes } from '../../catalog/ip.js';

export const SOCK_LB_ABI = 1;

/** Field encodings: host-endian integers, network-order ports and addresses. */
export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | 'port' | 'ip4' | 'ip6';

export interface FieldDef {
  readonly name: string;
  readonly offset: number;
  readonly type: FieldType;
}

export interface StructDef {
  /** C struct name (as in BTF). */
  readonly name: string;
  readonly size: number;
  readonly fields: readonly FieldDef[];
}

export const FIELD_SIZE: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, port: 2, ip4: 4, ip6: 16 };

const f = (name: string, offset: number, type: FieldType): FieldDef => ({ name, offset, type });

/** Service entry flags (ew_svc_v1.flags). */
export const SVC_F_AFFINITY = 1;

export const LAYOUTS = {
  svc4Key: { name: 'ew_svc4_key_v1', size: 12, fields: [f('vip', 0, 'ip4'), f('dport', 4, 'port'), f('proto', 6, 'u8'), f('pad', 7, 'u8'), f('slot', 8, 'u16'), f('pad2', 10, 'u16')] },
  svc6Key: { name: 'ew_svc6_key_v1', size: 24, fields: [f('vip', 0, 'ip6'), f('dport', 16, 'port'), f('proto', 18, 'u8'), f('pad', 19, 'u8'), f('slot', 20, 'u16'), f('pad2', 22, 'u16')] },
  svc: {
    name: 'ew_svc_v1',
    size: 24,
    fields: [f('backend_id', 0, 'u32'), f('count', 4, 'u16'), f('flags', 6, 'u16'), f('revision', 8, 'u32'), f('svc_id', 12, 'u32'), f('affinity_timeout', 16, 'u32'), f('pad', 20, 'u32')],
  },
  backend4: { name: 'ew_backend4_v1', size: 8, fields: [f('addr', 0, 'ip4'), f('port', 4, 'port'), f('proto', 6, 'u8'), f('flags', 7, 'u8')] },
  backend6: { name: 'ew_backend6_v1', size: 20, fields: [f('addr', 0, 'ip6'), f('port', 16, 'port'), f('proto', 18, 'u8'), f('flags', 19, 'u8')] },
  affinityKey: { name: 'ew_affinity_key_v1', size: 16, fields: [f('netns_cookie', 0, 'u64'), f('svc_id', 8, 'u32'), f('pad', 12, 'u32')] },
  affinity: { name: 'ew_affinity_v1', size: 16, fields: [f('backend_id', 0, 'u32'), f('pad', 4, 'u32'), f('last_used_ns', 8, 'u64')] },
  rev4Key: { name: 'ew_rev4_key_v1', size: 16, fields: [f('cookie', 0, 'u64'), f('addr', 8, 'ip4'), f('port', 12, 'port'), f('pad', 14, 'u16')] },
  rev4: { name: 'ew_rev4_v1', size: 12, fields: [f('vip', 0, 'ip4'), f('port', 4, 'port'), f('pad', 6, 'u16'), f('svc_id', 8, 'u32')] },
  rev6Key: { name: 'ew_rev6_key_v1', size: 32, fields: [f('cookie', 0, 'u64'), f('addr', 8, 'ip6'), f('port', 24, 'port'), f('pad', 26, 'u16'), f('pad2', 28, 'u32')] },
  rev6: { name: 'ew_rev6_v1', size: 24, fields: [f('vip', 0, 'ip6'), f('port', 16, 'port'), f('pad', 18, 'u16'), f('svc_id', 20, 'u32')] },
} as const satisfies Record<string, StructDef>;

/** Scalar keys/values (backend ids, counter indices and per-CPU counters), host-endian. */
export const U32: StructDef = { name: '__u32', size: 4, fields: [f('v', 0, 'u32')] };
export const U64: StructDef = { name: '__u64', size: 8, fields: [f('v', 0, 'u64')] };

/** Map names in the object (and pin file names). */
export const MAPS = {
  svc4: 'ew_svc4_v1',
  svc6: 'ew_svc6_v1',
  backend4: 'ew_be4_v1',
  backend6: 'ew_be6_v1',
  affinity: 'ew_aff_v1',
  rev4: 'ew_rev4_v1',
  rev6: 'ew_rev6_v1',
  stats: 'ew_stats_v1',
} as const;
export type MapKey = keyof typeof MAPS;

/** Per-CPU counter indices (enum ew_stat). */
export const STATS = ['translated', 'no_backend', 'affinity_hit', 'rev_hit'] as const;
export type StatName = (typeof STATS)[number];

/** Programs in the object and the cgroup attach type of each (bpftool names). */
export const PROGRAMS = [
  { name: 'ew_sock4_connect', attachType: 'cgroup_inet4_connect' },
  { name: 'ew_sock4_sendmsg', attachType: 'cgroup_udp4_sendmsg' },
  { name: 'ew_sock4_recvmsg', attachType: 'cgroup_udp4_recvmsg' },
  { name: 'ew_sock4_getpeer', attachType: 'cgroup_inet4_getpeername' },
  { name: 'ew_sock6_connect', attachType: 'cgroup_inet6_connect' },
  { name: 'ew_sock6_sendmsg', attachType: 'cgroup_udp6_sendmsg' },
  { name: 'ew_sock6_recvmsg', attachType: 'cgroup_udp6_recvmsg' },
  { name: 'ew_sock6_getpeer', attachType: 'cgroup_inet6_getpeername' },
  { name: 'ew_sock_release', attachType: 'cgroup_inet_sock_release' },
] as const;

export type FieldValue = number | bigint | string;
export type StructValue = Record<string, FieldValue>;

const LE = endianness() === 'LE';

/** Encode a struct; missing fields (padding) are zero. */
export function encode(def: StructDef, value: StructValue): Buffer {
  const buf = Buffer.alloc(def.size);
  for (const field of def.fields) {
    const v = value[field.name];
    if (v === undefined) continue;
    const o = field.offset;
    switch (field.type) {
      case 'u8': buf.writeUInt8(Number(v), o); break;
      case 'u16': if (LE) buf.writeUInt16LE(Number(v), o); else buf.writeUInt16BE(Number(v), o); break;
      case 'u32': if (LE) buf.writeUInt32LE(Number(v), o); else buf.writeUInt32BE(Number(v), o); break;
      case 'u64': if (LE) buf.writeBigUInt64LE(BigInt(v), o); else buf.writeBigUInt64BE(BigInt(v), o); break;
      case 'port': buf.writeUInt16BE(Number(v), o); break;
      case 'ip4': ip4Bytes(String(v)).copy(buf, o); break;
      case 'ip6': ip6Bytes(String(v)).copy(buf, o); break;
    }
  }
  return buf;
}

/** Decode a struct: integers as numbers (u64 as bigint), addresses as strings. */
export function decode(def: StructDef, buf: Buffer): StructValue {
  if (buf.length !== def.size) throw new RangeError(`${def.name}: expected ${def.size} bytes, got ${buf.length}`);
  const out: StructValue = {};
  for (const field of def.fields) {
    const o = field.offset;
    switch (field.type) {
      case 'u8': out[field.name] = buf.readUInt8(o); break;
      case 'u16': out[field.name] = LE ? buf.readUInt16LE(o) : buf.readUInt16BE(o); break;
      case 'u32': out[field.name] = LE ? buf.readUInt32LE(o) : buf.readUInt32BE(o); break;
      case 'u64': out[field.name] = LE ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o); break;
      case 'port': out[field.name] = buf.readUInt16BE(o); break;
      case 'ip4': out[field.name] = [...buf.subarray(o, o + 4)].join('.'); break;
      case 'ip6': out[field.name] = ip6String(buf.subarray(o, o + 16)); break;
    }
  }
  return out;
}

export function ip4Bytes(ip: string): Buffer {
  if (ipFamily(ip) !== 4) throw new TypeError(`not an IPv4 address: ${ip}`);
  return Buffer.from(toBytes(ip));
}

export function ip6Bytes(ip: string): Buffer {
  if (ipFamily(ip) !== 6) throw new TypeError(`not an IPv6 address: ${ip}`);
  return Buffer.from(toBytes(ip));
}

/** Canonical (RFC 5952) text form of 16 address bytes. */
export function ip6String(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return normalizeIp(groups.join(':'))!;
}

export const IPPROTO = { TCP: 6, UDP: 17 } as const;
