//! Person JSON to contract records and back: the field vocabulary, the read mapping and
//! the write bodies. Pure functions only (no host calls), so every case is a native test.
//!
//! # Fields
//!
//! A record's field names are paths into the Person resource
//! (`docs/google-people-api.md` §2):
//!
//! | field                         | Person data                                          | well-known |
//! |-------------------------------|------------------------------------------------------|------------|
//! | `names.givenName` / `familyName` / `middleName` | the (singleton) `names` item       | `first-name`, `last-name` |
//! | `names.displayName`           | computed by Google, read-only                        | `full-name` |
//! | `emailAddresses.primary`      | value of the primary email                           | `email`    |
//! | `emailAddresses`              | every email value, primary first                     | `emails`   |
//! | `phoneNumbers.primary`        | value of the primary phone                           | `phone`    |
//! | `phoneNumbers.mobile`         | first phone of type `mobile`                         | `mobile`   |
//! | `phoneNumbers`                | every phone value, primary first                     | `phones`   |
//! | `organizations.name` / `title` / `department` | the primary organization             | `company`, `job-title` |
//! | `addresses.streetAddress` / `city` / `region` / `postalCode` / `country` | the primary address | `address`, `city`, `state`, `zip`, `country` |
//! | `addresses.formattedValue`    | the primary address on one block, read-only          |            |
//! | `biographies`                 | the notes (singleton)                                | `notes`    |
//! | `birthdays`                   | `YYYY-MM-DD`, or `--MM-DD` without a year (singleton)| `birthday` |
//! | `memberships`                 | contact group resource names, read-only (containers) |            |
//! | `clientData.tandem-marker`    | the engine marker written on create, read-only       | `marker`   |
//! | `metadata.previousResourceNames` | old ids of a renamed contact (sync responses only), read-only | |
//! | `userDefined.<key>`           | a custom field (`userDefined[]` entry), custom       |            |
//! | `clientData.<key>`            | data another client app stored, custom               |            |
//!
//! Standard fields are always present on a record read with the full mask: `null` when
//! the contact has no value. Custom fields are present only when the contact has them.
//!
//! # Writes
//!
//! `updateContact` replaces every field named in `updatePersonFields` wholesale (docs/google-people-api.md §4.2), so
//! an update is applied to the contact as last read ([`Draft::from_person`]): the changed
//! record fields are merged into the Person's items (keeping types, secondary values and
//! sub-fields the record does not carry), and only the Person fields that actually
//! changed are sent and named in the mask. Output-only sub-fields are dropped; a derived
//! text (`unstructuredName`, an address's `formattedValue`) is dropped from an item whose
//! structured parts changed, so that Google recomputes it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json, json};
use tandem_sdk::{Field, FieldDef, FieldType, Record, Value};

/// The one `personFields` / `readMask` of every read (docs/google-people-api.md §8.1: never vary it; tokens and
/// etags are bound to it).
pub const PERSON_FIELDS: &str = "addresses,biographies,birthdays,clientData,emailAddresses,memberships,metadata,names,organizations,phoneNumbers,userDefined";
/// Identifies [`PERSON_FIELDS`] in cursors: change it whenever the mask changes, so that
/// old sync tokens are dropped (cursor-expired) rather than refused by Google.
pub const MASK_ID: &str = "m1";
/// Largest `pageSize` of `connections.list` (docs/google-people-api.md §3.1).
pub const MAX_PAGE: u32 = 1000;
/// The `clientData` key of the engine marker.
pub const MARKER_KEY: &str = "tandem-marker";
/// The group every contact created here joins (docs/google-people-api.md §5.3 "Getting a contact into My Contacts").
pub const MY_CONTACTS: &str = "contactGroups/myContacts";

