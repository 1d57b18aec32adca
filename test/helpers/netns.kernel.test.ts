// Tests of the lab helper itself. IP plan: 10.250.0.1/24 (a) <-> 10.250.0.2/24 (b).
import { afterAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Lab, kernelSkipReason, run } from './netns.js';

const skip = kernelSkipReason();
if (skip) console.warn(`skipping lab helper tests: ${skip}`);
const fixture = (f: string): string => fileURLToPath(new URL(`./fixtures/${f}`, import.meta.url));

describe.skipIf(!!skip)('Lab', () => {
  const lab = new Lab();
  afterAll(() => lab.destroy());

  it('links two namespaces, runs a backend, and counts answers by backend id', async () => {
    const a = await lab.ns('a');
    const b = await lab.ns('b');
    await lab.link(a, '10.250.0.1/24', b, '10.250.0.2/24');
    const srv = lab.spawn(b, process.execPath, [fixture('echo-server.mjs'), '--id', 'b1', '--port', '7000']);
    await srv.waitFor(/^listening/);
    const r = await lab.exec(a, process.execPath, [fixture('whoami-client.mjs'), '--host', '10.250.0.2', '--port', '7000', '--n', '5']);
    expect(JSON.parse(r.stdout)).toEqual({ counts: { b1: 5 }, errors: 0 });
    const refused = await lab.exec(a, process.execPath, [fixture('whoami-client.mjs'), '--host', '10.250.0.2', '--port', '7001', '--n', '2']);
    expect(JSON.parse(refused.stdout)).toMatchObject({ errors: 2, firstError: 'ECONNREFUSED' });
  });

  it('exec and spawn join a cgroup before entering the namespace', async () => {
    const root = (await run('sh', ['-c', "awk '$3 == \"cgroup2\" { print $2; exit }' /proc/mounts"])).stdout.trim();
    if (!root) return; // no cgroup v2 here: nothing to check
    const cg = `${root}/edgeway-labtest-${lab.tag}`;
    await run('mkdir', [cg]);
    try {
      const ns = await lab.ns('g');
      const r = await lab.exec(ns, 'cat', ['/proc/self/cgroup'], { cgroup: cg });
      expect(r.stdout).toContain(`0::/edgeway-labtest-${lab.tag}`);
      const p = lab.spawn(ns, 'sh', ['-c', 'cat /proc/self/cgroup; ip -o link show lo; exec sleep 30'], process.env, { cgroup: cg });
      await p.waitFor(/lo:/);
      expect(p.lines.join('\n')).toContain(`0::/edgeway-labtest-${lab.tag}`);
      await p.stop();
    } finally {
      // Anything still in the test cgroup is ours; a cgroup with members can't be removed.
      for (let i = 0; i < 50; i++) {
        const pids = await run('cat', [`${cg}/cgroup.procs`]).then((r) => r.stdout.split(/\s+/).filter(Boolean), () => []);
        for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
        if (await run('rmdir', [cg]).then(() => true, (e: Error) => { console.warn(e.message); return false; })) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });

  it('destroy removes every namespace it made', async () => {
    const other = new Lab();
    const ns = await other.ns('x');
    other.spawn(ns, 'sleep', ['30']);
    await other.destroy();
    const list = (await run('ip', ['netns', 'list'])).stdout;
    expect(list).not.toContain(ns);
  });
});
