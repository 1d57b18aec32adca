/**
 * A small upstream DNS server for forwarding tests (dns-packet, UDP and TCP on
 * 127.0.0.1, port 0). Answers from a programmable record table; can be told to stay
 * silent (a dead upstream), answer SERVFAIL, delay, or truncate over UDP.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import dnsPacket from 'dns-packet';
import type { Answer, Packet } from 'dns-packet';

export interface UpstreamBehaviour {
  silent?: boolean;
  servfail?: boolean;
  delayMs?: number;
  /** Set TC over UDP when the answer has more records than this. */
  truncateOver?: number;
}

export interface TestUpstream {
  readonly port: number;
  readonly host: string;
  /** Questions received, as "name TYPE proto". */
  readonly log: string[];
  behaviour: UpstreamBehaviour;
  records: Map<string, Answer[]>;
  /** Names that answer NXDOMAIN with this SOA (no SOA when undefined). */
  nxSoa: { ttl: number; minimum: number } | undefined;
  close(): Promise<void>;
}

function answerFor(up: TestUpstream, req: Packet, proto: 'udp' | 'tcp'): Buffer | undefined {
  const q = req.questions?.[0];
  if (!q) return undefined;
  up.log.push(`${q.name.toLowerCase()} ${q.type} ${proto}`);
  const b = up.behaviour;
  if (b.silent) return undefined;
  const base = { type: 'response' as const, id: req.id, flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED, questions: [q] };
  if (b.servfail) return dnsPacket.encode({ ...base, flags: base.flags | 2 });
  const all = up.records.get(q.name.toLowerCase());
  if (!all) {
    const soa = up.nxSoa;
    return dnsPacket.encode({
      ...base, flags: base.flags | 3,
      authorities: soa ? [{ name: 'example.', type: 'SOA', ttl: soa.ttl, data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: soa.minimum } }] : [],
    });
  }
  const answers = all.filter((a) => a.type === q.type);
  if (proto === 'udp' && b.truncateOver !== undefined && answers.length > b.truncateOver) {
    return dnsPacket.encode({ ...base, flags: base.flags | dnsPacket.TRUNCATED_RESPONSE });
  }
  const soa = up.nxSoa;
  return dnsPacket.encode({
    ...base, answers,
    authorities: answers.length === 0 && soa ? [{ name: 'example.', type: 'SOA', ttl: soa.ttl, data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: soa.minimum } }] : [],
    additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  });
}

export async function startUpstream(records: Record<string, Answer[]> = {}): Promise<TestUpstream> {
  let udp: UdpSocket | undefined;
  let port = 0;
  const tcp: Server = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        const out = answerFor(up, dnsPacket.decode(msg), 'tcp');
        if (out) { const l = Buffer.alloc(2); l.writeUInt16BE(out.length); s.write(Buffer.concat([l, out])); }
      }
    });
  });
  // UDP on port 0, then TCP on the same number (retry when TCP has it busy).
  for (let attempt = 0; !udp; attempt++) {
    const u = createSocket('udp4');
    await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
    port = u.address().port;
    const ok = await new Promise<boolean>((r) => {
      tcp.once('error', () => r(false));
      tcp.listen(port, '127.0.0.1', () => { tcp.removeAllListeners('error'); r(true); });
    });
    if (ok) udp = u;
    else { u.close(); if (attempt > 20) throw new Error('no free port'); }
  }
  const udpSock: UdpSocket = udp;
  const up: TestUpstream = {
    port, host: '127.0.0.1', log: [], behaviour: {}, nxSoa: { ttl: 300, minimum: 60 },
    records: new Map(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v])),
    close: async () => {
      await new Promise<void>((r) => udpSock.close(() => r()));
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
  udpSock.on('message', (msg, rinfo) => {
    let req: Packet;
    try { req = dnsPacket.decode(msg); } catch { return; }
    const out = answerFor(up, req, 'udp');
    if (!out) return;
    const send = (): void => { udpSock.send(out, rinfo.port, rinfo.address); };
    if (up.behaviour.delayMs) setTimeout(send, up.behaviour.delayMs); else send();
  });
  return up;
}

/** Send one query over UDP and wait for the answer (or reject after timeoutMs). */
export function udpExchange(port: number, msg: Buffer, timeoutMs = 2000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => { s.close(); reject(new Error('udp timeout')); }, timeoutMs);
    s.on('message', (m) => { clearTimeout(t); s.close(); resolve(m); });
    s.send(msg, port, '127.0.0.1');
  });
}