/// First name.
pub const GIVEN_NAME: &str = "names.givenName";
/// Last name.
pub const FAMILY_NAME: &str = "names.familyName";
/// Middle name.
pub const MIDDLE_NAME: &str = "names.middleName";
/// Full name (computed by Google).
pub const DISPLAY_NAME: &str = "names.displayName";
/// Primary email.
pub const EMAIL: &str = "emailAddresses.primary";
/// Every email.
pub const EMAILS: &str = "emailAddresses";
/// Primary phone.
pub const PHONE: &str = "phoneNumbers.primary";
/// First mobile phone.
pub const MOBILE: &str = "phoneNumbers.mobile";
/// Every phone.
pub const PHONES: &str = "phoneNumbers";
/// Company.
pub const COMPANY: &str = "organizations.name";
/// Job title.
pub const JOB_TITLE: &str = "organizations.title";
/// Department.
pub const DEPARTMENT: &str = "organizations.department";
/// Street address.
pub const STREET: &str = "addresses.streetAddress";
/// City.
pub const CITY: &str = "addresses.city";
/// Region (state).
pub const REGION: &str = "addresses.region";
/// Postal code.
pub const POSTAL_CODE: &str = "addresses.postalCode";
/// Country.
pub const COUNTRY: &str = "addresses.country";
/// The formatted primary address (read-only).
pub const ADDRESS: &str = "addresses.formattedValue";
/// Notes.
pub const NOTES: &str = "biographies";
/// Birthday.
pub const BIRTHDAY: &str = "birthdays";
/// Contact group resource names (read-only).
pub const GROUPS: &str = "memberships";
/// The engine marker (read-only).
pub const MARKER: &str = "clientData.tandem-marker";
/// Previous ids of a renamed contact (read-only).
pub const PREVIOUS_IDS: &str = "metadata.previousResourceNames";
/// Prefix of custom fields.
pub const USER_DEFINED: &str = "userDefined.";
/// Prefix of other apps' client data.
pub const CLIENT_DATA: &str = "clientData.";

/// Person fields a [`Draft`] may write (all in `updatePersonFields`' list, docs/google-people-api.md §1.2).
const WRITABLE: [&str; 9] = [
    "addresses",
    "biographies",
    "birthdays",
    "clientData",
    "emailAddresses",
    "names",
    "organizations",
    "phoneNumbers",
    "userDefined",
];
/// Structured parts of a name (`unstructuredName` is derived from them).
const NAME_PARTS: [&str; 5] = [
    "givenName",
    "familyName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
];
/// Structured parts of an address (`formattedValue` is derived from them).
const ADDRESS_PARTS: [&str; 8] = [
    "streetAddress",
    "extendedAddress",
    "city",
    "region",
    "postalCode",
    "poBox",
    "country",
    "countryCode",
];
/// Keys that do not make an item worth keeping on their own.
const NOT_CONTENT: [&str; 3] = ["type", "current", "contentType"];

/// One standard field: name, label, type, multi-value, writable, well-known tag.
type Standard = (
    &'static str,
    &'static str,
    FieldType,
    bool,
    bool,
    Option<&'static str>,
);

/// The standard fields, in schema order.
const STANDARD: [Standard; 23] = [
    (
        GIVEN_NAME,
        "First name",
        FieldType::Text,
        false,
        true,
        Some("first-name"),
    ),
    (
        FAMILY_NAME,
        "Last name",
        FieldType::Text,
        false,
        true,
        Some("last-name"),
    ),
    (
        MIDDLE_NAME,
        "Middle name",
        FieldType::Text,
        false,
        true,
        None,
    ),
    (
        DISPLAY_NAME,
        "Full name",
        FieldType::Text,
        false,
        false,
        Some("full-name"),
    ),
    (EMAIL, "Email", FieldType::Email, false, true, Some("email")),
    (
        EMAILS,
        "Emails",
        FieldType::Email,
        true,
        true,
        Some("emails"),
    ),
    (PHONE, "Phone", FieldType::Phone, false, true, Some("phone")),
    (
        MOBILE,
        "Mobile phone",
        FieldType::Phone,
        false,
        true,
        Some("mobile"),
    ),
    (
        PHONES,
        "Phones",
        FieldType::Phone,
        true,
        true,
        Some("phones"),
    ),
    (
        COMPANY,
        "Company",
        FieldType::Text,
        false,
        true,
        Some("company"),
    ),
    (
        JOB_TITLE,
        "Job title",
        FieldType::Text,
        false,
        true,
        Some("job-title"),
    ),
    (DEPARTMENT, "Department", FieldType::Text, false, true, None),
    (
        STREET,
        "Street address",
        FieldType::Text,
        false,
        true,
        Some("address"),
    ),
    (CITY, "City", FieldType::Text, false, true, Some("city")),
    (
        REGION,
        "Region",
        FieldType::Text,
        false,
        true,
        Some("state"),
    ),
    (
        POSTAL_CODE,
        "Postal code",
        FieldType::Text,
        false,
        true,
        Some("zip"),
    ),
    (
        COUNTRY,
        "Country",
        FieldType::Text,
        false,
        true,
        Some("country"),
    ),
    (ADDRESS, "Address", FieldType::LongText, false, false, None),
    (
        NOTES,
        "Notes",
        FieldType::LongText,
        false,
        true,
        Some("notes"),
    ),
    (
        BIRTHDAY,
        "Birthday",
        FieldType::Date,
        false,
        true,
        Some("birthday"),
    ),
    (
        GROUPS,
        "Contact groups",
        FieldType::Reference,
        true,
        false,
        None,
    ),
    (
        MARKER,
        "Tandem marker",
        FieldType::Text,
        false,
        false,
        Some("marker"),
    ),
    (
        PREVIOUS_IDS,
        "Previous ids",
        FieldType::Text,
        true,
        false,
        None,
    ),
];

