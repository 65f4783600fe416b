//! Freshworks contact / lead JSON to contract records and back (pure).
//!
//! Field names are the app's own: standard fields keep their JSON key (`first_name`,
//! `mobile_number`, `owner_id`), custom fields their `cf_*` key (they travel under
//! `custom_field` on the wire), and the nested objects of a lead use a dot (`company.name`,
//! `deal.name`).
//!
//! Reading (`to_record`):
//!
//! | JSON                                   | Record                                              |
//! |----------------------------------------|-----------------------------------------------------|
//! | `id` (64-bit number or string)         | `record.id` as decimal text                         |
//! | `updated_at` (`…-06:00`)               | `record.updated-at` and `record.version`, in UTC (`…Z`) |
//! | `*_id` numbers, `*_ids` arrays         | text / texts (ids never become floats)              |
//! | `emails` `[{value,is_primary}]`        | texts, primary first; `email` stays the primary     |
//! | `phone_numbers`, `tags`                | texts                                               |
//! | `sales_accounts`                       | texts of names, primary first, and `sales_account.name` (the primary) |
//! | `company` / `deal` objects (leads)     | `company.<key>` / `deal.<key>`                      |
//! | `subscription_status` 0–4              | consent text (see [`Consent`]); `do_not_disturb: true` tightens subscribed / not subscribed to `unsubscribed` |
//! | `custom_field.cf_x`                    | `cf_x`; multi-select `"a;b"` → texts, date `2024-01-16T00:00:00+05:30` → `2024-01-16`, numeric strings of number fields → numbers |
//! | `open_deals_amount` `"0.0"`            | number                                              |
//! | `links`, `is_deleted`, other objects   | left out (`is_deleted` routes the record to the deletions) |
//!
//! Writing (`to_body`) is the reverse for writable fields; a read-only field in a write
//! is refused as `invalid` rather than silently dropped.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value as Json};
use tandem_sdk::{Error, Field, Record, Value};

use crate::model::Entity;

/// What the mapping needs to know about fields beyond their JSON values, learned from the
/// field metadata (`settings/<entity>/fields`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldTypes {
    /// Multi-select fields (`;`-joined strings on the wire).
    #[serde(default)]
    pub multi: BTreeSet<String>,
    /// Date fields (echoed as date-times at midnight in the account's time zone).
    #[serde(default)]
    pub dates: BTreeSet<String>,
    /// Number fields (sometimes sent as numeric strings).
    #[serde(default)]
    pub numbers: BTreeSet<String>,
    /// Every custom field (`cf_…`) the metadata listed: a record carrying another one
    /// says these types are older than the account's fields.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub custom: BTreeSet<String>,
}

impl FieldTypes {
    /// The custom fields of `object` these types do not know.
    pub fn unknown_custom<'a>(&self, object: &'a Map<String, Json>) -> Vec<&'a str> {
        match object.get("custom_field") {
            Some(Json::Object(custom)) => custom
                .keys()
                .filter(|k| !self.custom.contains(k.as_str()))
                .map(String::as_str)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Marketing consent: Freshworks `subscription_status` as the contract's `consent` text.
///
/// | code | text             | Freshworks label   |
/// |------|------------------|--------------------|
/// | 0    | `unsubscribed`   | Unsubscribed       |
/// | 1    | `subscribed`     | Subscribed         |
/// | 2    | `not-subscribed` | Not subscribed     |
/// | 3    | `spam`           | Reported as spam   |
/// | 4    | `bounced`        | Bounced            |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// 0.
    Unsubscribed,
    /// 1.
    Subscribed,
    /// 2.
    NotSubscribed,
    /// 3.
    Spam,
    /// 4.
    Bounced,
}

impl Consent {
    /// Every state, by code.
    pub const ALL: [Consent; 5] = [
        Consent::Unsubscribed,
        Consent::Subscribed,
        Consent::NotSubscribed,
        Consent::Spam,
        Consent::Bounced,
    ];

