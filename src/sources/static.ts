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
}

function emptyRecords(): Records {
  return { service: new Map(), slice: new Map(), node: new Map(), policy: new Map(), ingress: new Map() };
}

/** Parse one file's text into records; rejections go to the sink. Throws SourceError on YAML syntax errors. */
export function parseStaticFile(file: string, text: string, filterMode: ServiceFilterMode, sink: Pick<SourceSink, 'reject' | 'clearRejection'>, ingress = false): Records {
  const docs = parseAllDocuments(text);
  const out = emptyRecords();
  const list = Array.isArray(docs) ? docs : [docs];
  for (const [i, doc] of list.entries()) {
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      throw new SourceError('ERR_STATIC_PARSE', `${file}: document ${i + 1}, line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`);
    }
    const js: unknown = doc.toJS();
    if (js === null || js === undefined) continue;
    const objs = (js as { kind?: unknown }).kind === 'List' ? ((js as { items?: unknown[] }).items ?? []) : [js];
    for (const o of objs) {
      const kind = apiKindOf(o);
      if (!kind) {
        sink.reject('service', `${file}#${i + 1}`, `unsupported kind ${JSON.stringify((o as { kind?: unknown } | null)?.kind)}`);
        continue;
      }
      // The agent's catalog has no use for gateway objects (and must not hold Secrets).
      if (KIND_TO_RECORD[kind] === 'ingress' && !ingress) continue;
      const c = convertObject(kind, o, filterMode);
      if (!c.ok) { sink.reject(c.kind, c.ref, c.reason); continue; }
      if (c.record !== null) out[c.kind].set(c.key, c.record);
    }
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
        const records = parseStaticFile(file, text, this.opts.filterMode, this.sink, this.opts.ingress ?? false);
        this.files.set(file, { stamp, records });
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
