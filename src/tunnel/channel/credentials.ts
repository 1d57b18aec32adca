/**
 * Channel session keys. The server side of a peer pair issues one random key per
 * peer session (`issue`), answers the EWC1 handshake's key lookup with it (`lookup`) and knows
 * which libp2p peer an identity belongs to (`peerOf`). A new `issue` for the same
 * peer replaces the old key (connections made with it keep running); `forget`
 * drops it when the peer's libp2p connections are gone.
 */
import { randomBytes } from 'node:crypto';
import type { PskCredential } from './ewc-handshake.js';

export class CredentialStore {
  private readonly byId = new Map<string, { peer: string; key: Buffer }>();
  private readonly byPeer = new Map<string, string>();

  /** A fresh credential for `peer` (replaces its previous one). */
  issue(peer: string): PskCredential {
    this.forget(peer);
    const id = randomBytes(16).toString('hex');
    const key = randomBytes(32);
    this.byId.set(id, { peer, key });
    this.byPeer.set(peer, id);
    return { id, key };
  }

  lookup(id: string): Buffer | undefined {
    return this.byId.get(id)?.key;
  }

  peerOf(id: string): string | undefined {
    return this.byId.get(id)?.peer;
  }

  forget(peer: string): void {
    const id = this.byPeer.get(peer);
    if (id) this.byId.delete(id);
    this.byPeer.delete(peer);
  }

  get size(): number {
    return this.byId.size;
  }
}
