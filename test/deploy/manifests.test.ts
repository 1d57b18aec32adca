// deploy/kubernetes read as the API server would: every kustomization (base,
// overlays, monitoring) rendered offline with `kubectl kustomize`, every document
// validated against the Kubernetes OpenAPI schemas (kubernetes-models, plus the
// prometheus-operator models for the ServiceMonitor), every edgeway config inside a
// ConfigMap valid under our schema, workloads running real commands with a mounted
// config, RBAC covering what the sources read and nothing more, and the pieces that
// must agree across documents (relay name and port, scrape ports) agreeing.
import { execFileSync } from 'node:child_process';
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { commands } from '../../src/cli/commands/index.js';

const root = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url));
const kubectl = process.env.KUBECTL ?? 'kubectl';
type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; [k: string]: unknown };
interface Container { args: string[]; env?: { name: string; value?: string }[]; ports?: { containerPort: number }[]; volumeMounts: { name: string; mountPath: string }[] }
interface PodSpec { containers: Container[]; volumes: { name: string; configMap?: { name: string } }[] }
interface Workload extends Doc { spec: { template: { metadata: { annotations?: Record<string, string> }; spec: PodSpec } } }

const kustomizations = [
  'base',
  ...readdirSync(join(root, 'overlays')).map((o) => `overlays/${o}`),
  'monitoring',
];

