// The deploy/ manifests, read as the API server would: every document well formed,
// the embedded agent config valid under our schema (base and overlays), the agent's
// args naming a real command and a mounted config path, and RBAC covering what the
// Kubernetes source watches.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { commands } from '../../src/cli/commands/index.js';

const dir = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url));
type Doc = { apiVersion?: string; kind?: string; metadata?: { name?: string }; [k: string]: unknown };
const base = join(dir, 'base');
const kust = parse(readFileSync(join(base, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
const docs: Doc[] = kust.resources.flatMap((f) => parseAllDocuments(readFileSync(join(base, f), 'utf8')).map((d) => d.toJS() as Doc));

describe('deploy/kubernetes', () => {
  it('lists every manifest file in the kustomization, and each document is well formed', () => {
    const files = readdirSync(base).filter((f) => f !== 'kustomization.yaml');
    expect([...kust.resources].sort()).toEqual(files.sort());
    for (const d of docs) {
      expect(d.apiVersion, JSON.stringify(d).slice(0, 80)).toBeTruthy();
      expect(d.kind).toBeTruthy();
      expect(d.metadata?.name).toMatch(/^[a-z0-9-]+$/);
    }
  });

  const configs: [string, string][] = [
    ['base', (docs.find((d) => d.kind === 'ConfigMap') as { data: Record<string, string> }).data['edgeway.yaml']!],
    ...readdirSync(join(dir, 'overlays')).map((o): [string, string] => {
      const k = parse(readFileSync(join(dir, 'overlays', o, 'kustomization.yaml'), 'utf8')) as { patches: { patch: string }[] };
      const ops = k.patches.flatMap((p) => parse(p.patch) as { path: string; value: string }[]);
      return [`overlay ${o}`, ops.find((op) => op.path === '/data/edgeway.yaml')!.value];
    }),
  ];
  it.each(configs)('%s agent config is valid', (_name, text) => {
    expect(() => parseConfig(parse(text), 'edgeway.yaml', {}, { NODE_NAME: 'n1' })).not.toThrow();
  });

  it('workloads run real commands with the mounted config', () => {
    const names = commands.map((c) => c.name);
    for (const d of docs.filter((x) => x.kind === 'DaemonSet' || x.kind === 'Deployment')) {
      const spec = (d as { spec: { template: { spec: { containers: { args: string[]; volumeMounts: { mountPath: string }[] }[] } } } }).spec.template.spec;
      const c = spec.containers[0]!;
      expect(names).toContain(c.args[0]);
      const cfg = c.args[c.args.indexOf('--config') + 1]!;
      expect(c.volumeMounts.some((m) => cfg.startsWith(`${m.mountPath}/`))).toBe(true);
    }
  });

  it('RBAC grants list/watch on everything the Kubernetes source reads, and no write but node patch', () => {
    const role = docs.find((d) => d.kind === 'ClusterRole') as { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
    const can = (group: string, res: string, verb: string): boolean => role.rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(res) && r.verbs.includes(verb));
    for (const [g, r] of [['', 'services'], ['', 'endpoints'], ['', 'nodes'], ['discovery.k8s.io', 'endpointslices'], ['networking.istio.io', 'destinationrules']] as const) {
      expect(can(g, r, 'list') && can(g, r, 'watch'), `${g}/${r}`).toBe(true);
    }
    const writes = role.rules.flatMap((r) => r.verbs.filter((v) => !['get', 'list', 'watch'].includes(v)).map((v) => `${r.resources.join(',')}:${v}`));
    expect(writes).toEqual(['nodes:patch']);
  });

  it('gateway: valid config, read-only RBAC covering the gateway objects and TLS Secrets', () => {
    const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata?.name === 'edgeway-gateway-config') as { data: Record<string, string> };
    expect(() => parseConfig(parse(cm.data['edgeway.yaml']!), 'edgeway.yaml', {}, { NODE_NAME: 'n1' })).not.toThrow();
    const role = docs.find((d) => d.kind === 'ClusterRole' && d.metadata?.name === 'edgeway-gateway') as { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
    const can = (group: string, res: string, verb: string): boolean => role.rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(res) && r.verbs.includes(verb));
    for (const [g, r] of [['', 'services'], ['', 'secrets'], ['discovery.k8s.io', 'endpointslices'], ['networking.istio.io', 'gateways'], ['networking.istio.io', 'virtualservices'],
      ['gateway.networking.k8s.io', 'gateways'], ['gateway.networking.k8s.io', 'httproutes']] as const) {
      expect(can(g, r, 'list') && can(g, r, 'watch'), `${g}/${r}`).toBe(true);
    }
    expect(role.rules.flatMap((r) => r.verbs).every((v) => ['get', 'list', 'watch'].includes(v))).toBe(true);
  });
});
