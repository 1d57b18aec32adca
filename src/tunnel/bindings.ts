/**
 * First-use bindings node name → peer id, persisted under the state dir, for
 * clusters where nothing stronger binds a name to a peer (no PSK, no Node
 * annotation `edgeway.io/peer-id`): the first peer id seen for a name keeps it,
 * on relays (rendezvous registrations) and on agents (rendezvous answers), across
 * restarts. A different peer id for a bound name is refused until an operator
 * removes the entry (delete the name from the JSON file, then restart): a node
 * that lost its identity, or an impostor, cannot take a name by itself.
 *
 * Known limit (README "What protects the tunnel"): the very first claim of a name
 * wins; an impostor that registers before the real node ever did holds the name.
 * A PSK or the annotation closes that.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../catalog/persist.js';

export type BindResult = 'new' | 'same' | 'conflict';

/** Pure decision: may `peerId` hold `nodeName` given the current bindings? */
export function checkBinding(bindings: ReadonlyMap<string, string>, nodeName: string, peerId: string): BindResult {
  const held = bindings.get(nodeName);
  if (held === undefined) return 'new';
  return held === peerId ? 'same' : 'conflict';
}

export class BindingStore {
  private readonly map = new Map<string, string>();
  private writing: Promise<void> = Promise.resolve();

  private constructor(readonly file: string, private readonly maxEntries: number) {}

  /** Load `<dir>/<name>` (absent = empty). A corrupt file is an error: bindings are a security decision. */
  static async open(dir: string, name: string, maxEntries = 100_000): Promise<BindingStore> {
    const s = new BindingStore(join(dir, name), maxEntries);
    let text: string | undefined;
    try {
      text = await readFile(s.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) {
      const obj = JSON.parse(text) as unknown;
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`${s.file}: expected a JSON object of node name → peer id`);
      for (const [k, v] of Object.entries(obj as Record<string, unknown>)) if (typeof v === 'string') s.map.set(k, v);
    }
    return s;
  }

  get bindings(): ReadonlyMap<string, string> {
    return this.map;
  }

  /** Bind on first use; 'conflict' leaves the binding as it is. Persists new bindings. */
  bind(nodeName: string, peerId: string): BindResult {
    const r = checkBinding(this.map, nodeName, peerId);
    if (r !== 'new') return r;
    if (this.map.size >= this.maxEntries) return 'conflict';
    this.map.set(nodeName, peerId);
    const snapshot = JSON.stringify(Object.fromEntries(this.map), null, 2);
    this.writing = this.writing.then(() => writeFileAtomic(this.file, snapshot, 0o600)).catch(() => undefined);
    return 'new';
  }

  /** Wait for pending writes (tests, shutdown). */
  flush(): Promise<void> {
    return this.writing;
  }
}