function render(dir: string): Doc[] {
  // cwd outside the repo: old kubectl versions look for a kubeconfig but need none here.
  const out = execFileSync(kubectl, ['kustomize', join(root, dir)], { encoding: 'utf8', cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseAllDocuments(out).map((d) => d.toJS() as Doc);
}

/** The kubernetes-models class for apiVersion/kind (its validate() runs the OpenAPI schema). */
async function modelFor(d: Doc): Promise<new (o: unknown) => { validate(): void }> {
  const mod = (d.apiVersion.startsWith('monitoring.coreos.com/')
    ? await import(`@kubernetes-models/prometheus-operator/${d.apiVersion}`)
    : await import(`kubernetes-models/${d.apiVersion}`)) as Record<string, new (o: unknown) => { validate(): void }>;
  const cls = mod[d.kind];
  if (!cls) throw new Error(`no schema for ${d.apiVersion} ${d.kind}`);
  return cls;
}

/** Every edgeway config (data key *.yaml) of the rendered ConfigMaps, parsed with our schema. */
function configs(docs: Doc[]): Map<string, Config> {
  const out = new Map<string, Config>();
  for (const d of docs.filter((x) => x.kind === 'ConfigMap')) {
    for (const [key, text] of Object.entries((d as { data?: Record<string, string> }).data ?? {})) {
      if (key.endsWith('.yaml')) out.set(`${d.metadata.name}/${key}`, parseConfig(parse(text), `${d.metadata.name}/${key}`, {}, { NODE_NAME: 'n1' }));
    }
  }
  return out;
}

const rendered = new Map<string, Doc[]>();
const kubectlMissing = (() => { try { execFileSync(kubectl, ['version', '--client'], { stdio: 'ignore' }); return false; } catch { return true; } })();
if (kubectlMissing && process.env.CI === 'true') throw new Error(`${kubectl} not found: scripts/install-system-deps.sh installs Debian's kubernetes-client`);

describe.skipIf(kubectlMissing)('deploy/kubernetes', () => {
  it.each(kustomizations)('%s renders with kubectl kustomize and every document validates against the Kubernetes schema', async (dir) => {
    const docs = render(dir);
    rendered.set(dir, docs);
    expect(docs.length).toBeGreaterThan(0);
    for (const d of docs) {
      const Model = await modelFor(d);
      expect(() => new Model(d).validate(), `${dir}: ${d.kind} ${d.metadata.name}`).not.toThrow();
      if (d.kind !== 'Namespace' && !d.kind.startsWith('Cluster')) expect(d.metadata.namespace, `${d.kind} ${d.metadata.name}`).toBe('edgeway');
    }
  });

  it('the schema check can fail: a wrong field type is refused', async () => {
    const d = render('base').find((x) => x.kind === 'DaemonSet') as Workload;
    d.spec.template.spec.containers[0]!.args = 'agent' as unknown as string[];
    const Model = await modelFor(d);
    expect(() => new Model(d).validate()).toThrow(/args/);
  });

  it.each(kustomizations.filter((k) => k !== 'monitoring'))('%s: every edgeway config is valid, workloads run real commands with a mounted config', (dir) => {
    const docs = rendered.get(dir) ?? render(dir);
    const cfgs = configs(docs);
    expect(cfgs.size).toBeGreaterThan(0);
    const names = commands.map((c) => c.name);
    for (const w of docs.filter((x): x is Workload => x.kind === 'DaemonSet' || x.kind === 'Deployment')) {
      const spec = w.spec.template.spec;
      const c = spec.containers[0]!;
      expect(names).toContain(c.args[0]);
      const file = c.args[c.args.indexOf('--config') + 1]!;
      const mount = c.volumeMounts.find((m) => file.startsWith(`${m.mountPath}/`))!;
      const cm = spec.volumes.find((v) => v.name === mount.name)?.configMap?.name;
      const cfg = cfgs.get(`${cm}/${file.slice(mount.mountPath.length + 1)}`);
      expect(cfg, `${w.metadata.name}: ${file} from ConfigMap ${cm}`).toBeDefined();
      // Prometheus scrapes the port the config listens on.
      const port = w.spec.template.metadata.annotations?.['prometheus.io/port'];
      expect(cfg!.metrics.listen.endsWith(`:${port}`), `${w.metadata.name} metrics ${cfg!.metrics.listen} vs annotation ${port}`).toBe(true);
    }
  });

  it('cloud-relay: the agents name the relay as it calls itself, at the Service nodePort', () => {
    const docs = rendered.get('overlays/cloud-relay') ?? render('overlays/cloud-relay');
    const agent = configs(docs).get('edgeway-config/edgeway.yaml')!;
    const relay = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'edgeway-relay') as Workload;
    const relayName = relay.spec.template.spec.containers[0]!.env!.find((e) => e.name === 'NODE_NAME')!.value;
    const svc = docs.find((d) => d.kind === 'Service' && d.metadata.name === 'edgeway-relay') as { spec: { ports: { nodePort: number }[] } } & Doc;
    expect(agent.tunnel.relayNodes.map((r) => r.nodeName)).toEqual([relayName]);
    expect(agent.tunnel.relayNodes[0]!.advertiseAddress[0]).toMatch(new RegExp(`:${svc.spec.ports[0]!.nodePort}$`));
  });

  it('kubeedge: edge agents read metaServer and run on edge nodes only', () => {
    const docs = rendered.get('overlays/kubeedge') ?? render('overlays/kubeedge');
    expect(configs(docs).get('edgeway-config/edgeway.yaml')!.sources.kubernetes.apiServer).toBe('http://127.0.0.1:10550');
    const ds = docs.find((d) => d.kind === 'DaemonSet') as Workload & { spec: { template: { spec: { nodeSelector?: Record<string, string> } } } };
    expect(ds.spec.template.spec.nodeSelector).toEqual({ 'node-role.kubernetes.io/edge': '' });
  });

  it('RBAC: the agent may list/watch what the Kubernetes source reads and patch Nodes, nothing else', () => {
    const docs = rendered.get('base') ?? render('base');
    const role = docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === 'edgeway-agent') as { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] } & Doc;
    const can = (group: string, res: string, verb: string): boolean => role.rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(res) && r.verbs.includes(verb));
    for (const [g, r] of [['', 'services'], ['', 'endpoints'], ['', 'nodes'], ['discovery.k8s.io', 'endpointslices'], ['networking.istio.io', 'destinationrules']] as const) {
      expect(can(g, r, 'list') && can(g, r, 'watch'), `${g}/${r}`).toBe(true);
    }
    expect(role.rules.some((r) => r.resources.includes('secrets') || r.resources.includes('*') || r.verbs.includes('*'))).toBe(false);
    const writes = role.rules.flatMap((r) => r.verbs.filter((v) => !['get', 'list', 'watch'].includes(v)).map((v) => `${r.resources.join(',')}:${v}`));
    expect(writes).toEqual(['nodes:patch']);
  });

  it('the agent is not privileged and adds only the capabilities the README names', () => {
    const ds = (rendered.get('base') ?? render('base')).find((d) => d.kind === 'DaemonSet') as Workload;
    const sc = (ds.spec.template.spec.containers[0] as unknown as { securityContext: { privileged: boolean; capabilities: { add: string[] } } }).securityContext;
    expect(sc.privileged).toBe(false);
    expect([...sc.capabilities.add].sort()).toEqual(['BPF', 'NET_ADMIN', 'NET_BIND_SERVICE']);
  });
});

it('every kustomization directory is covered', () => {
  const dirs = ['base', 'monitoring', ...readdirSync(join(root, 'overlays')).map((o) => `overlays/${o}`)];
  expect(dirs.filter((d) => existsSync(join(root, d, 'kustomization.yaml'))).sort()).toEqual([...kustomizations].sort());
});
