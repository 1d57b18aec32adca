/**
 * Golden rulesets: test/golden/<case>/input.yaml (Kubernetes objects, plus an
 * optional `kind: GoldenOptions` document with nodeName/routableCIDRs/mode) →
 * expected.nft. Compared in order: the rules of a chain are evaluated top to
 * bottom, so a reordered chain behaves differently and must fail. Only the
 * elements of a set or map are compared as a set (their order carries no meaning).
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

/** Trimmed lines in order; each `elements = { … }` run sorted (trailing commas dropped). */
function normalise(text: string): string[] {
  const out: string[] = [];
  let elements: string[] | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/,$/, '');
    if (!line) continue;
    if (elements && line === '}') {
      out.push(...elements.sort(), line);
      elements = undefined;
    } else if (elements) {
      elements.push(line);
    } else {
      out.push(line);
      if (/^elements = \{$/.test(line)) elements = [];
    }
  }
  return out;
}

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

  it.each([
    { name: 'two rules of a chain swapped', a: 'chain c {\n  ip daddr 10.0.0.1 drop\n  accept\n}', b: 'chain c {\n  accept\n  ip daddr 10.0.0.1 drop\n}', same: false },
    { name: 'set elements reordered', a: 'elements = {\n  1.1.1.1,\n  2.2.2.2\n}', b: 'elements = {\n  2.2.2.2,\n  1.1.1.1\n}', same: true },
    { name: 'indentation and blank lines', a: 'chain c {\n\taccept\n}', b: '  chain c {\n\n  accept\n}', same: true },
  ])('comparison: $name → same: $same', ({ a, b, same }) => {
    expect(JSON.stringify(normalise(a)) === JSON.stringify(normalise(b))).toBe(same);
  });
});
