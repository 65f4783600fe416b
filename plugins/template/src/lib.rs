//! Template connector: a generic REST "contacts" API whose base URL is a connection setting.
//!
//! Copy this crate to start a connector. It is small but complete: `describe`, `check`,
//! `schema` (standard plus custom fields), incremental `pull` with an opaque cursor,
//! `find` (by email, marker or ids) and `push` (create, update with optimistic
//! concurrency, delete). Credentials are the host's job: `tandem.toml` asks for an API
//! key sent as `Authorization: Bearer …`, which the host attaches to every request to the
//! `base-url` origin.
//!
//! The API it speaks (`{base}` is the `base-url` setting):
//!
//! ```text
//! GET    {base}/me                               -> {"account_id", "name"}
//! GET    {base}/fields                           -> [{"name", "label", "type"}]   (custom fields)
//! GET    {base}/contacts?limit=N[&cursor=C][&updated_since=T][&email=E][&external_id=M]
//!                                                -> {"contacts": [Contact], "next_cursor": C | null}
//! GET    {base}/contacts/{id}                    -> Contact
//! POST   {base}/contacts          {fields}       -> Contact
//! PATCH  {base}/contacts/{id}     {fields}       -> Contact   (If-Match: version)
//! DELETE {base}/contacts/{id}                    -> 204
//! Contact = {"id", "version", "updated_at", "email", "first_name", "last_name", "phone",
//!            "company", "external_id", "custom_fields": {name: value}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tandem_sdk::url::encode;
use tandem_sdk::well_known as wk;
use tandem_sdk::{
    AccountInfo, Connector, EntityInfo, Error, FieldDef, FieldType, Lookup, Op, Page, PluginInfo,
    PullRequest, Record, Value, Write, WriteResult, config, http,
};

/// The only entity.
const ENTITY: &str = "contacts";
/// Custom fields travel as `custom_fields.<name>`.
const CUSTOM_PREFIX: &str = "custom_fields.";
/// Keys of a contact that are record metadata, not fields.
const META: [&str; 3] = ["id", "version", "updated_at"];

/// The template connector.
pub struct Template;

tandem_sdk::export_connector!(Template);

/// The opaque cursor handed to the host: where the listing is, and the incremental
/// checkpoint (the newest `updated_at` seen).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Cursor {
    /// The API's cursor for the next page of this listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    /// List only contacts updated at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    /// Newest `updated_at` seen so far in this listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    high: Option<String>,
}

#[derive(Deserialize)]
struct ContactPage {
    contacts: Vec<Map<String, Json>>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Me {
    account_id: String,
    name: String,
}

#[derive(Deserialize)]
struct CustomField {
    name: String,
    label: String,
    #[serde(rename = "type", default)]
    kind: String,
}

fn base() -> Result<String, Error> {
    config::require_url("base-url")
}

fn check_entity(entity: &str) -> Result<(), Error> {
    if entity == ENTITY {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "unknown entity `{entity}`; this connector serves `contacts`"
        )))
    }
}

impl Connector for Template {
    fn describe() -> PluginInfo {
        PluginInfo::new("template", env!("CARGO_PKG_VERSION"), "Contacts API")
            .entity(
                EntityInfo::new(ENTITY, "Contacts")
                    .incremental()
                    .page_size(100)
                    .batch_size(50),
            )
            .rate_limit(600, 60)
    }

    fn check() -> Result<AccountInfo, Error> {
        let me: Me = http::get_json(&format!("{}/me", base()?))?;
        Ok(AccountInfo::new(me.account_id, me.name))
    }

    fn schema(entity: &str) -> Result<Vec<FieldDef>, Error> {
        check_entity(entity)?;
        let mut fields = vec![
            FieldDef::new("email", "Email", FieldType::Email)
                .required()
                .well_known(wk::EMAIL),
            FieldDef::new("first_name", "First name", FieldType::Text).well_known(wk::FIRST_NAME),
            FieldDef::new("last_name", "Last name", FieldType::Text).well_known(wk::LAST_NAME),
            FieldDef::new("phone", "Phone", FieldType::Phone).well_known(wk::PHONE),
            FieldDef::new("company", "Company", FieldType::Text).well_known(wk::COMPANY),
            FieldDef::new("external_id", "External id", FieldType::Text).well_known(wk::MARKER),
        ];
        let custom: Vec<CustomField> = http::get_json(&format!("{}/fields", base()?))?;
        fields.extend(custom.into_iter().map(|f| {
            let kind = match f.kind.as_str() {
                "number" => FieldType::Number,
                "boolean" => FieldType::Boolean,
                "date" => FieldType::Date,
                _ => FieldType::Text,
            };
            FieldDef::new(format!("{CUSTOM_PREFIX}{}", f.name), f.label, kind).custom()
        }));
        Ok(fields)
    }

