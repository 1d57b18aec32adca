#!/usr/bin/env node
// Patches applied to installed dependencies, run by the package's own `install`
// script (npm 11 runs the root package's scripts; no patch-package needed).
// Idempotent: a patched file carries a marker and is left alone. Never fails the
// install: a file that does not match is reported and skipped (the relay reports
// the patch state in its metrics and logs).
//
// 1. @libp2p/utils pipe(): `pipe(src, dst, src)` (the circuit relay's
//    createLimitedRelay) wrapped the same message stream in two duplexes; the
//    second one's source was never read, so the relay held every relayed byte
//    until the circuit closed (1.2 GiB RSS after 1 GiB relayed). Fix: one duplex
//    per message stream. Regression test: test/tunnel/relay-pipe.test.ts.
// 2. @libp2p/utils messageStreamToDuplex() (what pipe() wraps each stream in, so
//    every relayed circuit): an unbounded pushable fed by every message, the end
//    taken at remoteCloseWrite/close (bytes still buffered in a paused stream were
//    dropped) and a sink trusting 'drain'. Replaced by a bounded, lossless version
//    (comments in PATCHED_DUPLEX). Regression test: test/tunnel/relay-pipe.test.ts.
// 3. @libp2p/pnet BoxMessageStream.sendData(): `data.subarray()` joined the whole
//    pending write list into one array before XSalsa20 (a WASM module whose
//    memory grows to the largest input and has a maximum). With a PSK and a
//    saturated socket the list held tens of MiB: `WebAssembly.Memory.grow():
//    Maximum memory size exceeded` thrown from an event handler killed the agent
//    mid-transfer. Fix: encrypt chunk by chunk (a stream cipher: same bytes).
//    Regression: test/e2e/integrity.kernel.test.ts (PSK on, 16 flows; the agent died).
// 4. @libp2p/utils getThinWaistAddresses() (every getMultiaddrs() of a node
//    listening on 0.0.0.0: identify, the address manager, our relay gauges):
//    os.networkInterfaces() opens a netlink socket, so at the fd limit it throws
//    (uv_interface_addresses, EMFILE) from timers and event handlers, and the
//    agent died of the uncaught exception (found by bench/soak). Fix: remember
//    the last answer and use it while the call fails. Regression test:
//    test/tunnel/netif-emfile.test.ts (a child at its fd limit).
// 5. xsalsa20 (the PSK's stream cipher, WASM with one memory shared by every
//    instance, maximum 64 MB): (a) when one instance grew the memory, every other
//    instance kept a detached view (length 0) and, at its next update, grew the
//    memory again by the whole used size instead of by nothing — with a few hundred
//    PSK connections (a relay serving 100 nodes) one growth cascaded past the
//    maximum and `WebAssembly.Memory.grow(): Maximum memory size exceeded`, thrown in
//    an event handler, killed the relay (finalize() on such a view threw as well).
//    Fix: refresh a detached view, grow only by what is missing. (b) @libp2p/pnet never finalized its two ciphers, so each PSK
//    connection ever opened kept 128 bytes of that memory for the process's life:
//    finalized when the connection closes. Regression test: test/tunnel/psk-memory.test.ts.
import { readFileSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const MARKER = 'edgeway-pipe-patch';
export const BACKPRESSURE_MARKER = 'edgeway-relay-backpressure-patch';
export const PNET_MARKER = 'edgeway-pnet-chunks-patch';
export const NETIF_MARKER = 'edgeway-netif-emfile-patch';
export const XSALSA_MARKER = 'edgeway-xsalsa20-memory-patch';
export const PNET_FINALIZE_MARKER = 'edgeway-pnet-finalize-patch';

const ORIGINAL_XSALSA = `WASM.prototype.realloc = function (size) {
  xsalsa20.memory.grow(Math.ceil(Math.abs(size - this._memory.length) / 65536))
  this._memory = new Uint8Array(xsalsa20.memory.buffer)
}

WASM.prototype.update = function (input, output) {
  var len = this._overflow + input.length
  var start = head + this._overflow

  top = head + len
  if (top >= this._memory.length) this.realloc(top)`;

const PATCHED_XSALSA = `WASM.prototype.realloc = function (size) {
  // ${XSALSA_MARKER}: grow by what is missing from the memory's real size.
  var have = xsalsa20.memory.buffer.byteLength
  if (size >= have) xsalsa20.memory.grow(Math.ceil((size + 1 - have) / 65536))
  this._memory = new Uint8Array(xsalsa20.memory.buffer)
}

WASM.prototype.update = function (input, output) {
  var len = this._overflow + input.length
  var start = head + this._overflow

  top = head + len
  // Another instance's grow() detached this view (length 0): refresh it, never grow for it.
  if (this._memory.buffer !== xsalsa20.memory.buffer) this._memory = new Uint8Array(xsalsa20.memory.buffer)
  if (top >= this._memory.length) this.realloc(top)`;

const ORIGINAL_XSALSA_FINAL = `WASM.prototype.finalize = function () {
  this._memory.fill(0, this._pointer, this._key + 32)`;

const PATCHED_XSALSA_FINAL = `WASM.prototype.finalize = function () {
  // ${XSALSA_MARKER}-final: a view detached by another instance's grow() throws in fill().
  if (this._memory.buffer !== xsalsa20.memory.buffer) this._memory = new Uint8Array(xsalsa20.memory.buffer)
  this._memory.fill(0, this._pointer, this._key + 32)`;

const ORIGINAL_PNET_CLOSE = `        this.maConn.addEventListener('close', (evt) => {
            if (evt.error != null) {`;

const PATCHED_PNET_CLOSE = `        this.maConn.addEventListener('close', (evt) => {
            // ${PNET_FINALIZE_MARKER}: give both ciphers' slots back to xsalsa20's
            // shared WASM memory; anything after the close is dropped, never decrypted.
            const spent = { update: () => new Uint8Array(0) };
            for (const x of [this.inboundXor, this.outboundXor]) if (x !== spent && typeof x.finalize === 'function') x.finalize();
            this.inboundXor = spent;
            this.outboundXor = spent;
            if (evt.error != null) {`;

const ORIGINAL_NETIF = `function getNetworkAddrs(family) {
    const addresses = [];
    const networks = os.networkInterfaces();`;

const PATCHED_NETIF = `// ${NETIF_MARKER}: the interfaces seen last, used while the call fails.
let lastNetworks;
function getNetworkAddrs(family) {
    const addresses = [];
    let networks;
    try {
        networks = lastNetworks = os.networkInterfaces();
    }
    catch {
        // uv_interface_addresses needs a netlink socket: at the fd limit it throws
        // (EMFILE), here inside timers and event handlers. The last answer stands.
        networks = lastNetworks ?? {};
    }`;

const ORIGINAL_PNET = `    sendData(data) {
        return {
            sentBytes: data.byteLength,
            canSendMore: this.maConn.send(this.outboundXor.update(data.subarray()))
        };
    }`;

const PATCHED_PNET = `    sendData(data) {
        // ${PNET_MARKER}: one XSalsa20 update per chunk, never the whole list
        // joined (its WASM memory has a maximum size).
        const out = [];
        for (const buf of (data instanceof Uint8Array ? [data] : data)) out.push(this.outboundXor.update(buf));
        let canSendMore = true;
        for (const buf of out) canSendMore = this.maConn.send(buf);
        return {
            sentBytes: data.byteLength,
            canSendMore
        };
    }`;

const ORIGINAL = `export function pipe(...input) {
    const sources = input.map(source => {
        if (isMessageStream(source)) {
            return messageStreamToDuplex(source);
        }
        return source;
    });`;

const PATCHED = `export function pipe(...input) {
    // ${MARKER}: one duplex per message stream, so pipe(a, b, a) does not leave an
    // unread copy of a's messages buffering forever.
    const duplexes = new Map();
    const sources = input.map(source => {
        if (isMessageStream(source)) {
            let duplex = duplexes.get(source);
            if (duplex == null) {
                duplex = messageStreamToDuplex(source);
                duplexes.set(source, duplex);
            }
            return duplex;
        }
        return source;
    });`;

const STREAM_UTILS = join('@libp2p', 'utils', 'dist', 'src', 'stream-utils.js');
const PNET_CRYPTO = join('@libp2p', 'pnet', 'dist', 'src', 'crypto.js');
const THIN_WAIST = join('@libp2p', 'utils', 'dist', 'src', 'get-thin-waist-addresses.js');
const XSALSA = join('xsalsa20', 'index.js');

/** Every installed copy of `rel` (a file inside a package) under `dir`. */
function findCopies(dir, rel = STREAM_UTILS, depth = 0, out = []) {
  if (depth > 6 || !existsSync(dir)) return out;
  const f = join(dir, rel);
  if (existsSync(f)) out.push(f);
  let entries = [];
  try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return out; }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const sub = join(dir, e.name);
    if (e.name.startsWith('@')) {
      for (const s of readdirSync(sub, { withFileTypes: true })) if (s.isDirectory()) findCopies(join(sub, s.name, 'node_modules'), rel, depth + 1, out);
    } else findCopies(join(sub, 'node_modules'), rel, depth + 1, out);
  }
  return out;
}