/// The definitions of the standard fields.
pub fn standard_fields() -> Vec<FieldDef> {
    STANDARD
        .iter()
        .map(|&(name, label, kind, multi, writable, tag)| {
            let mut def = FieldDef::new(name, label, kind);
            def.multi_value = multi;
            def.writable = writable;
            def.well_known = tag.map(str::to_owned);
            def
        })
        .collect()
}

/// The definition of a custom field: `userDefined.<key>` or `clientData.<key>`.
pub fn custom_field(name: &str) -> Option<FieldDef> {
    let label = if let Some(key) = name.strip_prefix(USER_DEFINED) {
        key.to_owned()
    } else {
        format!("{} (client data)", name.strip_prefix(CLIENT_DATA)?)
    };
    Some(FieldDef::new(name, label, FieldType::Text).custom())
}

/// The custom field names a person carries (`userDefined.<key>`, `clientData.<key>`
/// except the marker).
pub fn custom_field_names(person: &Json) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (field, prefix) in [("userDefined", USER_DEFINED), ("clientData", CLIENT_DATA)] {
        for item in items(person, field) {
            if let Some(key) = str_of(item, "key").filter(|k| !k.is_empty()) {
                let name = format!("{prefix}{key}");
                if name != MARKER {
                    out.insert(name);
                }
            }
        }
    }
    out
}

// ----- reading ------------------------------------------------------------------------

/// The items of a Person field (empty when absent).
fn items<'a>(person: &'a Json, field: &str) -> &'a [Json] {
    person
        .get(field)
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Items with the primary one first (`metadata.primary`), the others in order.
fn primary_first(items: &[Json]) -> Vec<&Json> {
    let is_primary = |i: &&Json| {
        i.pointer("/metadata/primary")
            .and_then(Json::as_bool)
            .unwrap_or(false)
    };
    let mut out: Vec<&Json> = items.iter().filter(is_primary).take(1).collect();
    let first = out.first().copied();
    out.extend(
        items
            .iter()
            .filter(|i| !first.is_some_and(|f| std::ptr::eq(f, *i))),
    );
    out
}

/// A non-empty string sub-field.
fn str_of<'a>(item: &'a Json, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(Json::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |s| Value::Text(s.to_owned()))
}

fn texts(values: Vec<String>) -> Value {
    if values.is_empty() {
        Value::Null
    } else {
        Value::Texts(values)
    }
}

/// Whether a person is a tombstone of a sync response (`metadata.deleted`).
pub fn is_deleted(person: &Json) -> bool {
    person
        .pointer("/metadata/deleted")
        .and_then(Json::as_bool)
        .unwrap_or(false)
}

/// The resource name of a person.
pub fn resource_name(person: &Json) -> Option<&str> {
    str_of(person, "resourceName")
}