    fn pull(req: PullRequest) -> Result<Page, Error> {
        check_entity(&req.entity)?;
        if req.container.is_some() {
            return Err(Error::invalid("contacts have no containers"));
        }
        let cursor = match req.cursor.as_deref() {
            Some(text) => serde_json::from_str::<Cursor>(text)
                .map_err(|e| Error::cursor_expired(format!("unreadable cursor: {e}")))?,
            None => Cursor::default(),
        };
        let since = if req.full { None } else { cursor.since.clone() };
        let limit = req.page_size.clamp(1, 100);
        let mut url = format!("{}/contacts?limit={limit}", base()?);
        if let Some(page) = &cursor.page {
            url.push_str(&format!("&cursor={}", encode(page)));
        }
        if let Some(since) = &since {
            url.push_str(&format!("&updated_since={}", encode(since)));
        }
        let page: ContactPage = http::get_json(&url)?;
        let records: Vec<Record> = page.contacts.into_iter().map(to_record).collect();
        // RFC 3339 times in one offset (UTC) compare as text.
        let high = records
            .iter()
            .filter_map(|r| r.updated_at.clone())
            .chain(cursor.high)
            .max();
        Ok(match page.next_cursor {
            Some(next) => Page::more(
                records,
                encode_cursor(&Cursor {
                    page: Some(next),
                    since,
                    high,
                }),
            ),
            None => {
                let checkpoint = Cursor {
                    page: None,
                    since: high.or(since),
                    high: None,
                };
                Page::last(records, Some(encode_cursor(&checkpoint)))
            }
        })
    }

