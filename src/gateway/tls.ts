/**
 * TLS contexts from Secrets. One SecureContext per (Secret content, client CA,
 * protocol bounds), built when the model changes and kept while the Secret's bytes
 * are the same: nothing is read or parsed per connection, and a rotated Secret is
 * used by the next handshake without a restart. The server block of a connection
 * is chosen by SNI (exact, longest wildcard, `*`; no SNI → the `*` server, else the
 * first one).
 */
import { createHash, X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import type { TlsSecret } from '../catalog/ingress.js';
import type { Logger } from '../util/log.js';
import type { GatewayMetrics } from './metrics.js';
import type { TlsServerModel } from './types.js';
import { HostTable } from './hosts.js';

interface Entry {
  readonly fingerprint: string;
  readonly ctx: tls.SecureContext;
  /** MUTUAL: the client CAs, parsed once. */
  readonly cas: readonly X509Certificate[];
}

/** Every certificate of a PEM bundle. */
function parseBundle(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => new X509Certificate(c));
}

export class TlsContexts {
  private cache = new Map<string, Entry>();

  constructor(private readonly metrics: GatewayMetrics, private readonly log: Logger) {}

  /**
   * Build or keep the context of every terminating server; contexts no server uses
   * are dropped. A Secret that OpenSSL refuses leaves its servers without a context
   * (their handshakes fail, counted) and is logged once per content. Idempotent.
   */
  update(servers: readonly TlsServerModel[], secrets: ReadonlyMap<string, TlsSecret>): void {
    const next = new Map<string, Entry>();
    for (const s of servers) {
      if (s.mode === 'PASSTHROUGH' || !s.credential) continue;
      const key = contextKey(s);
      if (next.has(key)) continue;
      const sec = secrets.get(s.credential);
      if (!sec) continue;
      const ca = s.mode === 'MUTUAL' ? (sec.ca ?? secrets.get(`${s.credential}-cacert`)?.ca) : undefined;
      const fingerprint = createHash('sha256').update(sec.cert).update('\0').update(sec.key).update('\0').update(ca ?? '').digest('hex');
      const old = this.cache.get(key);
      if (old?.fingerprint === fingerprint) { next.set(key, old); continue; }
      try {
        const ctx = tls.createSecureContext({
          cert: sec.cert, key: sec.key, ...(ca ? { ca } : {}),
          minVersion: s.minVersion ?? 'TLSv1.2', ...(s.maxVersion ? { maxVersion: s.maxVersion } : {}),
        });
        next.set(key, { fingerprint, ctx, cas: ca ? parseBundle(ca) : [] });
        this.metrics.certReloads.inc({ credential: s.credential });
        this.log.info({ credential: s.credential, reload: !!old }, old ? 'certificate reloaded from its changed Secret' : 'certificate loaded');
      } catch (err) {
        this.metrics.rejected.inc({ kind: 'Secret', reason: 'unusable certificate or key' });
        this.log.error({ credential: s.credential, err: (err as Error).message }, 'Secret unusable as a TLS certificate; its servers refuse handshakes');
      }
    }
    this.cache = next;
  }

  context(s: TlsServerModel): tls.SecureContext | undefined {
    return this.cache.get(contextKey(s))?.ctx;
  }

  /**
   * MUTUAL: the client's certificate is issued and signed by one of the server's
   * CAs and valid now. Chains through intermediates are not followed: the client
   * certificate must be issued by a CA in ca.crt directly.
   */
  clientVerified(s: TlsServerModel, cert: X509Certificate | undefined): boolean {
    if (!cert) return false;
    const cas = this.cache.get(contextKey(s))?.cas ?? [];
    const now = Date.now();
    if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) return false;
    return cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
  }
}

function contextKey(s: TlsServerModel): string {
  return `${s.credential}|${s.mode}|${s.minVersion ?? ''}|${s.maxVersion ?? ''}`;
}

/** The TLS server blocks of one port, looked up by SNI. */
export class SniTable {
  private readonly table = new HostTable<TlsServerModel>();
  private readonly fallback: TlsServerModel | undefined;

  constructor(servers: readonly TlsServerModel[]) {
    for (const s of servers) for (const h of s.hosts) this.table.add(h, s);
    this.fallback = servers.find((s) => s.hosts.includes('*')) ?? servers[0];
  }

  lookup(sni: string | undefined): TlsServerModel | undefined {
    if (!sni) return this.fallback;
    return this.table.lookup(sni)?.[0];
  }
}