    /// The `subscription_status` code.
    pub fn code(self) -> i64 {
        match self {
            Consent::Unsubscribed => 0,
            Consent::Subscribed => 1,
            Consent::NotSubscribed => 2,
            Consent::Spam => 3,
            Consent::Bounced => 4,
        }
    }

    /// The state of a code.
    pub fn from_code(code: i64) -> Option<Self> {
        Consent::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The contract text.
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Unsubscribed => "unsubscribed",
            Consent::Subscribed => "subscribed",
            Consent::NotSubscribed => "not-subscribed",
            Consent::Spam => "spam",
            Consent::Bounced => "bounced",
        }
    }

    /// The Freshworks label.
    pub fn label(self) -> &'static str {
        match self {
            Consent::Unsubscribed => "Unsubscribed",
            Consent::Subscribed => "Subscribed",
            Consent::NotSubscribed => "Not subscribed",
            Consent::Spam => "Reported as spam",
            Consent::Bounced => "Bounced",
        }
    }

    /// The state of a contract text (also accepts `_`, spaces and the code).
    pub fn parse(text: &str) -> Option<Self> {
        let norm = text.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        Consent::ALL
            .into_iter()
            .find(|c| c.as_str() == norm || c.code().to_string() == norm)
            .or(match norm.as_str() {
                "reported-as-spam" => Some(Consent::Spam),
                _ => None,
            })
    }

    /// The consent a record shows: DND forbids marketing email, so a record marked
    /// `do_not_disturb` that is (or never was) subscribed reads as `unsubscribed`.
    /// Spam and bounced are stronger and stay as they are.
    pub fn with_dnd(self, dnd: bool) -> Self {
        match self {
            Consent::Subscribed | Consent::NotSubscribed if dnd => Consent::Unsubscribed,
            other => other,
        }
    }
}

/// Standard fields the API computes or owns; writing them is refused.
pub const READ_ONLY: &[&str] = &[
    "id",
    "display_name",
    "avatar",
    "created_at",
    "updated_at",
    "emails",
    "phone_numbers",
    "sales_accounts",
    "sales_account.name",
    "lead_score",
    "customer_fit",
    "creater_id",
    "updater_id",
    "last_contacted",
    "last_contacted_mode",
    "last_contacted_sales_activity_mode",
    "last_contacted_via_sales_activity",
    "last_contacted_via_chat",
    "last_seen",
    "last_assigned_at",
    "open_deals_amount",
    "open_deals_count",
    "won_deals_amount",
    "won_deals_count",
    "recent_note",
    "total_sessions",
    "system_tags",
    "mcr_id",
    "record_type_id",
    "stage_updated_time",
    "email_status",
    "web_form_ids",
    "active_sales_sequences",
    "completed_sales_sequences",
    "first_campaign",
    "first_medium",
    "first_source",
    "last_campaign",
    "last_medium",
    "last_source",
    "latest_campaign",
    "latest_medium",
    "latest_source",
    "team_user_ids",
];

/// Standard fields sent as numeric strings by some editions (Classic amounts).
const NUMERIC_STRINGS: &[&str] = &["open_deals_amount", "won_deals_amount"];

/// Keys of the record object that are metadata or structure, not fields.
const SKIPPED: &[&str] = &[
    "id",
    "updated_at",
    "links",
    "is_deleted",
    "partial",
    "custom_field",
];

/// True when the API object is a soft-deleted (recycle bin) record.
pub fn is_deleted(json: &Map<String, Json>) -> bool {
    matches!(json.get("is_deleted"), Some(Json::Bool(true)))
}

