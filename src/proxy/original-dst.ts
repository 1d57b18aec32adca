/**
 * The seam for one listener serving every service: when the kernel redirects all
 * ClusterIP traffic to a single port, the proxy recovers each connection's original
 * destination (`SO_ORIGINAL_DST`, read by the native addon from the socket's fd) and
 * looks the service port up by ClusterIP:port. Without a resolver, the proxy keeps
 * one listener per service port (userspacePort).
 */
import type { Socket } from 'node:net';

export interface OriginalDst {
  readonly address: string;
  readonly port: number;
}

export interface OriginalDstResolver {
  /** Destination the client dialled before REDIRECT/DNAT, or undefined when unknown. */
  originalDst(socket: Socket): OriginalDst | undefined;
}

/** Lookup key of a cluster address (IPv4-mapped IPv6 unwrapped). */
export function clusterAddrKey(address: string, port: number): string {
  const a = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
  return `${a}|${port}`;
}
