"""The Tandem plugin SDK for Python: the helpers of the Rust SDK (`plugins/sdk`) over the
contract's host interfaces, for connectors built with componentize-py.

The contract's types are the bindings componentize-py generates from the WIT
(`componentize-py -d wit -w connector bindings .` writes them for an editor; the build
generates its own): `wit_world.imports.types`, `wit_world.exports.connector_api`. Errors
are raised as `Err(<contract error>)`, which componentize-py turns into the `err` case of
the export's result; `errors.fatal("...")` and friends build them. Every call runs in a
fresh instance: keep nothing in module state between calls.
"""

from __future__ import annotations

# Imported here, not where used: componentize-py bundles the modules imported while it
# pre-initialises the component, and a module first imported in a call is not there.
import email.utils
import json
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from componentize_py_types import Err, Ok
from wit_world.exports import connector_api as api
from wit_world.imports import config as _config
from wit_world.imports import http as _http
from wit_world.imports import log as _log
from wit_world.imports import types

__all__ = [
    "Err",
    "Ok",
    "api",
    "types",
    "errors",
    "context",
    "push_each",
    "http",
    "config",
    "log",
    "to_value",
    "from_value",
    "field_def",
    "entity_info",
    "encode",
    "well_known",
    "status_error",
    "retry_after_ms",
    "header",
    "is_error",
    "get_field",
    "send",
]

Headers = List[Tuple[str, str]]

# ---------------------------------------------------------------------------------------
# Errors


class errors:
    """Constructors of the contract's errors: `raise errors.invalid("...")`."""

    @staticmethod
    def unauthorized(m: str) -> Err:
        return Err(types.Error_Unauthorized(m))

    @staticmethod
    def forbidden(m: str) -> Err:
        return Err(types.Error_Forbidden(m))

    @staticmethod
    def not_found(m: str) -> Err:
        return Err(types.Error_NotFound(m))

    @staticmethod
    def rate_limited(retry_after_ms: Optional[int], m: str) -> Err:
        return Err(types.Error_RateLimited(types.RetryInfo(retry_after_ms, m)))

    @staticmethod
    def invalid(m: str) -> Err:
        return Err(types.Error_Invalid(m))

    @staticmethod
    def conflict(m: str) -> Err:
        return Err(types.Error_Conflict(m))

    @staticmethod
    def cursor_expired(m: str) -> Err:
        return Err(types.Error_CursorExpired(m))

    @staticmethod
    def transient(m: str) -> Err:
        return Err(types.Error_Transient(m))

    @staticmethod
    def fatal(m: str) -> Err:
        return Err(types.Error_Fatal(m))


def is_error(e: BaseException, kind: type) -> bool:
    """Whether `e` is a raised contract error of this case (`types.Error_NotFound`...)."""
    return isinstance(e, Err) and isinstance(e.value, kind)


def as_contract_error(e: BaseException) -> Any:
    """Any exception as a contract error (anything but a raised `Err` becomes `fatal`)."""
    if isinstance(e, Err):
        return e.value
    return types.Error_Fatal(f"{type(e).__name__}: {e}")


def context(what: str, f: Callable[[], Any]) -> Any:
    """Runs `f`, prefixing a contract error's message with what was being done."""
    try:
        return f()
    except Exception as e:  # noqa: BLE001 - every failure becomes a contract error
        err = as_contract_error(e)
        if isinstance(err, types.Error_RateLimited):
            raise Err(types.Error_RateLimited(types.RetryInfo(err.value.retry_after_ms, f"{what}: {err.value.message}")))
        raise Err(type(err)(f"{what}: {err.value}"))


def push_each(writes: List[api.Write], apply: Callable[[api.Op], Optional[types.Record]]) -> List[api.WriteResult]:
    """Applies each write with `apply`; a failing write fails only itself."""
    results = []
    for w in writes:
        try:
            results.append(api.WriteResult(w.ref, Ok(apply(w.op))))
        except Exception as e:  # noqa: BLE001
            results.append(api.WriteResult(w.ref, Err(as_contract_error(e))))
    return results


# ---------------------------------------------------------------------------------------
# HTTP through the host

BODY_EXCERPT = 200


def header(headers: Headers, name: str) -> Optional[str]:
    """The first value of a header, by case-insensitive name."""
    lower = name.lower()
    for k, v in headers:
        if k.lower() == lower:
            return v
    return None


