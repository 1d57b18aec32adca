/**
 * Route one Kubernetes-shaped object (from a file or the API) to its converter and
 * into a sink. Shared by the static and Kubernetes sources so both validate alike.
 */
import {
  convertDestinationRule, convertEndpointSlice, convertEndpoints, convertNode, convertService, objectRef,
  type ServiceFilterMode,
} from '../catalog/convert.js';
import type { RecordKind, SourceSink } from '../catalog/store.js';
import { convertIstioGateway, convertTlsSecret, convertVirtualService } from '../catalog/convert-ingress.js';
import { convertGatewayApiGateway, convertHttpRoute } from '../catalog/convert-gatewayapi.js';

export type ApiKind = 'Service' | 'EndpointSlice' | 'Endpoints' | 'Node' | 'DestinationRule' | IngressApiKind;
/** The gateway's kinds (`GatewayApiGateway` = gateway.networking.k8s.io Gateway, told apart by apiVersion). */
export type IngressApiKind = 'Gateway' | 'VirtualService' | 'Secret' | 'GatewayApiGateway' | 'HTTPRoute';

export const KIND_TO_RECORD: Record<ApiKind, RecordKind> = {
  Service: 'service',
  EndpointSlice: 'slice',
  Endpoints: 'slice',
  Node: 'node',
  DestinationRule: 'policy',
  Gateway: 'ingress',
  VirtualService: 'ingress',
  Secret: 'ingress',
  GatewayApiGateway: 'ingress',
  HTTPRoute: 'ingress',
};

/** The ApiKind of a parsed object (its `kind`, with the Gateway API's Gateway told apart by apiVersion), or undefined. */
export function apiKindOf(o: unknown): ApiKind | undefined {
  const { kind, apiVersion } = (o ?? {}) as { kind?: unknown; apiVersion?: unknown };
  if (typeof kind !== 'string' || !(kind in KIND_TO_RECORD) || kind === 'GatewayApiGateway') return undefined;
  if (kind === 'Gateway' && typeof apiVersion === 'string' && apiVersion.startsWith('gateway.networking.k8s.io/')) return 'GatewayApiGateway';
  return kind as ApiKind;
}

/** Record key: kind-qualified so a Service and its Endpoints of the same name do not collide. */
export function recordKey(kind: ApiKind, o: unknown): string {
  return `${kind}:${objectRef(o)}`;
}

export type Converted =
  | { ok: true; kind: RecordKind; key: string; record: unknown | null }
  | { ok: false; kind: RecordKind; ref: string; reason: string };

/** Convert one API object of a known kind. `record: null` = valid but contributes nothing (a DR without LB policy). */
export function convertObject(kind: ApiKind, o: unknown, filterMode: ServiceFilterMode): Converted {
  const rk = KIND_TO_RECORD[kind];
  const ref = objectRef(o);
  let res: { ok: true; value: unknown } | { ok: false; reason: string };
  switch (kind) {
    case 'Service': res = convertService(o, filterMode); break;
    case 'EndpointSlice': res = convertEndpointSlice(o); break;
    case 'Endpoints': res = convertEndpoints(o); break;
    case 'Node': res = convertNode(o); break;
    case 'DestinationRule': res = convertDestinationRule(o); break;
    case 'Gateway': res = convertIstioGateway(o); break;
    case 'VirtualService': res = convertVirtualService(o); break;
    case 'Secret': res = convertTlsSecret(o); break;
    case 'GatewayApiGateway': res = convertGatewayApiGateway(o); break;
    case 'HTTPRoute': res = convertHttpRoute(o); break;
  }
  if (!res.ok) return { ok: false, kind: rk, ref, reason: res.reason };
  return { ok: true, kind: rk, key: recordKey(kind, o), record: res.value };
}

/** Apply an add/update to the sink (reject on failure; a failed update removes the stale record). */
export function applyUpsert(sink: SourceSink, kind: ApiKind, o: unknown, filterMode: ServiceFilterMode): void {
  const c = convertObject(kind, o, filterMode);
  if (!c.ok) {
    sink.reject(c.kind, c.ref, c.reason);
    // The object now is invalid: its previous version no longer describes the cluster.
    sink.remove(c.kind, recordKey(kind, o));
    return;
  }
  sink.clearRejection(c.kind, objectRef(o));
  if (c.record === null) sink.remove(c.kind, c.key);
  else sink.upsert(c.kind, c.key, c.record as never);
}

export function applyDelete(sink: SourceSink, kind: ApiKind, o: unknown): void {
  sink.clearRejection(KIND_TO_RECORD[kind], objectRef(o));
  sink.remove(KIND_TO_RECORD[kind], recordKey(kind, o));
}