/// The id of an API object as decimal text.
pub fn id_of(json: &Map<String, Json>) -> Option<String> {
    match json.get("id")? {
        Json::Number(n) => Some(n.to_string()),
        Json::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// The object's id, or the error that an object without one is.
pub fn required_id(json: &Map<String, Json>) -> Result<String, Error> {
    id_of(json)
        .ok_or_else(|| Error::transient("the API returned a record without an `id`; retry later"))
}

/// The object's `updated_at` in UTC (as sent when it cannot be read as an instant).
pub fn updated_at_of(json: &Map<String, Json>) -> Option<String> {
    let updated = json.get("updated_at").and_then(Json::as_str)?;
    Some(tandem_sdk::timestamp::normalize(updated).unwrap_or_else(|| updated.to_owned()))
}

/// A contact or lead object to a record (see the module table).
pub fn to_record(json: &Map<String, Json>, types: &FieldTypes) -> Result<Record, Error> {
    let mut record = Record::new(required_id(json)?);
    if let Some(utc) = updated_at_of(json) {
        record.version = Some(utc.clone());
        record.updated_at = Some(utc);
    }
    for (key, value) in json {
        if SKIPPED.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "emails" => record.set("emails", texts_of(value, Some("value"))),
            "phone_numbers" => record.set("phone_numbers", texts_of(value, Some("value"))),
            "sales_accounts" => {
                let names = texts_of(value, Some("name"));
                let primary = match &names {
                    Value::Texts(list) => list.first().cloned().map_or(Value::Null, Value::Text),
                    _ => Value::Null,
                };
                record.set("sales_accounts", names);
                record.set("sales_account.name", primary);
            }
            "subscription_status" => record.set(key.clone(), consent_value(value)),
            "company" | "deal" => match value {
                Json::Object(inner) => {
                    for (sub, v) in inner {
                        if let Some(v) = scalar(sub, v, types) {
                            record.set(format!("{key}.{sub}"), v);
                        }
                    }
                }
                Json::Null => record.set(format!("{key}.name"), Value::Null),
                _ => {}
            },
            _ => {
                if let Some(v) = scalar(key, value, types) {
                    record.set(key.clone(), v);
                }
            }
        }
    }
    if let Some(Json::Object(custom)) = json.get("custom_field") {
        for (key, value) in custom {
            if let Some(v) = custom_value(key, value, types) {
                record.set(key.clone(), v);
            }
        }
    }
    let dnd = matches!(json.get("do_not_disturb"), Some(Json::Bool(true)));
    if let Some(Value::Text(text)) = record.get("subscription_status")
        && let Some(consent) = Consent::parse(text)
    {
        record.set("subscription_status", consent.with_dnd(dnd).as_str());
    }
    Ok(record)
}

/// `subscription_status` (a code, sometimes a numeric string) as consent text. An unknown
/// code is kept as its digits so that nothing is lost.
fn consent_value(value: &Json) -> Value {
    let code = match value {
        Json::Number(n) => n.as_i64(),
        Json::String(s) => s.trim().parse::<i64>().ok(),
        Json::Null => return Value::Null,
        _ => None,
    };
    match code {
        Some(code) => Consent::from_code(code).map_or_else(
            || Value::text(code.to_string()),
            |c| Value::text(c.as_str()),
        ),
        None => Value::Null,
    }
}

/// A standard field's value, or `None` for structures that are not fields.
fn scalar(key: &str, value: &Json, types: &FieldTypes) -> Option<Value> {
    Some(match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) if is_id_key(key) => Value::Text(n.to_string()),
        Json::Number(n) => Value::Number(n.as_f64()?),
        Json::String(s) if NUMERIC_STRINGS.contains(&key) || types.numbers.contains(key) => s
            .trim()
            .parse::<f64>()
            .map_or_else(|_| Value::Text(s.clone()), Value::Number),
        Json::String(s) if types.dates.contains(key) => Value::Text(date_only(s)),
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(_) => texts_of(value, Some("value")),
        Json::Object(_) => return None,
    })
}