/// The contact group resource names a person belongs to.
pub fn memberships(person: &Json) -> Vec<String> {
    let mut groups: Vec<String> = items(person, "memberships")
        .iter()
        .filter_map(|m| m.get("contactGroupMembership"))
        .filter_map(|m| {
            str_of(m, "contactGroupResourceName")
                .map(str::to_owned)
                .or_else(|| str_of(m, "contactGroupId").map(|id| format!("contactGroups/{id}")))
        })
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// `YYYY-MM-DD`, or `--MM-DD` when the year is unknown, from a `birthdays` item.
fn birthday_text(item: &Json) -> Option<String> {
    let part = |k: &str| item.pointer(&format!("/date/{k}")).and_then(Json::as_u64);
    match (part("year"), part("month"), part("day")) {
        (year, Some(month @ 1..=12), Some(day @ 1..=31)) => Some(match year {
            Some(year) if year > 0 => format!("{year:04}-{month:02}-{day:02}"),
            _ => format!("--{month:02}-{day:02}"),
        }),
        _ => str_of(item, "text").map(str::to_owned),
    }
}

/// The record of a (non-deleted) person read with [`PERSON_FIELDS`]; `None` without a
/// resource name.
pub fn to_record(person: &Json) -> Option<Record> {
    let mut record = Record::new(resource_name(person)?);
    record.version = str_of(person, "etag").map(str::to_owned);
    let sources = person
        .pointer("/metadata/sources")
        .and_then(Json::as_array)
        .map_or(&[][..], Vec::as_slice);
    record.updated_at = sources
        .iter()
        .find(|s| str_of(s, "type") == Some("CONTACT"))
        .or_else(|| sources.first())
        .and_then(|s| str_of(s, "updateTime"))
        .map(str::to_owned);

    let names = primary_first(items(person, "names"));
    let name = names.first().copied().unwrap_or(&Json::Null);
    record.set(GIVEN_NAME, text(str_of(name, "givenName")));
    record.set(FAMILY_NAME, text(str_of(name, "familyName")));
    record.set(MIDDLE_NAME, text(str_of(name, "middleName")));
    record.set(
        DISPLAY_NAME,
        text(str_of(name, "displayName").or_else(|| str_of(name, "unstructuredName"))),
    );

    let emails: Vec<String> = primary_first(items(person, "emailAddresses"))
        .into_iter()
        .filter_map(|i| str_of(i, "value").map(str::to_owned))
        .collect();
    record.set(EMAIL, text(emails.first().map(String::as_str)));
    record.set(EMAILS, texts(emails));

    let phone_items = primary_first(items(person, "phoneNumbers"));
    let mobile = phone_items
        .iter()
        .find(|i| is_mobile(i))
        .and_then(|i| str_of(i, "value"));
    record.set(MOBILE, text(mobile));
    let phones: Vec<String> = phone_items
        .iter()
        .filter_map(|i| str_of(i, "value").map(str::to_owned))
        .collect();
    record.set(PHONE, text(phones.first().map(String::as_str)));
    record.set(PHONES, texts(phones));

    let orgs = primary_first(items(person, "organizations"));
    let org = orgs.first().copied().unwrap_or(&Json::Null);
    record.set(COMPANY, text(str_of(org, "name")));
    record.set(JOB_TITLE, text(str_of(org, "title")));
    record.set(DEPARTMENT, text(str_of(org, "department")));

    let addresses = primary_first(items(person, "addresses"));
    let address = addresses.first().copied().unwrap_or(&Json::Null);
    for (field, key) in [
        (STREET, "streetAddress"),
        (CITY, "city"),
        (REGION, "region"),
        (POSTAL_CODE, "postalCode"),
        (COUNTRY, "country"),
        (ADDRESS, "formattedValue"),
    ] {
        record.set(field, text(str_of(address, key)));
    }

    let bio = items(person, "biographies").first().unwrap_or(&Json::Null);
    record.set(NOTES, text(str_of(bio, "value")));
    let birthday = items(person, "birthdays").first().and_then(birthday_text);
    record.set(BIRTHDAY, text(birthday.as_deref()));
    record.set(GROUPS, texts(memberships(person)));

    let mut marker = None;
    for (field, prefix) in [("userDefined", USER_DEFINED), ("clientData", CLIENT_DATA)] {
        for item in items(person, field) {
            let Some(key) = str_of(item, "key") else {
                continue;
            };
            let name = format!("{prefix}{key}");
            if name == MARKER {
                marker = marker.or_else(|| str_of(item, "value"));
            } else if !record.has(&name) {
                record.set(name, text(str_of(item, "value")));
            }
        }
    }
    record.set(MARKER, text(marker));
    let previous: Vec<String> = person
        .pointer("/metadata/previousResourceNames")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if !previous.is_empty() {
        record.set(PREVIOUS_IDS, Value::Texts(previous));
    }
    Some(record)
}

/// The engine marker of a person, if it carries one.
pub fn marker_of(person: &Json) -> Option<&str> {
    items(person, "clientData")
        .iter()
        .find(|i| str_of(i, "key") == Some(MARKER_KEY))
        .and_then(|i| str_of(i, "value"))
}

/// Whether a person has an email equal to `email`, case-insensitively.
pub fn has_email(person: &Json, email: &str) -> bool {
    let want = email.trim();
    items(person, "emailAddresses")
        .iter()
        .filter_map(|i| str_of(i, "value"))
        .any(|v| same_email(v, want))
}

fn is_mobile(item: &Json) -> bool {
    str_of(item, "type").is_some_and(|t| t.eq_ignore_ascii_case("mobile"))
}

/// Drops an item's type (a phone that is no longer the mobile one).
fn untype(item: &mut Json) {
    if let Some(o) = item.as_object_mut() {
        o.remove("type");
    }
}

fn same_email(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Phones are the same number when their digits (and a leading `+`) agree.
fn same_phone(a: &str, b: &str) -> bool {
    let key = |s: &str| {
        let s = s.trim();
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            s.to_lowercase()
        } else if s.starts_with('+') {
            format!("+{digits}")
        } else {
            digits
        }
    };
    key(a) == key(b)
}

// ----- ids ----------------------------------------------------------------------------

/// A person resource name from a record id (`people/c1`, or a bare `c1`).
pub fn person_name(id: &str) -> Result<String, String> {
    let id = id.trim();
    if let Some(rest) = id.strip_prefix("people/")
        && !rest.is_empty()
        && !rest.contains('/')
    {
        return Ok(id.to_owned());
    }
    if !id.is_empty() && !id.contains('/') && !id.contains(':') {
        return Ok(format!("people/{id}"));
    }
    Err(format!("`{id}` is not a contact id (expected `people/c…`)"))
}

/// A contact group resource name from a container id (`contactGroups/abc`, or `abc`).
pub fn group_name(id: &str) -> Result<String, String> {
    let id = id.trim();
    let rest = id.strip_prefix("contactGroups/").unwrap_or(id);
    if rest.is_empty() || rest.contains('/') || rest.contains(':') {
        return Err(format!(
            "`{id}` is not a contact group id (expected `contactGroups/…`)"
        ));
    }
    Ok(format!("contactGroups/{rest}"))
}

// ----- writing ------------------------------------------------------------------------

/// Text of a scalar value: `null`, an empty text and an empty list are "no value"; a
/// list gives its first non-empty element; numbers and flags are written as text.
fn scalar(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::Text(s) => s.clone(),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
        Value::Number(n) => n.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Texts(items) => items.iter().find(|s| !s.trim().is_empty())?.clone(),
    };
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Texts of a list value (a scalar is a one-element list).
fn list(value: &Value) -> Vec<String> {
    match value {
        Value::Texts(items) => items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        other => scalar(other).into_iter().collect(),
    }
}

/// A `birthdays` item from `YYYY-MM-DD`, `--MM-DD` or an RFC 3339 date-time.
pub fn parse_birthday(text: &str) -> Option<Json> {
    let date = text.trim().split('T').next()?;
    let (year, rest) = match date.strip_prefix("--") {
        Some(rest) => (None, rest),
        None => {
            let (year, rest) = date.split_once('-')?;
            (Some(year), rest)
        }
    };
    let (month, day) = rest.split_once('-')?;
    let num = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let month = num(month, 2).filter(|m| (1..=12).contains(m))?;
    let day = num(day, 2).filter(|d| (1..=31).contains(d))?;
    Some(match year {
        Some(year) => json!({"date": {"year": num(year, 4)?, "month": month, "day": day}}),
        None => json!({"date": {"month": month, "day": day}}),
    })
}

/// Output-only sub-fields of the items of a Person field (docs/google-people-api.md §2.2).
fn output_only(field: &str) -> &'static [&'static str] {
    match field {
        "names" => &["metadata", "displayName", "displayNameLastFirst"],
        "phoneNumbers" => &["metadata", "canonicalForm", "formattedType"],
        _ => &["metadata", "formattedType"],
    }
}

