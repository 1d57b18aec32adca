/**
 * A small reader of `bpftool btf dump file X format raw`: struct layouts with
 * member offsets and sizes (typedefs, ints, arrays resolved). Enough to check the
 * TypeScript mirrors of BPF structs; tested in bpf-layout.test.ts.
 */
export interface BtfMember { name: string; offset: number; size: number }
export interface BtfStruct { name: string; size: number; members: BtfMember[] }

interface RawType { kind: string; name: string; size?: number; typeId?: number; nelems?: number; members: { name: string; typeId: number; bitsOffset: number }[] }

export function parseBtfRaw(text: string): Map<string, BtfStruct> {
  const types = new Map<number, RawType>();
  let cur: RawType | undefined;
  for (const line of text.split('\n')) {
    const head = /^\[(\d+)\] (\w+) '([^']*)'(.*)$/.exec(line);
    if (head) {
      const rest = head[4]!;
      const num = (k: string): number | undefined => { const m = new RegExp(`\\b${k}=(\\d+)`).exec(rest); return m ? Number(m[1]) : undefined; };
      cur = { kind: head[2]!, name: head[3]!, size: num('size'), typeId: num('type_id'), nelems: num('nr_elems'), members: [] };
      types.set(Number(head[1]), cur);
      continue;
    }
    const mem = /^\s+'([^']*)' type_id=(\d+) bits_offset=(\d+)/.exec(line);
    if (mem && cur) cur.members.push({ name: mem[1]!, typeId: Number(mem[2]), bitsOffset: Number(mem[3]) });
  }
  const sizeOf = (id: number, depth = 0): number => {
    const t = types.get(id);
    if (!t || depth > 32) throw new Error(`BTF type ${id} unresolved`);
    if (t.size !== undefined) return t.size;
    if (t.kind === 'ARRAY' && t.typeId !== undefined) return sizeOf(t.typeId, depth + 1) * (t.nelems ?? 0);
    if (t.typeId !== undefined) return sizeOf(t.typeId, depth + 1);
    throw new Error(`BTF type ${id} (${t.kind}) has no size`);
  };
  const out = new Map<string, BtfStruct>();
  for (const t of types.values()) {
    if (t.kind !== 'STRUCT' || !t.name) continue;
    out.set(t.name, { name: t.name, size: t.size ?? 0, members: t.members.map((m) => ({ name: m.name, offset: m.bitsOffset / 8, size: sizeOf(m.typeId) })) });
  }
  return out;
}
