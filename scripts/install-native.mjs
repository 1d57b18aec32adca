#!/usr/bin/env node
// The package's own install step. It exists so npm never falls back to its implicit
// `node-gyp rebuild` for the top-level binding.gyp (which would try to download
// Node headers). The native addon build plugs in here; it must never fail install.
console.log('edgeway: native addon not part of this build; using plain Node streams');
