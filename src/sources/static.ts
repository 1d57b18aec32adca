/**
 * Static source: multi-document Kubernetes-shaped YAML files (Service,
 * EndpointSlice, Endpoints, Node, DestinationRule, or a `List` of them; with
 * `ingress` also the gateway's Gateway, VirtualService, HTTPRoute and Secret), re-read
 * when they change. A file that cannot be read or parsed keeps its last good
 * records (never a silent loss of state) and the source reports `degraded`.
 */
import { readFile, stat } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import type { Logger } from '../util/log.js';
import type { RecordKind, SourceSink } from '../catalog/store.js';
import type { ServiceFilterMode } from '../catalog/convert.js';
import { apiKindOf, convertObject, KIND_TO_RECORD } from './dispatch.js';
import type { Source } from './source.js';
import { SourceError } from './errors.js';

export interface StaticSourceOptions {
  paths: readonly string[];
  pollMs: number;
  filterMode: ServiceFilterMode;
  logger: Logger;
  /** Read the gateway's kinds too (the gateway command); otherwise they are skipped without a rejection. */
  ingress?: boolean;
}

type Records = { [K in RecordKind]: Map<string, unknown> };

interface FileState {
  stamp: string;
  records: Records;
  chunks: ChunkCache;
}

function emptyRecords(): Records {
  return { service: new Map(), slice: new Map(), node: new Map(), policy: new Map(), ingress: new Map() };
}

/**
 * What one chunk of a file (the text between two bare `---` lines) gave, kept so
 * that an unchanged chunk is not parsed again and yields the *same* record
 * objects: the catalog compares records by identity, so a one-service edit in a
 * 10k-service file dirties one service, not all of them. (Parsing the whole file
 * with `yaml` took 5–6 s at 10k services here, most of it garbage collection of
 * 20k documents held at once; the rest of the pipeline only follows the change.)
 */
interface Chunk {
  /** Documents in the chunk (for the document numbers in messages). */
  readonly docs: number;
  readonly records: readonly (readonly [RecordKind, string, unknown])[];
  /** Rejections to report again on every read (the sink ignores repeats); `doc` is chunk-local. */
  readonly rejections: readonly { kind: RecordKind; ref?: string; doc?: number; reason: string }[];
}

/** Chunks of one file from its last read, by text; parseStaticFile refills it with the current ones. */
export type ChunkCache = Map<string, Chunk>;

/** A line that is exactly a document start marker (optionally with a comment). */
const BARE_MARKER = /^---[ \t]*(?:#.*)?$/;

/**
 * The file cut at bare `---` lines (with each piece's first line number). A
 * marker line at column 0 always ends the document before it (YAML forbids it
 * inside any scalar), so every piece parses alone to the same documents —
 * except after a `%` directive, which belongs to the next document: then the
 * file stays one piece.
 */
function splitChunks(text: string): { text: string; line: number }[] {
  if (/^%/m.test(text)) return [{ text, line: 1 }];
  // A scan with indexOf and slices of the one text: splitting 10k services into
  // lines and joining them back cost more than the parse of the changed chunk.
  const out: { text: string; line: number }[] = [];
  let start = 0;
  let startLine = 1;
  let line = 1;
  for (let pos = 0; pos <= text.length; line++) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = text.length;
    if (text.startsWith('---', pos) && BARE_MARKER.test(text.slice(pos, nl))) {
      if (line > startLine) out.push({ text: text.slice(start, pos - 1), line: startLine });
      start = nl + 1;
      startLine = line + 1;
    }
    pos = nl + 1;
  }
  if (start <= text.length && line > startLine) out.push({ text: text.slice(start), line: startLine });
  return out;
}

