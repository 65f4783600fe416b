//! `find`: records by email, by engine marker, or by ids.
//!
//! | Lookup  | Request                                                              |
//! |---------|----------------------------------------------------------------------|
//! | email   | `GET lookup?q=<email>&f=email&entities=<contact\|lead>`               |
//! | marker  | `GET lookup?q=<marker>&f=<marker field>&entities=<contact\|lead>`     |
//! | ids     | `GET <entity>/<id>` per id (absent when 404 or in the recycle bin)   |
//!
//! `find-many` (the optional `lookup-api`) answers a batch of keys with searches of
//! [`SEARCH_BATCH`] values each instead of one request per key:
//!
//! | Keys    | Requests                                                                     |
//! |---------|------------------------------------------------------------------------------|
//! | emails  | `POST filtered_search/<entity>` with `<email attribute> is_in [...]` per 100 distinct addresses |
//! | markers | `POST filtered_search/<entity>` with `<marker field> is_in [...]` per 100   |
//! | ids     | `POST filtered_search/<entity>` with `id is_in [...]` per 100, then `GET <entity>/<id>` for each id the search did not return (deleted, or not yet searchable) |
//!
//! A search the account refuses (an attribute it cannot filter on) falls back to the
//! single lookups above for those keys; account-wide failures (401, 403, 429) fail the
//! call. So 1,000 e-mails cost 10 requests instead of 1,000.
//!
//! Results are checked again on this side (emails case-insensitively, markers exactly),
//! so a looser match of the app never returns a wrong record.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value as Json, json};
use tandem_sdk::{Error, Lookup, Record, Value};

use crate::api::Client;
use crate::errors;
use crate::meta;
use crate::model::{App, Entity};
use crate::record::{self, FieldTypes};
use crate::settings::Settings;
use tandem_sdk::url::encode;

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

/// Values per `filtered_search` request (the API's largest page, so that one page
/// usually answers the whole search).
pub const SEARCH_BATCH: usize = 100;

/// Pages one search may take before the call fails (100 values matching more than
/// 5,000 live records is not a lookup any more; a silently cut answer would duplicate).
const MAX_SEARCH_PAGES: u32 = 50;

/// Runs one `find-many` call for `app`: one answer per key, in order, each what
/// [`find`] would return for it.
pub fn find_many(app: App, entity: &str, keys: Vec<Lookup>) -> Result<Vec<Vec<Record>>, Error> {
    let settings = Settings::load()?;
    let entity = app.entity(entity, settings.edition)?;
    let client = Client::new(settings);
    let types = meta::types(&client, entity)?;
    let marker_field = client.settings().marker_field.clone();
    let mut emails = BTreeSet::new();
    let mut markers = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for key in &keys {
        match key {
            Lookup::Email(email) => {
                let wanted = email.trim().to_lowercase();
                if !wanted.is_empty() {
                    emails.insert(wanted);
                }
            }
            Lookup::Marker(marker) => {
                markers.insert(marker.clone());
            }
            Lookup::Ids(list) => ids.extend(list.iter().filter(|id| is_id(id)).cloned()),
        }
    }
    let searcher = Searcher {
        client: &client,
        entity,
        types: &types,
    };
    let with_emails = searcher.each_or_single(
        entity.email_attribute(),
        &emails,
        text_json,
        record::emails_of,
        |email| by_email(&client, entity, email, &types),
    )?;
    let with_markers = searcher.each_or_single(
        &marker_field,
        &markers,
        text_json,
        |record| markers_of(record, &marker_field),
        |marker| {
            let found = lookup(&client, entity, &marker_field, marker, &types)?;
            Ok(found
                .into_iter()
                .filter(|r| has_marker(r, &marker_field, marker))
                .collect())
        },
    )?;
    let searched = match searcher.search_all("id", &ids, id_json)? {
        Ok(found) => found,
        Err(refused) => {
            tandem_sdk::log::debug(&format!(
                "reading records by id with a search refused ({}); reading one by one",
                refused.message()
            ));
            Vec::new()
        }
    };
    let mut with_ids: BTreeMap<String, Record> = searched
        .into_iter()
        .filter(|r| ids.contains(&r.id))
        .map(|r| (r.id.clone(), r))
        .collect();
    // Ids the search did not return: deleted, or not yet searchable. A `GET` decides.
    for id in &ids {
        if !with_ids.contains_key(id)
            && let Some(record) = by_id(&client, entity, id, &types)?
        {
            with_ids.insert(id.clone(), record);
        }
    }
    Ok(keys
        .into_iter()
        .map(|key| match key {
            Lookup::Email(email) => {
                let wanted = email.trim().to_lowercase();
                with_emails.get(&wanted).cloned().unwrap_or_default()
            }
            Lookup::Marker(marker) => with_markers.get(&marker).cloned().unwrap_or_default(),
            Lookup::Ids(list) => list
                .iter()
                .filter_map(|id| with_ids.get(id).cloned())
                .collect(),
        })
        .collect())
}

/// `POST filtered_search/<entity>` with `is_in`, [`SEARCH_BATCH`] values per request
/// (also the pushes' searches for holders, read-backs and versions).
pub(crate) struct Searcher<'a> {
    pub(crate) client: &'a Client,
    pub(crate) entity: Entity,
    pub(crate) types: &'a FieldTypes,
}

/// The outcome of a batch of searches: `Err` is an account-wide failure (the call
/// fails), `Ok(Err)` a refusal of the search itself (the caller falls back).
type Searched = Result<Result<Vec<Record>, Error>, Error>;

