/**
 * EdgeMesh agent config (agent.edgemesh.config.kubeedge.io/v1alpha1, the
 * `edgemesh-agent.yaml` of its ConfigMap) → edgeway config. Pure: the parsed YAML
 * in, our config input plus one warning per key that does not map (or maps with a
 * different meaning) out. Key names and defaults follow EdgeMesh's
 * `pkg/apis/config/v1alpha1/types.go` and `default.go`.
 */
import type { ConfigInput } from './schema.js';

export interface Migration {
  readonly config: ConfigInput;
  /** `path: reason`, in input order. */
  readonly warnings: string[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** EdgeMesh's defaults that differ from ours or that the migration has to spell out. */
export const EDGEMESH_DEFAULTS = {
  bridgeDeviceIP: '169.254.96.16',
  dnsPort: 53,
  pskPath: '/etc/edgemesh/psk',
  tunnelPort: 20006,
  metricsPort: 9999,
} as const;

/** Keys EdgeMesh fills in itself ("do not allow users to configure manually"). */
const INTERNAL = new Set(['mode', 'nodeName', 'namespace', 'listenInterface', 'kubeAPIConfig', 'configPath', 'caller']);

/** The agent config text inside EdgeMesh's ConfigMap (`edgemesh-agent-cfg`), if doc is one. */
export function agentConfigFromConfigMap(doc: unknown): string | undefined {
  if (!isObj(doc) || doc.kind !== 'ConfigMap' || !isObj(doc.data)) return undefined;
  const text = doc.data['edgemesh-agent.yaml'];
  return typeof text === 'string' ? text : undefined;
}

export function migrateEdgeMeshConfig(input: unknown): Migration {
  if (!isObj(input)) throw new TypeError('expected an EdgeMesh agent config (a YAML mapping with modules: …)');
  const warnings: string[] = [];
  const warn = (path: string, reason: string): void => void warnings.push(`${path}: ${reason}`);
  /** Read `obj[key]`, marking it handled; the rest of obj is reported as unmapped at the end. */
  const seen = new WeakMap<Obj, Set<string>>();
  const take = (obj: Obj, key: string): unknown => {
    let s = seen.get(obj);
    if (!s) seen.set(obj, (s = new Set()));
    s.add(key);
    return obj[key];
  };
  const section = (obj: Obj, key: string, path: string): Obj | undefined => {
    const v = take(obj, key);
    if (v === undefined || v === null) return undefined;
    if (!isObj(v)) { warn(`${path}.${key}`, 'expected a mapping; ignored'); return undefined; }
    return v;
  };
  const leftovers = (obj: Obj | undefined, path: string, why = 'no edgeway equivalent; ignored'): void => {
    if (!obj) return;
    const s = seen.get(obj) ?? new Set<string>();
    for (const k of Object.keys(obj)) {
      if (s.has(k)) continue;
      warn(`${path}.${k}`, INTERNAL.has(k) ? 'set by EdgeMesh itself, not by users; ignored' : why);
    }
  };

  const out: ConfigInput = {};
  take(input, 'kind');
  take(input, 'apiVersion');
  if (input.kind !== undefined && input.kind !== 'EdgeMeshAgent') warn('kind', `"${String(input.kind)}" is not an EdgeMesh agent config; reading it anyway`);

  // kubeAPIConfig → sources.kubernetes
  const kube = section(input, 'kubeAPIConfig', '');
  if (kube) {
    const master = take(kube, 'master');
    const kubeconfig = take(kube, 'kubeConfig');
    const k: NonNullable<NonNullable<ConfigInput['sources']>['kubernetes']> = {};
    if (typeof kubeconfig === 'string' && kubeconfig !== '') k.kubeconfig = kubeconfig;
    if (typeof master === 'string' && master !== '') {
      if (master.startsWith('http://')) k.apiServer = master;
      else warn('kubeAPIConfig.master', 'edgeway takes a plain-HTTP apiServer only; put the HTTPS server and its credentials in a kubeconfig (sources.kubernetes.kubeconfig)');
    }
    const meta = section(kube, 'metaServer', 'kubeAPIConfig');
    if (meta) {
      const server = take(meta, 'server');
      if (typeof server === 'string' && server !== '') {
        warn('kubeAPIConfig.metaServer.server', `EdgeMesh switches to metaServer on edge nodes by itself; edgeway needs it said: use sources.kubernetes.apiServer: "${server}" on edge nodes (deploy/kubernetes/overlays/kubeedge)`);
      }
      leftovers(meta, 'kubeAPIConfig.metaServer', 'metaServer TLS is not supported; edgeway reads metaServer over plain HTTP');
    }
    for (const key of ['contentType', 'qps', 'burst', 'deleteKubeConfig']) take(kube, key);
    leftovers(kube, 'kubeAPIConfig');
    if (Object.keys(k).length > 0) out.sources = { kubernetes: k };
  }

  // commonConfig → dns interface and address
  const common = section(input, 'commonConfig', '');
  const modules = section(input, 'modules', '') ?? {};
  const dnsMod = section(modules, 'edgeDNS', 'modules');
  let dnsIp: string = EDGEMESH_DEFAULTS.bridgeDeviceIP;
  let dnsPort: number = EDGEMESH_DEFAULTS.dnsPort;
  const dns: NonNullable<ConfigInput['dns']> = {};
  if (common) {
    const dev = take(common, 'bridgeDeviceName');
    if (typeof dev === 'string' && dev !== '') dns.interface = dev;
    const ip = take(common, 'bridgeDeviceIP');
    if (typeof ip === 'string' && ip !== '') dnsIp = ip;
    if (take(common, 'pprofConfig') !== undefined) warn('commonConfig.pprofConfig', 'no pprof in edgeway; use /metrics and `edgeway doctor`');
    leftovers(common, 'commonConfig');
  }
  if (dnsMod) {
    const enable = take(dnsMod, 'enable');
    if (typeof enable === 'boolean') dns.enabled = enable;
    const p = take(dnsMod, 'listenPort');
    if (typeof p === 'number') dnsPort = p;
    const cache = section(dnsMod, 'cacheDNS', 'modules.edgeDNS');
    if (cache) {
      const ups = take(cache, 'upstreamServers');
      if (Array.isArray(ups) && ups.length > 0) dns.upstreams = ups.map((u) => (/:\d+$/.test(String(u)) ? String(u) : `${String(u)}:53`));
      take(cache, 'enable');
      take(cache, 'autoDetect');
      if (take(cache, 'cacheTTL') !== undefined) warn('modules.edgeDNS.cacheDNS.cacheTTL', 'edgeway caches forwarded answers for their own TTL (dns.cacheSize bounds the cache); dns.ttl is the TTL of cluster answers');
      leftovers(cache, 'modules.edgeDNS.cacheDNS');
    }
    leftovers(dnsMod, 'modules.edgeDNS');
  } else {
    warn('modules.edgeDNS', 'absent: EdgeMesh enables its DNS on edge nodes only; edgeway enables it everywhere (set dns.enabled: false on cloud nodes that use CoreDNS)');
  }
  if (dnsIp !== EDGEMESH_DEFAULTS.bridgeDeviceIP || dnsPort !== EDGEMESH_DEFAULTS.dnsPort) dns.listen = [`${dnsIp}:${dnsPort}`];
  if (Object.keys(dns).length > 0) out.dns = dns;

  // edgeProxy → dataplane / serviceFilter
  const proxy = section(modules, 'edgeProxy', 'modules');
  if (proxy) {
    if (take(proxy, 'enable') === false) out.dataplane = { mode: 'none' };
    const mode = take(proxy, 'serviceFilterMode');
    if (mode === 'FilterIfLabelExists' || mode === 'FilterIfLabelDoesNotExists') out.serviceFilter = { mode };
    else if (mode !== undefined) warn('modules.edgeProxy.serviceFilterMode', `unknown mode "${String(mode)}"; edgeway's default FilterIfLabelExists kept`);
    const socks = section(proxy, 'socks5Proxy', 'modules.edgeProxy');
    if (socks && take(socks, 'enable') === true) warn('modules.edgeProxy.socks5Proxy', 'SOCKS5 to edge nodes is not built in this version');
    if (section(proxy, 'loadBalancer', 'modules.edgeProxy')) warn('modules.edgeProxy.loadBalancer', 'edgeway picks the balancer per service from its DestinationRule (consistent hash with bounded loads built in); no global setting');
    leftovers(proxy, 'modules.edgeProxy');
  }

  // edgeTunnel → tunnel
  const tun = section(modules, 'edgeTunnel', 'modules');
  if (tun) {
    const t: NonNullable<ConfigInput['tunnel']> = {};
    const enable = take(tun, 'enable');
    if (typeof enable === 'boolean') t.enabled = enable;
    const p = take(tun, 'listenPort');
    if (typeof p === 'number' && p !== EDGEMESH_DEFAULTS.tunnelPort) t.listenPort = p;
    const relays = take(tun, 'relayNodes');
    if (Array.isArray(relays)) {
      t.relayNodes = relays.flatMap((r, i) => {
        if (!isObj(r) || typeof r.nodeName !== 'string' || r.nodeName === '') { warn(`modules.edgeTunnel.relayNodes[${i}]`, 'no nodeName; skipped'); return []; }
        const addrs = Array.isArray(r.advertiseAddress) ? r.advertiseAddress.map(String) : [];
        return [{ nodeName: r.nodeName, advertiseAddress: addrs }];
      });
    }
    // EdgeMesh's PSK is on by default at /etc/edgemesh/psk; spell it out.
    const psk = section(tun, 'psk', 'modules.edgeTunnel');
    const pskOn = psk ? take(psk, 'enable') !== false : true;
    const pskPath = psk && typeof take(psk, 'path') === 'string' && psk.path !== '' ? String(psk.path) : EDGEMESH_DEFAULTS.pskPath;
    if (psk) leftovers(psk, 'modules.edgeTunnel.psk');
    if (pskOn) t.psk = { path: pskPath };
    const transport = take(tun, 'transport');
    if (transport !== undefined && transport !== 'tcp') warn('modules.edgeTunnel.transport', `"${String(transport)}" is not supported; edgeway's tunnel runs over TCP`);
    if (take(tun, 'rendezvous') !== undefined) warn('modules.edgeTunnel.rendezvous', 'not needed: edgeway peers find each other by node name through the relays and the Node annotation edgeway.io/peer-id');
    const metric = section(tun, 'metricConfig', 'modules.edgeTunnel');
    if (metric) {
      const port = take(metric, 'port');
      if (take(metric, 'enable') === true) out.metrics = { listen: `0.0.0.0:${typeof port === 'number' ? port : EDGEMESH_DEFAULTS.metricsPort}` };
      leftovers(metric, 'modules.edgeTunnel.metricConfig');
    }
    for (const k of ['maxCandidates', 'heartbeatPeriod', 'finderPeriod', 'enableIpfsLog', 'tunnelLimitConfig']) {
      if (take(tun, k) !== undefined) warn(`modules.edgeTunnel.${k}`, 'libp2p tuning that edgeway sets itself (see tunnel.* in the README); ignored');
    }
    for (const k of ['listenInterfaces', 'extraFilteredInterfaces']) {
      if (take(tun, k) !== undefined) warn(`modules.edgeTunnel.${k}`, 'use tunnel.listenAddresses / tunnel.announce (addresses, not interface names)');
    }
    leftovers(tun, 'modules.edgeTunnel');
    out.tunnel = t;
  }
  if (section(modules, 'edgeCNI', 'modules')?.enable === true) warn('modules.edgeCNI', 'EdgeCNI (pod networking across LANs) is not part of edgeway');
  leftovers(modules, 'modules');
  leftovers(input, '');
  return { config: out, warnings: warnings.map((w) => w.replace(/^\./, '')) };
}
