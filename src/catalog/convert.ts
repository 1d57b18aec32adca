/**
 * Conversion of Kubernetes API objects (class instances from a list, plain JSON from
 * a watch, or parsed YAML from a static file — all read by field name) into slim
 * catalog records. Each function validates one object and either returns the slim
 * record or a reason it was rejected; one bad object never affects another.
 */
import type { Endpoint, EndpointPort, HashKey, LbPolicy, Node, Protocol, ServicePort, SessionAffinity } from './types.js';
import { ipFamily, normalizeIp } from './ip.js';

export type Converted<T> = { ok: true; value: T } | { ok: false; reason: string };

/** A Service without its endpoints and policy (joined in by the builder). */
export type SlimService = Omit<import('./types.js').Service, 'endpoints' | 'lbPolicy'> & {
  /** Excluded by the EdgeMesh-compatible service filter (kept so the count is visible). */
  readonly filtered: boolean;
};

/** An EndpointSlice, or a core/v1 Endpoints object converted to the same shape. */
export interface SlimSlice {
  readonly namespace: string;
  readonly name: string;
  readonly serviceName: string;
  readonly endpoints: readonly Endpoint[];
}

export interface SlimPolicy {
  readonly namespace: string;
  /** DestinationRule name; matched to the Service of the same name (as EdgeMesh does). */
  readonly name: string;
  readonly policy: LbPolicy;
}

export type ServiceFilterMode = 'FilterIfLabelExists' | 'FilterIfLabelDoesNotExists';

/** EdgeMesh's label: services carrying it are skipped in FilterIfLabelExists mode, kept only with it in the other mode. */
export const SERVICE_PROXY_NAME_LABEL = 'service.edgemesh.kubeedge.io/service-proxy-name';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';
export const PEER_ID_ANNOTATION = 'edgeway.io/peer-id';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export type Obj = Record<string, unknown>;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function obj(v: unknown): Obj | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined;
}
export function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
export function fail<T>(reason: string): Converted<T> {
  return { ok: false, reason };
}

/** `namespace/name` of an API object, for logs ("?" parts when missing). */
export function objectRef(o: unknown): string {
  const m = obj(obj(o)?.metadata);
  return `${str(m?.namespace) ?? ''}${m?.namespace ? '/' : ''}${str(m?.name) ?? '?'}`;
}

export function meta(o: unknown, namespaced: boolean): Converted<{ namespace: string; name: string; labels: Obj; annotations: Obj }> {
  const m = obj(obj(o)?.metadata);
  if (!m) return fail('metadata missing');
  const name = str(m.name);
  if (!name) return fail('metadata.name missing');
  const namespace = namespaced ? (str(m.namespace) ?? '') : '';
  if (namespaced && !namespace) return fail('metadata.namespace missing');
  if (namespaced && !DNS1123_LABEL.test(namespace)) return fail(`metadata.namespace "${namespace}" is not a DNS label`);
  return { ok: true, value: { namespace, name, labels: obj(m.labels) ?? {}, annotations: obj(m.annotations) ?? {} } };
}

function protocol(v: unknown, where: string): Converted<Protocol> {
  const p = v === undefined || v === null ? 'TCP' : v;
  if (p === 'TCP' || p === 'UDP' || p === 'SCTP') return { ok: true, value: p };
  return fail(`${where}.protocol "${String(p)}" is not TCP, UDP or SCTP`);
}

function portNumber(v: unknown, where: string): Converted<number> {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) return { ok: true, value: v };
  return fail(`${where} ${JSON.stringify(v)} is out of range 1-65535`);
}

