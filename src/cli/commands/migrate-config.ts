import { readFile } from 'node:fs/promises';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { EXIT_OK, UsageError, type Command } from '../command.js';
import { agentConfigFromConfigMap, migrateEdgeMeshConfig } from '../../config/from-edgemesh.js';
import { parseConfig } from '../../config/load.js';

export const migrateConfigCommand: Command = {
  name: 'migrate-config',
  summary: "print an edgeway config made from an EdgeMesh agent config",
  help: `Usage: edgeway migrate-config FILE

Reads an EdgeMesh agent config (edgemesh-agent.yaml, or the whole edgemesh-agent-cfg
ConfigMap) and prints the equivalent edgeway config (YAML) on stdout. Keys that do
not map, or map with another meaning, are listed on stderr as warnings. The output
is checked against edgeway's schema before it is printed. EdgeMesh's PSK file is
read as it is: keep tunnel.psk.path pointing at it.

See docs/migrate-from-edgemesh.md for the key mapping and what differs.`,
  options: {},
  async run(_values, positionals) {
    const file = positionals[0];
    if (!file || positionals.length > 1) throw new UsageError('expected exactly one FILE');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
    }
    let doc: unknown;
    try {
      // EdgeMesh ships its config ConfigMap and its PSK ConfigMap in one file.
      const docs = parseAllDocuments(text).map((d) => {
        if (d.errors.length > 0) throw d.errors[0]!;
        return d.toJS() as unknown;
      });
      const inner = docs.map(agentConfigFromConfigMap).find((t) => t !== undefined);
      if (inner !== undefined) doc = parse(inner);
      else if (docs.length === 1) doc = docs[0];
      else throw new Error(`${docs.length} documents and none is a ConfigMap with edgemesh-agent.yaml`);
    } catch (err) {
      throw new UsageError(`${file} is not an EdgeMesh agent config: ${(err as Error).message}`);
    }
    let result;
    try {
      result = migrateEdgeMeshConfig(doc);
    } catch (err) {
      throw new UsageError(`${file}: ${(err as Error).message}`);
    }
    // Fails (exit 2) if the migration produced something our schema refuses.
    parseConfig(result.config, `${file} (migrated)`, {}, { NODE_NAME: 'migrate-check' });
    for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
    process.stdout.write(`# edgeway config migrated from ${file} by \`edgeway migrate-config\`\n${stringify(result.config)}`);
    return EXIT_OK;
  },
};
