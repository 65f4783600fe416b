// The Tandem plugin SDK for TypeScript: the helpers of the Rust SDK (`plugins/sdk`) over
// the contract's host interfaces, for connectors built with componentize-js.
//
// The types come from the WIT (`npm run types` generates `types/` with jco's guest type
// generator); the host interfaces are imported by their WIT names, which componentize-js
// binds to the component's imports. Every call runs in a fresh instance: keep nothing in
// module state between calls.

/// <reference path="../types/connector.d.ts" />
import * as hostHttp from 'tandem:plugin/http@0.1.0';
import * as hostConfig from 'tandem:plugin/config@0.1.0';
import * as hostLog from 'tandem:plugin/log@0.1.0';
import type * as T from 'tandem:plugin/types@0.1.0';
import type * as C from 'tandem:plugin/connector-api@0.1.0';

export type Value = T.Value;
export type Field = T.Field;
export type Record = T.Record;
export type FieldDef = T.FieldDef;
export type FieldType = T.FieldType;
export type EntityInfo = T.EntityInfo;
export type PluginInfo = T.PluginInfo;
export type AccountInfo = T.AccountInfo;
export type Container = T.Container;
export type ContractError = T.Error;
export type PullRequest = C.PullRequest;
export type Page = C.Page;
export type Lookup = C.Lookup;
export type Op = C.Op;
export type Write = C.Write;
export type WriteResult = C.WriteResult;
export type HttpRequest = hostHttp.Request;
export type HttpResponse = hostHttp.Response;
export type Method = hostHttp.Method;

/** What a connector implements: the exports of `connector-api`. */
export interface Connector {
  describe(): PluginInfo;
  check(): AccountInfo;
  schema(entity: string): FieldDef[];
  containers(entity: string): Container[];
  pull(req: PullRequest): Page;
  find(entity: string, query: Lookup): Record[];
  push(entity: string, writes: Write[]): WriteResult[];
}

// ---------------------------------------------------------------------------------------
// Errors

/**
 * A contract error, thrown. componentize-js turns a value thrown from an export that
 * returns `result<_, error>` into its `err` case: the `payload` is the contract error.
 */
export class TandemError extends Error {
  readonly payload: ContractError;
  constructor(payload: ContractError) {
    super(errorMessage(payload));
    this.payload = payload;
  }
  get tag(): ContractError['tag'] {
    return this.payload.tag;
  }
}

function errorMessage(e: ContractError): string {
  return e.tag === 'rate-limited' ? `rate-limited: ${e.val.message}` : `${e.tag}: ${e.val}`;
}

/** Constructors of the contract's errors (throw what they return). */
export const errors = {
  unauthorized: (m: string) => new TandemError({ tag: 'unauthorized', val: m }),
  forbidden: (m: string) => new TandemError({ tag: 'forbidden', val: m }),
  notFound: (m: string) => new TandemError({ tag: 'not-found', val: m }),
  rateLimited: (retryAfterMs: number | undefined, m: string) =>
    new TandemError({
      tag: 'rate-limited',
      val: { retryAfterMs: retryAfterMs === undefined ? undefined : BigInt(Math.round(retryAfterMs)), message: m },
    }),
  invalid: (m: string) => new TandemError({ tag: 'invalid', val: m }),
  conflict: (m: string) => new TandemError({ tag: 'conflict', val: m }),
  cursorExpired: (m: string) => new TandemError({ tag: 'cursor-expired', val: m }),
  transient: (m: string) => new TandemError({ tag: 'transient', val: m }),
  fatal: (m: string) => new TandemError({ tag: 'fatal', val: m }),
};

/** Any thrown value as a contract error (a plain `Error` becomes `fatal`). */
export function toContractError(e: unknown): ContractError {
  if (e instanceof TandemError) return e.payload;
  return { tag: 'fatal', val: e instanceof Error ? e.message : String(e) };
}

/** Prefixes an error's message with what was being done (`context` in the Rust SDK). */
export function withContext<R>(what: string, f: () => R): R {
  try {
    return f();
  } catch (e) {
    const err = toContractError(e);
    if (err.tag === 'rate-limited') {
      throw new TandemError({ tag: err.tag, val: { ...err.val, message: `${what}: ${err.val.message}` } });
    }
    throw new TandemError({ ...err, val: `${what}: ${err.val}` } as ContractError);
  }
}

/**
 * Applies each write with `apply`; a failing write fails only itself (what `push` must
 * do: one result per write, in order).
 */
export function pushEach(writes: Write[], apply: (op: Op) => Record | undefined): WriteResult[] {
  return writes.map((w) => {
    try {
      return { ref: w.ref, outcome: { tag: 'ok', val: apply(w.op) } };
    } catch (e) {
      return { ref: w.ref, outcome: { tag: 'err', val: toContractError(e) } };
    }
  });
}

// ---------------------------------------------------------------------------------------
// HTTP through the host

const BODY_EXCERPT = 200;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The first value of a header, by case-insensitive name. */
export function header(headers: Array<[string, string]>, name: string): string | undefined {
  const lower = name.toLowerCase();
  return headers.find(([k]) => k.toLowerCase() === lower)?.[1];
}