const ORIGINAL_DUPLEX = `export function messageStreamToDuplex(stream) {
    const source = pushable();
    let onError;
    const onMessage = (evt) => {
        source.push(evt.data);
    };
    const onRemoteCloseWrite = () => {
        source.end();
        stream.removeEventListener('message', onMessage);
        stream.removeEventListener('close', onClose);
        stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite);
    };
    const onClose = (evt) => {
        source.end(evt.error);
        if (evt.error != null) {
            onError?.reject(evt.error);
        }
        stream.removeEventListener('message', onMessage);
        stream.removeEventListener('close', onClose);
        stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite);
    };
    stream.addEventListener('message', onMessage);
    stream.addEventListener('close', onClose, {
        once: true
    });
    stream.addEventListener('remoteCloseWrite', onRemoteCloseWrite, {
        once: true
    });
    return {
        source,
        async sink(source) {
            async function* toGenerator() {
                yield* source;
            }
            const gen = toGenerator();
            while (true) {
                onError = Promise.withResolvers();
                const { done, value } = await Promise.race([
                    gen.next(),
                    onError.promise
                ]);
                if (stream.writeStatus === 'closing' || stream.writeStatus === 'closed') {
                    break;
                }
                if (value != null) {
                    if (!stream.send(value)) {
                        await Promise.race([
                            pEvent(stream, 'drain', {
                                rejectionEvents: [
                                    'close'
                                ]
                            })
                        ]);
                    }
                }
                if (done === true) {
                    break;
                }
            }
            await stream.close();
        }
    };
}`;

