#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (npm run build).
import { main } from '../dist/cli/main.js';

// Commands return once everything they started is stopped, so the process ends by
// itself. If a handle is still open after that (a bug), the exit is still bounded:
// say so and exit with the command's code.
const LINGER_MS = 5000;

function finish(code) {
  process.exitCode = code;
  // Everything is stopped and the event loop has drained: exit now. Node's own teardown
  // after this point (FreeEnvironment → CleanupHandles) was seen to spin forever in a
  // few agents of a 30-node fleet (docs/scale.md, known defects); the addon's pools are
  // already stopped by the command's own stop, so nothing is left for its cleanup hooks.
  process.once('beforeExit', () => process.exit(code));
  setTimeout(() => {
    process.stderr.write(`edgeway: handles still open ${LINGER_MS} ms after the command returned; exiting with ${code}\n`);
    process.exit(code);
  }, LINGER_MS).unref();
}

main(process.argv.slice(2)).then(
  finish,
  (err) => { console.error(err instanceof Error ? err.stack ?? err.message : String(err)); finish(1); },
);
