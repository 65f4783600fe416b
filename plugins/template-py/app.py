"""Template connector in Python: a generic REST "contacts" API whose base URL is a
connection setting. A port of the Rust template (`plugins/template/src/lib.rs`, which
documents the API it speaks); copy this directory to start a connector.

Credentials are the host's job: `tandem.toml` asks for an API key sent as
`Authorization: Bearer …`, which the host attaches to every request to the `base-url`
origin. Every call runs in a fresh instance: nothing survives between calls but the cursor
the host keeps.
"""

import json
from typing import Any, Dict, List, Optional

from wit_world import exports
from tandem_sdk import (
    api,
    config,
    encode,
    entity_info,
    errors,
    field_def,
    from_value,
    http,
    is_error,
    push_each,
    to_value,
    types,
)
from tandem_sdk import well_known as wk

ENTITY = "contacts"
# Custom fields travel as `custom_fields.<name>`.
CUSTOM_PREFIX = "custom_fields."
# Keys of a contact that are record metadata, not fields.
META = ("id", "version", "updated_at")


def base() -> str:
    return config.require_url("base-url")


def check_entity(entity: str) -> None:
    if entity != ENTITY:
        raise errors.invalid(f"unknown entity `{entity}`; this connector serves `contacts`")


def read_cursor(text: Optional[str]) -> Dict[str, str]:
    """The opaque cursor handed to the host: `page` (the API's cursor), `since` (list only
    contacts updated at or after it) and `high` (the newest `updated_at` seen)."""
    if text is None:
        return {}
    try:
        cursor = json.loads(text)
    except ValueError:
        cursor = None
    if not isinstance(cursor, dict):
        raise errors.cursor_expired("unreadable cursor")
    return cursor


def write_cursor(page: Optional[str], since: Optional[str], high: Optional[str]) -> str:
    parts = {"page": page, "since": since, "high": high}
    return json.dumps({k: v for k, v in parts.items() if v is not None}, separators=(",", ":"))


def text(v: Any) -> Optional[str]:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return None


def to_record(contact: Dict[str, Any]) -> types.Record:
    """A contact object to a record: metadata out, custom fields flattened."""
    fields = [types.Field(name, to_value(v)) for name, v in contact.items() if name not in META and name != "custom_fields"]
    custom = contact.get("custom_fields")
    if isinstance(custom, dict):
        fields += [types.Field(CUSTOM_PREFIX + name, to_value(v)) for name, v in custom.items()]
    return types.Record(
        id=text(contact.get("id")) or "",
        version=text(contact.get("version")),
        updated_at=text(contact.get("updated_at")),
        fields=fields,
    )


def to_json(fields: List[types.Field]) -> Dict[str, Any]:
    """Fields to a request body: custom fields nested under `custom_fields`."""
    body: Dict[str, Any] = {}
    custom: Dict[str, Any] = {}
    for f in fields:
        if f.name.startswith(CUSTOM_PREFIX):
            custom[f.name[len(CUSTOM_PREFIX) :]] = from_value(f.value)
        else:
            body[f.name] = from_value(f.value)
    if custom:
        body["custom_fields"] = custom
    return body


def apply(base_url: str, op: api.Op) -> Optional[types.Record]:
    """Applies one write."""
    if isinstance(op, api.Op_Create):
        if op.value.containers:
            raise errors.invalid("contacts have no containers")
        body = to_json(op.value.fields)
        if op.value.marker is not None:
            body["external_id"] = op.value.marker
        return to_record(http.post(f"{base_url}/contacts").json(body).send_json())
    if isinstance(op, api.Op_Update):
        req = http.patch(f"{base_url}/contacts/{encode(op.value.id)}").json(to_json(op.value.fields))
        if op.value.if_version is not None:
            req.header("if-match", op.value.if_version)
        return to_record(req.send_json())
    if isinstance(op, api.Op_Delete):
        try:
            http.delete(f"{base_url}/contacts/{encode(op.value)}").send()
        except Exception as e:
            # Already gone is what a delete wants: retried deletes stay idempotent.
            if not is_error(e, types.Error_NotFound):
                raise
        return None
    raise errors.invalid("contacts have no containers")


class ConnectorApi(exports.ConnectorApi):
    """The export componentize-py binds to `connector-api`."""

    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="template-py",
            version="0.1.0",
            app="Contacts API",
            entities=[entity_info(ENTITY, "Contacts", incremental=True, max_page_size=100, max_batch_size=50)],
            rate_limits=[types.RateLimit(600, 60)],
        )

    def check(self) -> types.AccountInfo:
        me = http.get_json(f"{base()}/me")
        return types.AccountInfo(me["account_id"], me["name"])

    def schema(self, entity: str) -> List[types.FieldDef]:
        check_entity(entity)
        t = types.FieldType
        fields = [
            field_def("email", "Email", t.EMAIL, required=True, well_known=wk.EMAIL),
            field_def("first_name", "First name", t.TEXT, well_known=wk.FIRST_NAME),
            field_def("last_name", "Last name", t.TEXT, well_known=wk.LAST_NAME),
            field_def("phone", "Phone", t.PHONE, well_known=wk.PHONE),
            field_def("company", "Company", t.TEXT, well_known=wk.COMPANY),
            field_def("external_id", "External id", t.TEXT, well_known=wk.MARKER),
        ]
        kinds = {"number": t.NUMBER, "boolean": t.BOOLEAN, "date": t.DATE}
        for f in http.get_json(f"{base()}/fields"):
            kind = kinds.get(f.get("type", ""), t.TEXT)
            fields.append(field_def(CUSTOM_PREFIX + f["name"], f["label"], kind, custom=True))
        return fields

    def containers(self, entity: str) -> List[types.Container]:
        check_entity(entity)
        return []

    def pull(self, req: api.PullRequest) -> api.Page:
        check_entity(req.entity)
        if req.container is not None:
            raise errors.invalid("contacts have no containers")
        cursor = read_cursor(req.cursor)
        since = None if req.full else cursor.get("since")
        limit = min(max(req.page_size, 1), 100)
        url = f"{base()}/contacts?limit={limit}"
        if cursor.get("page") is not None:
            url += f"&cursor={encode(cursor['page'])}"
        if since is not None:
            url += f"&updated_since={encode(since)}"
        page = http.get_json(url)
        records = [to_record(c) for c in page["contacts"]]
        # RFC 3339 times in one offset (UTC) compare as text.
        stamps = [r.updated_at for r in records if r.updated_at is not None]
        if cursor.get("high") is not None:
            stamps.append(cursor["high"])
        high = max(stamps) if stamps else None
        if page.get("next_cursor") is not None:
            return api.Page(records, [], write_cursor(page["next_cursor"], since, high), True)
        return api.Page(records, [], write_cursor(None, high or since, None), False)

    def find(self, entity: str, query: api.Lookup) -> List[types.Record]:
        check_entity(entity)
        b = base()
        if isinstance(query, api.Lookup_Ids):
            found = []
            for id in query.value:
                try:
                    found.append(to_record(http.get_json(f"{b}/contacts/{encode(id)}")))
                except Exception as e:
                    if not is_error(e, types.Error_NotFound):
                        raise
            return found
        if isinstance(query, api.Lookup_Email):
            flt = f"email={encode(query.value)}"
        else:
            flt = f"external_id={encode(query.value)}"
        return [to_record(c) for c in http.get_json(f"{b}/contacts?limit=100&{flt}")["contacts"]]

    def push(self, entity: str, writes: List[api.Write]) -> List[api.WriteResult]:
        check_entity(entity)
        b = base()
        return push_each(writes, lambda op: apply(b, op))