/**
 * How long the app asked to wait (ms): `Retry-After` (seconds or an HTTP date), else
 * `X-RateLimit-Reset` / `RateLimit-Reset` (seconds, or Unix seconds / milliseconds).
 */
export function retryAfterMs(headers: Array<[string, string]>, nowMs: number = Date.now()): number | undefined {
  const retry = header(headers, 'retry-after')?.trim();
  if (retry) {
    const secs = Number(retry);
    if (Number.isFinite(secs) && secs >= 0) return Math.round(secs * 1000);
    const at = Date.parse(retry);
    if (!Number.isNaN(at)) return Math.max(0, at - nowMs);
  }
  const reset = (header(headers, 'x-ratelimit-reset') ?? header(headers, 'ratelimit-reset'))?.trim();
  if (!reset || !/^\d+$/.test(reset)) return undefined;
  const r = Number(reset);
  if (r > 1e12) return Math.max(0, r - nowMs);
  if (r > 1e9) return Math.max(0, r * 1000 - nowMs);
  return r * 1000;
}

function excerpt(body: Uint8Array): string {
  const text = decoder.decode(body).replace(/[\u0000-\u001f\u007f]/g, ' ').split(/\s+/).filter(Boolean).join(' ');
  if (!text) return '';
  const chars = [...text];
  return `: ${chars.length > BODY_EXCERPT ? chars.slice(0, BODY_EXCERPT).join('') + '…' : text}`;
}

/** The contract error of an HTTP status (the Rust SDK's table), or `undefined` below 400. */
export function statusError(status: number, headers: Array<[string, string]>, body: Uint8Array): TandemError | undefined {
  if (status < 400) return undefined;
  const m = `HTTP ${status}${excerpt(body)}`;
  if (status === 401) return errors.unauthorized(m);
  if (status === 403) return errors.forbidden(m);
  if (status === 404 || status === 410) return errors.notFound(m);
  if (status === 409 || status === 412) return errors.conflict(m);
  if (status === 429) return errors.rateLimited(retryAfterMs(headers), m);
  if (status === 400 || status === 422) return errors.invalid(m);
  if (status === 408 || (status >= 500 && status <= 599)) return errors.transient(m);
  return errors.fatal(m);
}

function httpFailure(e: hostHttp.HttpError): TandemError {
  switch (e.tag) {
    case 'denied':
      return errors.fatal(
        `the host denied the request (${e.val}); the origin must be listed in the plugin's [http] origins and granted by the operator`,
      );
    case 'invalid-request':
      return errors.fatal(`invalid request: ${e.val}`);
    case 'timeout':
      return errors.transient('no answer within the timeout');
    case 'too-large':
      return errors.fatal(`the body exceeds the host's cap of ${e.val} bytes; request smaller pages`);
    case 'transport':
      return errors.transient(`transport failure: ${e.val}`);
  }
}

/** Sends one request through the host as is (no status check). */
export function send(req: HttpRequest): HttpResponse {
  try {
    return hostHttp.send(req);
  } catch (e) {
    // componentize-js throws the `err` case of an import's result wrapped in `payload`.
    const payload = (e as { payload?: hostHttp.HttpError }).payload;
    if (payload && typeof payload === 'object' && 'tag' in payload) throw httpFailure(payload);
    throw e;
  }
}

/** A request being built: `http.post(url).json(body).sendJson()`. */
export class RequestBuilder {
  private req: HttpRequest;
  constructor(method: Method, url: string) {
    this.req = { method, url, headers: [] };
  }
  header(name: string, value: string): this {
    this.req.headers.push([name, value]);
    return this;
  }
  /** A JSON body (and its content type). */
  json(body: unknown): this {
    this.req.body = encoder.encode(JSON.stringify(body));
    return this.header('content-type', 'application/json');
  }
  body(bytes: Uint8Array): this {
    this.req.body = bytes;
    return this;
  }
  timeoutMs(ms: number): this {
    this.req.timeoutMs = ms;
    return this;
  }
  /** Sends; a non-2xx answer (or a host failure) is thrown as the contract error. */
  send(): HttpResponse {
    if (!this.req.headers.some(([k]) => k.toLowerCase() === 'accept')) this.header('accept', 'application/json');
    const res = send(this.req);
    const err = statusError(res.status, res.headers, res.body);
    if (err) throw err;
    return res;
  }
  /** Sends and parses the JSON answer; a body that is not JSON is transient (truncated). */
  sendJson<R = unknown>(): R {
    return parseJson<R>(this.send().body);
  }
}

function parseJson<R>(body: Uint8Array): R {
  try {
    return JSON.parse(decoder.decode(body)) as R;
  } catch (e) {
    throw errors.transient(`the answer is not JSON (truncated?): ${(e as Error).message}`);
  }
}

