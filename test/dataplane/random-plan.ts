/**
 * Seeded random plans for the nftables tests (in-process vs CLI, the incremental
 * tracker): every shape the compiler knows — random, round robin and ClientIP
 * policies, 0–3 endpoints, IPv4 and IPv6, TCP and UDP, userspace and reject
 * targets, local endpoints (hairpin) shared by two services.
 * IP plan (data only): cluster IPs 10.96.0.0/16 and fd00:96::/64, endpoints
 * 10.244.0.0/16 and fd00:244::/64.
 */
import type { Plan, PlannedEndpoint, PlannedServicePort } from '../../src/plan/types.js';

/** A plan of `n` service ports with every shape the compiler knows, drawn from `rnd`. */
export function randomPlan(rnd: () => number, n: number, revision: number): Plan {
  const ports: PlannedServicePort[] = [];
  for (let i = 0; i < n; i++) {
    const v6 = rnd() < 0.15;
    const proto = rnd() < 0.2 ? 'UDP' : 'TCP';
    const eps: PlannedEndpoint[] = Array.from({ length: Math.floor(rnd() * 4) }, (_, j) => {
      const host = Math.floor(rnd() * 250) + 1;
      return v6
        ? { ip: `fd00:244::${(i * 4 + j).toString(16)}:${host.toString(16)}`, family: 6, port: 8000 + j, class: 'routable', ready: true }
        // Local endpoints come from a small pool: one pod may back several services (a shared hairpin element).
        : rnd() < 0.2 ? { ip: `10.244.250.${host % 6}`, family: 4, port: 8000 + j, class: 'local', ready: true }
          : { ip: `10.244.${(i * 4 + j) & 255}.${host}`, family: 4, port: 8000 + j, class: 'routable', ready: true };
    });
    const r = rnd();
    const policy = r < 0.6 ? { kind: 'random' as const } : r < 0.8 ? { kind: 'roundRobin' as const } : { kind: 'clientIp' as const, timeoutSeconds: 30 };
    const userspace = eps.length > 0 && rnd() < 0.1;
    ports.push({
      id: `t/s${i}:80/${proto}`, serviceKey: `t/s${i}`, namespace: 't', name: `s${i}`, portName: '', protocol: proto, port: 80,
      clusterIPs: [v6 ? `fd00:96::${i.toString(16)}` : `10.96.${i >> 8}.${i & 255}`], endpoints: eps, policy,
      target: eps.length === 0 ? 'reject' : userspace ? 'userspace' : 'kernel', ...(userspace ? { userspacePort: 30000 + i } : {}),
    });
  }
  return { nodeName: 'n1', revision, servicePorts: ports.sort((a, b) => (a.id < b.id ? -1 : 1)), userspacePortExhausted: [] };
}

/** Changes a few service ports of `p` (endpoints added or removed, policy, removal, a new port) — what one sync carries. */
export function mutate(rnd: () => number, p: Plan): Plan {
  const ports = [...p.servicePorts];
  for (let k = 0; k < 3; k++) {
    const i = Math.floor(rnd() * ports.length);
    const sp = ports[i]!;
    const what = rnd();
    if (what < 0.15) ports.splice(i, 1);
    else if (what < 0.3) {
      const fresh = randomPlan(rnd, 1, 0).servicePorts[0]!;
      const id = `t/n${p.revision}-${k}:80/${fresh.protocol}`;
      ports.push({ ...fresh, id, serviceKey: id.split(':')[0]!, name: `n${p.revision}-${k}`, clusterIPs: [`10.96.200.${(p.revision * 3 + k) & 255}`] });
    } else if (what < 0.5 && sp.endpoints.length > 0) ports[i] = { ...sp, endpoints: sp.endpoints.slice(1) };
    else if (what < 0.7 && sp.target === 'kernel') {
      const ep = sp.endpoints[0];
      if (ep) ports[i] = { ...sp, endpoints: [...sp.endpoints, { ...ep, ip: ep.family === 6 ? `fd00:244::ff:${k}` : `10.244.251.${(p.revision * 3 + k) & 255}`, class: 'routable' }] };
    } else if (sp.target !== 'reject') {
      const r = rnd();
      ports[i] = { ...sp, policy: r < 0.4 ? { kind: 'random' } : r < 0.7 ? { kind: 'roundRobin' } : { kind: 'clientIp', timeoutSeconds: 60 } };
    }
  }
  return { ...p, revision: p.revision + 1, servicePorts: ports.sort((a, b) => (a.id < b.id ? -1 : 1)) };
}