/// An item without its output-only sub-fields; `None` if nothing is left.
fn clean_item(field: &str, item: &Json) -> Option<Json> {
    let mut object = item.as_object()?.clone();
    for key in output_only(field) {
        object.remove(*key);
    }
    (!object.is_empty()).then_some(Json::Object(object))
}

/// Whether an item still holds data worth keeping.
fn has_content(item: &Json) -> bool {
    item.as_object().is_some_and(|o| {
        o.iter().any(|(k, v)| {
            !NOT_CONTENT.contains(&k.as_str()) && !matches!(v, Json::String(s) if s.is_empty())
        })
    })
}

/// The writable content of a contact being changed: its Person fields as last read (or
/// empty, for a create), the record fields applied on top, and what changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    original: BTreeMap<&'static str, Vec<Json>>,
    fields: BTreeMap<&'static str, Vec<Json>>,
}

impl Draft {
    /// An empty contact (for creates).
    pub fn new() -> Self {
        Self::default()
    }

    /// The writable content of `person` as read with [`PERSON_FIELDS`]: items in
    /// primary-first order, without output-only sub-fields.
    pub fn from_person(person: &Json) -> Self {
        let mut fields = BTreeMap::new();
        for field in WRITABLE {
            let cleaned: Vec<Json> = primary_first(items(person, field))
                .into_iter()
                .filter_map(|i| clean_item(field, i))
                .collect();
            if !cleaned.is_empty() {
                fields.insert(field, cleaned);
            }
        }
        Draft {
            original: fields.clone(),
            fields,
        }
    }