function parseChunk(file: string, text: string, firstLine: number, firstDoc: number, filterMode: ServiceFilterMode, ingress: boolean): Chunk {
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  const records: [RecordKind, string, unknown][] = [];
  const rejections: Chunk['rejections'][number][] = [];
  for (const [i, doc] of list.entries()) {
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      const line = e.linePos?.[0]?.line;
      // yaml's message names the chunk's line; the user wants the file's.
      const msg = e.message.split('\n')[0]!.replace(/at line (\d+), column/, (_, l: string) => `at line ${Number(l) + firstLine - 1}, column`);
      throw new SourceError('ERR_STATIC_PARSE', `${file}: document ${firstDoc + i + 1}, line ${line === undefined ? '?' : line + firstLine - 1}: ${msg}`);
    }
    const js: unknown = doc.toJS();
    if (js === null || js === undefined) continue;
    const objs = (js as { kind?: unknown }).kind === 'List' ? ((js as { items?: unknown[] }).items ?? []) : [js];
    for (const o of objs) {
      const kind = apiKindOf(o);
      if (!kind) {
        rejections.push({ kind: 'service', doc: i, reason: `unsupported kind ${JSON.stringify((o as { kind?: unknown } | null)?.kind)}` });
        continue;
      }
      // The agent's catalog has no use for gateway objects (and must not hold Secrets).
      if (KIND_TO_RECORD[kind] === 'ingress' && !ingress) continue;
      const c = convertObject(kind, o, filterMode);
      if (!c.ok) { rejections.push({ kind: c.kind, ref: c.ref, reason: c.reason }); continue; }
      if (c.record !== null) records.push([c.kind, c.key, c.record]);
    }
  }
  return { docs: list.length, records, rejections };
}

/**
 * Parse one file's text into records; rejections go to the sink. Throws SourceError
 * on YAML syntax errors. With `cache` (the file's chunks from its last read),
 * unchanged chunks are reused as they are; the cache is refilled with this
 * read's chunks (only when the whole file parsed).
 */
export function parseStaticFile(file: string, text: string, filterMode: ServiceFilterMode, sink: Pick<SourceSink, 'reject' | 'clearRejection'>, ingress = false, cache?: ChunkCache): Records {
  const out = emptyRecords();
  const next: ChunkCache = new Map();
  let doc = 0;
  for (const piece of splitChunks(text)) {
    const chunk = next.get(piece.text) ?? cache?.get(piece.text) ?? parseChunk(file, piece.text, piece.line, doc, filterMode, ingress);
    next.set(piece.text, chunk);
    for (const r of chunk.rejections) sink.reject(r.kind, r.ref ?? `${file}#${doc + (r.doc ?? 0) + 1}`, r.reason);
    for (const [kind, key, record] of chunk.records) out[kind].set(key, record);
    doc += chunk.docs;
  }
  if (cache) {
    cache.clear();
    for (const [k, v] of next) cache.set(k, v);
  }
  return out;
}

export class StaticSource implements Source {
  readonly name = 'static';
  private readonly files = new Map<string, FileState>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly log: Logger;

  constructor(private readonly sink: SourceSink, private readonly opts: StaticSourceOptions) {
    this.log = opts.logger.child({ subsystem: 'source', source: 'static' });
  }

  /**
   * Read every file once. Resolves true when all were read; on failure the error is
   * logged, the source is `degraded`, and polling keeps trying. With `strict`, the
   * first failure is thrown instead (one-shot commands).
   */
  async refresh(strict = false): Promise<boolean> {
    let allOk = true;
    let changed = false;
    for (const file of this.opts.paths) {
      try {
        const st = await stat(file);
        const stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
        if (this.files.get(file)?.stamp === stamp) continue;
        const text = await readFile(file, 'utf8');
        const chunks = this.files.get(file)?.chunks ?? new Map<string, never>();
        const records = parseStaticFile(file, text, this.opts.filterMode, this.sink, this.opts.ingress ?? false, chunks);
        this.files.set(file, { stamp, records, chunks });
        changed = true;
        this.log.debug({ file }, 'static file read');
      } catch (err) {
        allOk = false;
        const msg = err instanceof SourceError ? err.message : `${file}: ${(err as Error).message}`;
        if (strict) throw err instanceof SourceError ? err : new SourceError('ERR_STATIC_READ', msg, { cause: err });
        this.log.error({ file, err: msg }, 'static file unusable; keeping its last good records');
      }
    }
    if (changed) {
      for (const kind of ['service', 'slice', 'node', 'policy', ...(this.opts.ingress ? ['ingress' as const] : [])] as const) {
        const merged = new Map<string, never>();
        for (const f of this.files.values()) for (const [k, v] of f.records[kind]) merged.set(k, v as never);
        this.sink.replaceAll(kind, merged);
      }
      this.sink.event('service', 'relist');
    }
    this.sink.setState(allOk ? 'synced' : this.files.size > 0 ? 'degraded' : 'starting', allOk ? undefined : 'a file could not be read');
    return allOk;
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.refresh();
    const tick = (): void => {
      this.timer = setTimeout(() => {
        this.refresh().finally(() => { if (this.running) tick(); });
      }, this.opts.pollMs);
    };
    tick();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