export const http = {
  get: (url: string) => new RequestBuilder('get', url),
  post: (url: string) => new RequestBuilder('post', url),
  put: (url: string) => new RequestBuilder('put', url),
  patch: (url: string) => new RequestBuilder('patch', url),
  delete: (url: string) => new RequestBuilder('delete', url),
  /** GET and parse JSON. */
  getJson: <R = unknown>(url: string): R => new RequestBuilder('get', url).sendJson<R>(),
};

// ---------------------------------------------------------------------------------------
// Settings and logs

export const config = {
  get: (key: string): string | undefined => hostConfig.get(key),
  all: (): Array<[string, string]> => hostConfig.all(),
  /** A setting that must be present and non-empty. */
  require(key: string): string {
    const v = hostConfig.get(key)?.trim();
    if (!v) throw errors.fatal(`connection setting \`${key}\` is not set; add it to the connection's settings`);
    return v;
  },
  /** A setting holding an http(s) URL, without its trailing `/`. */
  requireUrl(key: string): string {
    const v = config.require(key);
    if (!v.startsWith('https://') && !v.startsWith('http://')) {
      throw errors.fatal(`connection setting \`${key}\` must be an http(s) URL, got \`${v}\``);
    }
    return v.replace(/\/+$/, '');
  },
};

type Level = hostLog.Level;
const logAt = (level: Level) => (message: string, fields: { [k: string]: string } = {}) =>
  hostLog.log(level, message, Object.entries(fields));
export const log = { debug: logAt('debug'), info: logAt('info'), warn: logAt('warn'), error: logAt('error') };

// ---------------------------------------------------------------------------------------
// Values and records

/** JSON to a field value: arrays of strings are multi-values, other structures their JSON text. */
export function toValue(json: unknown): Value {
  if (json === null || json === undefined) return { tag: 'null' };
  if (typeof json === 'boolean') return { tag: 'boolean', val: json };
  if (typeof json === 'number') return { tag: 'number', val: json };
  if (typeof json === 'string') return { tag: 'text', val: json };
  if (Array.isArray(json) && json.every((i) => typeof i === 'string')) return { tag: 'texts', val: json as string[] };
  return { tag: 'text', val: JSON.stringify(json) };
}

/** A field value to JSON. */
export function fromValue(v: Value): unknown {
  switch (v.tag) {
    case 'null':
      return null;
    case 'texts':
      return [...v.val];
    default:
      return v.val;
  }
}

export const value = {
  null: (): Value => ({ tag: 'null' }),
  text: (s: string): Value => ({ tag: 'text', val: s }),
  number: (n: number): Value => ({ tag: 'number', val: n }),
  boolean: (b: boolean): Value => ({ tag: 'boolean', val: b }),
  texts: (items: string[]): Value => ({ tag: 'texts', val: items }),
};

/** A field's value, or `undefined` when the record does not carry it. */
export function getField(r: Record, name: string): Value | undefined {
  return r.fields.find((f) => f.name === name)?.value;
}

/** Sets (replaces) a field. */
export function setField(r: Record, name: string, v: Value): void {
  const f = r.fields.find((x) => x.name === name);
  if (f) f.value = v;
  else r.fields.push({ name, value: v });
}

/** A field definition with the Rust SDK's defaults (writable, single-valued, standard). */
export function fieldDef(name: string, label: string, kind: FieldType, more: Partial<FieldDef> = {}): FieldDef {
  return { name, label, kind, required: false, writable: true, multiValue: false, custom: false, choices: [], ...more };
}

/** An entity with the Rust SDK's defaults (full listings, no deletes, no containers). */
export function entityInfo(name: string, label: string, more: Partial<EntityInfo> = {}): EntityInfo {
  return { name, label, incremental: false, deletes: 'none', containers: false, maxPageSize: 100, maxBatchSize: 100, ...more };
}

/** Percent-encodes a path or query component (RFC 3986 unreserved characters pass). */
export function encode(text: string): string {
  let out = '';
  for (const byte of encoder.encode(text)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/** The well-known field tags (`wit/types.wit`, `plugins/well-known`). */
export const wellKnown = {
  EMAIL: 'email',
  EMAILS: 'emails',
  FIRST_NAME: 'first-name',
  LAST_NAME: 'last-name',
  FULL_NAME: 'full-name',
  PHONE: 'phone',
  MOBILE: 'mobile',
  PHONES: 'phones',
  COMPANY: 'company',
  JOB_TITLE: 'job-title',
  ADDRESS: 'address',
  CITY: 'city',
  STATE: 'state',
  ZIP: 'zip',
  COUNTRY: 'country',
  WEBSITE: 'website',
  LEAD_SCORE: 'lead-score',
  OWNER: 'owner',
  MEDIUM: 'medium',
  SOURCE: 'source',
  AUTHORITY: 'authority',
  DND: 'dnd',
  CONSENT: 'consent',
  LIFECYCLE_STAGE: 'lifecycle-stage',
  TAGS: 'tags',
  NOTES: 'notes',
  BIRTHDAY: 'birthday',
  CREATED_AT: 'created-at',
  UPDATED_AT: 'updated-at',
  MARKER: 'marker',
} as const;
