/**
 * The TypeScript mirror of bpf/lib/layout.h must match the compiled object's BTF:
 * struct sizes, field names, offsets and field sizes. Needs the object
 * (scripts/build-bpf.sh) and bpftool; skips with a reason otherwise.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DEFAULT_OBJECT } from '../../src/dataplane/ebpf/host.js';
import { ensureObject } from './object.js';
import { requirement } from '../helpers/skip.js';
import { FIELD_SIZE, LAYOUTS, MAPS, PROGRAMS, decode, encode, type StructDef } from '../../src/dataplane/ebpf/layout.js';

interface BtfType { id: number; kind: string; name: string; size?: number; type_id?: number; nr_elems?: number; members?: { name: string; type_id: number; bits_offset: number }[] }

function btf(): Map<number, BtfType> | string {
  const missing = ensureObject();
  if (missing) return missing;
  try {
    const out = JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', DEFAULT_OBJECT], { encoding: 'utf8' })) as { types: BtfType[] };
    return new Map(out.types.map((t) => [t.id, t]));
  } catch (err) {
    return `bpftool btf dump failed: ${(err as Error).message}`;
  }
}

const types = btf();
const skip = requirement('socket-LB BTF layout check', typeof types === 'string' ? types : undefined);

function sizeOf(t: Map<number, BtfType>, id: number): number {
  const ty = t.get(id)!;
  switch (ty.kind) {
    case 'TYPEDEF': case 'VOLATILE': case 'CONST': return sizeOf(t, ty.type_id!);
    case 'ARRAY': return ty.nr_elems! * sizeOf(t, ty.type_id!);
    default: return ty.size!;
  }
}

describe.skipIf(skip !== undefined)('socket-LB layouts match BTF', () => {
  const t = types as Map<number, BtfType>;
  it.each(Object.values(LAYOUTS).map((d: StructDef) => [d.name, d] as const))('%s', (_name, def) => {
    const st = [...t.values()].find((x) => x.kind === 'STRUCT' && x.name === def.name);
    expect(st, `struct ${def.name} in BTF`).toBeDefined();
    expect(st!.size).toBe(def.size);
    const btfFields = st!.members!.map((m) => ({ name: m.name, offset: m.bits_offset / 8, size: sizeOf(t, m.type_id) }));
    const ours = def.fields.map((f) => ({ name: f.name, offset: f.offset, size: FIELD_SIZE[f.type] }));
    expect(ours).toEqual(btfFields);
  });

  it('declares every map and program the object has', () => {
    const vars = [...t.values()].filter((x) => x.kind === 'VAR').map((x) => x.name);
    expect(vars.sort()).toEqual(expect.arrayContaining(Object.values(MAPS).sort()));
    const funcs = [...t.values()].filter((x) => x.kind === 'FUNC').map((x) => x.name);
    expect(funcs.sort()).toEqual(PROGRAMS.map((p) => p.name).sort());
  });
});

describe('layout codec', () => {
  it.each([
    ['v4 service key', LAYOUTS.svc4Key, { vip: '10.96.0.10', dport: 80, proto: 6, pad: 0, slot: 3, pad2: 0 }, '0a60000a00500600' + '03000000'],
    ['v6 backend', LAYOUTS.backend6, { addr: 'fd00::1', port: 8080, proto: 17, flags: 0 }, 'fd000000000000000000000000000001' + '1f901100'],
    ['affinity value', LAYOUTS.affinity, { backend_id: 7, pad: 0, last_used_ns: 5n }, '07000000' + '00000000' + '0500000000000000'],
  ])('%s round-trips', (_n, def, value, hex) => {
    const buf = encode(def, value);
    expect(buf.toString('hex')).toBe(hex);
    expect(decode(def, buf)).toEqual(value);
  });
});
