// Test fixture: a connector in JavaScript that tries every WASI way out of the sandbox.
// `pull` of entity COMMAND with cursor ARG runs one attack and answers one record whose
// text fields say what happened (`tests/suite/polyglot.rs` asserts on them).
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { getEnvironment, getArguments } from 'wasi:cli/environment@0.2.12';
import { instanceNetwork } from 'wasi:sockets/instance-network@0.2.12';
import { createTcpSocket } from 'wasi:sockets/tcp-create-socket@0.2.12';
import { resolveAddresses } from 'wasi:sockets/ip-name-lookup@0.2.12';
import { send } from 'tandem:plugin/http@0.1.0';

const text = (val) => ({ tag: 'text', val: String(val) });
const why = (e) => String(e && e.payload !== undefined ? JSON.stringify(e.payload) : e);

function attempt(f) {
  try {
    return { outcome: 'ok', detail: f() };
  } catch (e) {
    return { outcome: 'error', detail: why(e) };
  }
}

const commands = {
  ok: () => ({ ok: 'yes' }),
  preopens: () => ({ count: getDirectories().length }),
  // A file is opened relative to a preopened directory: try every one there is.
  'read-file': (path) =>
    attempt(() => {
      const dirs = getDirectories();
      if (dirs.length === 0) throw new Error('no preopened directory');
      const [dir] = dirs[0];
      const file = dir.openAt({}, path.replace(/^\//, ''), {}, { read: true });
      const [bytes] = file.read(4096n, 0n);
      return new TextDecoder().decode(bytes);
    }),
  env: () => ({ vars: getEnvironment().length, args: getArguments().length }),
  connect: (addr) =>
    attempt(() => {
      const [host, port] = addr.split(':');
      const net = instanceNetwork();
      const socket = createTcpSocket('ipv4');
      socket.startConnect(net, { tag: 'ipv4', val: { port: Number(port), address: host.split('.').map(Number) } });
      socket.finishConnect();
      return 'connected';
    }),
  lookup: (name) =>
    attempt(() => {
      const stream = resolveAddresses(instanceNetwork(), name);
      return JSON.stringify(stream.resolveNextAddress());
    }),
  http: (url) => {
    try {
      const res = send({ method: 'get', url, headers: [] });
      return { outcome: String(res.status), detail: new TextDecoder().decode(res.body) };
    } catch (e) {
      const tag = e && e.payload && e.payload.tag;
      return { outcome: tag || 'error', detail: why(e) };
    }
  },
};

export const connectorApi = {
  describe: () => ({ name: 'hostile-ts', version: '0.1.0', app: 'fixture', entities: [], rateLimits: [] }),
  check: () => {
    throw { tag: 'fatal', val: 'fixture' };
  },
  schema: () => [],
  containers: () => [],
  pull(req) {
    const command = commands[req.entity];
    if (!command) throw { tag: 'invalid', val: `unknown command ${req.entity}` };
    const out = command(req.cursor ?? '');
    return {
      records: [{ id: 'r', fields: Object.entries(out).map(([name, v]) => ({ name, value: text(v) })) }],
      deleted: [],
      more: false,
    };
  },
  find: () => [],
  push: () => [],
};
