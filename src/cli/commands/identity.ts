import { EXIT_OK, requireString, type Command } from '../command.js';
import { identityPath, loadOrCreateIdentity } from '../../tunnel/identity.js';

export const identityCommand: Command = {
  name: 'identity',
  summary: "create (if absent) and print this node's tunnel peer id",
  help: `Usage: edgeway identity --state-dir DIR

Creates the node's tunnel identity (an Ed25519 key in DIR/tunnel-identity.key,
mode 0600) unless it exists, and prints its peer id on stdout. Put the id in the
Node annotation edgeway.io/peer-id, or let the relays' rendezvous publish it.

Options:
      --state-dir DIR     the agent's stateDir`,
  options: { 'state-dir': { type: 'string' } },
  async run(values) {
    const dir = requireString(values, 'state-dir');
    const id = await loadOrCreateIdentity(dir);
    process.stdout.write(`${id.peerId}\n`);
    if (id.created) process.stderr.write(`created ${identityPath(dir)}\n`);
    return EXIT_OK;
  },
};
