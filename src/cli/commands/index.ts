/** Every sub-command, in help order. */
import type { Command } from '../command.js';
import { agentCommand } from './agent.js';
import { catalogCommand } from './catalog.js';
import { gatewayCommand } from './gateway.js';
import { renderCommand } from './render.js';
import { doctorCommand } from './doctor.js';
import { cleanupCommand } from './cleanup.js';
import { identityCommand } from './identity.js';
import { relayCommand } from './relay.js';
import { migrateConfigCommand } from './migrate-config.js';

export const commands: readonly Command[] = [
  agentCommand,
  relayCommand,
  gatewayCommand,
  renderCommand,
  catalogCommand,
  doctorCommand,
  identityCommand,
  cleanupCommand,
  migrateConfigCommand,
];
