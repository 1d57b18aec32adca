/** Reading the tunnel peers' state files (tunnel-state.json) in e2e tests: paths are asserted from them, never from timing. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TunnelState } from '../../src/tunnel/service.js';

export interface StateFiles {
  read(host: string): Promise<TunnelState | undefined>;
  /** Poll until `pred` holds (bounded); the error names what was awaited and the last state. */
  wait(host: string, pred: (s: TunnelState) => boolean, what: string, timeoutMs?: number): Promise<TunnelState>;
}

/** State files of peers whose stateDir is `<dir()>/<host>`. */
export function stateFiles(dir: () => string): StateFiles {
  const read = async (h: string): Promise<TunnelState | undefined> => {
    try { return JSON.parse(await readFile(join(dir(), h, 'tunnel-state.json'), 'utf8')) as TunnelState; } catch { return undefined; }
  };
  return {
    read,
    async wait(h, pred, what, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      let s: TunnelState | undefined;
      while (Date.now() < deadline) {
        s = await read(h);
        if (s && pred(s)) return s;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`${h}: timed out waiting for ${what}; last state: ${JSON.stringify(s)}`);
    },
  };
}
