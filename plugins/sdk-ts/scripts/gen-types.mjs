#!/usr/bin/env node
// Generates the TypeScript declarations of a world of the contract with jco's guest type
// generator: `node gen-types.mjs <wit dir> <world> <out dir>`. It calls the generator
// directly because jco 1.35 starts its WASI shim with no preopened directory, so the
// `jco guest-types` command cannot read any WIT file.
import { pathToFileURL } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
const [wit, world, outDir] = process.argv.slice(2);
// jco's packages are looked up from the author's project (the working directory): this
// script may be run through a link to the SDK, which has no node_modules of its own.
function findPackage(name) {
  for (let dir = process.cwd(); ; dir = dirname(dir)) {
    for (const candidate of [
      join(dir, 'node_modules', name),
      join(dir, 'node_modules/@bytecodealliance/jco/node_modules', name),
    ]) {
      if (existsSync(join(candidate, 'package.json'))) return candidate;
    }
    if (dirname(dir) === dir) throw new Error(`${name} not found: run npm install first`);
  }
}
const transpileDir = findPackage('@bytecodealliance/jco-transpile');
const nested = join(transpileDir, 'node_modules/@bytecodealliance/preview2-shim');
const shimDir = existsSync(nested) ? nested : join(transpileDir, '../preview2-shim');
const fs = await import(pathToFileURL(join(shimDir, 'dist/nodejs/filesystem.js')));
fs._setPreopens({ '/': '/' });
const { generateGuestTypes } = await import(pathToFileURL(join(transpileDir, 'dist/typegen.js')));
const files = await generateGuestTypes(resolve(wit), { worldName: world, outDir: outDir + '/' });
for (const [name, text] of Object.entries(files)) { mkdirSync(dirname(name), { recursive: true }); writeFileSync(name, text); console.log(name); }
