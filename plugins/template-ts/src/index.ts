// Template connector in TypeScript: a generic REST "contacts" API whose base URL is a
// connection setting. A port of the Rust template (`plugins/template/src/lib.rs`, which
// documents the API it speaks); copy this directory to start a connector.
//
// Credentials are the host's job: `tandem.toml` asks for an API key sent as
// `Authorization: Bearer …`, which the host attaches to every request to the `base-url`
// origin. Every call runs in a fresh instance: nothing survives between calls but the
// cursor the host keeps.

import {
  type Connector,
  type Field,
  type FieldDef,
  type Lookup,
  type Op,
  type Page,
  type PullRequest,
  type Record,
  config,
  encode,
  entityInfo,
  errors,
  fieldDef,
  fromValue,
  http,
  pushEach,
  toValue,
  wellKnown as wk,
} from '@tandem/sdk';

const ENTITY = 'contacts';
/** Custom fields travel as `custom_fields.<name>`. */
const CUSTOM_PREFIX = 'custom_fields.';
/** Keys of a contact that are record metadata, not fields. */
const META = ['id', 'version', 'updated_at'];

/** The opaque cursor handed to the host (JSON). */
interface Cursor {
  /** The API's cursor for the next page of this listing. */
  page?: string;
  /** List only contacts updated at or after this time. */
  since?: string;
  /** Newest `updated_at` seen so far in this listing. */
  high?: string;
}

type Contact = { [key: string]: unknown };
interface ContactPage {
  contacts: Contact[];
  next_cursor: string | null;
}

const base = () => config.requireUrl('base-url');

function checkEntity(entity: string): void {
  if (entity !== ENTITY) throw errors.invalid(`unknown entity \`${entity}\`; this connector serves \`contacts\``);
}

function readCursor(text: string | undefined): Cursor {
  if (text === undefined) return {};
  try {
    const c = JSON.parse(text);
    if (c && typeof c === 'object' && !Array.isArray(c)) return c as Cursor;
  } catch {
    // fall through
  }
  throw errors.cursorExpired('unreadable cursor');
}

function writeCursor(c: Cursor): string {
  // Keys in a fixed order, absent ones left out (as the Rust template writes them).
  const out: Cursor = {};
  if (c.page !== undefined) out.page = c.page;
  if (c.since !== undefined) out.since = c.since;
  if (c.high !== undefined) out.high = c.high;
  return JSON.stringify(out);
}

/** A contact object to a record: metadata out, custom fields flattened. */
function toRecord(contact: Contact): Record {
  const text = (v: unknown) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined);
  const record: Record = {
    id: text(contact.id) ?? '',
    version: text(contact.version),
    updatedAt: text(contact.updated_at),
    fields: [],
  };
  for (const [name, v] of Object.entries(contact)) {
    if (META.includes(name) || name === 'custom_fields') continue;
    record.fields.push({ name, value: toValue(v) });
  }
  const custom = contact.custom_fields;
  if (custom && typeof custom === 'object' && !Array.isArray(custom)) {
    for (const [name, v] of Object.entries(custom)) {
      record.fields.push({ name: CUSTOM_PREFIX + name, value: toValue(v) });
    }
  }
  return record;
}

/** Fields to a request body: custom fields nested under `custom_fields`. */
function toJson(fields: Field[]): { [key: string]: unknown } {
  const body: { [key: string]: unknown } = {};
  const custom: { [key: string]: unknown } = {};
  for (const f of fields) {
    const v = fromValue(f.value);
    if (f.name.startsWith(CUSTOM_PREFIX)) custom[f.name.slice(CUSTOM_PREFIX.length)] = v;
    else body[f.name] = v;
  }
  if (Object.keys(custom).length > 0) body.custom_fields = custom;
  return body;
}

/** Applies one write. */
function apply(baseUrl: string, op: Op): Record | undefined {
  switch (op.tag) {
    case 'create': {
      if (op.val.containers.length > 0) throw errors.invalid('contacts have no containers');
      const body = toJson(op.val.fields);
      if (op.val.marker !== undefined) body.external_id = op.val.marker;
      return toRecord(http.post(`${baseUrl}/contacts`).json(body).sendJson<Contact>());
    }
    case 'update': {
      const req = http.patch(`${baseUrl}/contacts/${encode(op.val.id)}`).json(toJson(op.val.fields));
      if (op.val.ifVersion !== undefined) req.header('if-match', op.val.ifVersion);
      return toRecord(req.sendJson<Contact>());
    }
    case 'delete':
      try {
        http.delete(`${baseUrl}/contacts/${encode(op.val)}`).send();
      } catch (e) {
        // Already gone is what a delete wants: retried deletes stay idempotent.
        if (!(e instanceof Error && 'tag' in e && e.tag === 'not-found')) throw e;
      }
      return undefined;
    default:
      throw errors.invalid('contacts have no containers');
  }
}

