/**
 * Route model goldens: test/gateway/golden/<case>/input.yaml (Services,
 * EndpointSlices, Istio and Gateway API objects, Secrets, and an optional
 * `kind: GoldenOptions` document with labels/gatewayClassName) → expected.json (the
 * model plus every rejection, conversion and binding alike). Secrets' PEM text is
 * replaced by its length. `UPDATE_GOLDEN=1 npx vitest run test/gateway/golden.test.ts`
 * rewrites the files for review.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseStaticFile } from '../../src/sources/static.js';
import { buildSnapshot } from '../../src/catalog/build.js';
import type { SlimPolicy, SlimService, SlimSlice } from '../../src/catalog/convert.js';
import type { Node } from '../../src/catalog/types.js';
import type { IngressObject } from '../../src/catalog/ingress.js';
import { buildRouteModel, type ModelOptions } from '../../src/gateway/model.js';

const dir = new URL('./golden/', import.meta.url).pathname;
const cases = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();

function render(input: string): unknown {
  const opts: { -readonly [K in keyof ModelOptions]: ModelOptions[K] } = { labels: { istio: 'ingressgateway' }, gatewayClassName: 'edgeway', clusterDomain: 'cluster.local' };
  for (const doc of parseAllDocuments(input)) {
    const js = doc.toJS() as ({ kind?: string } & Partial<ModelOptions>) | null;
    if (js?.kind === 'GoldenOptions') Object.assign(opts, { ...js, kind: undefined });
  }
  const conversion: { kind: string; ref: string; reason: string }[] = [];
  const sink = { reject: (kind: string, ref: string, reason: string) => { conversion.push({ kind, ref, reason }); }, clearRejection: () => undefined };
  const r = parseStaticFile('input.yaml', input, 'FilterIfLabelExists', sink, true);
  const snap = buildSnapshot({
    services: r.service.values() as Iterable<SlimService>,
    slices: r.slice.values() as Iterable<SlimSlice>,
    nodes: r.node.values() as Iterable<Node>,
    policies: r.policy.values() as Iterable<SlimPolicy>,
  }, 1, '1970-01-01T00:00:00.000Z');
  const objects = [...r.ingress.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, o]) => o as IngressObject);
  const model = buildRouteModel(objects, snap.services, opts);
  return { conversionRejected: conversion.filter((c) => !c.reason.includes('GoldenOptions')), ...model };
}

describe('gateway route model goldens', () => {
  it.each(cases)('%s', (name) => {
    const input = readFileSync(join(dir, name, 'input.yaml'), 'utf8');
    const got = JSON.parse(JSON.stringify(render(input))) as unknown;
    const file = join(dir, name, 'expected.json');
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) {
      writeFileSync(file, `${JSON.stringify(got, null, 2)}\n`);
      if (process.env.UPDATE_GOLDEN !== '1') throw new Error(`${file} was missing: written, review it`);
    }
    expect(got).toEqual(JSON.parse(readFileSync(file, 'utf8')));
  });
});
