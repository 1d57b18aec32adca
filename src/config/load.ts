/**
 * Loading the YAML config: read the file, parse, validate with the schema, then
 * apply overrides (flags, then env `NODE_NAME`). Errors name the file, the key path
 * and the reason (ConfigError); the CLI maps them to exit code 2.
 */
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';
import { ConfigError } from './errors.js';

export interface ConfigOverrides {
  nodeName?: string;
  stateDir?: string;
  metricsListen?: string;
  logLevel?: string;
  dataplaneMode?: string;
}

function issuePath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}

function zodIssues(err: z.ZodError): { path: string; message: string }[] {
  return err.issues.map((i) => {
    let message = i.message;
    if (i.code === 'unrecognized_keys') {
      message = `unknown key(s): ${i.keys.join(', ')}`;
    }
    return { path: issuePath(i.path), message };
  });
}

/** Validate an already-parsed object as config from `file` (used by tests and the loader). */
export function parseConfig(raw: unknown, file: string, overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const merged = structuredClone(raw ?? {}) as Record<string, unknown>;
  if (typeof merged !== 'object' || Array.isArray(merged)) {
    throw new ConfigError(file, [{ path: '', message: 'expected a mapping at the top level' }]);
  }
  // Overrides are applied before validation so they are validated too.
  if (overrides.nodeName) merged.nodeName = overrides.nodeName;
  if (overrides.stateDir) merged.stateDir = overrides.stateDir;
  if (overrides.metricsListen !== undefined) merged.metrics = { ...(merged.metrics as object), listen: overrides.metricsListen };
  if (overrides.logLevel) merged.log = { ...(merged.log as object), level: overrides.logLevel };
  if (overrides.dataplaneMode) merged.dataplane = { ...(merged.dataplane as object), mode: overrides.dataplaneMode };
  const res = configSchema.safeParse(merged);
  if (!res.success) throw new ConfigError(file, zodIssues(res.error));
  // Precedence for the node name: flag > $NODE_NAME > file > hostname.
  const nodeName = overrides.nodeName || env.NODE_NAME || res.data.nodeName || hostname();
  return { ...res.data, nodeName };
}

/** Read, parse and validate a config file. Throws ConfigError (exit 2) on any problem with it. */
export async function loadConfig(file: string, overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot read: ${(err as Error).message}`;
    throw new ConfigError(file, [{ path: '', message: reason }], { cause: err });
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: `line ${e.linePos?.[0]?.line ?? '?'}`, message: `YAML syntax: ${e.message.split('\n')[0]}` })),
    );
  }
  return parseConfig(doc.toJS() ?? {}, file, overrides, env);
}