export function convertService(o: unknown, filterMode: ServiceFilterMode): Converted<SlimService> {
  const m = meta(o, true);
  if (!m.ok) return m;
  const { namespace, name, labels } = m.value;
  if (!DNS1123_LABEL.test(name) || name.length > 63) return fail(`name "${name}" is not a DNS label`);
  const spec = obj(obj(o)?.spec);
  if (!spec) return fail('spec missing');
  const type = (str(spec.type) ?? 'ClusterIP') as SlimService['type'];
  if (!['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'].includes(type)) return fail(`spec.type "${type}" unknown`);

  const rawIps = arr(spec.clusterIPs).length > 0 ? arr(spec.clusterIPs) : spec.clusterIP !== undefined ? [spec.clusterIP] : [];
  const clusterIPs: string[] = [];
  let headless = labels[HEADLESS_LABEL] !== undefined;
  for (const [i, ip] of rawIps.entries()) {
    if (ip === 'None' || ip === '' ) { headless = headless || ip === 'None'; continue; }
    const n = typeof ip === 'string' ? normalizeIp(ip) : undefined;
    if (!n) return fail(`spec.clusterIPs[${i}] "${String(ip)}" is not an IP address`);
    if (!clusterIPs.includes(n)) clusterIPs.push(n);
  }
  if (headless) clusterIPs.length = 0;

  const ports: ServicePort[] = [];
  const names = new Set<string>();
  const rawPorts = arr(spec.ports);
  for (const [i, rp] of rawPorts.entries()) {
    const p = obj(rp);
    if (!p) return fail(`spec.ports[${i}] is not an object`);
    const pname = str(p.name) ?? '';
    if (rawPorts.length > 1 && !pname) return fail(`spec.ports[${i}].name is required when there are several ports`);
    const proto = protocol(p.protocol, `spec.ports[${i}]`);
    if (!proto.ok) return proto;
    const key = `${pname}`;
    if (names.has(key)) return fail(`spec.ports[${i}].name "${pname}" is duplicated`);
    names.add(key);
    const port = portNumber(p.port, `spec.ports[${i}].port`);
    if (!port.ok) return port;
    let targetPort: number | string = port.value;
    if (typeof p.targetPort === 'number') {
      const tp = portNumber(p.targetPort, `spec.ports[${i}].targetPort`);
      if (!tp.ok) return tp;
      targetPort = tp.value;
    } else if (typeof p.targetPort === 'string' && p.targetPort !== '') {
      targetPort = /^\d+$/.test(p.targetPort) ? Number(p.targetPort) : p.targetPort;
      if (typeof targetPort === 'number' && !portNumber(targetPort, '').ok) return fail(`spec.ports[${i}].targetPort out of range`);
    }
    const sp: ServicePort = { name: pname, protocol: proto.value, port: port.value, targetPort };
    if (typeof p.nodePort === 'number' && p.nodePort > 0) Object.assign(sp, { nodePort: p.nodePort });
    if (str(p.appProtocol)) Object.assign(sp, { appProtocol: str(p.appProtocol) });
    ports.push(sp);
  }

  let sessionAffinity: SessionAffinity = { kind: 'None' };
  if (spec.sessionAffinity === 'ClientIP') {
    const t = obj(obj(spec.sessionAffinityConfig)?.clientIP)?.timeoutSeconds;
    const timeoutSeconds = t === undefined ? 10_800 : t;
    if (typeof timeoutSeconds !== 'number' || !Number.isInteger(timeoutSeconds) || timeoutSeconds < 1 || timeoutSeconds > 86_400) {
      return fail(`spec.sessionAffinityConfig.clientIP.timeoutSeconds ${JSON.stringify(t)} is out of range 1-86400`);
    }
    sessionAffinity = { kind: 'ClientIP', timeoutSeconds };
  } else if (spec.sessionAffinity !== undefined && spec.sessionAffinity !== 'None' && spec.sessionAffinity !== null) {
    return fail(`spec.sessionAffinity "${String(spec.sessionAffinity)}" unknown`);
  }

  const hasLabel = labels[SERVICE_PROXY_NAME_LABEL] !== undefined;
  const filtered = filterMode === 'FilterIfLabelExists' ? hasLabel : !hasLabel;
  const svc: SlimService = {
    namespace,
    name,
    key: `${namespace}/${name}`,
    type,
    clusterIPs,
    headless,
    ports,
    sessionAffinity,
    internalTrafficPolicy: spec.internalTrafficPolicy === 'Local' ? 'Local' : 'Cluster',
    filtered,
  };
  if (type === 'ExternalName') {
    const ext = str(spec.externalName);
    if (!ext || !DNS1123_SUBDOMAIN.test(ext.replace(/\.$/, '').toLowerCase())) return fail('spec.externalName missing or not a DNS name');
    Object.assign(svc, { externalName: ext.replace(/\.$/, '').toLowerCase(), clusterIPs: [] });
  }
  if (str(spec.trafficDistribution)) Object.assign(svc, { trafficDistribution: str(spec.trafficDistribution) });
  return { ok: true, value: svc };
}