impl Searcher<'_> {
    /// Live records whose `attribute` is one of `values`, every page of every batch.
    fn search_all(
        &self,
        attribute: &str,
        values: &BTreeSet<String>,
        to_json: fn(&str) -> Json,
    ) -> Searched {
        let values: Vec<&String> = values.iter().collect();
        let mut records = Vec::new();
        for chunk in values.chunks(SEARCH_BATCH) {
            let values: Vec<Json> = chunk.iter().map(|v| to_json(v)).collect();
            match self.search(attribute, values) {
                Ok(found) => records.extend(found),
                Err(e) if errors::is_account_wide(&e) || matches!(e, Error::Transient(_)) => {
                    return Err(e);
                }
                Err(refused) => return Ok(Err(refused)),
            }
        }
        Ok(Ok(records))
    }

    /// The records of each value of `values` (matched again on this side: `keys_of` a
    /// record must contain the value), from searches on `attribute`; when the account
    /// refuses the search, from `single` per value.
    fn each_or_single(
        &self,
        attribute: &str,
        values: &BTreeSet<String>,
        to_json: fn(&str) -> Json,
        keys_of: impl Fn(&Record) -> Vec<String>,
        single: impl Fn(&str) -> Result<Vec<Record>, Error>,
    ) -> Result<BTreeMap<String, Vec<Record>>, Error> {
        let mut out: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        match self.search_all(attribute, values, to_json)? {
            Ok(found) => {
                for record in found {
                    let mut keys = keys_of(&record);
                    keys.sort_unstable();
                    keys.dedup();
                    for key in keys.into_iter().filter(|k| values.contains(k)) {
                        out.entry(key).or_default().push(record.clone());
                    }
                }
            }
            Err(refused) => {
                tandem_sdk::log::debug(&format!(
                    "searching on `{attribute}` refused ({}); looking up one by one",
                    refused.message()
                ));
                for value in values {
                    out.insert(value.clone(), single(value)?);
                }
            }
        }
        Ok(out)
    }

    /// One search of at most [`SEARCH_BATCH`] values, every page. A search answer
    /// decides whether a record exists, so it must be complete: a page that comes back
    /// short while `meta.total` says more (Freshworks leaves a record out now and then,
    /// as listings see: [`crate::pull`]) makes the search run again with other page
    /// boundaries, and
    /// an answer still short is a passing failure rather than a missed match (which
    /// would let a create duplicate the record).
    pub(crate) fn search(&self, attribute: &str, values: Vec<Json>) -> Result<Vec<Record>, Error> {
        let query = json!({"filter_rule": [{
            "attribute": attribute, "operator": "is_in", "value": values}]});
        let mut items: BTreeMap<String, Json> = BTreeMap::new();
        let mut total = None;
        for per_page in [SEARCH_BATCH as u32, SEARCH_BATCH as u32 - 1] {
            total = self.search_pages(&query, per_page, &mut items)?;
            if total.is_none_or(|t| items.len() as u64 >= t) {
                break;
            }
        }
        if let Some(t) = total.filter(|t| (items.len() as u64) < *t) {
            return Err(Error::transient(format!(
                "a search on `{attribute}` answered {} of its {t} matches, also when read again (short pages); retry later",
                items.len()
            )));
        }
        let mut records = Vec::new();
        for object in items.values().filter_map(Json::as_object) {
            if !record::is_deleted(object) {
                records.push(record::to_record(object, self.types)?);
            }
        }
        Ok(records)
    }

    /// Every page of one search with pages of `per_page`, merged into `items` by id.
    /// Returns the app's `meta.total`, when sent.
    fn search_pages(
        &self,
        query: &Json,
        per_page: u32,
        items: &mut BTreeMap<String, Json>,
    ) -> Result<Option<u64>, Error> {
        for page in 1..=MAX_SEARCH_PAGES {
            let path = format!(
                "filtered_search/{}?page={page}&per_page={per_page}",
                self.entity.singular()
            );
            let answer = self.client.post(&path, query)?;
            let listing = crate::pull::Listing::parse(answer, self.entity.plural())?;
            let count = listing.items.len();
            for item in listing.items {
                if let Some(id) = item.as_object().and_then(record::id_of) {
                    items.insert(id, item);
                }
            }
            let fetched = u64::from(page) * u64::from(per_page);
            // With a total, its pages decide (a short page is not the last); without
            // one, a short page is.
            let last = match listing.total {
                Some(t) => fetched >= t,
                None => count < per_page as usize,
            };
            if last || count == 0 {
                return Ok(listing.total);
            }
        }
        Err(Error::transient(format!(
            "a search matched more than {} records; retry later",
            MAX_SEARCH_PAGES as usize * SEARCH_BATCH
        )))
    }
}

fn is_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

fn text_json(text: &str) -> Json {
    Json::String(text.to_owned())
}

fn id_json(id: &str) -> Json {
    id.parse::<u64>()
        .map_or_else(|_| Json::String(id.to_owned()), |n| Json::Number(n.into()))
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
    markers_of(record, field).iter().any(|m| m == marker)
}

/// The markers a record carries in `field` (exact text).
fn markers_of(record: &Record, field: &str) -> Vec<String> {
    match record.get(field) {
        Some(Value::Text(text)) => vec![text.clone()],
        Some(Value::Texts(list)) => list.clone(),
        _ => Vec::new(),
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