    fn find(entity: &str, query: Lookup) -> Result<Vec<Record>, Error> {
        check_entity(entity)?;
        let base = base()?;
        let filter = match query {
            Lookup::Email(email) => format!("email={}", encode(&email)),
            Lookup::Marker(marker) => format!("external_id={}", encode(&marker)),
            Lookup::Ids(ids) => {
                let mut found = Vec::new();
                for id in ids {
                    match http::get_json(&format!("{base}/contacts/{}", encode(&id))) {
                        Ok(contact) => found.push(to_record(contact)),
                        Err(Error::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                return Ok(found);
            }
        };
        let page: ContactPage = http::get_json(&format!("{base}/contacts?limit=100&{filter}"))?;
        Ok(page.contacts.into_iter().map(to_record).collect())
    }

    fn push(entity: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>, Error> {
        check_entity(entity)?;
        let base = base()?;
        Ok(tandem_sdk::push_each(writes, |op| apply(&base, op)))
    }
}

/// Applies one write.
fn apply(base: &str, op: Op) -> Result<Option<Record>, Error> {
    match op {
        Op::Create(create) => {
            if !create.containers.is_empty() {
                return Err(Error::invalid("contacts have no containers"));
            }
            let mut body = to_json(&create.fields);
            if let Some(marker) = create.marker {
                body.insert("external_id".to_owned(), Json::String(marker));
            }
            let contact = http::post(format!("{base}/contacts"))
                .json(&body)
                .send_json()?;
            Ok(Some(to_record(contact)))
        }
        Op::Update(update) => {
            let mut request = http::patch(format!("{base}/contacts/{}", encode(&update.id)))
                .json(&to_json(&update.fields));
            if let Some(version) = update.if_version {
                request = request.header("if-match", version);
            }
            Ok(Some(to_record(request.send_json()?)))
        }
        Op::Delete(id) => match http::delete(format!("{base}/contacts/{}", encode(&id))).send() {
            // Already gone is what a delete wants: retried deletes stay idempotent.
            Ok(_) | Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        },
        Op::AddToContainer(_) | Op::RemoveFromContainer(_) => {
            Err(Error::invalid("contacts have no containers"))
        }
    }
}

fn encode_cursor(cursor: &Cursor) -> String {
    // A struct of optional strings always serializes.
    serde_json::to_string(cursor).unwrap_or_default()
}

/// A contact object to a record: metadata out, custom fields flattened.
fn to_record(mut contact: Map<String, Json>) -> Record {
    let text = |v: Option<Json>| match v {
        Some(Json::String(s)) => Some(s),
        Some(Json::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut record = Record::new(text(contact.remove("id")).unwrap_or_default());
    record.version = text(contact.remove("version"));
    record.updated_at = text(contact.remove("updated_at"));
    let custom = contact.remove("custom_fields");
    for (name, value) in contact {
        if !META.contains(&name.as_str()) {
            record.set(name, to_value(value));
        }
    }
    if let Some(Json::Object(custom)) = custom {
        for (name, value) in custom {
            record.set(format!("{CUSTOM_PREFIX}{name}"), to_value(value));
        }
    }
    record
}

fn to_value(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(b),
        Json::Number(n) => n.as_f64().map_or(Value::Text(n.to_string()), Value::Number),
        Json::String(s) => Value::Text(s),
        Json::Array(items) if items.iter().all(Json::is_string) => Value::Texts(
            items
                .into_iter()
                .filter_map(|i| match i {
                    Json::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
        ),
        other => Value::Text(other.to_string()),
    }
}

/// Fields to a request body: custom fields nested under `custom_fields`.
fn to_json(fields: &[tandem_sdk::Field]) -> Map<String, Json> {
    let mut body = Map::new();
    let mut custom = Map::new();
    for field in fields {
        let value = match &field.value {
            Value::Null => Json::Null,
            Value::Text(s) => Json::String(s.clone()),
            Value::Number(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
            Value::Boolean(b) => Json::Bool(*b),
            Value::Texts(items) => Json::Array(items.iter().cloned().map(Json::String).collect()),
        };
        match field.name.strip_prefix(CUSTOM_PREFIX) {
            Some(name) => custom.insert(name.to_owned(), value),
            None => body.insert(field.name.clone(), value),
        };
    }
    if !custom.is_empty() {
        body.insert("custom_fields".to_owned(), Json::Object(custom));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tandem_sdk::http::Method;
    use tandem_sdk::testing;

    fn setup() {
        testing::reset();
        testing::set_config("base-url", "https://api.example.com/");
    }

    fn pull(cursor: Option<String>, full: bool) -> Result<Page, Error> {
        Template::pull(PullRequest {
            entity: "contacts".into(),
            container: None,
            cursor,
            full,
            page_size: 2,
        })
    }

    #[test]
    fn pull_pages_then_checkpoints_the_newest_change() {
        setup();
        testing::mock_http(|req| {
            let body = if req.url.contains("cursor=p2") {
                json!({"contacts": [{"id": 3, "updated_at": "2024-05-02T00:00:00Z", "email": "c@x.io"}], "next_cursor": null})
            } else {
                json!({"contacts": [
                    {"id": "1", "version": "v1", "updated_at": "2024-05-03T00:00:00Z", "email": "a@x.io",
                     "tags": ["vip"], "custom_fields": {"region": "EU", "score": 4}},
                    {"id": "2", "updated_at": "2024-05-01T00:00:00Z", "email": null}
                ], "next_cursor": "p2"})
            };
            Ok(testing::json_response(200, &body))
        });
        let first = pull(None, false).unwrap();
        assert!(first.more);
        let a = &first.records[0];
        assert_eq!((a.id.as_str(), a.version.as_deref()), ("1", Some("v1")));
        assert_eq!(a.text("email"), Some("a@x.io"));
        assert_eq!(a.get("tags"), Some(&Value::texts(["vip"])));
        assert_eq!(a.text("custom_fields.region"), Some("EU"));
        assert_eq!(a.get("custom_fields.score"), Some(&Value::Number(4.0)));
        assert!(first.records[1].get("email").unwrap().is_null());

        let last = pull(first.next_cursor, false).unwrap();
        assert!(!last.more);
        assert_eq!(last.records[0].id, "3");
        let checkpoint: Cursor =
            serde_json::from_str(last.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(checkpoint.since.as_deref(), Some("2024-05-03T00:00:00Z"));
        assert_eq!(checkpoint.page, None);

        // The next incremental run asks only for changes since the checkpoint.
        pull(last.next_cursor, false).unwrap();
        let urls: Vec<String> = testing::requests().into_iter().map(|r| r.url).collect();
        assert_eq!(urls[0], "https://api.example.com/contacts?limit=2");
        assert_eq!(
            urls[1],
            "https://api.example.com/contacts?limit=2&cursor=p2"
        );
        assert_eq!(
            urls[2],
            "https://api.example.com/contacts?limit=2&updated_since=2024-05-03T00%3A00%3A00Z"
        );
    }

    #[test]
    fn unreadable_cursor_asks_for_a_full_listing() {
        setup();
        assert!(matches!(
            pull(Some("garbage".into()), false),
            Err(Error::CursorExpired(_))
        ));
    }

    #[test]
    fn http_failures_become_contract_errors() {
        setup();
        testing::mock_http(|_| {
            Ok(tandem_sdk::http::Response {
                status: 429,
                headers: vec![("Retry-After".into(), "3".into())],
                body: vec![],
            })
        });
        match Template::check() {
            Err(Error::RateLimited(info)) => assert_eq!(info.retry_after_ms, Some(3000)),
            other => panic!("expected rate-limited, got {other:?}"),
        }
        testing::mock_http(|_| Ok(testing::json_response(401, &json!({"error": "bad key"}))));
        let err = Template::check().unwrap_err();
        assert!(
            matches!(err, Error::Unauthorized(ref m) if m.contains("bad key")),
            "{err:?}"
        );
    }

    #[test]
    fn push_creates_updates_and_deletes_in_order() {
        setup();
        testing::mock_http(|req| {
            Ok(match (req.method, req.url.as_str()) {
                (Method::Post, _) => testing::json_response(
                    201,
                    &json!({"id": "9", "email": "n@x.io", "external_id": "m-1"}),
                ),
                (Method::Patch, _) => {
                    testing::json_response(412, &json!({"error": "version mismatch"}))
                }
                (Method::Delete, u) if u.ends_with("/gone") => {
                    testing::json_response(404, &json!({}))
                }
                _ => testing::json_response(204, &json!(null)),
            })
        });
        let writes = vec![
            Write {
                ref_: "c".into(),
                op: Op::Create(tandem_sdk::CreateOp {
                    fields: vec![
                        tandem_sdk::Field::new("email", "n@x.io"),
                        tandem_sdk::Field::new("custom_fields.region", "EU"),
                    ],
                    marker: Some("m-1".into()),
                    containers: vec![],
                }),
            },
            Write {
                ref_: "u".into(),
                op: Op::Update(tandem_sdk::UpdateOp {
                    id: "9".into(),
                    if_version: Some("v1".into()),
                    fields: vec![tandem_sdk::Field::new("phone", Value::Null)],
                }),
            },
            Write {
                ref_: "d".into(),
                op: Op::Delete("gone".into()),
            },
        ];
        let results = Template::push("contacts", writes).unwrap();
        let refs: Vec<&str> = results.iter().map(|r| r.ref_.as_str()).collect();
        assert_eq!(refs, ["c", "u", "d"]);
        assert_eq!(
            results[0].outcome.as_ref().unwrap().as_ref().unwrap().id,
            "9"
        );
        assert!(matches!(results[1].outcome, Err(Error::Conflict(_))));
        assert_eq!(results[2].outcome, Ok(None));

        let sent = testing::requests();
        let created: Json = serde_json::from_slice(sent[0].body.as_deref().unwrap()).unwrap();
        assert_eq!(
            created,
            json!({"email": "n@x.io", "external_id": "m-1", "custom_fields": {"region": "EU"}})
        );
        assert!(sent[1].headers.contains(&("if-match".into(), "v1".into())));
    }

    #[test]
    fn missing_base_url_is_a_clear_error() {
        testing::reset();
        let err = Template::check().unwrap_err();
        assert!(err.message().contains("`base-url` is not set"), "{err:?}");
    }
}