    /// Applies record fields. Lists are applied before the primary/mobile values that
    /// refine them, whatever their order in `fields`. On error the draft is unchanged
    /// only up to the failing field; callers drop it.
    pub fn apply_all(&mut self, fields: &[Field]) -> Result<(), String> {
        let mut ordered: Vec<&Field> = fields.iter().collect();
        ordered.sort_by_key(|f| u8::from(!matches!(f.name.as_str(), EMAILS | PHONES)));
        for field in ordered {
            self.apply(field)?;
        }
        Ok(())
    }

    /// Applies one record field.
    pub fn apply(&mut self, field: &Field) -> Result<(), String> {
        let value = &field.value;
        match field.name.as_str() {
            GIVEN_NAME => self.set_part("names", "givenName", value),
            FAMILY_NAME => self.set_part("names", "familyName", value),
            MIDDLE_NAME => self.set_part("names", "middleName", value),
            EMAIL => self.set_primary("emailAddresses", scalar(value), same_email),
            EMAILS => self.set_list("emailAddresses", list(value), same_email),
            PHONE => self.set_primary("phoneNumbers", scalar(value), same_phone),
            PHONES => self.set_list("phoneNumbers", list(value), same_phone),
            MOBILE => self.set_mobile(scalar(value)),
            COMPANY => self.set_part("organizations", "name", value),
            JOB_TITLE => self.set_part("organizations", "title", value),
            DEPARTMENT => self.set_part("organizations", "department", value),
            STREET => self.set_part("addresses", "streetAddress", value),
            CITY => self.set_part("addresses", "city", value),
            REGION => self.set_part("addresses", "region", value),
            POSTAL_CODE => self.set_part("addresses", "postalCode", value),
            COUNTRY => self.set_part("addresses", "country", value),
            NOTES => self.set_single(
                "biographies",
                scalar(value).map(|v| json!({"value": v, "contentType": "TEXT_PLAIN"})),
            ),
            BIRTHDAY => match scalar(value) {
                None => self.set_single("birthdays", None),
                Some(text) => match parse_birthday(&text) {
                    Some(item) => self.set_single("birthdays", Some(item)),
                    None => {
                        return Err(format!(
                            "field `{BIRTHDAY}`: `{text}` is not a date (YYYY-MM-DD, or --MM-DD without a year)"
                        ));
                    }
                },
            },
            DISPLAY_NAME | ADDRESS => {
                return Err(format!(
                    "field `{}` is read-only: Google computes it from the other parts",
                    field.name
                ));
            }
            GROUPS => {
                return Err(format!(
                    "field `{GROUPS}` is read-only: change contact groups with add/remove-to-container writes"
                ));
            }
            MARKER | PREVIOUS_IDS => {
                return Err(format!("field `{}` is read-only", field.name));
            }
            name => {
                let (person_field, key) = if let Some(key) = name.strip_prefix(USER_DEFINED) {
                    ("userDefined", key)
                } else if let Some(key) = name.strip_prefix(CLIENT_DATA) {
                    ("clientData", key)
                } else {
                    return Err(format!(
                        "unknown field `{name}`; the connector's schema lists the fields it writes"
                    ));
                };
                if key.trim().is_empty() {
                    return Err(format!("field `{name}` names no key"));
                }
                self.set_keyed(person_field, key, scalar(value));
            }
        }
        Ok(())
    }

