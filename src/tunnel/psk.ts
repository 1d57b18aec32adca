/**
 * Private-network key files. Two formats are accepted, so a cluster moving from
 * EdgeMesh keeps its key file as it is:
 *
 * - libp2p's `swarm.key`: `/key/swarm/psk/1.0.0/`, then `/base16/`, `/base64/` or
 *   `/bin/`, then the 32 key bytes in that encoding (go-libp2p `core/pnet/codec.go`).
 * - EdgeMesh's PSK file: any bytes, as its docs create it with
 *   `openssl rand -base64 32 > psk`. EdgeMesh (`pkg/tunnel/util.go`
 *   `GeneratePSKReader`) hashes the raw file bytes with SHA-256, writes the hash as
 *   64 lower-case hex digits under a `/base64/` header, and go-libp2p's
 *   `DecodeV1PSK` then base64-decodes those hex digits and keeps the first 32 bytes.
 *   That is odd (hex read as base64) but it is the key EdgeMesh nodes use, so we
 *   derive exactly the same one. The whole file is hashed, trailing newline
 *   included: every node needs a byte-identical file (as with EdgeMesh).
 *
 * Pure: bytes in, key out. The result is handed to js-libp2p's pnet as a base16
 * swarm key, the only encoding it reads.
 */
import { createHash } from 'node:crypto';

export const PSK_KEY_LENGTH = 32;
const SWARM_HEADER = '/key/swarm/psk/1.0.0/';
/** Below this an EdgeMesh-style secret is too weak to be meant (openssl's is 45 bytes). */
const MIN_EDGEMESH_SECRET = 16;

export type PskFormat = 'swarm-key' | 'edgemesh';

export interface DecodedPsk {
  readonly format: PskFormat;
  /** The 32-byte XSalsa20 key of the private network. */
  readonly key: Uint8Array;
}

/** Decode a key file's bytes; throws an Error whose message says what is wrong. */
export function decodePskFile(bytes: Uint8Array): DecodedPsk {
  const text = Buffer.from(bytes).toString('latin1');
  if (text.startsWith(SWARM_HEADER)) return { format: 'swarm-key', key: decodeSwarmKey(bytes) };
  if (text.trim().length < MIN_EDGEMESH_SECRET) {
    throw new Error(`expected a swarm.key ("${SWARM_HEADER}", "/base16/", 64 hex digits) or an EdgeMesh PSK file (openssl rand -base64 32; at least ${MIN_EDGEMESH_SECRET} characters)`);
  }
  return { format: 'edgemesh', key: edgeMeshKey(bytes) };
}

/** EdgeMesh's derivation (see the file comment): base64-decode(hex(sha256(file)))[0:32]. */
export function edgeMeshKey(fileBytes: Uint8Array): Uint8Array {
  const hexDigest = createHash('sha256').update(fileBytes).digest('hex');
  return new Uint8Array(Buffer.from(hexDigest, 'base64').subarray(0, PSK_KEY_LENGTH));
}

/** go-libp2p's `DecodeV1PSK`: header line, encoding line, then the key. */
function decodeSwarmKey(bytes: Uint8Array): Uint8Array {
  const buf = Buffer.from(bytes);
  const first = buf.indexOf(0x0a);
  const second = first < 0 ? -1 : buf.indexOf(0x0a, first + 1);
  if (second < 0) throw new Error(`expected "${SWARM_HEADER}", an encoding line and the key`);
  const encoding = buf.subarray(first + 1, second).toString('latin1').replace(/\r$/, '');
  const rest = buf.subarray(second + 1);
  let key: Buffer;
  if (encoding === '/base16/') {
    const hex = rest.toString('latin1').trim();
    if (!/^[0-9a-fA-F]{64}/.test(hex)) throw new Error('expected 64 hex digits after "/base16/"');
    key = Buffer.from(hex.slice(0, 64), 'hex');
  } else if (encoding === '/base64/') {
    const b64 = rest.toString('latin1').trim();
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error('expected base64 after "/base64/"');
    key = Buffer.from(b64, 'base64');
  } else if (encoding === '/bin/') {
    key = rest;
  } else {
    throw new Error(`unknown swarm.key encoding "${encoding}" (expected /base16/, /base64/ or /bin/)`);
  }
  if (key.length < PSK_KEY_LENGTH) throw new Error(`swarm.key holds ${key.length} key bytes, expected ${PSK_KEY_LENGTH}`);
  return new Uint8Array(key.subarray(0, PSK_KEY_LENGTH));
}

/** The key as the swarm.key bytes js-libp2p's `preSharedKey({ psk })` reads (base16). */
export function swarmKeyBytes(key: Uint8Array): Uint8Array {
  return new TextEncoder().encode(`${SWARM_HEADER}\n/base16/\n${Buffer.from(key).toString('hex')}`);
}
