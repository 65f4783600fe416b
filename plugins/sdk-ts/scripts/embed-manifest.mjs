#!/usr/bin/env node
// Embeds a plugin manifest (`tandem.toml`) into a component as the `tandem-manifest`
// custom section, where the host looks for it (a pinned plugin's manifest must be the
// one inside the pinned file): `node embed-manifest.mjs <component.wasm> <tandem.toml>`.
// A custom section may follow the other sections of a component, so this appends one;
// a component that already has the section is refused rather than given two.
import { readFileSync, writeFileSync } from 'node:fs';

const SECTION = 'tandem-manifest';

function leb128(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return Buffer.from(out);
}

const [wasmPath, manifestPath] = process.argv.slice(2);
if (!wasmPath || !manifestPath) {
  console.error('usage: embed-manifest <component.wasm> <tandem.toml>');
  process.exit(2);
}
const wasm = readFileSync(wasmPath);
// `\0asm`, then version 0x0d and layer 0x01: a component (a core module has layer 0).
if (wasm.length < 8 || wasm.readUInt32BE(0) !== 0x0061736d || wasm[6] !== 1) {
  console.error(`${wasmPath} is not a WebAssembly component`);
  process.exit(1);
}
function readLeb(buf, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) return [value, at];
  }
}

// The top-level sections: a custom section (id 0) starts with its name.
function hasSection(buf, wanted) {
  let at = 8;
  while (at < buf.length) {
    const id = buf[at];
    const [size, start] = readLeb(buf, at + 1);
    if (id === 0) {
      const [len, nameAt] = readLeb(buf, start);
      if (buf.subarray(nameAt, nameAt + len).toString() === wanted) return true;
    }
    at = start + size;
  }
  return false;
}

if (hasSection(wasm, SECTION)) {
  console.error(`${wasmPath} already has a ${SECTION} section; build it afresh`);
  process.exit(1);
}
const manifest = readFileSync(manifestPath);
const name = Buffer.from(SECTION);
const payload = Buffer.concat([leb128(name.length), name, manifest]);
const section = Buffer.concat([Buffer.from([0]), leb128(payload.length), payload]);
writeFileSync(wasmPath, Buffer.concat([wasm, section]));
