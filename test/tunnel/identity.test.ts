import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { identityPath, loadOrCreateIdentity, loadPsk } from '../../src/tunnel/identity.js';
import { IdentityError, PskError } from '../../src/tunnel/errors.js';

const dirs: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'ew-id-'));
  dirs.push(d);
  return d;
}
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

describe('tunnel identity', () => {
  it('is created once with mode 0600 and the same id afterwards', async () => {
    const d = await tmp();
    const a = await loadOrCreateIdentity(d);
    expect(a.created).toBe(true);
    expect(a.peerId).toMatch(/^12D3Koo/);
    expect((await stat(identityPath(d))).mode & 0o777).toBe(0o600);
    const b = await loadOrCreateIdentity(d);
    expect(b.created).toBe(false);
    expect(b.peerId).toBe(a.peerId);
    const other = await loadOrCreateIdentity(await tmp());
    expect(other.peerId).not.toBe(a.peerId);
  });

  it('processes racing to create it all end up with the one key on disk', async () => {
    const run = promisify(execFile);
    for (const racers of ['in-process', 'processes']) {
      const d = await tmp();
      const ids = racers === 'in-process'
        ? (await Promise.all(Array.from({ length: 6 }, () => loadOrCreateIdentity(d)))).map((i) => i.peerId)
        : (await Promise.all(Array.from({ length: 4 }, () => run(process.execPath, ['bin/edgeway.js', 'identity', '--state-dir', d])))).map((r) => r.stdout.trim());
      const onDisk = (await loadOrCreateIdentity(d)).peerId;
      expect(new Set(ids), racers).toEqual(new Set([onDisk]));
      expect((await readdir(d)).filter((f) => f.includes('.tmp-'))).toEqual([]);
    }
  });

  it('refuses a corrupt key file instead of replacing it', async () => {
    const d = await tmp();
    await writeFile(identityPath(d), 'garbage');
    await expect(loadOrCreateIdentity(d)).rejects.toBeInstanceOf(IdentityError);
  });

  it('reads swarm.key PSK files and rejects malformed ones', async () => {
    const d = await tmp();
    const good = join(d, 'good.key');
    await writeFile(good, `/key/swarm/psk/1.0.0/\n/base16/\n${'AB'.repeat(32)}\n`);
    expect((await loadPsk(good)).length).toBeGreaterThan(64);
    const bad = join(d, 'bad.key');
    await writeFile(bad, 'nope');
    await expect(loadPsk(bad)).rejects.toBeInstanceOf(PskError);
    await expect(loadPsk(join(d, 'missing'))).rejects.toBeInstanceOf(PskError);
  });

  it('`edgeway identity --state-dir` prints the peer id (built CLI)', async () => {
    const d = await tmp();
    const run = promisify(execFile);
    const first = await run(process.execPath, ['bin/edgeway.js', 'identity', '--state-dir', d]);
    const second = await run(process.execPath, ['bin/edgeway.js', 'identity', '--state-dir', d]);
    expect(first.stdout.trim()).toMatch(/^12D3Koo\w+$/);
    expect(second.stdout).toBe(first.stdout);
  });
});