    fn items_mut(&mut self, field: &'static str) -> &mut Vec<Json> {
        self.fields.entry(field).or_default()
    }

    /// Sets (or clears) one sub-field of the first item of `field`.
    fn set_part(&mut self, field: &'static str, key: &str, value: &Value) {
        let value = scalar(value);
        let items = self.items_mut(field);
        let current = items.first().and_then(|i| str_of(i, key));
        if current == value.as_deref() {
            return;
        }
        if items.is_empty() {
            items.push(json!({}));
        }
        let Some(item) = items[0].as_object_mut() else {
            return;
        };
        match value {
            Some(v) => item.insert(key.to_owned(), Json::String(v)),
            None => item.remove(key),
        };
        let (parts, derived): (&[&str], &str) = match field {
            "names" => (&NAME_PARTS, "unstructuredName"),
            "addresses" => (&ADDRESS_PARTS, "formattedValue"),
            _ => (&[], ""),
        };
        if parts
            .iter()
            .any(|p| str_of(&Json::Object(item.clone()), p).is_some())
        {
            item.remove(derived);
        }
        if !has_content(&items[0]) {
            items.remove(0);
        }
    }

    /// Replaces a singleton field (`biographies`, `birthdays`) unless it already says so.
    fn set_single(&mut self, field: &'static str, item: Option<Json>) {
        let items = self.items_mut(field);
        let same = match (&item, items.first()) {
            (None, None) => true,
            (Some(new), Some(old)) => new
                .as_object()
                .is_some_and(|n| n.iter().all(|(k, v)| old.get(k) == Some(v))),
            _ => false,
        };
        if !same {
            *items = item.into_iter().collect();
        }
    }

    /// Makes `value` the primary (first) item of `field`: an existing equal value moves
    /// to the front; otherwise the primary item's value is replaced. `None` removes the
    /// primary item. A primary phone typed mobile is left alone (a new number goes
    /// before it; clearing keeps it, as it still is the mobile phone).
    fn set_primary(
        &mut self,
        field: &'static str,
        value: Option<String>,
        same: fn(&str, &str) -> bool,
    ) {
        let items = self.items_mut(field);
        // A primary phone that is also the mobile one is the mobile record field too,
        // which this write does not mean to change.
        let mobile_first = field == "phoneNumbers" && items.first().is_some_and(is_mobile);
        match value {
            None if mobile_first => {}
            None => {
                if !items.is_empty() {
                    items.remove(0);
                }
            }
            Some(v) => {
                match items
                    .iter()
                    .position(|i| str_of(i, "value").is_some_and(|x| same(x, &v)))
                {
                    Some(0) => {}
                    Some(index) => {
                        let item = items.remove(index);
                        items.insert(0, item);
                    }
                    // A primary phone that is also the mobile one keeps its number
                    // (the mobile is another record field): the new number goes first.
                    None if mobile_first => {
                        items.insert(0, json!({ "value": v }));
                    }
                    None => match items.first_mut().and_then(Json::as_object_mut) {
                        Some(first) => {
                            first.insert("value".into(), Json::String(v));
                        }
                        None => items.push(json!({ "value": v })),
                    },
                }
            }
        }
    }

    /// Sets the values of `field` to `values`: existing items whose value is in the list
    /// are kept (with their type, in their order, so the primary stays first); new values
    /// are appended.
    fn set_list(&mut self, field: &'static str, values: Vec<String>, same: fn(&str, &str) -> bool) {
        let items = self.items_mut(field);
        let mut out: Vec<Json> = Vec::new();
        let seen = |out: &[Json], v: &str| {
            out.iter()
                .any(|i| str_of(i, "value").is_some_and(|x| same(x, v)))
        };
        for item in items.iter() {
            if let Some(v) = str_of(item, "value")
                && values.iter().any(|x| same(x, v))
                && !seen(&out, v)
            {
                out.push(item.clone());
            }
        }
        for v in values {
            if !seen(&out, &v) {
                out.push(json!({ "value": v }));
            }
        }
        *items = out;
    }

