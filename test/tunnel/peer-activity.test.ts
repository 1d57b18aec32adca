/** PeerActivity: the one place that decides a peer is idle (injected clock). */
import { describe, expect, it } from 'vitest';
import { PeerActivity } from '../../src/tunnel/peer-activity.js';
import { reaperTickMs } from '../../src/tunnel/peer-idle.js';

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

describe('PeerActivity', () => {
  it.each([
    { name: 'never seen: idle time starts at the first look', steps: [], advance: 999, idle: false },
    { name: 'seen, then idle for idleMs', steps: ['seen'], advance: 1000, idle: true },
    { name: 'seen, just short of idleMs', steps: ['seen'], advance: 999, idle: false },
    { name: 'a flow open keeps it busy however long', steps: ['hold'], advance: 10_000_000, idle: false },
    { name: 'a flow that ended restarts the idle time', steps: ['hold', 'release'], advance: 1000, idle: true },
  ])('$name', ({ steps, advance, idle }) => {
    const c = clock();
    const a = new PeerActivity(c.now);
    let release: (() => void) | undefined;
    if (steps.length === 0) expect(a.isIdle('p', 1000)).toBe(false);
    for (const s of steps) {
      if (s === 'seen') a.seen('p');
      if (s === 'hold') release = a.hold('p');
      if (s === 'release') release?.();
    }
    c.advance(advance);
    expect(a.isIdle('p', 1000)).toBe(idle);
  });

  it('counts flows per peer; a release is idempotent; a flow ending late restarts the idle time', () => {
    const c = clock();
    const a = new PeerActivity(c.now);
    const r1 = a.hold('p');
    const r2 = a.hold('p');
    a.hold('q');
    expect(a.openFlows('p')).toBe(2);
    r1();
    r1();
    expect(a.openFlows('p')).toBe(1);
    c.advance(5000);
    expect(a.isIdle('p', 1000)).toBe(false);
    r2();
    expect(a.openFlows('p')).toBe(0);
    expect(a.isIdle('p', 1000)).toBe(false);
    c.advance(1000);
    expect(a.isIdle('p', 1000)).toBe(true);
    expect(a.isIdle('q', 1000)).toBe(false);
  });

  it('forget keeps a peer whose flow is still open; that flow still ends cleanly', () => {
    const c = clock();
    const a = new PeerActivity(c.now);
    const r = a.hold('p');
    a.forget('p');
    expect(a.openFlows('p')).toBe(1);
    r();
    a.forget('p');
    expect(a.openFlows('p')).toBe(0);
    // Forgotten: a fresh look starts its idle time again.
    c.advance(10_000);
    expect(a.isIdle('p', 1000)).toBe(false);
  });

  it.each([
    { idleMs: 100, tick: 50 },
    { idleMs: 2000, tick: 500 },
    { idleMs: 300_000, tick: 10_000 },
  ])('reaper tick for idleMs $idleMs is $tick ms', ({ idleMs, tick }) => {
    expect(reaperTickMs(idleMs)).toBe(tick);
  });
});