const PATCHED_DUPLEX = `export function messageStreamToDuplex(stream) {
    // ${BACKPRESSURE_MARKER}: bounded and lossless.
    // - The source holds at most HIGH bytes: past it the stream is paused (deferred:
    //   a pause inside a message handler is undone when resume() delivered that
    //   message) and resumed once the consumer took it below LOW. Upstream pushed
    //   every message into an unbounded pushable.
    // - The source ends at 'end' (after a paused stream's buffered bytes were
    //   delivered), not at 'remoteCloseWrite' or a clean 'close', which both fire
    //   while those bytes are still buffered.
    // - The sink waits until the destination's write buffer is empty: 'drain' is
    //   dispatched to every stream of a connection and says nothing about this one.
    const HIGH = 1024 * 1024;
    const LOW = 256 * 1024;
    const source = pushable();
    let queued = 0;
    let paused = false;
    let onError;
    const readable = () => stream.readStatus !== 'closing' && stream.readStatus !== 'closed' && stream.status !== 'aborted' && stream.status !== 'reset';
    const cleanup = () => {
        stream.removeEventListener('message', onMessage);
        stream.removeEventListener('close', onClose);
        stream.removeEventListener('end', onEnd);
    };
    const onMessage = (evt) => {
        queued += evt.data.byteLength;
        source.push(evt.data);
        if (queued > HIGH && !paused) {
            paused = true;
            queueMicrotask(() => {
                if (!paused || !readable()) return;
                try { stream.pause(); } catch { /* closed meanwhile */ }
            });
        }
    };
    const onEnd = () => {
        source.end();
        cleanup();
    };
    const onClose = (evt) => {
        if (evt.error != null) {
            source.end(evt.error);
            onError?.reject(evt.error);
            cleanup();
        }
        else if (stream.readableEnded) {
            onEnd();
        }
    };
    stream.addEventListener('message', onMessage);
    stream.addEventListener('close', onClose);
    stream.addEventListener('end', onEnd);
    async function* counted() {
        for await (const buf of source) {
            queued -= buf.byteLength;
            if (paused && queued < LOW) {
                paused = false;
                if (readable()) {
                    try { stream.resume(); } catch { /* closed meanwhile */ }
                }
            }
            yield buf;
        }
    }
    return {
        source: counted(),
        async sink(source) {
            async function* toGenerator() {
                yield* source;
            }
            const gen = toGenerator();
            while (true) {
                onError = Promise.withResolvers();
                const { done, value } = await Promise.race([
                    gen.next(),
                    onError.promise
                ]);
                if (stream.writeStatus === 'closing' || stream.writeStatus === 'closed') {
                    break;
                }
                if (value != null) {
                    stream.send(value);
                    while (stream.writeBufferLength > 0 && stream.writeStatus === 'writable') {
                        await pEvent(stream, ['idle', 'drain'], {
                            rejectionEvents: [
                                'close'
                            ]
                        });
                    }
                }
                if (done === true) {
                    break;
                }
            }
            await stream.close();
        }
    };
}`;

