/**
 * One plan per snapshot, shared by every consumer (nftables, socket-LB, proxy,
 * tunnel ingress): the first asks builds it, the rest get the same object.
 */
import type { Snapshot } from '../catalog/types.js';
import type { Config } from '../config/schema.js';
import { buildPlan, type PlanMode } from './build.js';
import type { Plan } from './types.js';

export type PlanFor = (snapshot: Snapshot) => Plan;

/** The plan options for a config (shared by the agent and `render`). */
export function planOptions(config: Config, mode: PlanMode): Parameters<typeof buildPlan>[1] {
  return { nodeName: config.nodeName, routableCIDRs: config.dataplane.routableCIDRs, userspacePorts: config.dataplane.userspacePorts, mode };
}

export function memoPlanFor(config: Config, mode: PlanMode): PlanFor {
  let last: { snap: Snapshot; plan: Plan } | undefined;
  return (snap) => {
    if (last?.snap !== snap) last = { snap, plan: buildPlan(snap, planOptions(config, mode)) };
    return last.plan;
  };
}