/// A custom field's value: multi-selects split, dates without time, numeric strings of
/// number fields as numbers.
fn custom_value(key: &str, value: &Json, types: &FieldTypes) -> Option<Value> {
    match value {
        Json::String(s) if types.multi.contains(key) => Some(Value::Texts(
            s.split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        Json::Number(n) if types.numbers.contains(key) || !is_id_key(key) => {
            Some(Value::Number(n.as_f64()?))
        }
        _ => scalar(key, value, types),
    }
}

/// `2024-01-16T00:00:00+05:30` → `2024-01-16`; other text unchanged.
fn date_only(text: &str) -> String {
    let t = text.trim();
    let bytes = t.as_bytes();
    let dated = t.len() >= 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && t[..10]
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if dated && (t.len() == 10 || bytes[10] == b'T' || bytes[10] == b' ') {
        t[..10].to_owned()
    } else {
        t.to_owned()
    }
}

fn is_id_key(key: &str) -> bool {
    key == "id" || key.ends_with("_id") || key.ends_with("_ids")
}

/// An array as texts: strings and numbers as text, objects by `field` (primary first
/// when they carry `is_primary`). Anything else is `null`.
fn texts_of(value: &Json, field: Option<&str>) -> Value {
    let Json::Array(items) = value else {
        return match value {
            Json::String(s) => Value::Texts(vec![s.clone()]),
            _ => Value::Null,
        };
    };
    let mut primary = Vec::new();
    let mut rest = Vec::new();
    for item in items {
        let (text, is_primary) = match item {
            Json::String(s) => (Some(s.clone()), false),
            Json::Number(n) => (Some(n.to_string()), false),
            Json::Object(o) => {
                if matches!(o.get("_destroy"), Some(Json::Bool(true))) {
                    continue;
                }
                let text = field
                    .and_then(|f| o.get(f))
                    .and_then(Json::as_str)
                    .map(str::to_owned);
                (text, matches!(o.get("is_primary"), Some(Json::Bool(true))))
            }
            _ => (None, false),
        };
        if let Some(text) = text {
            if is_primary {
                primary.push(text)
            } else {
                rest.push(text)
            }
        }
    }
    primary.extend(rest);
    Value::Texts(primary)
}

/// Every email of a record (`email` and `emails`), lower-cased, for matching.
pub fn emails_of(record: &Record) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(email) = record.text("email") {
        out.push(email.trim().to_lowercase());
    }
    if let Some(Value::Texts(list)) = record.get("emails") {
        out.extend(list.iter().map(|e| e.trim().to_lowercase()));
    }
    out.sort();
    out.dedup();
    out
}

/// The JSON body (inside the `{"contact": …}` root) that writes these fields.
pub fn to_body(entity: Entity, fields: &[Field]) -> Result<Map<String, Json>, Error> {
    let mut body = Map::new();
    let mut custom = Map::new();
    for field in fields {
        let name = field.name.as_str();
        if READ_ONLY.contains(&name) {
            return Err(Error::invalid(format!(
                "field `{name}` is read-only in Freshworks; leave it out of the mapping's writes"
            )));
        }
        if name.starts_with("cf_") {
            custom.insert(name.to_owned(), custom_json(&field.value));
            continue;
        }
        if name == "subscription_status" {
            body.insert(name.to_owned(), consent_json(&field.value)?);
            continue;
        }
        if let Some((object, sub)) = name.split_once('.') {
            if entity != Entity::Leads || !matches!(object, "company" | "deal") || sub.is_empty() {
                return Err(Error::invalid(format!(
                    "field `{name}` cannot be written; only leads have `company.*` and `deal.*` fields"
                )));
            }
            let nested = body
                .entry(object.to_owned())
                .or_insert_with(|| Json::Object(Map::new()));
            if let Json::Object(map) = nested {
                map.insert(sub.to_owned(), standard_json(sub, &field.value));
            }
            continue;
        }
        body.insert(name.to_owned(), standard_json(name, &field.value));
    }
    if !custom.is_empty() {
        body.insert("custom_field".to_owned(), Json::Object(custom));
    }
    Ok(body)
}

/// A standard field's JSON: ids as numbers, lists as arrays.
fn standard_json(name: &str, value: &Value) -> Json {
    match value {
        Value::Text(s) if is_id_key(name) => s
            .trim()
            .parse::<u64>()
            .map_or_else(|_| Json::String(s.clone()), |n| Json::Number(n.into())),
        Value::Texts(items) if is_id_key(name) => Json::Array(
            items
                .iter()
                .map(|s| {
                    s.trim()
                        .parse::<u64>()
                        .map_or_else(|_| Json::String(s.clone()), |n| Json::Number(n.into()))
                })
                .collect(),
        ),
        Value::Texts(items) => Json::Array(items.iter().cloned().map(Json::String).collect()),
        other => plain_json(other),
    }
}

/// A custom field's JSON: multi-select values `;`-joined.
fn custom_json(value: &Value) -> Json {
    match value {
        Value::Texts(items) => Json::String(items.join(";")),
        other => plain_json(other),
    }
}

fn plain_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Text(s) => Json::String(s.clone()),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Number(n) => number_json(*n),
        Value::Texts(items) => Json::Array(items.iter().cloned().map(Json::String).collect()),
    }
}

