//! `find`: records by email, by engine marker, or by ids.
//!
//! | Lookup  | Request                                                              |
//! |---------|----------------------------------------------------------------------|
//! | email   | `GET lookup?q=<email>&f=email&entities=<contact\|lead>`               |
//! | marker  | `GET lookup?q=<marker>&f=<marker field>&entities=<contact\|lead>`     |
//! | ids     | `GET <entity>/<id>` per id (absent when 404 or in the recycle bin)   |
//!
//! Results are checked again on this side (emails case-insensitively, markers exactly),
//! so a looser match of the app never returns a wrong record.

use serde_json::Value as Json;
use tandem_sdk::{Error, Lookup, Record, Value};

use crate::api::{Client, encode};
use crate::meta;
use crate::model::{App, Entity};
use crate::record::{self, FieldTypes};
use crate::settings::Settings;

/// Runs one `find` call for `app`.
pub fn find(app: App, entity: &str, query: Lookup) -> Result<Vec<Record>, Error> {
    let settings = Settings::load()?;
    let entity = app.entity(entity, settings.edition)?;
    let client = Client::new(settings);
    let types = meta::types(&client, entity)?;
    match query {
        Lookup::Email(email) => by_email(&client, entity, &email, &types),
        Lookup::Marker(marker) => {
            let field = client.settings().marker_field.clone();
            let found = lookup(&client, entity, &field, &marker, &types)?;
            Ok(found
                .into_iter()
                .filter(|r| has_marker(r, &field, &marker))
                .collect())
        }
        Lookup::Ids(ids) => ids
            .iter()
            .filter_map(|id| by_id(&client, entity, id, &types).transpose())
            .collect(),
    }
}

/// Records whose email (any of them) equals `email`, case-insensitively.
pub fn by_email(
    client: &Client,
    entity: Entity,
    email: &str,
    types: &FieldTypes,
) -> Result<Vec<Record>, Error> {
    let wanted = email.trim().to_lowercase();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let found = lookup(client, entity, "email", email.trim(), types)?;
    Ok(found
        .into_iter()
        .filter(|r| record::emails_of(r).contains(&wanted))
        .collect())
}

/// The record with this id, or `None` when it does not exist or is deleted.
pub fn by_id(
    client: &Client,
    entity: Entity,
    id: &str,
    types: &FieldTypes,
) -> Result<Option<Record>, Error> {
    // Freshworks ids are numeric: anything else cannot exist.
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match client.get(&format!("{}/{id}", entity.plural())) {
        Ok(body) => {
            let Some(object) = body.get(entity.singular()).and_then(Json::as_object) else {
                return Err(Error::transient(format!(
                    "GET {}/{id}: the answer has no `{}` object; retry later",
                    entity.plural(),
                    entity.singular()
                )));
            };
            if record::is_deleted(object) {
                return Ok(None);
            }
            record::to_record(object, types).map(Some)
        }
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `GET lookup?q=&f=&entities=`: live records, as the app matched them.
fn lookup(
    client: &Client,
    entity: Entity,
    field: &str,
    value: &str,
    types: &FieldTypes,
) -> Result<Vec<Record>, Error> {
    let path = format!(
        "lookup?q={}&f={}&entities={}",
        encode(value),
        encode(field),
        entity.singular()
    );
    let body = match client.get(&path) {
        Ok(body) => body,
        // Some accounts answer "nothing found" with 404.
        Err(Error::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    lookup_records(entity, &body, types)
}

/// The records of a lookup answer: `{"contacts": {"contacts": [...]}}` (also accepts
/// `{"contacts": [...]}`), recycle-bin records left out.
pub fn lookup_records(
    entity: Entity,
    body: &Json,
    types: &FieldTypes,
) -> Result<Vec<Record>, Error> {
    let key = entity.plural();
    let items = match body.get(key) {
        Some(Json::Object(inner)) => inner.get(key).and_then(Json::as_array),
        Some(Json::Array(items)) => Some(items),
        _ => None,
    };
    items
        .into_iter()
        .flatten()
        .filter_map(Json::as_object)
        .filter(|o| !record::is_deleted(o))
        .map(|o| record::to_record(o, types))
        .collect()
}

/// Whether `record` carries the engine `marker` in `field`.
pub fn has_marker(record: &Record, field: &str, marker: &str) -> bool {
    match record.get(field) {
        Some(Value::Text(text)) => text == marker,
        Some(Value::Texts(list)) => list.iter().any(|t| t == marker),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_answers() {
        let types = FieldTypes::default();
        let cases: &[(Entity, Json, &[&str])] = &[
            (
                Entity::Contacts,
                json!({"contacts": {"contacts": [{"id": 1}, {"id": 2, "is_deleted": true}, {"id": 3}]}}),
                &["1", "3"],
            ),
            (Entity::Contacts, json!({"contacts": [{"id": 4}]}), &["4"]),
            (Entity::Contacts, json!({"contacts": {"contacts": []}}), &[]),
            (Entity::Contacts, json!({}), &[]),
            (
                Entity::Leads,
                json!({"leads": {"leads": [{"id": 100}]}}),
                &["100"],
            ),
            (
                Entity::Leads,
                json!({"contacts": {"contacts": [{"id": 1}]}}),
                &[],
            ),
        ];
        for (entity, body, ids) in cases {
            let found = lookup_records(*entity, body, &types).unwrap();
            assert_eq!(
                found.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                *ids,
                "{body}"
            );
        }
    }

    #[test]
    fn markers_match_exactly() {
        let record = Record::new("1").with("external_id", "tandem:abc");
        assert!(has_marker(&record, "external_id", "tandem:abc"));
        assert!(!has_marker(&record, "external_id", "tandem:ABC"));
        assert!(!has_marker(&record, "cf_tandem_id", "tandem:abc"));
    }
}
