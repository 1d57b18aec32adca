/** Every sub-command, in help order. */
import type { Command } from '../command.js';
import { agentCommand } from './agent.js';
import { catalogCommand } from './catalog.js';
import { pendingCommand } from './pending.js';
import { identityCommand } from './identity.js';
import { relayCommand } from './relay.js';

export const commands: readonly Command[] = [
  agentCommand,
  relayCommand,
  pendingCommand('gateway', 'run the ingress gateway', 'edgeway gateway --config FILE'),
  pendingCommand('render', 'print the ruleset the configured sources compile to', 'edgeway render --config FILE [--format nft|json|iptables]'),
  catalogCommand,
  pendingCommand('doctor', 'probe kernel features and tools; print the data-plane mode that would run', 'edgeway doctor [--json]'),
  identityCommand,
  pendingCommand('cleanup', 'remove every rule, interface and pin the agent made', 'edgeway cleanup --config FILE'),
];