/// Whole numbers as integers (`5`, not `5.0`), others as floats; NaN and infinities as null.
fn number_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        Json::Number((n as i64).into())
    } else {
        Number::from_f64(n).map_or(Json::Null, Json::Number)
    }
}

/// Consent text (or code) to the `subscription_status` code.
fn consent_json(value: &Value) -> Result<Json, Error> {
    let consent = match value {
        Value::Null => return Ok(Json::Null),
        Value::Text(text) => Consent::parse(text),
        Value::Number(n) if n.fract() == 0.0 => Consent::from_code(*n as i64),
        _ => None,
    };
    consent.map(|c| Json::Number(c.code().into())).ok_or_else(|| {
        Error::invalid(format!(
            "`subscription_status` must be one of subscribed, not-subscribed, unsubscribed, spam, bounced (got {value:?})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn types() -> FieldTypes {
        FieldTypes {
            multi: ["cf_days".to_owned(), "cf_interests".to_owned()].into(),
            dates: ["cf_renewal".to_owned()].into(),
            numbers: ["cf_seats".to_owned()].into(),
            ..FieldTypes::default()
        }
    }

    fn map(json: Json) -> Map<String, Json> {
        match json {
            Json::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// App JSON → record, one case per rule of the module table: (JSON, expected
    /// fields that must be present with these values, fields that must be absent).
    #[test]
    fn app_json_to_record() {
        type Case = (Json, Vec<(&'static str, Value)>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            // Suite contact, standard fields.
            (
                json!({"id": 17008318589_u64, "first_name": "Jane", "last_name": "Doe", "display_name": "Jane Doe",
                       "email": "jane@example.com", "job_title": "CTO", "lead_score": 12, "mobile_number": null,
                       "owner_id": 17000030000_u64, "lifecycle_stage_id": 17000060000_u64, "medium": "blog",
                       "updated_at": "2021-10-19T00:28:18-06:00", "created_at": "2021-10-19T00:28:18-06:00",
                       "links": {"timeline": "/x"}, "is_deleted": false, "tags": ["vip", "beta"]}),
                vec![
                    ("first_name", Value::text("Jane")),
                    ("display_name", Value::text("Jane Doe")),
                    ("email", Value::text("jane@example.com")),
                    ("lead_score", Value::Number(12.0)),
                    ("mobile_number", Value::Null),
                    ("owner_id", Value::text("17000030000")),
                    ("lifecycle_stage_id", Value::text("17000060000")),
                    ("medium", Value::text("blog")),
                    ("created_at", Value::text("2021-10-19T00:28:18-06:00")),
                    ("tags", Value::texts(["vip", "beta"])),
                ],
                vec!["id", "updated_at", "links", "is_deleted"],
            ),
            // Emails: primary first, destroyed entries dropped; phone numbers.
            (
                json!({"id": 1, "emails": [
                        {"id": 9, "value": "b@example.com", "is_primary": false, "label": null, "_destroy": false},
                        {"id": 8, "value": "a@example.com", "is_primary": true, "label": null, "_destroy": false},
                        {"id": 7, "value": "gone@example.com", "is_primary": false, "_destroy": true}],
                       "phone_numbers": [{"value": "+1 555 0100"}], "team_user_ids": [17, 18]}),
                vec![
                    ("emails", Value::texts(["a@example.com", "b@example.com"])),
                    ("phone_numbers", Value::texts(["+1 555 0100"])),
                    ("team_user_ids", Value::texts(["17", "18"])),
                ],
                vec![],
            ),
            // Sales accounts: names, primary first, and the primary's name.
            (
                json!({"id": "5", "sales_accounts": [
                        {"partial": true, "id": 70000333333_u64, "name": "Globex", "is_primary": false},
                        {"partial": true, "id": 70000333334_u64, "name": "Acme", "is_primary": true}]}),
                vec![
                    ("sales_accounts", Value::texts(["Acme", "Globex"])),
                    ("sales_account.name", Value::text("Acme")),
                ],
                vec![],
            ),
            (
                json!({"id": 6, "sales_accounts": []}),
                vec![
                    ("sales_accounts", Value::texts(Vec::<String>::new())),
                    ("sales_account.name", Value::Null),
                ],
                vec![],
            ),
            // Classic lead: nested company and deal, DND, authority, string amounts.
            (
                json!({"id": 100, "email": "sample@sample.com", "do_not_disturb": false, "has_authority": true,
                       "lead_quality": "Hot", "open_deals_amount": "0.0", "won_deals_amount": "12.5",
                       "company": {"name": "Acme", "city": "Paris", "number_of_employees": 40, "industry_type_id": 3},
                       "deal": null, "lead_stage_id": 70000054321_u64}),
                vec![
                    ("do_not_disturb", Value::Boolean(false)),
                    ("has_authority", Value::Boolean(true)),
                    ("open_deals_amount", Value::Number(0.0)),
                    ("won_deals_amount", Value::Number(12.5)),
                    ("company.name", Value::text("Acme")),
                    ("company.city", Value::text("Paris")),
                    ("company.number_of_employees", Value::Number(40.0)),
                    ("company.industry_type_id", Value::text("3")),
                    ("deal.name", Value::Null),
                    ("lead_stage_id", Value::text("70000054321")),
                ],
                vec!["company", "deal"],
            ),
            // Custom fields: flattened; multi-select split; date without time; numbers.
            (
                json!({"id": 2, "custom_field": {
                        "cf_plan": "Pro", "cf_days": "Monday;Wednesday", "cf_interests": "",
                        "cf_renewal": "2024-01-16T00:00:00+05:30", "cf_seats": "12", "cf_score": 4.5,
                        "cf_is_active": true, "cf_region": null, "cf_note": "a;b"}}),
                vec![
                    ("cf_plan", Value::text("Pro")),
                    ("cf_days", Value::texts(["Monday", "Wednesday"])),
                    ("cf_interests", Value::texts(Vec::<String>::new())),
                    ("cf_renewal", Value::text("2024-01-16")),
                    ("cf_seats", Value::Number(12.0)),
                    ("cf_score", Value::Number(4.5)),
                    ("cf_is_active", Value::Boolean(true)),
                    ("cf_region", Value::Null),
                    // Not a known multi-select: the text is kept.
                    ("cf_note", Value::text("a;b")),
                ],
                vec!["custom_field"],
            ),
            // A multi-select the app already sends as an array.
            (
                json!({"id": 3, "custom_field": {"cf_days": ["Monday", "Friday"]}}),
                vec![("cf_days", Value::texts(["Monday", "Friday"]))],
                vec![],
            ),
        ];
        for (json, present, absent) in cases {
            let record = to_record(&map(json.clone()), &types()).unwrap();
            for (name, value) in present {
                assert_eq!(record.get(name), Some(&value), "{name} in {json}");
            }
            for name in absent {
                assert!(!record.has(name), "{name} should be absent in {json}");
            }
        }
    }

    #[test]
    fn ids_and_versions() {
        let record = to_record(
            &map(json!({"id": 17008318589_u64, "updated_at": "2021-10-19T00:28:18-06:00"})),
            &FieldTypes::default(),
        )
        .unwrap();
        assert_eq!(record.id, "17008318589");
        assert_eq!(record.updated_at.as_deref(), Some("2021-10-19T06:28:18Z"));
        assert_eq!(record.version, record.updated_at);
        let record = to_record(
            &map(json!({"id": "17008318589", "updated_at": "2019-09-18T06:55:54Z"})),
            &FieldTypes::default(),
        )
        .unwrap();
        assert_eq!(
            (record.id.as_str(), record.updated_at.as_deref()),
            ("17008318589", Some("2019-09-18T06:55:54Z"))
        );
        let record = to_record(
            &map(json!({"id": 1, "updated_at": "yesterday"})),
            &FieldTypes::default(),
        )
        .unwrap();
        assert_eq!(record.updated_at.as_deref(), Some("yesterday"));
        assert!(matches!(
            to_record(&map(json!({"email": "x@y"})), &FieldTypes::default()),
            Err(Error::Transient(_))
        ));
        assert!(is_deleted(&map(json!({"id": 1, "is_deleted": true}))));
        assert!(!is_deleted(&map(json!({"id": 1}))));
    }

    /// subscription_status × do_not_disturb → consent text.
    #[test]
    fn consent_from_status_and_dnd() {
        let cases: &[(Json, Json, Value)] = &[
            (json!(0), json!(false), Value::text("unsubscribed")),
            (json!(1), json!(false), Value::text("subscribed")),
            (json!(2), json!(false), Value::text("not-subscribed")),
            (json!(3), json!(false), Value::text("spam")),
            (json!(4), json!(false), Value::text("bounced")),
            (json!("1"), json!(null), Value::text("subscribed")),
            (json!(1), json!(true), Value::text("unsubscribed")),
            (json!(2), json!(true), Value::text("unsubscribed")),
            (json!(0), json!(true), Value::text("unsubscribed")),
            (json!(3), json!(true), Value::text("spam")),
            (json!(4), json!(true), Value::text("bounced")),
            (json!(9), json!(false), Value::text("9")),
            (json!(null), json!(true), Value::Null),
        ];
        for (status, dnd, expected) in cases {
            let record = to_record(
                &map(json!({"id": 1, "subscription_status": status, "do_not_disturb": dnd})),
                &FieldTypes::default(),
            )
            .unwrap();
            assert_eq!(
                record.get("subscription_status"),
                Some(expected),
                "status {status} dnd {dnd}"
            );
        }
        // No subscription_status in the JSON: no consent field is invented.
        let record = to_record(
            &map(json!({"id": 1, "do_not_disturb": true})),
            &FieldTypes::default(),
        )
        .unwrap();
        assert!(!record.has("subscription_status"));
        assert_eq!(record.get("do_not_disturb"), Some(&Value::Boolean(true)));
    }

    #[test]
    fn consent_texts_and_codes() {
        for consent in Consent::ALL {
            assert_eq!(Consent::from_code(consent.code()), Some(consent));
            assert_eq!(Consent::parse(consent.as_str()), Some(consent));
            assert_eq!(Consent::parse(&consent.code().to_string()), Some(consent));
        }
        assert_eq!(
            Consent::parse("Not Subscribed"),
            Some(Consent::NotSubscribed)
        );
        assert_eq!(
            Consent::parse("not_subscribed"),
            Some(Consent::NotSubscribed)
        );
        assert_eq!(Consent::parse("reported as spam"), Some(Consent::Spam));
        assert_eq!(Consent::parse("maybe"), None);
        assert_eq!(Consent::from_code(5), None);
    }

    /// Record fields → request body: (entity, fields, expected body).
    #[test]
    fn fields_to_body() {
        let cases: Vec<(Entity, Vec<Field>, Json)> = vec![
            (
                Entity::Contacts,
                vec![
                    Field::new("first_name", "Ann"),
                    Field::new("email", "ann@example.com"),
                    Field::new("mobile_number", Value::Null),
                    Field::new("owner_id", "17000030000"),
                    Field::new("lifecycle_stage_id", "not-a-number"),
                    Field::new("do_not_disturb", true),
                    Field::new("has_authority", false),
                    Field::new("tags", Value::texts(["vip"])),
                    Field::new("external_id", "tandem:abc"),
                ],
                json!({"first_name": "Ann", "email": "ann@example.com", "mobile_number": null,
                       "owner_id": 17000030000_u64, "lifecycle_stage_id": "not-a-number",
                       "do_not_disturb": true, "has_authority": false, "tags": ["vip"],
                       "external_id": "tandem:abc"}),
            ),
            (
                Entity::Contacts,
                vec![
                    Field::new("cf_days", Value::texts(["Monday", "Wednesday"])),
                    Field::new("cf_plan", "Gold"),
                    Field::new("cf_seats", 12.0),
                    Field::new("cf_ratio", 0.25),
                    Field::new("cf_is_active", true),
                    Field::new("cf_renewal", "2024-01-16"),
                    Field::new("cf_region", Value::Null),
                ],
                json!({"custom_field": {"cf_days": "Monday;Wednesday", "cf_plan": "Gold", "cf_seats": 12,
                       "cf_ratio": 0.25, "cf_is_active": true, "cf_renewal": "2024-01-16", "cf_region": null}}),
            ),
            (
                Entity::Contacts,
                vec![Field::new("subscription_status", "unsubscribed")],
                json!({"subscription_status": 0}),
            ),
            (
                Entity::Contacts,
                vec![Field::new("subscription_status", "bounced")],
                json!({"subscription_status": 4}),
            ),
            (
                Entity::Contacts,
                vec![Field::new("subscription_status", 1.0)],
                json!({"subscription_status": 1}),
            ),
            (
                Entity::Contacts,
                vec![Field::new("subscription_status", Value::Null)],
                json!({"subscription_status": null}),
            ),
            (
                Entity::Leads,
                vec![
                    Field::new("last_name", "Sampleton"),
                    Field::new("company.name", "Acme"),
                    Field::new("company.industry_type_id", "3"),
                    Field::new("deal.name", "Big deal"),
                ],
                json!({"last_name": "Sampleton", "company": {"name": "Acme", "industry_type_id": 3}, "deal": {"name": "Big deal"}}),
            ),
        ];
        for (entity, fields, expected) in cases {
            let body = to_body(entity, &fields).unwrap();
            assert_eq!(Json::Object(body), expected, "{fields:?}");
        }
    }

    #[test]
    fn invalid_writes_are_refused() {
        let cases: Vec<(Entity, Field, &str)> = vec![
            (
                Entity::Contacts,
                Field::new("display_name", "x"),
                "read-only",
            ),
            (
                Entity::Contacts,
                Field::new("emails", Value::texts(["a@b"])),
                "read-only",
            ),
            (
                Entity::Contacts,
                Field::new("sales_account.name", "Acme"),
                "read-only",
            ),
            (
                Entity::Contacts,
                Field::new("company.name", "Acme"),
                "only leads",
            ),
            (Entity::Leads, Field::new("owner.name", "Ann"), "only leads"),
            (
                Entity::Contacts,
                Field::new("subscription_status", "maybe"),
                "must be one of",
            ),
            (
                Entity::Contacts,
                Field::new("subscription_status", 7.0),
                "must be one of",
            ),
        ];
        for (entity, field, expected) in cases {
            let err = to_body(entity, std::slice::from_ref(&field)).unwrap_err();
            assert!(
                matches!(&err, Error::Invalid(m) if m.contains(expected)),
                "{field:?}: {err:?}"
            );
        }
    }

    /// What is read back and written again is the same JSON (for writable fields).
    #[test]
    fn round_trip_of_writable_fields() {
        let json = json!({"first_name": "Ann", "email": "ann@example.com", "owner_id": 17000030000_u64,
                          "do_not_disturb": true, "subscription_status": 3, "tags": ["a"],
                          "custom_field": {"cf_days": "Monday;Friday", "cf_plan": "Pro", "cf_seats": 3}});
        let mut with_id = map(json.clone());
        with_id.insert("id".into(), json!(1));
        let record = to_record(&with_id, &types()).unwrap();
        let body = to_body(Entity::Contacts, &record.fields).unwrap();
        assert_eq!(Json::Object(body), json);
    }

    #[test]
    fn emails_for_matching() {
        let record = Record::new("1").with("email", "Ann@Example.com ").with(
            "emails",
            Value::texts(["ann@example.com", "a2@Example.com"]),
        );
        assert_eq!(
            emails_of(&record),
            vec!["a2@example.com", "ann@example.com"]
        );
        assert!(emails_of(&Record::new("2")).is_empty());
    }
}
