/**
 * getOriginalDst (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST) on connections that nft
 * redirected inside a namespace: one dual-stack listener learns every original
 * service address, IPv4 and IPv6.
 *
 * IP plan (namespaces only): od 10.200.0.1/24 + fd00:200::1/64 on a veth to pe
 * (10.200.0.2, fd00:200::2), default routes over it; services 10.96.0.10:80 and
 * [fd00:96::10]:8080, redirected to :15001 in od's output hook.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadNative } from '../../src/native/addon.js';
import { Lab, kernelSkipReason, type NsProcess } from '../helpers/netns.js';
import { requirement } from '../helpers/skip.js';

const native = loadNative();
const skip = requirement('getOriginalDst', kernelSkipReason(), native.addonReason);

const ruleset = `
table inet ewtest {
  chain out {
    type nat hook output priority -100; policy accept;
    ip daddr 10.96.0.10 tcp dport 80 redirect to :15001
    ip6 daddr fd00:96::10 tcp dport 8080 redirect to :15001
  }
}
`;

function clientScript(host: string, port: number): string {
  return `const s=require('net').connect({host:'${host}',port:${port}});let b='';s.on('data',d=>b+=d);s.on('end',()=>{process.stdout.write(b);});s.on('error',e=>{console.error(e.message);process.exit(1);});`;
}

describe.skipIf(skip)('getOriginalDst behind nft redirect', () => {
  const lab = new Lab();
  let ns: string;
  let server: NsProcess;

  beforeAll(async () => {
    ns = await lab.ns('od');
    const peer = await lab.ns('pe');
    await lab.link(ns, ['10.200.0.1/24', 'fd00:200::1/64'], peer, ['10.200.0.2/24', 'fd00:200::2/64']);
    await lab.route(ns, 'default', 'via', '10.200.0.2');
    await lab.route(ns, 'default', 'via', 'fd00:200::2');
    await lab.exec(ns, 'nft', ['-f', '-'], { input: ruleset });
    server = lab.spawn(ns, process.execPath, [new URL('./fixtures/origdst-server.mjs', import.meta.url).pathname, native.addonPath!, '15001']);
    await server.waitFor(/^listening$/);
  });
  afterAll(() => lab.destroy());

  it.each([
    { name: 'IPv4', host: '10.96.0.10', port: 80, want: { family: 4, address: '10.96.0.10', port: 80 } },
    { name: 'IPv6', host: 'fd00:96::10', port: 8080, want: { family: 6, address: 'fd00:96::10', port: 8080 } },
  ])('$name: reports the pre-redirect service address', async ({ host, port, want }) => {
    const r = await lab.exec(ns, process.execPath, ['-e', clientScript(host, port)]);
    const got = JSON.parse(r.stdout.trim()) as { ok: boolean; dst: unknown };
    expect(got).toMatchObject({ ok: true, dst: want });
  });

  it('returns the local address for a tracked connection that was not redirected', async () => {
    const r = await lab.exec(ns, process.execPath, ['-e', clientScript('127.0.0.1', 15001)]);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ ok: true, dst: { family: 4, address: '127.0.0.1', port: 15001 } });
  });
});
