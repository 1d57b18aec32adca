/**
 * The two addons are loaded and feature-detected apart (issue 13, item 9): splice
 * needs only edgeway_native.node, which must not link libbpf; when edgeway_bpf.node
 * cannot be loaded (here: a file that is not a shared object, as on a host where
 * libbpf.so is absent and dlopen fails), splice still carries a connection intact
 * and only sockmap is reported unavailable, with the loader's reason.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Accelerators } from '../../src/native/accelerator.js';
import { loadNative } from '../../src/native/addon.js';
import { requirement } from '../helpers/skip.js';
import { ForwardHarness, receiveAll, sendRandom, withTimeout } from '../dataplane/forward-harness.js';

const native = loadNative();
const skip = requirement('split addon tests', native.addonReason);
const dir = mkdtempSync(join(tmpdir(), 'ew-split-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(skip)('edgeway_native.node without edgeway_bpf.node', () => {
  it('edgeway_native.node does not link libbpf', () => {
    const dyn = execFileSync('readelf', ['-d', native.addonPath!], { encoding: 'utf8' });
    expect(dyn).toMatch(/NEEDED/);
    expect(dyn).not.toMatch(/libbpf/);
  });

  it('a libbpf addon that fails to load leaves splice working; sockmap says why', async () => {
    const broken = join(dir, 'edgeway_bpf.node');
    writeFileSync(broken, 'not a shared object');
    const saved = process.env.EDGEWAY_BPF_ADDON;
    process.env.EDGEWAY_BPF_ADDON = broken;
    let load;
    try {
      load = loadNative({ reload: true });
    } finally {
      if (saved === undefined) delete process.env.EDGEWAY_BPF_ADDON;
      else process.env.EDGEWAY_BPF_ADDON = saved;
      loadNative({ reload: true });
    }
    expect(load.addon).toBeDefined();
    expect(load.bpf).toBeUndefined();
    expect(load.bpfReason).toMatch(/^edgeway_bpf\.node failed to load: /);
    const accel = new Accelerators({ native: load });
    const h = new ForwardHarness(accel.get('splice')!);
    try {
      expect(accel.status.find((s) => s.kind === 'sockmap')).toEqual({ kind: 'sockmap', available: false, reason: load.bpfReason });
      await h.start();
      // The backend answers the sha256 of what it received.
      const received = new Promise<{ bytes: number; sha256: string }>((resolve) => {
        h.onBackend = (s) => { void receiveAll(s).then((r) => { s.end(r.sha256); resolve(r); }); };
      });
      const c = await h.connect();
      const chunks: Buffer[] = [];
      c.on('data', (d: Buffer) => chunks.push(d));
      const replied = new Promise<string>((resolve) => c.once('end', () => resolve(Buffer.concat(chunks).toString())));
      const sent = await sendRandom(c, 3 << 20);
      expect(await withTimeout(received, 30_000, 'backend received')).toEqual({ bytes: 3 << 20, sha256: sent });
      expect(await withTimeout(replied, 30_000, 'reply')).toBe(sent);
      expect(await withTimeout(h.results[0]!, 30_000, 'forward result')).toEqual({ kind: 'splice', bytesIn: 3 << 20, bytesOut: 64 });
    } finally {
      await h.close();
      accel.close();
    }
  });
});
