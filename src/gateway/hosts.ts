/**
 * Host names and wildcards (Istio/Gateway API semantics): `*` matches every host,
 * `*.example.com` matches any name ending in `.example.com` (one label or more),
 * anything else matches itself. Lookups prefer the most specific pattern: an exact
 * host, then the longest wildcard suffix, then `*` (Envoy's virtual-host order).
 */

/** Does `pattern` cover `host` (which may itself be a wildcard)? */
export function hostCovers(pattern: string, host: string): boolean {
  if (pattern === '*' || pattern === host) return true;
  if (!pattern.startsWith('*.')) return false;
  const suffix = pattern.slice(1); // ".example.com"
  if (host.startsWith('*.')) return host.slice(1).endsWith(suffix) && host.length > pattern.length;
  return host.endsWith(suffix) && host.length > suffix.length;
}

/** Host header or SNI → lower-case name without port or trailing dot. */
export function normalizeHost(raw: string | undefined): string {
  if (!raw) return '';
  let h = raw.toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  if (colon >= 0) h = h.slice(0, colon);
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

/**
 * A host → items table: exact names in a Map, wildcards by suffix length (longest
 * first), then `*`. `lookup` returns the items of the most specific pattern that
 * covers the host; items keep their insertion order (route order).
 */
export class HostTable<T> {
  private readonly exact = new Map<string, T[]>();
  private wild: { suffix: string; items: T[] }[] = [];
  private star: T[] | undefined;

  add(pattern: string, item: T): void {
    if (pattern === '*') { (this.star ??= []).push(item); return; }
    if (pattern.startsWith('*.')) {
      const suffix = pattern.slice(1);
      let e = this.wild.find((w) => w.suffix === suffix);
      if (!e) {
        e = { suffix, items: [] };
        this.wild.push(e);
        this.wild.sort((a, b) => b.suffix.length - a.suffix.length);
      }
      e.items.push(item);
      return;
    }
    let l = this.exact.get(pattern);
    if (!l) this.exact.set(pattern, (l = []));
    l.push(item);
  }

  lookup(host: string): readonly T[] | undefined {
    const e = this.exact.get(host);
    if (e) return e;
    for (const w of this.wild) if (host.endsWith(w.suffix) && host.length > w.suffix.length) return w.items;
    return this.star;
  }
}
