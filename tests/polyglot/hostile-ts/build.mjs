// Builds the fixture: the WIT folder (this world, the contract, jco's WASI packages) under
// dist/wit, then componentize-js, then the manifest embedded with the TypeScript SDK's
// script.
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

rmSync('dist', { recursive: true, force: true });
mkdirSync('dist/wit/deps', { recursive: true });
cpSync('wit/hostile.wit', 'dist/wit/hostile.wit');
cpSync('../../../wit', 'dist/wit/deps/tandem-plugin', { recursive: true });
for (const pkg of ['cli', 'clocks', 'filesystem', 'io', 'random', 'sockets']) {
  cpSync(`node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12/wasi-${pkg}`, `dist/wit/deps/wasi-${pkg}`, { recursive: true });
}
const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' });
run('node_modules/.bin/componentize-js', [
  'index.js', '--wit', 'dist/wit', '--world-name', 'hostile', '--disable', 'http', 'fetch-event',
  '--out', 'dist/hostile-ts.wasm',
]);
run('node', ['../../../plugins/sdk-ts/scripts/embed-manifest.mjs', 'dist/hostile-ts.wasm', 'tandem.toml']);
