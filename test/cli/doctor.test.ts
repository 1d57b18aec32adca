/**
 * `edgeway doctor --config F` decides the data-plane mode for that file exactly
 * as the agent does (dataplane/mode.ts resolveMode on the same probes); without
 * --config it answers for `auto`. Probes run for real (nft in a throwaway
 * namespace, BPF features); nothing is changed in the caller's namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBuilt, runCli } from '../helpers/agent-process.js';

interface DoctorJson { mode: string; configured: string; reason: string; error?: string; config?: string }

let dir = '';
beforeAll(async () => {
  await ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), 'edgeway-doctor-'));
}, 120_000);
afterAll(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

async function doctor(mode?: string): Promise<{ code: number; out: DoctorJson }> {
  const args = ['doctor', '--json'];
  if (mode) {
    const file = join(dir, `${mode}.yaml`);
    await writeFile(file, `dataplane: { mode: ${mode} }\n`);
    args.push('--config', file);
  }
  const r = await runCli(args, 60_000);
  return { code: r.code, out: JSON.parse(r.stdout) as DoctorJson };
}

describe('edgeway doctor --config', () => {
  it.each([
    { mode: 'none', want: 'none', why: 'dataplane.mode is none' },
    { mode: 'iptables', want: 'iptables', why: 'dataplane.mode is iptables' },
    { mode: 'nftables', want: 'nftables', why: 'dataplane.mode is nftables' },
  ])('a fixed mode ($mode) is what runs, whatever auto would pick', async ({ mode, want, why }) => {
    const r = await doctor(mode);
    expect(r.code).toBe(0);
    expect(r.out).toMatchObject({ mode: want, configured: mode });
    expect(r.out.reason).toContain(why);
    expect(r.out.config).toContain(`${mode}.yaml`);
  }, 90_000);

  it('mode auto in the file gives the same answer as doctor without a config', async () => {
    const [withFile, bare] = [await doctor('auto'), await doctor()];
    expect(withFile.code).toBe(0);
    expect(bare.code).toBe(0);
    expect(withFile.out.mode).toBe(bare.out.mode);
    expect(withFile.out.configured).toBe('auto');
    expect(bare.out.config).toBeUndefined();
  }, 90_000);

  it('an invalid config is bad usage (exit 2), as for every command', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'dataplane: { mode: sideways }\n');
    const r = await runCli(['doctor', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.yaml[\s\S]*dataplane\.mode/);
  });
});
