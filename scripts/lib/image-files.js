#!/usr/bin/env node
// The files of the agent image's application layer, one repository-relative path a line
// (sorted): what `npm run build` made that runs (dist/ without tests and bench, the addon,
// the .proto the agent loads at run time, package.json for --version) and the node_modules
// packages reachable from the runtime dependencies. cmake-js and node-addon-api build the
// addon and are not needed to run it, so they and what only they need stay out.
// Usage: node scripts/lib/image-files.js ROOT
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(process.argv[2] || '.');
const BUILD_ONLY = new Set(['cmake-js', 'node-addon-api']);
const DIST = ['dist/agent', 'dist/client', 'dist/common', 'dist/native', 'dist/proto'];

function walk(rel, out, skip = () => false) {
  const abs = path.join(root, rel);
  const st = fs.statSync(abs);
  if (st.isDirectory()) {
    for (const e of fs.readdirSync(abs).sort()) if (!skip(path.join(rel, e))) walk(path.join(rel, e), out, skip);
  } else out.push(rel);
}

// Node's lookup: NAME in the nearest node_modules at or above `from`.
function resolvePkg(name, from) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const cand = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(cand, 'package.json'))) return cand;
    if (dir === root || dir === path.dirname(dir)) return null;
  }
}

function runtimePackages() {
  const top = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const seen = new Set();
  const queue = Object.keys(top.dependencies || {})
    .filter((n) => !BUILD_ONLY.has(n))
    .map((n) => [n, root]);
  while (queue.length) {
    const [name, from] = queue.shift();
    const dir = resolvePkg(name, from);
    if (!dir) throw new Error(`image-files: ${name} (needed from ${path.relative(root, from) || '.'}) is not installed`);
    if (seen.has(dir)) continue;
    seen.add(dir);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    for (const n of Object.keys(pkg.dependencies || {})) queue.push([n, dir]);
    for (const n of Object.keys(pkg.optionalDependencies || {})) if (resolvePkg(n, dir)) queue.push([n, dir]);
  }
  return [...seen].map((d) => path.relative(root, d)).sort();
}

const files = [];
for (const d of DIST) walk(d, files, (p) => p.endsWith('.map') || p.endsWith('.d.ts'));
files.push('build/Release/iofilter.node', 'proto/iofilter/v1/iofilter.proto', 'package.json');
for (const pkg of runtimePackages()) {
  // a package's own nested node_modules are packages of their own, listed when reachable
  walk(pkg, files, (p) => path.basename(p) === 'node_modules' && path.dirname(p) === pkg);
}
process.stdout.write([...new Set(files)].sort().join('\n') + '\n');
