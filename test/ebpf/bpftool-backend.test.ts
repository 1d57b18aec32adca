/**
 * BpftoolBackend builds the right bpftool command lines and parses its JSON. The
 * binary is the process boundary: a recording stand-in script replaces it here
 * (the real one is exercised by the kernel tests).
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BpftoolBackend } from '../../src/dataplane/ebpf/backend.js';
import { BpfCommandError } from '../../src/dataplane/ebpf/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'ew-bpftool-'));
const log = join(dir, 'calls');
const bin = join(dir, 'bpftool');
// Records argv and stdin; answers dumps and cgroup show with canned JSON; fails on "fail".
writeFileSync(bin, `#!/bin/sh
echo "ARGS $*" >> ${log}
if [ "$1" = batch ]; then cat >> ${log}; fi
case "$*" in
  *fail*) echo "Error: boom" >&2; exit 255 ;;
  *"map dump pinned /p/stats"*) echo '[{"key":["0x00","0x00","0x00","0x00"],"values":[{"cpu":0,"value":["0x02","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]},{"cpu":1,"value":["0x03","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]}]}]' ;;
  *"map dump"*) echo '[{"key":["0x01","0x00","0x00","0x00"],"value":["0x0a","0x00","0x00","0x01","0x1f","0x90","0x06","0x00"]}]' ;;
  *"cgroup show /cg/empty"*) : ;;
  *"cgroup show"*) echo '[{"id":7,"attach_type":"cgroup_inet4_connect","attach_flags":"multi","name":"ew_sock4_connect"}]' ;;
  *"prog show id 42"*) echo '{"id":42,"map_ids":[3,4]}' ;;
  *"prog show"*) echo '{"id":42,"type":"cgroup_sock_addr"}' ;;
  *"map show id 3"*) echo '{"id":3,"name":"ew_svc4_v1"}' ;;
esac
`);
chmodSync(bin, 0o755);
const bpf = new BpftoolBackend({ bin });
const calls = (): string => readFileSync(log, 'utf8');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('BpftoolBackend', () => {
  it('writes one ordered batch with hex keys and values', async () => {
    await bpf.mapOps([
      { op: 'update', map: '/p/be', key: Buffer.from([1, 0, 0, 0]), value: Buffer.from([10, 0, 0, 1, 0x1f, 0x90, 6, 0]) },
      { op: 'delete', map: '/p/be', key: Buffer.from([2, 0, 0, 0]) },
    ]);
    expect(calls()).toContain('ARGS batch file -\nmap update pinned /p/be key hex 01 00 00 00 value hex 0a 00 00 01 1f 90 06 00\nmap delete pinned /p/be key hex 02 00 00 00\n');
  });

  it('attaches with BPF_F_ALLOW_MULTI and detaches by pin or id', async () => {
    await bpf.attach('/cg', 'cgroup_inet4_connect', '/p/progs/ew_sock4_connect');
    await bpf.detach('/cg', 'cgroup_inet4_connect', 7);
    await bpf.detach('/cg', 'cgroup_inet4_connect', '/p/progs/ew_sock4_connect');
    expect(calls()).toContain('ARGS cgroup attach /cg cgroup_inet4_connect pinned /p/progs/ew_sock4_connect multi');
    expect(calls()).toContain('ARGS cgroup detach /cg cgroup_inet4_connect id 7');
    expect(calls()).toContain('ARGS cgroup detach /cg cgroup_inet4_connect pinned /p/progs/ew_sock4_connect');
  });

  it('loads with reused maps', async () => {
    await bpf.loadAll('/o.o', '/p/progs', '/p/scratch', new Map([['ew_svc4_v1', '/p/maps/ew_svc4_v1']]));
    expect(calls()).toContain('ARGS prog loadall /o.o /p/progs map name ew_svc4_v1 pinned /p/maps/ew_svc4_v1 pinmaps /p/scratch');
  });

  it('parses dumps, per-CPU dumps, attachments and program ids', async () => {
    expect(await bpf.dump('/p/be')).toEqual([{ key: Buffer.from([1, 0, 0, 0]), value: Buffer.from([10, 0, 0, 1, 0x1f, 0x90, 6, 0]) }]);
    const pc = await bpf.dumpPerCpu('/p/stats');
    expect(pc[0]!.values.map((v) => v[0])).toEqual([2, 3]);
    expect(await bpf.attachments('/cg')).toEqual([{ id: 7, attachType: 'cgroup_inet4_connect', name: 'ew_sock4_connect' }]);
    expect(await bpf.attachments('/cg/empty')).toEqual([]);
    expect(await bpf.progId('/p/progs/x')).toBe(42);
    expect(await bpf.progMapIds(42)).toEqual([3, 4]);
    expect(await bpf.mapName(3)).toBe('ew_svc4_v1');
    await bpf.pinById('map', 3, '/p/maps/ew_svc4_v1');
    expect(calls()).toContain('ARGS map pin id 3 /p/maps/ew_svc4_v1');
  });

  it('turns a failure into BpfCommandError with stderr', async () => {
    const err = await bpf.dump('/p/fail').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BpfCommandError);
    expect((err as BpfCommandError).code).toBe('ERR_EBPF_COMMAND');
    expect((err as Error).message).toContain('boom');
  });

  it('refuses map paths with whitespace (batch lines are space separated)', async () => {
    await expect(bpf.mapOps([{ op: 'delete', map: '/p/a b', key: Buffer.from([0]) }])).rejects.toThrow(/whitespace/);
  });
});