def retry_after_ms(headers: Headers, now_s: Optional[float] = None) -> Optional[int]:
    """How long the app asked to wait (ms): `Retry-After` (seconds or an HTTP date), else
    `X-RateLimit-Reset` / `RateLimit-Reset` (seconds, or Unix seconds / milliseconds)."""
    now = time.time() if now_s is None else now_s
    retry = (header(headers, "retry-after") or "").strip()
    if retry:
        try:
            secs = float(retry)
            if secs >= 0:
                return int(secs * 1000)
        except ValueError:
            try:
                at = email.utils.parsedate_to_datetime(retry).timestamp()
                return max(0, int((at - now) * 1000))
            except (TypeError, ValueError):
                pass
    reset = (header(headers, "x-ratelimit-reset") or header(headers, "ratelimit-reset") or "").strip()
    if not reset.isdigit():
        return None
    r = int(reset)
    if r > 10**12:
        return max(0, r - int(now * 1000))
    if r > 10**9:
        return max(0, (r - int(now)) * 1000)
    return r * 1000


def _excerpt(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    text = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    if not text:
        return ""
    return ": " + (text[:BODY_EXCERPT] + "…" if len(text) > BODY_EXCERPT else text)


def status_error(status: int, headers: Headers, body: bytes) -> Optional[Err]:
    """The contract error of an HTTP status (the Rust SDK's table), or None below 400."""
    if status < 400:
        return None
    m = f"HTTP {status}{_excerpt(body)}"
    if status == 401:
        return errors.unauthorized(m)
    if status == 403:
        return errors.forbidden(m)
    if status in (404, 410):
        return errors.not_found(m)
    if status in (409, 412):
        return errors.conflict(m)
    if status == 429:
        return errors.rate_limited(retry_after_ms(headers), m)
    if status in (400, 422):
        return errors.invalid(m)
    if status == 408 or 500 <= status <= 599:
        return errors.transient(m)
    return errors.fatal(m)


def _http_failure(e: Any) -> Err:
    if isinstance(e, _http.HttpError_Denied):
        return errors.fatal(
            f"the host denied the request ({e.value}); the origin must be listed in the plugin's [http] origins and granted by the operator"
        )
    if isinstance(e, _http.HttpError_InvalidRequest):
        return errors.fatal(f"invalid request: {e.value}")
    if isinstance(e, _http.HttpError_Timeout):
        return errors.transient("no answer within the timeout")
    if isinstance(e, _http.HttpError_TooLarge):
        return errors.fatal(f"the body exceeds the host's cap of {e.value} bytes; request smaller pages")
    return errors.transient(f"transport failure: {e.value}")


def send(req: _http.Request) -> _http.Response:
    """Sends one request through the host as is (no status check)."""
    try:
        return _http.send(req)
    except Err as e:
        raise _http_failure(e.value) from None


class Request:
    """A request being built: `http.post(url).json(body).send_json()`."""

    def __init__(self, method: _http.Method, url: str):
        self._req = _http.Request(method, url, [], None, None)

    def header(self, name: str, value: str) -> "Request":
        self._req.headers.append((name, value))
        return self

    def json(self, body: Any) -> "Request":
        self._req.body = json.dumps(body).encode()
        return self.header("content-type", "application/json")

    def body(self, data: bytes) -> "Request":
        self._req.body = data
        return self

    def timeout_ms(self, ms: int) -> "Request":
        self._req.timeout_ms = ms
        return self

    def send(self) -> _http.Response:
        """Sends; a non-2xx answer (or a host failure) is raised as the contract error."""
        if header(self._req.headers, "accept") is None:
            self.header("accept", "application/json")
        res = send(self._req)
        err = status_error(res.status, res.headers, res.body)
        if err is not None:
            raise err
        return res

    def send_json(self) -> Any:
        """Sends and parses the JSON answer; a body that is not JSON is transient."""
        body = self.send().body
        try:
            return json.loads(body)
        except ValueError as e:
            raise errors.transient(f"the answer is not JSON (truncated?): {e}") from None


class http:
    """Request builders for each method, and `get_json`."""

    @staticmethod
    def get(url: str) -> Request:
        return Request(_http.Method.GET, url)

    @staticmethod
    def post(url: str) -> Request:
        return Request(_http.Method.POST, url)

    @staticmethod
    def put(url: str) -> Request:
        return Request(_http.Method.PUT, url)

    @staticmethod
    def patch(url: str) -> Request:
        return Request(_http.Method.PATCH, url)

    @staticmethod
    def delete(url: str) -> Request:
        return Request(_http.Method.DELETE, url)

    @staticmethod
    def get_json(url: str) -> Any:
        return Request(_http.Method.GET, url).send_json()


# ---------------------------------------------------------------------------------------
# Settings and logs


class config:
    """The connection's non-secret settings."""

    @staticmethod
    def get(key: str) -> Optional[str]:
        return _config.get(key)

    @staticmethod
    def all() -> List[Tuple[str, str]]:
        return _config.all()

    @staticmethod
    def require(key: str) -> str:
        v = (_config.get(key) or "").strip()
        if not v:
            raise errors.fatal(f"connection setting `{key}` is not set; add it to the connection's settings")
        return v

    @staticmethod
    def require_url(key: str) -> str:
        v = config.require(key)
        if not (v.startswith("https://") or v.startswith("http://")):
            raise errors.fatal(f"connection setting `{key}` must be an http(s) URL, got `{v}`")
        return v.rstrip("/")


class log:
    """Log lines through the host (capped and scrubbed there)."""

    @staticmethod
    def _at(level: _log.Level, message: str, fields: Optional[Dict[str, str]]) -> None:
        _log.log(level, message, list((fields or {}).items()))

    @staticmethod
    def debug(message: str, fields: Optional[Dict[str, str]] = None) -> None:
        log._at(_log.Level.DEBUG, message, fields)

    @staticmethod
    def info(message: str, fields: Optional[Dict[str, str]] = None) -> None:
        log._at(_log.Level.INFO, message, fields)

    @staticmethod
    def warn(message: str, fields: Optional[Dict[str, str]] = None) -> None:
        log._at(_log.Level.WARN, message, fields)

    @staticmethod
    def error(message: str, fields: Optional[Dict[str, str]] = None) -> None:
        log._at(_log.Level.ERROR, message, fields)


# ---------------------------------------------------------------------------------------
# Values and records


def to_value(j: Any) -> types.Value:
    """JSON to a field value: lists of strings are multi-values, other structures their JSON text."""
    if j is None:
        return types.Value_Null()
    if isinstance(j, bool):
        return types.Value_Boolean(j)
    if isinstance(j, (int, float)):
        return types.Value_Number(float(j))
    if isinstance(j, str):
        return types.Value_Text(j)
    if isinstance(j, list) and all(isinstance(i, str) for i in j):
        return types.Value_Texts(list(j))
    return types.Value_Text(json.dumps(j, separators=(",", ":")))


def from_value(v: types.Value) -> Any:
    """A field value to JSON."""
    if isinstance(v, types.Value_Null):
        return None
    if isinstance(v, types.Value_Texts):
        return list(v.value)
    if isinstance(v, types.Value_Number) and v.value.is_integer():
        return int(v.value)
    return v.value


def get_field(r: types.Record, name: str) -> Optional[types.Value]:
    """A field's value, or None when the record does not carry it."""
    for f in r.fields:
        if f.name == name:
            return f.value
    return None


def field_def(name: str, label: str, kind: types.FieldType, **more: Any) -> types.FieldDef:
    """A field definition with the Rust SDK's defaults (writable, single-valued, standard)."""
    d = dict(required=False, writable=True, multi_value=False, custom=False, well_known=None, choices=[])
    d.update(more)
    return types.FieldDef(name=name, label=label, kind=kind, **d)


def entity_info(name: str, label: str, **more: Any) -> types.EntityInfo:
    """An entity with the Rust SDK's defaults (full listings, no deletes, no containers)."""
    d = dict(
        incremental=False,
        deletes=types.DeleteDetection.NONE,
        containers=False,
        max_page_size=100,
        max_batch_size=100,
    )
    d.update(more)
    return types.EntityInfo(name=name, label=label, **d)


def encode(text: str) -> str:
    """Percent-encodes a path or query component (RFC 3986 unreserved characters pass)."""
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in text.encode())


class well_known:
    """The well-known field tags (`wit/types.wit`, `plugins/well-known`)."""

    EMAIL = "email"
    EMAILS = "emails"
    FIRST_NAME = "first-name"
    LAST_NAME = "last-name"
    FULL_NAME = "full-name"
    PHONE = "phone"
    MOBILE = "mobile"
    PHONES = "phones"
    COMPANY = "company"
    JOB_TITLE = "job-title"
    ADDRESS = "address"
    CITY = "city"
    STATE = "state"
    ZIP = "zip"
    COUNTRY = "country"
    WEBSITE = "website"
    LEAD_SCORE = "lead-score"
    OWNER = "owner"
    MEDIUM = "medium"
    SOURCE = "source"
    AUTHORITY = "authority"
    DND = "dnd"
    CONSENT = "consent"
    LIFECYCLE_STAGE = "lifecycle-stage"
    TAGS = "tags"
    NOTES = "notes"
    BIRTHDAY = "birthday"
    CREATED_AT = "created-at"
    UPDATED_AT = "updated-at"
    MARKER = "marker"
