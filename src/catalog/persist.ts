/**
 * Persistence of accepted snapshots so an agent restarted while the cloud is
 * unreachable serves the last known state. Writes are atomic: temp file, fsync,
 * rename, fsync of the directory. A corrupt or truncated file is reported and
 * ignored, never fatal.
 */
import { link, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SNAPSHOT_VERSION, type Snapshot } from './types.js';

export const SNAPSHOT_FILE = 'catalog.json';

export function snapshotPath(stateDir: string): string {
  return join(stateDir, SNAPSHOT_FILE);
}

/** Atomically write `data` to `file` (temp + fsync + rename + dir fsync). */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dh = await open(dirname(file), 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/**
 * Create `file` with `data` unless it exists, atomically and durably: the bytes are
 * written and synced under a temporary name, then hard-linked into place, which
 * fails when another process created the file first. Returns false then (and the
 * caller reads the winner's file) — two processes never end up with different
 * contents for a file both believe they created.
 */
export async function createFileExclusive(file: string, data: string | Uint8Array, mode = 0o600): Promise<boolean> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  let created = true;
  try {
    await link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    created = false;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  const dh = await open(dirname(file), 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
  return created;
}

export async function saveSnapshot(stateDir: string, snap: Snapshot): Promise<void> {
  const { origin: _o, ...rest } = snap;
  await writeFileAtomic(snapshotPath(stateDir), JSON.stringify(rest));
}

export type LoadResult =
  | { kind: 'loaded'; snapshot: Snapshot }
  | { kind: 'absent' }
  | { kind: 'invalid'; reason: string };

/** Read the persisted snapshot; shape-checked enough that a downstream reader never sees garbage. */
export async function loadSnapshot(stateDir: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(snapshotPath(stateDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'absent' };
    return { kind: 'invalid', reason: `cannot read: ${(err as Error).message}` };
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { kind: 'invalid', reason: `not JSON (truncated?): ${(err as Error).message}` };
  }
  const d = data as Partial<Snapshot> | null;
  if (!d || typeof d !== 'object') return { kind: 'invalid', reason: 'not an object' };
  if (d.version !== SNAPSHOT_VERSION) return { kind: 'invalid', reason: `version ${String(d.version)}, expected ${SNAPSHOT_VERSION}` };
  if (!Array.isArray(d.services) || !Array.isArray(d.nodes)) return { kind: 'invalid', reason: 'services/nodes missing' };
  for (const s of d.services) {
    if (!s || typeof s.key !== 'string' || !Array.isArray(s.ports) || !Array.isArray(s.endpoints) || !Array.isArray(s.clusterIPs)) {
      return { kind: 'invalid', reason: 'malformed service entry' };
    }
  }
  return {
    kind: 'loaded',
    snapshot: { ...(d as Snapshot), origin: 'persisted', revision: typeof d.revision === 'number' ? d.revision : 0 },
  };
}
