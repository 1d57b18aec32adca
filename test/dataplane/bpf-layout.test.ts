/**
 * The TypeScript mirrors of the sockmap structs match the compiled object's BTF
 * (sizes and every field's offset and size), and the BTF reader itself works.
 * Needs bpftool and bpf/build/sockmap_verdict.bpf.o (scripts/build-native.sh);
 * in CI both exist and a missing one fails.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';
import { decodeSockPeer, encodeSockPeer, SOCKMAP_STATS_LAYOUT, SOCK_PEER_LAYOUT, type StructLayout } from '../../src/native/bpf-layout.js';
import { parseBtfRaw } from './btf.js';
import { requirement } from '../helpers/skip.js';

const object = join(packageRoot(), 'bpf', 'build', 'sockmap_verdict.bpf.o');
function bpftoolDump(): string | undefined {
  try { return execFileSync('bpftool', ['btf', 'dump', 'file', object, 'format', 'raw'], { encoding: 'utf8' }); } catch { return undefined; }
}
const dump = existsSync(object) ? bpftoolDump() : undefined;
const skip = requirement('sockmap BTF layout check', dump === undefined ? `needs bpftool and ${object}` : undefined);

describe('BTF raw reader', () => {
  it('resolves typedefs, ints and arrays to sizes', () => {
    const text = [
      "[1] INT 'unsigned int' size=4 bits_offset=0 nr_bits=32 encoding=(none)",
      "[2] TYPEDEF '__u32' type_id=1",
      "[3] INT 'unsigned long long' size=8 bits_offset=0 nr_bits=64 encoding=(none)",
      "[4] TYPEDEF '__u64' type_id=3",
      "[5] ARRAY '(anon)' type_id=2 index_type_id=1 nr_elems=3",
      "[6] STRUCT 's' size=24 vlen=3",
      "\t'a' type_id=4 bits_offset=0",
      "\t'b' type_id=2 bits_offset=64",
      "\t'c' type_id=5 bits_offset=96",
    ].join('\n');
    expect(parseBtfRaw(text).get('s')).toEqual({
      name: 's', size: 24,
      members: [{ name: 'a', offset: 0, size: 8 }, { name: 'b', offset: 8, size: 4 }, { name: 'c', offset: 12, size: 12 }],
    });
  });
});

describe.skipIf(skip)('sockmap map layouts match the object BTF', () => {
  const structs = parseBtfRaw(dump ?? '');
  it.each([SOCK_PEER_LAYOUT, SOCKMAP_STATS_LAYOUT].map((l) => ({ name: l.name, layout: l })))('$name', ({ layout }: { layout: StructLayout }) => {
    const btf = structs.get(layout.name);
    expect(btf, `${layout.name} in BTF`).toBeDefined();
    expect(btf!.size).toBe(layout.size);
    expect(btf!.members).toEqual(layout.fields.map((f) => ({ name: f.name, offset: f.offset, size: f.size })));
  });
});

describe('ew_sock_peer codec', () => {
  it('round-trips and lays fields at the mirrored offsets', () => {
    const v = { peerCookie: 0x1122334455667788n, bytes: 42n, flags: 1, abi: 1 };
    const b = encodeSockPeer(v);
    expect(b.length).toBe(SOCK_PEER_LAYOUT.size);
    expect(b.readUInt32LE(16)).toBe(1);
    expect(decodeSockPeer(b)).toEqual(v);
    expect(() => decodeSockPeer(Buffer.alloc(8))).toThrow(RangeError);
  });
});