const template: Connector = {
  describe() {
    return {
      name: 'template-ts',
      version: '0.1.0',
      app: 'Contacts API',
      entities: [entityInfo(ENTITY, 'Contacts', { incremental: true, maxPageSize: 100, maxBatchSize: 50 })],
      rateLimits: [{ requests: 600, perSeconds: 60 }],
    };
  },

  check() {
    const me = http.getJson<{ account_id: string; name: string }>(`${base()}/me`);
    return { accountId: me.account_id, displayName: me.name };
  },

  schema(entity) {
    checkEntity(entity);
    const fields: FieldDef[] = [
      fieldDef('email', 'Email', 'email', { required: true, wellKnown: wk.EMAIL }),
      fieldDef('first_name', 'First name', 'text', { wellKnown: wk.FIRST_NAME }),
      fieldDef('last_name', 'Last name', 'text', { wellKnown: wk.LAST_NAME }),
      fieldDef('phone', 'Phone', 'phone', { wellKnown: wk.PHONE }),
      fieldDef('company', 'Company', 'text', { wellKnown: wk.COMPANY }),
      fieldDef('external_id', 'External id', 'text', { wellKnown: wk.MARKER }),
    ];
    const custom = http.getJson<Array<{ name: string; label: string; type?: string }>>(`${base()}/fields`);
    for (const f of custom) {
      const kind = f.type === 'number' ? 'number' : f.type === 'boolean' ? 'boolean' : f.type === 'date' ? 'date' : 'text';
      fields.push(fieldDef(CUSTOM_PREFIX + f.name, f.label, kind, { custom: true }));
    }
    return fields;
  },

  containers(entity) {
    checkEntity(entity);
    return [];
  },

  pull(req: PullRequest): Page {
    checkEntity(req.entity);
    if (req.container !== undefined) throw errors.invalid('contacts have no containers');
    const cursor = readCursor(req.cursor);
    const since = req.full ? undefined : cursor.since;
    const limit = Math.min(Math.max(req.pageSize, 1), 100);
    let url = `${base()}/contacts?limit=${limit}`;
    if (cursor.page !== undefined) url += `&cursor=${encode(cursor.page)}`;
    if (since !== undefined) url += `&updated_since=${encode(since)}`;
    const page = http.getJson<ContactPage>(url);
    const records = page.contacts.map(toRecord);
    // RFC 3339 times in one offset (UTC) compare as text.
    let high = cursor.high;
    for (const r of records) if (r.updatedAt !== undefined && (high === undefined || r.updatedAt > high)) high = r.updatedAt;
    if (page.next_cursor !== null && page.next_cursor !== undefined) {
      return { records, deleted: [], nextCursor: writeCursor({ page: page.next_cursor, since, high }), more: true };
    }
    return { records, deleted: [], nextCursor: writeCursor({ since: high ?? since }), more: false };
  },

  find(entity: string, query: Lookup): Record[] {
    checkEntity(entity);
    const b = base();
    let filter: string;
    switch (query.tag) {
      case 'email':
        filter = `email=${encode(query.val)}`;
        break;
      case 'marker':
        filter = `external_id=${encode(query.val)}`;
        break;
      case 'ids': {
        const found: Record[] = [];
        for (const id of query.val) {
          try {
            found.push(toRecord(http.getJson<Contact>(`${b}/contacts/${encode(id)}`)));
          } catch (e) {
            if (!(e instanceof Error && 'tag' in e && e.tag === 'not-found')) throw e;
          }
        }
        return found;
      }
    }
    return http.getJson<ContactPage>(`${b}/contacts?limit=100&${filter}`).contacts.map(toRecord);
  },

  push(entity, writes) {
    checkEntity(entity);
    const b = base();
    return pushEach(writes, (op) => apply(b, op));
  },
};

// The export componentize-js binds to `connector-api`.
export const connectorApi = template;
