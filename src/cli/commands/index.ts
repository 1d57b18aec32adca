/** Every sub-command, in help order. */
import type { Command } from '../command.js';
import { agentCommand } from './agent.js';
import { catalogCommand } from './catalog.js';
import { pendingCommand } from './pending.js';
import { renderCommand } from './render.js';
import { doctorCommand } from './doctor.js';
import { cleanupCommand } from './cleanup.js';

export const commands: readonly Command[] = [
  agentCommand,
  pendingCommand('relay', 'run a relay (tunnel rendezvous + circuit relay v2)', 'edgeway relay --config FILE'),
  pendingCommand('gateway', 'run the ingress gateway', 'edgeway gateway --config FILE'),
  renderCommand,
  catalogCommand,
  doctorCommand,
  pendingCommand('identity', "create (if absent) and print this node's tunnel peer id", 'edgeway identity --state-dir DIR'),
  cleanupCommand,
];