function endpointPorts(raw: unknown[], where: string): Converted<EndpointPort[]> {
  const out: EndpointPort[] = [];
  for (const [i, rp] of raw.entries()) {
    const p = obj(rp);
    if (!p) return fail(`${where}[${i}] is not an object`);
    const proto = protocol(p.protocol, `${where}[${i}]`);
    if (!proto.ok) return proto;
    const port = portNumber(p.port, `${where}[${i}].port`);
    if (!port.ok) return port;
    const name = str(p.name) ?? '';
    if (out.some((x) => x.name === name)) return fail(`${where}[${i}].name "${name}" is duplicated`);
    out.push({ name, protocol: proto.value, port: port.value });
  }
  return { ok: true, value: out };
}

export function convertEndpointSlice(o: unknown): Converted<SlimSlice> {
  const m = meta(o, true);
  if (!m.ok) return m;
  const serviceName = str(m.value.labels[SERVICE_NAME_LABEL]);
  if (!serviceName) return fail(`label ${SERVICE_NAME_LABEL} missing`);
  const root = obj(o)!;
  const addressType = str(root.addressType);
  if (addressType !== 'IPv4' && addressType !== 'IPv6') {
    // FQDN slices are deprecated and carry no routable address; not an error, just empty.
    if (addressType === 'FQDN') return { ok: true, value: { namespace: m.value.namespace, name: m.value.name, serviceName, endpoints: [] } };
    return fail(`addressType "${String(addressType)}" unknown`);
  }
  const ports = endpointPorts(arr(root.ports), 'ports');
  if (!ports.ok) return ports;
  const endpoints: Endpoint[] = [];
  for (const [i, re] of arr(root.endpoints).entries()) {
    const e = obj(re);
    if (!e) return fail(`endpoints[${i}] is not an object`);
    const cond = obj(e.conditions) ?? {};
    // API semantics: nil ready means ready; nil serving means same as ready.
    const ready = cond.ready === undefined || cond.ready === null ? true : cond.ready === true;
    const serving = cond.serving === undefined || cond.serving === null ? ready : cond.serving === true;
    const terminating = cond.terminating === true;
    const hints = arr(obj(e.hints)?.forZones).map((z) => str(obj(z)?.name)).filter((z): z is string => !!z);
    const addrs = arr(e.addresses);
    if (addrs.length === 0) return fail(`endpoints[${i}].addresses empty`);
    for (const [j, a] of addrs.entries()) {
      const ip = typeof a === 'string' ? normalizeIp(a) : undefined;
      if (!ip) return fail(`endpoints[${i}].addresses[${j}] "${String(a)}" is not an IP address`);
      const family = ipFamily(ip)!;
      if ((family === 4) !== (addressType === 'IPv4')) return fail(`endpoints[${i}].addresses[${j}] "${ip}" does not match addressType ${addressType}`);
      const ep: Endpoint = { ip, family, ready, serving, terminating, zoneHints: hints, ports: ports.value };
      if (str(e.nodeName)) Object.assign(ep, { nodeName: str(e.nodeName) });
      if (str(e.zone)) Object.assign(ep, { zone: str(e.zone) });
      if (str(e.hostname)) Object.assign(ep, { hostname: str(e.hostname) });
      endpoints.push(ep);
    }
  }
  return { ok: true, value: { namespace: m.value.namespace, name: m.value.name, serviceName, endpoints } };
}

/** core/v1 Endpoints (used where discovery.k8s.io/v1 is not served) → the slice shape. */
export function convertEndpoints(o: unknown): Converted<SlimSlice> {
  const m = meta(o, true);
  if (!m.ok) return m;
  const endpoints: Endpoint[] = [];
  for (const [si, rs] of arr(obj(o)?.subsets).entries()) {
    const s = obj(rs);
    if (!s) return fail(`subsets[${si}] is not an object`);
    const ports = endpointPorts(arr(s.ports), `subsets[${si}].ports`);
    if (!ports.ok) return ports;
    for (const [ready, list] of [[true, arr(s.addresses)], [false, arr(s.notReadyAddresses)]] as const) {
      for (const [i, ra] of list.entries()) {
        const a = obj(ra);
        const ip = str(a?.ip) ? normalizeIp(str(a?.ip)!) : undefined;
        if (!a || !ip) return fail(`subsets[${si}].addresses[${i}].ip "${String(a?.ip)}" is not an IP address`);
        const ep: Endpoint = { ip, family: ipFamily(ip)!, ready, serving: ready, terminating: false, zoneHints: [], ports: ports.value };
        if (str(a.nodeName)) Object.assign(ep, { nodeName: str(a.nodeName) });
        if (str(a.hostname)) Object.assign(ep, { hostname: str(a.hostname) });
        endpoints.push(ep);
      }
    }
  }
  return { ok: true, value: { namespace: m.value.namespace, name: m.value.name, serviceName: m.value.name, endpoints } };
}