    /// Sets the first mobile phone. The primary phone is another record field
    /// ([`PHONE`]) that this write does not mean to change: when the mobile phone is the
    /// primary one, it keeps its number as the primary (untyped) and the new mobile
    /// number becomes an item of its own.
    fn set_mobile(&mut self, value: Option<String>) {
        let items = self.items_mut("phoneNumbers");
        let Some(v) = value else {
            let mut index = 0;
            items.retain_mut(|i| {
                let keep = !is_mobile(i) || index == 0;
                if index == 0 && is_mobile(i) {
                    untype(i);
                }
                index += 1;
                keep
            });
            return;
        };
        let matches = |i: &Json| str_of(i, "value").is_some_and(|x| same_phone(x, &v));
        let first_mobile = items.iter().position(is_mobile);
        if first_mobile.is_some_and(|index| matches(&items[index])) {
            return;
        }
        match first_mobile {
            Some(index) if index > 0 => items[index]["value"] = Json::String(v),
            first => {
                // The primary phone stays as it is, no longer typed mobile.
                if first == Some(0) {
                    untype(&mut items[0]);
                }
                match items.iter().position(matches) {
                    Some(index) => items[index]["type"] = json!("mobile"),
                    None => items.push(json!({"value": v, "type": "mobile"})),
                }
            }
        }
    }

    /// Sets (or removes) the `{key, value}` entry `key` of `userDefined` / `clientData`.
    fn set_keyed(&mut self, field: &'static str, key: &str, value: Option<String>) {
        let items = self.items_mut(field);
        let is_key = |i: &Json| i.get("key").and_then(Json::as_str) == Some(key);
        match value {
            None => items.retain(|i| !is_key(i)),
            Some(v) => match items.iter_mut().find(|i| is_key(i)) {
                Some(item) => item["value"] = Json::String(v),
                None => items.push(json!({"key": key, "value": v})),
            },
        }
    }

    /// The Person fields whose items changed, sorted: `updatePersonFields`.
    pub fn changed(&self) -> Vec<&'static str> {
        let empty = Vec::new();
        WRITABLE
            .iter()
            .copied()
            .filter(|f| {
                self.fields.get(f).unwrap_or(&empty) != self.original.get(f).unwrap_or(&empty)
            })
            .collect()
    }

    /// The `updateContact` body: the etag and the changed fields (a changed field left
    /// empty is omitted, which clears it since the mask names it).
    pub fn update_body(&self, etag: &str) -> Json {
        let mut body = Map::new();
        body.insert("etag".into(), Json::String(etag.to_owned()));
        for field in self.changed() {
            if let Some(items) = self.fields.get(field).filter(|i| !i.is_empty()) {
                body.insert(field.into(), Json::Array(items.clone()));
            }
        }
        Json::Object(body)
    }

    /// The `createContact` body: every field, the marker as `clientData`, and the
    /// memberships (`myContacts` plus `groups`).
    pub fn create_body(&self, marker: Option<&str>, groups: &[String]) -> Json {
        let mut body = Map::new();
        for (field, items) in &self.fields {
            let mut items = items.clone();
            if *field == "clientData" {
                items.retain(|i| i.get("key").and_then(Json::as_str) != Some(MARKER_KEY));
            }
            if !items.is_empty() {
                body.insert((*field).into(), Json::Array(items));
            }
        }
        if let Some(marker) = marker {
            let data = body
                .entry("clientData")
                .or_insert_with(|| Json::Array(Vec::new()));
            if let Json::Array(items) = data {
                items.push(json!({"key": MARKER_KEY, "value": marker}));
            }
        }
        let mut names = vec![MY_CONTACTS.to_owned()];
        for group in groups {
            if !names.contains(group) {
                names.push(group.clone());
            }
        }
        let memberships: Vec<Json> = names
            .into_iter()
            .map(|g| json!({"contactGroupMembership": {"contactGroupResourceName": g}}))
            .collect();
        body.insert("memberships".into(), Json::Array(memberships));
        Json::Object(body)
    }
}

/// The `updatePersonFields` text of a list of changed fields.
pub fn update_mask(changed: &[&str]) -> String {
    changed.join(",")
}

#[cfg(test)]
mod tests;
