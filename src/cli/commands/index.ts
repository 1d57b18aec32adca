/** Every sub-command, in help order. */
import type { Command } from '../command.js';
import { agentCommand } from './agent.js';
import { catalogCommand } from './catalog.js';
import { pendingCommand } from './pending.js';

export const commands: readonly Command[] = [
  agentCommand,
  pendingCommand('relay', 'run a relay (tunnel rendezvous + circuit relay v2)', 'edgeway relay --config FILE'),
  pendingCommand('gateway', 'run the ingress gateway', 'edgeway gateway --config FILE'),
  pendingCommand('render', 'print the ruleset the configured sources compile to', 'edgeway render --config FILE [--format nft|json|iptables]'),
  catalogCommand,
  pendingCommand('doctor', 'probe kernel features and tools; print the data-plane mode that would run', 'edgeway doctor [--json]'),
  pendingCommand('identity', "create (if absent) and print this node's tunnel peer id", 'edgeway identity --state-dir DIR'),
  pendingCommand('cleanup', 'remove every rule, interface and pin the agent made', 'edgeway cleanup --config FILE'),
];
