/**
 * The agent's start/stop stack (src/cli/lifecycle.ts): a stop signal during a
 * start step waits for that step to settle, then everything pushed is released
 * newest first; a stop that hangs is bounded; a failing stop does not keep the
 * others from running. The "signal" is the promise the agent gets from
 * stopSignal(); steps are real timers and real sockets.
 */
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { Interrupted, Lifecycle } from '../../src/cli/lifecycle.js';
import { silentLogger } from '../../src/util/log.js';

function signal(): { promise: Promise<string>; send: (s: string) => void } {
  let send: (s: string) => void = () => undefined;
  const promise = new Promise<string>((r) => { send = r; });
  return { promise, send };
}

describe('agent lifecycle stack', () => {
  it('a signal during a start step: the step settles, then everything is released in reverse', async () => {
    const sig = signal();
    const life = new Lifecycle({ logger: silentLogger(), stopRequested: sig.promise });
    const order: string[] = [];
    life.push('first', async () => { order.push('first'); });
    // A real listener whose start is in flight when the signal arrives.
    const server = net.createServer();
    life.push('server', () => new Promise<void>((r) => { order.push(`server listening=${server.listening}`); server.close(() => r()); }));
    const step = life.step('server', async () => {
      sig.send('SIGTERM');
      await new Promise((r) => setTimeout(r, 50));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return 'started';
    });
    const r = await step;
    expect(r).toBeInstanceOf(Interrupted);
    expect((r as Interrupted).signal).toBe('SIGTERM');
    // The next step does not even begin.
    let ran = false;
    expect(await life.step('later', async () => { ran = true; })).toBeInstanceOf(Interrupted);
    expect(ran).toBe(false);
    await life.stopAll();
    expect(order).toEqual(['server listening=true', 'first']);
    expect(server.listening).toBe(false);
  });

  it('a failing step rejects with its error; a failing or hanging stop does not stop the others', async () => {
    const life = new Lifecycle({ logger: silentLogger(), stopRequested: new Promise(() => undefined), stopTimeoutMs: 200 });
    const order: string[] = [];
    life.push('a', async () => { order.push('a'); });
    life.push('hangs', () => new Promise(() => { order.push('hangs'); }));
    life.push('throws', async () => { order.push('throws'); throw new Error('boom'); });
    await expect(life.step('x', async () => { throw Object.assign(new Error('address in use'), { code: 'EADDRINUSE' }); })).rejects.toThrow('address in use');
    await life.stopAll();
    expect(order).toEqual(['throws', 'hangs', 'a']);
    // Released once: a second stopAll has nothing left.
    await life.stopAll();
    expect(order).toHaveLength(3);
  });

  it('without a signal, a step returns its value and untilStopped() waits for the signal', async () => {
    const sig = signal();
    const life = new Lifecycle({ logger: silentLogger(), stopRequested: sig.promise });
    expect(await life.step('x', async () => 42)).toBe(42);
    let stopped: string | undefined;
    const waiting = life.untilStopped().then((s) => { stopped = s; });
    await new Promise((r) => setTimeout(r, 20));
    expect(stopped).toBeUndefined();
    sig.send('SIGINT');
    await waiting;
    expect(stopped).toBe('SIGINT');
  });
});
