// EdgeMesh's PSK file accepted as it is: the key derived exactly as EdgeMesh
// derives it (pkg/tunnel/util.go GeneratePSKReader + go-libp2p DecodeV1PSK), and a
// real libp2p pnet handshake between a node keyed from an EdgeMesh file and one
// keyed from the equivalent swarm.key.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { multiaddr } from '@multiformats/multiaddr';
import type { Ping } from '@libp2p/ping';
import { decodePskFile, edgeMeshKey } from '../../src/tunnel/psk.js';
import { loadPsk } from '../../src/tunnel/identity.js';
import { PskError } from '../../src/tunnel/errors.js';
import { createTunnelNode, type TunnelLibp2p } from '../../src/tunnel/node.js';
import { prng } from '../helpers/prng.js';

// EdgeMesh's published sample key (build/agent/resources/04-configmap.yaml).
const SAMPLE = 'JugH9HP1XBouyO5pWGeZa8LtipDURrf17EJvUHcJGuQ=';
// Vectors computed outside Node with EdgeMesh's algorithm spelled in coreutils:
//   printf '%s' "$SAMPLE"   | sha256sum | cut -c1-64 | tr -d '\n' | base64 -d | head -c 32 | xxd -p -c 64
//   printf '%s\n' "$SAMPLE" | sha256sum | cut -c1-64 | tr -d '\n' | base64 -d | head -c 32 | xxd -p -c 64
// (the first is the file a ConfigMap mount gives, the second what `openssl rand -base64 32 > psk` writes).
const VECTORS: [string, string, string][] = [
  ['ConfigMap mount (no newline)', SAMPLE, 'ef4d5fdb6d1b75ad1b7bc79a7b7f5e69ed77ddfdf8ddee3579de5bf35d1b7bdd'],
  ['openssl output file (trailing newline)', `${SAMPLE}\n`, 'edc6dd6df6f6d9e6da774e9f7bbf5e7baf7cdfc73971eeb5efa779d396b6e1af'],
];

const dirs: string[] = [];
const nodes: TunnelLibp2p[] = [];
afterAll(async () => {
  for (const n of nodes) await n.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function file(name: string, content: string | Uint8Array): Promise<string> {
  if (dirs.length === 0) dirs.push(await mkdtemp(join(tmpdir(), 'ew-psk-')));
  const p = join(dirs[0]!, name);
  await writeFile(p, content);
  return p;
}

describe('EdgeMesh PSK file', () => {
  it.each(VECTORS)('derives the EdgeMesh key: %s', (_name, content, hex) => {
    const d = decodePskFile(new TextEncoder().encode(content));
    expect(d.format).toBe('edgemesh');
    expect(Buffer.from(d.key).toString('hex')).toBe(hex);
  });

  it('reads swarm.key in base16, base64 and bin (go-libp2p codec) to the same key', () => {
    const rnd = prng(15);
    const key = Buffer.from(Array.from({ length: 32 }, () => Math.floor(rnd() * 256)));
    const forms = [
      `/key/swarm/psk/1.0.0/\n/base16/\n${key.toString('hex')}\n`,
      `/key/swarm/psk/1.0.0/\r\n/base16/\r\n${key.toString('hex').toUpperCase()}`,
      `/key/swarm/psk/1.0.0/\n/base64/\n${key.toString('base64')}\n`,
    ].map((s) => new TextEncoder().encode(s));
    forms.push(Buffer.concat([Buffer.from('/key/swarm/psk/1.0.0/\n/bin/\n'), key]));
    for (const f of forms) {
      const d = decodePskFile(f);
      expect(d.format).toBe('swarm-key');
      expect(Buffer.from(d.key).equals(key)).toBe(true);
    }
  });

  it.each([
    ['empty file', ''],
    ['short secret', 'abc\n'],
    ['swarm.key with a short key', `/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(31)}\n`],
    ['swarm.key with an unknown encoding', `/key/swarm/psk/1.0.0/\n/base58btc/\n${'ab'.repeat(32)}\n`],
    ['swarm.key header only', '/key/swarm/psk/1.0.0/'],
  ])('rejects %s with a PskError', async (name, content) => {
    await expect(loadPsk(await file(`bad-${name.replace(/\W+/g, '-')}`, content))).rejects.toBeInstanceOf(PskError);
  });

  it('a node keyed from the EdgeMesh file joins one keyed from the equivalent swarm.key; another file is shut out', async () => {
    const em = await file('edgemesh-psk', `${SAMPLE}\n`);
    const swarm = await file('swarm.key', `/key/swarm/psk/1.0.0/\n/base64/\n${Buffer.from(edgeMeshKey(new TextEncoder().encode(`${SAMPLE}\n`))).toString('base64')}\n`);
    const other = await file('edgemesh-psk-no-newline', SAMPLE);
    const start = async (psk: string): Promise<TunnelLibp2p> => {
      const n = await createTunnelNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], psk: await loadPsk(psk) });
      nodes.push(n);
      return n;
    };
    const server = await start(swarm);
    const addr = multiaddr(server.getMultiaddrs()[0]!.toString());
    const client = await start(em);
    const ping = (n: TunnelLibp2p): Ping => (n.services as { ping: Ping }).ping;
    expect(await ping(client).ping(addr)).toBeGreaterThanOrEqual(0);
    const outsider = await start(other);
    await expect(ping(outsider).ping(addr, { signal: AbortSignal.timeout(5000) })).rejects.toThrow();
  }, 60_000);
});
