/**
 * LibbpfBackend maps the BpfBackend calls onto the addon's `bpf` functions and
 * turns addon errors into BpfCommandError. The addon is the process boundary: a
 * recording stand-in replaces it here (the real one runs in the kernel suites,
 * and `defaultBpfBackend` is checked against the built addon when present).
 */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BpftoolBackend } from '../../src/dataplane/ebpf/backend.js';
import { BpfCommandError } from '../../src/dataplane/ebpf/errors.js';
import { LibbpfBackend, defaultBpfBackend, nativeBpf } from '../../src/dataplane/ebpf/libbpf-backend.js';
import type { NativeBpf } from '../../src/native/addon.js';

const calls: unknown[][] = [];
function errnoError(msg: string, errno: number): Error {
  return Object.assign(new Error(msg), { errno, code: 'ERR_NATIVE_ERRNO' });
}
const fake: NativeBpf = {
  loadAll: (...a) => { calls.push(['loadAll', ...a]); return Promise.resolve(); },
  progId: (pin) => { if (pin === '/missing') throw errnoError('bpf_obj_get /missing: No such file or directory', 2); return 42; },
  attach: (...a) => { calls.push(['attach', ...a]); },
  detach: (...a) => { calls.push(['detach', ...a]); },
  attachments: () => [{ id: 7, attachType: 'cgroup_inet4_connect', name: 'ew_sock4_connect' }],
  progMapIds: () => [3, 4],
  mapName: () => 'ew_svc4_v1',
  pinById: (...a) => { calls.push(['pinById', ...a]); },
  mapOps: (ops) => { calls.push(['mapOps', ops.length]); return ops[0]?.map === '/fail' ? Promise.reject(errnoError('op 0 delete /fail: Operation not permitted', 1)) : Promise.resolve(ops.length); },
  dump: () => Promise.resolve([{ key: Buffer.from([1]), value: Buffer.from([2]) }]),
  dumpPerCpu: () => Promise.resolve([{ key: Buffer.from([0]), values: [Buffer.from([2]), Buffer.from([3])] }]),
};
const dir = mkdtempSync(join(tmpdir(), 'ew-libbpf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('LibbpfBackend', () => {
  const bpf = new LibbpfBackend(fake);

  it('loads with reused maps given by name, creating the pin directories', async () => {
    const progs = join(dir, 'a', 'progs');
    const maps = join(dir, 'a', 'maps');
    await bpf.loadAll('/o.o', progs, maps, new Map([['ew_svc4_v1', '/p/maps/ew_svc4_v1']]));
    expect(calls.at(-1)).toEqual(['loadAll', '/o.o', progs, maps, { ew_svc4_v1: '/p/maps/ew_svc4_v1' }]);
    expect(existsSync(progs) && existsSync(maps)).toBe(true);
  });

  it('passes attach/detach/pin calls through and skips empty transactions', async () => {
    await bpf.attach('/cg', 'cgroup_inet4_connect', '/p/progs/x');
    await bpf.detach('/cg', 'cgroup_inet4_connect', 7);
    await bpf.pinById('map', 3, '/p/maps/ew_svc4_v1');
    const n = calls.length;
    await bpf.mapOps([]);
    expect(calls.length).toBe(n);
    await bpf.mapOps([{ op: 'delete', map: '/p/m', key: Buffer.from([1, 0, 0, 0]) }]);
    expect(calls.slice(-4)).toEqual([
      ['attach', '/cg', 'cgroup_inet4_connect', '/p/progs/x'],
      ['detach', '/cg', 'cgroup_inet4_connect', 7],
      ['pinById', 'map', 3, '/p/maps/ew_svc4_v1'],
      ['mapOps', 1],
    ]);
    expect(await bpf.progId('/p')).toBe(42);
    expect(await bpf.progMapIds(42)).toEqual([3, 4]);
    expect((await bpf.dumpPerCpu('/s'))[0]!.values.map((v) => v[0])).toEqual([2, 3]);
  });

  it('turns an addon error into a rejected BpfCommandError with errno', async () => {
    const err = await bpf.progId('/missing').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BpfCommandError);
    expect((err as BpfCommandError).code).toBe('ERR_EBPF_COMMAND');
    expect((err as Error).message).toMatch(/No such file/);
    expect((err as { errno?: number }).errno).toBe(2);
    // Asynchronous failures (worker-thread calls) are wrapped the same way.
    const async = await bpf.mapOps([{ op: 'delete', map: '/fail', key: Buffer.from([0]) }]).catch((e: unknown) => e);
    expect(async).toBeInstanceOf(BpfCommandError);
    expect((async as { errno?: number }).errno).toBe(1);
  });

  it('defaultBpfBackend is libbpf exactly when the addon has the bpf functions', () => {
    expect(defaultBpfBackend()).toBeInstanceOf(nativeBpf() ? LibbpfBackend : BpftoolBackend);
  });
});
