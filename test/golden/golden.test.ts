/**
 * Golden rulesets: test/golden/<case>/input.yaml (Kubernetes objects, plus an
 * optional `kind: GoldenOptions` document with nodeName/routableCIDRs/mode) →
 * expected.nft. Compared order-insensitively (sorted, trimmed lines);
 * `UPDATE_GOLDEN=1 npx vitest run test/golden` rewrites the files for review.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseStaticFile } from '../../src/sources/static.js';
import { buildSnapshot } from '../../src/catalog/build.js';
import { buildPlan, type PlanOptions } from '../../src/plan/build.js';
import { compile } from '../../src/dataplane/nftables/compile.js';
import { rulesetText } from '../../src/dataplane/nftables/render.js';
import type { SlimPolicy, SlimService, SlimSlice } from '../../src/catalog/convert.js';
import type { Node } from '../../src/catalog/types.js';

const dir = new URL('.', import.meta.url).pathname;
const cases = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();

function render(input: string): string {
  const opts: PlanOptions = { nodeName: 'edge-1', routableCIDRs: [], userspacePorts: '20100-24999', mode: 'nftables' };
  for (const doc of parseAllDocuments(input)) {
    const js = doc.toJS() as { kind?: string } & Partial<PlanOptions> | null;
    if (js?.kind === 'GoldenOptions') Object.assign(opts, { ...js, kind: undefined });
  }
  const ignore = { reject: () => undefined, clearRejection: () => undefined };
  const r = parseStaticFile('input.yaml', input, 'FilterIfLabelExists', ignore);
  const snap = buildSnapshot({
    services: r.service.values() as Iterable<SlimService>,
    slices: r.slice.values() as Iterable<SlimSlice>,
    nodes: r.node.values() as Iterable<Node>,
    policies: r.policy.values() as Iterable<SlimPolicy>,
  }, 1, '1970-01-01T00:00:00.000Z');
  return rulesetText(compile(buildPlan(snap, opts)));
}

const normalise = (text: string): string[] => text.split('\n').map((l) => l.trim().replace(/,$/, '')).filter(Boolean).sort();

describe('golden rulesets', () => {
  it('has the required cases', () => {
    expect(cases).toEqual(expect.arrayContaining(['plain', 'multi-port', 'udp', 'ipv6', 'headless', 'no-endpoints', 'affinity', 'round-robin', 'remote-endpoints', 'filtered', 'terminating', 'zone-hints']));
  });

  it.each(cases)('%s', (name) => {
    const input = readFileSync(join(dir, name, 'input.yaml'), 'utf8');
    const expectedFile = join(dir, name, 'expected.nft');
    const got = render(input);
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(expectedFile)) {
      writeFileSync(expectedFile, got);
      if (process.env.UPDATE_GOLDEN !== '1') throw new Error(`${expectedFile} was missing; written — review it and re-run`);
    }
    expect(normalise(got)).toEqual(normalise(readFileSync(expectedFile, 'utf8')));
  });
});