export function convertNode(o: unknown): Converted<Node> {
  const m = meta(o, false);
  if (!m.ok) return m;
  const status = obj(obj(o)?.status) ?? {};
  const addresses = [];
  for (const [i, ra] of arr(status.addresses).entries()) {
    const a = obj(ra);
    const type = str(a?.type);
    const address = str(a?.address);
    if (!type || !address) return fail(`status.addresses[${i}] needs type and address`);
    if ((type === 'InternalIP' || type === 'ExternalIP') && !normalizeIp(address)) {
      return fail(`status.addresses[${i}].address "${address}" is not an IP address`);
    }
    addresses.push({ type, address: normalizeIp(address) ?? address });
  }
  const readyCond = arr(status.conditions).map(obj).find((c) => c?.type === 'Ready');
  const node: Node = { name: m.value.name, addresses, ready: readyCond ? readyCond.status === 'True' : true };
  const zone = str(m.value.labels[ZONE_LABEL]);
  if (zone) Object.assign(node, { zone });
  const peerId = str(m.value.annotations[PEER_ID_ANNOTATION]);
  if (peerId) Object.assign(node, { peerId });
  return { ok: true, value: node };
}

/** Istio DestinationRule `spec.trafficPolicy.loadBalancer` → policy. Other DR features are ignored. */
export function convertDestinationRule(o: unknown): Converted<SlimPolicy | null> {
  const m = meta(o, true);
  if (!m.ok) return m;
  const lb = obj(obj(obj(obj(o)?.spec)?.trafficPolicy)?.loadBalancer);
  if (!lb) return { ok: true, value: null };
  let policy: LbPolicy;
  if (lb.simple !== undefined) {
    switch (lb.simple) {
      case 'ROUND_ROBIN': policy = { kind: 'roundRobin' }; break;
      case 'RANDOM': case 'UNSPECIFIED': policy = { kind: 'random' }; break;
      case 'LEAST_REQUEST': case 'LEAST_CONN': policy = { kind: 'leastRequest' }; break;
      default: return fail(`spec.trafficPolicy.loadBalancer.simple "${String(lb.simple)}" unsupported`);
    }
  } else if (obj(lb.consistentHash)) {
    const ch = obj(lb.consistentHash)!;
    let key: HashKey;
    if (str(ch.httpHeaderName)) key = { type: 'header', name: str(ch.httpHeaderName)!.toLowerCase() };
    else if (ch.useSourceIp === true) key = { type: 'sourceIp' };
    else if (obj(ch.httpCookie) && str(obj(ch.httpCookie)!.name)) {
      const c = obj(ch.httpCookie)!;
      key = { type: 'cookie', name: str(c.name)! };
      if (str(c.path)) Object.assign(key, { path: str(c.path) });
      const ttl = parseDuration(c.ttl);
      if (ttl === null) return fail(`spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl "${String(c.ttl)}" is not a duration`);
      if (ttl !== undefined) Object.assign(key, { ttlSeconds: ttl });
    } else return fail('spec.trafficPolicy.loadBalancer.consistentHash needs httpHeaderName, useSourceIp or httpCookie.name');
    policy = { kind: 'consistentHash', key };
  } else return { ok: true, value: null };
  return { ok: true, value: { namespace: m.value.namespace, name: m.value.name, policy } };
}

/** "10s", "1m30s", "1.5h" → seconds; undefined when absent; null when malformed. */
function parseDuration(v: unknown): number | undefined | null {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') return null;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  for (const m of v.matchAll(re)) {
    consumed += m[0].length;
    total += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  }
  return consumed === v.length && consumed > 0 ? Math.round(total) : null;
}
