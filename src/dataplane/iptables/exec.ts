/**
 * The process boundary of the iptables data plane: run a binary with optional
 * stdin, return stdout. Injected so tests can run it inside a network namespace
 * (`ip netns exec NS …`) or fake it.
 */
import { spawn } from 'node:child_process';

export type Exec = (cmd: string, args: readonly string[], input?: string) => Promise<string>;

/** Run `cmd` directly; rejects with stderr in the message on a non-zero exit or after `timeoutMs`. */
export function processExec(timeoutMs = 30_000): Exec {
  return (cmd, args, input) => new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4096); });
    child.on('error', (e) => { clearTimeout(t); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(t);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}: ${err.trim()}`));
    });
    child.stdin.on('error', () => undefined); // a binary that exits early closes stdin
    child.stdin.end(input ?? '');
  });
}

/** An Exec that runs every command inside network namespace `ns`. */
export function netnsExec(ns: string, base: Exec = processExec()): Exec {
  return (cmd, args, input) => base('ip', ['netns', 'exec', ns, cmd, ...args], input);
}
