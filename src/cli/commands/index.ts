/**
 * Every sub-command, in help order. A command's module (and what it imports:
 * libp2p for the relay, the gateway's HTTP stack, …) loads only when that command
 * runs, so `edgeway agent` with the tunnel off never loads libp2p. The summaries
 * are the commands' own (test/cli/lean.test.ts keeps them equal).
 */
import type { Command } from '../command.js';

export interface CommandEntry {
  readonly name: string;
  readonly summary: string;
  load(): Promise<Command>;
}

export const commands: readonly CommandEntry[] = [
  { name: 'agent', summary: 'run the node agent (catalog, DNS, data plane, proxy, tunnel, metrics)', load: async () => (await import('./agent.js')).agentCommand },
  { name: 'relay', summary: 'run a relay (tunnel rendezvous + circuit relay v2)', load: async () => (await import('./relay.js')).relayCommand },
  { name: 'gateway', summary: 'run the ingress gateway (Istio Gateway/VirtualService, Gateway API; HTTP, HTTPS, HTTP/2, gRPC, TLS, TCP)', load: async () => (await import('./gateway.js')).gatewayCommand },
  { name: 'render', summary: 'print the ruleset the configured sources compile to', load: async () => (await import('./render.js')).renderCommand },
  { name: 'catalog', summary: 'print the catalog the configured sources give', load: async () => (await import('./catalog.js')).catalogCommand },
  { name: 'doctor', summary: 'probe kernel features and tools; print the data-plane mode that would run', load: async () => (await import('./doctor.js')).doctorCommand },
  { name: 'identity', summary: "create (if absent) and print this node's tunnel peer id", load: async () => (await import('./identity.js')).identityCommand },
  { name: 'cleanup', summary: 'remove every rule, interface and pin the agent made', load: async () => (await import('./cleanup.js')).cleanupCommand },
  { name: 'migrate-config', summary: 'print an edgeway config made from an EdgeMesh agent config', load: async () => (await import('./migrate-config.js')).migrateConfigCommand },
];
