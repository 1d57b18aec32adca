// The docs match the code: every config key (from the schema itself) is in the
// generated configuration reference, every metric the code defines is in the
// metrics reference, the generated files are current, every command is listed in
// README.md and answers --help (the built CLI), and the README benchmark table and
// chart match bench/results.
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { configSchema } from '../../src/config/schema.js';
import { commands } from '../../src/cli/commands/index.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);
const read = (p: string): string => readFileSync(join(root, p), 'utf8');

type JsonSchema = { type?: string; properties?: Record<string, JsonSchema>; items?: JsonSchema };
/** Leaf key paths of the schema (list items as key[].x), computed here, not by the generator. */
function leaves(s: JsonSchema, path = ''): string[] {
  return Object.entries(s.properties ?? {}).flatMap(([k, v]) => {
    const p = path ? `${path}.${k}` : k;
    if (v.properties) return leaves(v, p);
    if (v.items?.properties) return [p, ...leaves(v.items, `${p}[]`)];
    return [p];
  });
}

describe('docs', () => {
  it('every config key of the schema is in docs/configuration.md', () => {
    const keys = leaves(z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema);
    expect(keys.length).toBeGreaterThan(60);
    const doc = read('docs/configuration.md');
    const missing = keys.filter((k) => !doc.includes(`| \`${k}\` |`));
    expect(missing).toEqual([]);
  });

  it('generated references (configuration, metrics) are current', async () => {
    await expect(run(process.execPath, [join(root, 'scripts/docs-reference.mjs'), '--check'], { cwd: root })).resolves.toBeDefined();
  });

  it('README benchmark table and docs/benchmarks.svg match bench/results', async () => {
    await expect(run(process.execPath, [join(root, 'scripts/bench-report.mjs'), '--check'], { cwd: root })).resolves.toBeDefined();
    expect(read('docs/benchmarks.svg')).toMatch(/^<svg[\s\S]*<\/svg>\n$/);
  });

  it('every metric name in src/ is in docs/metrics.md', () => {
    const doc = read('docs/metrics.md');
    const names = new Set<string>();
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir)) {
        const p = join(dir, e);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/name:\s*'(edgeway_[a-z0-9_]+)'/g)) names.add(m[1]!);
      }
    };
    walk(join(root, 'src'));
    expect(names.size).toBeGreaterThan(40);
    expect([...names].filter((n) => !doc.includes(`\`${n}\``))).toEqual([]);
  });

  it.each(commands.map((c) => [c.name]))('`edgeway %s --help` works and README lists the command', async (name) => {
    const { stdout } = await run(process.execPath, [join(root, 'bin/edgeway.js'), name, '--help'], { cwd: root });
    expect(stdout).toMatch(new RegExp(`^Usage: edgeway ${name}\\b`));
    const block = /## Commands\n\n```\n([\s\S]*?)```/.exec(read('README.md'))?.[1] ?? '';
    expect(block).toMatch(new RegExp(`^edgeway ${name}\\b`, 'm'));
  });

  it('the EdgeMesh guide covers the keys migrate-config maps', () => {
    const doc = read('docs/migrate-from-edgemesh.md');
    for (const k of ['modules.edgeDNS', 'serviceFilterMode', 'listenPort', 'relayNodes', 'psk', 'bridgeDeviceIP', 'DestinationRule', 'service-proxy-name']) expect(doc, k).toContain(k);
  });
});