/** Apply every patch not yet in `file`; one word per patch ('patched', 'already', 'mismatch'). */
export function patchFile(file, patches = [[MARKER, ORIGINAL, PATCHED], [BACKPRESSURE_MARKER, ORIGINAL_DUPLEX, PATCHED_DUPLEX]]) {
  let text = readFileSync(file, 'utf8');
  const results = [];
  for (const [marker, from, to] of patches) {
    if (text.includes(marker)) results.push('already');
    else if (!text.includes(from)) results.push('mismatch');
    else { text = text.replace(from, to); results.push('patched'); }
  }
  if (results.includes('patched')) writeFileSync(file, text);
  return results.join('+');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const copies = findCopies(join(root, 'node_modules'));
  if (copies.length === 0) console.log('edgeway: @libp2p/utils not installed; nothing to patch');
  for (const f of copies) {
    let r;
    try { r = patchFile(f); } catch (err) { r = `error: ${err.message}`; }
    console.log(`edgeway: @libp2p/utils pipe() fixes (one duplex per stream + backpressure): ${r} (${f.slice(root.length + 1)})`);
  }
  for (const f of findCopies(join(root, 'node_modules'), PNET_CRYPTO)) {
    let r;
    try { r = patchFile(f, [[PNET_MARKER, ORIGINAL_PNET, PATCHED_PNET], [PNET_FINALIZE_MARKER, ORIGINAL_PNET_CLOSE, PATCHED_PNET_CLOSE]]); } catch (err) { r = `error: ${err.message}`; }
    console.log(`edgeway: @libp2p/pnet chunked encryption + ciphers finalized at close: ${r} (${f.slice(root.length + 1)})`);
  }
  for (const f of findCopies(join(root, 'node_modules'), XSALSA)) {
    let r;
    try { r = patchFile(f, [[XSALSA_MARKER, ORIGINAL_XSALSA, PATCHED_XSALSA], [`${XSALSA_MARKER}-final`, ORIGINAL_XSALSA_FINAL, PATCHED_XSALSA_FINAL]]); } catch (err) { r = `error: ${err.message}`; }
    console.log(`edgeway: xsalsa20 shared WASM memory growth: ${r} (${f.slice(root.length + 1)})`);
  }
  for (const f of findCopies(join(root, 'node_modules'), THIN_WAIST)) {
    let r;
    try { r = patchFile(f, [[NETIF_MARKER, ORIGINAL_NETIF, PATCHED_NETIF]]); } catch (err) { r = `error: ${err.message}`; }
    console.log(`edgeway: @libp2p/utils interface addresses at the fd limit: ${r} (${f.slice(root.length + 1)})`);
  }
}
