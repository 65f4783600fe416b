//! The Person resource: field masks, validation of client bodies, the stored form, and the
//! projection of a stored contact to the JSON Google returns (docs/google-people-api.md §1.2, §2, §9.2).
//!
//! A contact is stored as its writable CONTACT-source fields with output-only sub-fields and
//! per-item metadata stripped; everything output-only (`displayName`, `formattedType`,
//! `canonicalForm`, item metadata, `metadata.sources`) is recomputed on every read.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::error::ApiError;

/// The 29 valid `personFields` / `readMask` paths, in discovery order. A path's index + 1 is
/// its field number in the person etag (docs/google-people-api.md §2.3).
pub const PERSON_FIELDS: [&str; 29] = [
    "addresses",
    "ageRanges",
    "biographies",
    "birthdays",
    "calendarUrls",
    "clientData",
    "coverPhotos",
    "emailAddresses",
    "events",
    "externalIds",
    "genders",
    "imClients",
    "interests",
    "locales",
    "locations",
    "memberships",
    "metadata",
    "miscKeywords",
    "names",
    "nicknames",
    "occupations",
    "organizations",
    "phoneNumbers",
    "photos",
    "relations",
    "sipAddresses",
    "skills",
    "urls",
    "userDefined",
];

/// The 24 valid `updatePersonFields` / `updateMask` paths.
pub const UPDATE_FIELDS: [&str; 24] = [
    "addresses",
    "biographies",
    "birthdays",
    "calendarUrls",
    "clientData",
    "emailAddresses",
    "events",
    "externalIds",
    "genders",
    "imClients",
    "interests",
    "locales",
    "locations",
    "memberships",
    "miscKeywords",
    "names",
    "nicknames",
    "occupations",
    "organizations",
    "phoneNumbers",
    "relations",
    "sipAddresses",
    "urls",
    "userDefined",
];

/// Fields that hold at most one value on a contact source (docs/google-people-api.md §2.2).
pub const SINGLETON_FIELDS: [&str; 4] = ["names", "birthdays", "genders", "biographies"];

/// Every top-level name the Person schema knows; anything else in a body is rejected.
const KNOWN_PERSON_KEYS: [&str; 38] = [
    "resourceName",
    "etag",
    "metadata",
    "addresses",
    "ageRange",
    "ageRanges",
    "biographies",
    "birthdays",
    "braggingRights",
    "calendarUrls",
    "clientData",
    "coverPhotos",
    "emailAddresses",
    "events",
    "externalIds",
    "fileAses",
    "genders",
    "imClients",
    "interests",
    "locales",
    "locations",
    "memberships",
    "miscKeywords",
    "names",
    "nicknames",
    "occupations",
    "organizations",
    "phoneNumbers",
    "photos",
    "relations",
    "relationshipInterests",
    "relationshipStatuses",
    "residences",
    "sipAddresses",
    "skills",
    "taglines",
    "urls",
    "userDefined",
];

/// Output-only or deprecated top-level fields: accepted in a body and ignored (docs/google-people-api.md §9.5).
const IGNORED_PERSON_KEYS: [&str; 11] = [
    "resourceName",
    "etag",
    "metadata",
    "ageRange",
    "ageRanges",
    "coverPhotos",
    "photos",
    "braggingRights",
    "relationshipInterests",
    "relationshipStatuses",
    "taglines",
];

/// Known sub-fields of the value types a connector writes, so that a typo is a 400 as on
/// Google's front end. Types not listed here accept any sub-field.
fn known_subfields(field: &str) -> Option<&'static [&'static str]> {
    Some(match field {
        "names" => &[
            "metadata",
            "displayName",
            "displayNameLastFirst",
            "unstructuredName",
            "familyName",
            "givenName",
            "middleName",
            "honorificPrefix",
            "honorificSuffix",
            "phoneticFullName",
            "phoneticFamilyName",
            "phoneticGivenName",
            "phoneticMiddleName",
            "phoneticHonorificPrefix",
            "phoneticHonorificSuffix",
        ],
        "emailAddresses" => &["metadata", "value", "type", "formattedType", "displayName"],
        "phoneNumbers" => &[
            "metadata",
            "value",
            "canonicalForm",
            "type",
            "formattedType",
        ],
        "organizations" => &[
            "metadata",
            "type",
            "formattedType",
            "startDate",
            "endDate",
            "current",
            "name",
            "phoneticName",
            "department",
            "title",
            "jobDescription",
            "symbol",
            "domain",
            "location",
            "costCenter",
            "fullTimeEquivalentMillipercent",
        ],
        "addresses" => &[
            "metadata",
            "formattedValue",
            "type",
            "formattedType",
            "poBox",
            "streetAddress",
            "extendedAddress",
            "city",
            "region",
            "postalCode",
            "country",
            "countryCode",
        ],
        "biographies" => &["metadata", "value", "contentType"],
        "birthdays" => &["metadata", "date", "text"],
        "urls" | "externalIds" | "events" => {
            &["metadata", "value", "type", "formattedType", "date"]
        }
        "userDefined" | "clientData" => &["metadata", "key", "value"],
        "memberships" => &["metadata", "contactGroupMembership", "domainMembership"],
        "genders" => &["metadata", "value", "formattedValue", "addressMeAs"],
        "nicknames" => &["metadata", "value", "type"],
        "relations" => &["metadata", "person", "type", "formattedType"],
        _ => return None,
    })
}

/// Output-only sub-fields, dropped from client bodies and recomputed on read.
fn output_only_subfields(field: &str) -> &'static [&'static str] {
    match field {
        "names" => &["metadata", "displayName", "displayNameLastFirst"],
        "phoneNumbers" => &["metadata", "canonicalForm", "formattedType"],
        "genders" => &["metadata", "formattedValue"],
        "imClients" => &["metadata", "formattedType", "formattedProtocol"],
        "memberships" => &["metadata", "domainMembership"],
        _ => &["metadata", "formattedType"],
    }
}

/// A parsed, validated field mask: a set of known paths.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldMask(pub BTreeSet<&'static str>);

impl FieldMask {
    /// Parse a comma-separated mask against `allowed`. `param` and `doc` name the parameter
    /// and the reference page in error texts. An empty mask is "required".
    pub fn parse(
        raw: Option<&str>,
        allowed: &[&'static str],
        param: &str,
        doc: &str,
    ) -> Result<FieldMask, ApiError> {
        let raw = raw.unwrap_or("");
        let mut set = BTreeSet::new();
        for part in raw.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            // Google accepts (and strips) a `person.` prefix on person masks.
            let path = part.strip_prefix("person.").unwrap_or(part);
            match allowed.iter().find(|a| **a == path) {
                Some(a) => {
                    set.insert(*a);
                }
                None => return Err(ApiError::mask_path(param, part, doc)),
            }
        }
        if set.is_empty() {
            return Err(ApiError::mask_required(param, doc));
        }
        Ok(FieldMask(set))
    }

    /// Every readable person field.
    pub fn all() -> FieldMask {
        FieldMask(PERSON_FIELDS.iter().copied().collect())
    }

    /// Whether `field` is in the mask.
    pub fn has(&self, field: &str) -> bool {
        self.0.contains(field)
    }

    /// Canonical text of the mask (sorted, comma-separated): what tokens are bound to.
    pub fn canonical(&self) -> String {
        self.0.iter().copied().collect::<Vec<_>>().join(",")
    }

    /// Field numbers of the mask, as embedded in person etags.
    pub fn field_numbers(&self) -> Vec<u8> {
        PERSON_FIELDS
            .iter()
            .enumerate()
            .filter(|(_, f)| self.0.contains(*f))
            .map(|(i, _)| (i + 1) as u8)
            .collect()
    }
}

/// The CONTACT-source data of one contact, as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PersonData {
    /// Writable fields (never `memberships`), each a non-empty list of sanitised items.
    pub fields: BTreeMap<String, Vec<Value>>,
    /// Contact group resource names the contact belongs to.
    pub memberships: BTreeSet<String>,
}

impl PersonData {
    /// First value of `field[i].key`, as text (tests, search, inspection).
    pub fn first_str(&self, field: &str, key: &str) -> Option<&str> {
        self.fields.get(field)?.first()?.get(key)?.as_str()
    }

    /// The `clientData` value for `key`, if any.
    pub fn client_data(&self, key: &str) -> Option<&str> {
        self.fields
            .get("clientData")?
            .iter()
            .find(|i| i.get("key").and_then(Value::as_str) == Some(key))?
            .get("value")?
            .as_str()
    }
}

/// A Person body sent by a client, validated: the writable fields it carries, the memberships
/// it names, and the etags it presents.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PersonInput {
    /// Writable fields present in the body (a field sent as `[]` maps to an empty list).
    pub fields: BTreeMap<String, Vec<Value>>,
    /// Group resource names from `memberships[].contactGroupMembership`, if the body has
    /// a `memberships` key.
    pub memberships: Option<Vec<String>>,
    /// Top-level `etag`.
    pub etag: Option<String>,
    /// `metadata.sources[type=CONTACT].etag`.
    pub source_etag: Option<String>,
}

/// Validate a client Person body. `at` is the JSON path for error texts (e.g. `person`).
pub fn parse_person(body: &Value, at: &str) -> Result<PersonInput, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value at '{at}' (type.googleapis.com/google.people.v1.Person), {body}"
        )));
    };
    let mut input = PersonInput::default();
    for (key, value) in obj {
        if !KNOWN_PERSON_KEYS.contains(&key.as_str()) {
            return Err(ApiError::unknown_body_field(key, at));
        }
        match key.as_str() {
            "etag" => input.etag = value.as_str().map(str::to_owned),
            "metadata" => {
                input.source_etag = value
                    .get("sources")
                    .and_then(Value::as_array)
                    .and_then(|s| {
                        s.iter().find(|src| {
                            src.get("type").and_then(Value::as_str).unwrap_or("CONTACT")
                                == "CONTACT"
                        })
                    })
                    .and_then(|src| src.get("etag"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            k if IGNORED_PERSON_KEYS.contains(&k) => {}
            "memberships" => {
                let items = as_items(value, key, at)?;
                let mut groups = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    check_subfields(key, item, &format!("{at}.{key}[{i}]"))?;
                    if let Some(m) = item.get("contactGroupMembership") {
                        let name = m
                            .get("contactGroupResourceName")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .or_else(|| {
                                // contactGroupId is deprecated and output only, but older
                                // clients still send it; Google maps it when it is alone.
                                m.get("contactGroupId")
                                    .and_then(Value::as_str)
                                    .map(|id| format!("contactGroups/{id}"))
                            });
                        match name {
                            Some(n) => groups.push(n),
                            None => {
                                return Err(ApiError::invalid_argument(format!(
                                    "Invalid value at '{at}.memberships[{i}].contactGroupMembership': contactGroupResourceName is required."
                                )));
                            }
                        }
                    }
                }
                input.memberships = Some(groups);
            }
            _ => {
                let items = as_items(value, key, at)?;
                if SINGLETON_FIELDS.contains(&key.as_str()) && items.len() > 1 {
                    return Err(ApiError::invalid_argument(format!(
                        "Field {key} may only have one value on a contact source; {} were given.",
                        items.len()
                    )));
                }
                let mut clean = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    check_subfields(key, item, &format!("{at}.{key}[{i}]"))?;
                    if let Some(item) = sanitize_item(key, item) {
                        clean.push(item);
                    }
                }
                input.fields.insert(key.clone(), clean);
            }
        }
    }
    Ok(input)
}

fn as_items<'a>(value: &'a Value, key: &str, at: &str) -> Result<&'a [Value], ApiError> {
    match value {
        Value::Array(items) => {
            if let Some(bad) = items.iter().find(|i| !i.is_object()) {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid value at '{at}.{key}[0]', {bad}"
                )));
            }
            Ok(items)
        }
        Value::Null => Ok(&[]),
        other => Err(ApiError::invalid_argument(format!(
            "Invalid value at '{at}.{key}', {other}"
        ))),
    }
}

fn check_subfields(field: &str, item: &Value, at: &str) -> Result<(), ApiError> {
    if let (Some(known), Some(obj)) = (known_subfields(field), item.as_object())
        && let Some(bad) = obj.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(ApiError::unknown_body_field(bad, at));
    }
    Ok(())
}

/// Drop output-only sub-fields and nulls; `None` if nothing is left.
fn sanitize_item(field: &str, item: &Value) -> Option<Value> {
    let obj = item.as_object()?;
    let drop = output_only_subfields(field);
    let clean: Map<String, Value> = obj
        .iter()
        .filter(|(k, v)| !drop.contains(&k.as_str()) && !v.is_null())
        .filter(|(_, v)| !matches!(v, Value::String(s) if s.is_empty()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!clean.is_empty()).then_some(Value::Object(clean))
}

/// Identity and version data needed to render a stored contact.
#[derive(Debug, Clone, Copy)]
pub struct RenderMeta<'a> {
    /// `people/c…`.
    pub resource_name: &'a str,
    /// 16-hex contact source id.
    pub source_id: &'a str,
    /// Raw 8 bytes of the current source etag.
    pub source_etag: [u8; 8],
    /// Last change time.
    pub update_time: OffsetDateTime,
    /// Whether the person etag embeds the request mask (docs/google-people-api.md §2.3).
    pub etag_varies_by_mask: bool,
    /// `CONTACT` for contacts, `PROFILE` for `people/me`.
    pub source_type: &'a str,
}

/// Options of one rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOpts {
    /// Cap `emailAddresses` and `phoneNumbers` at 100 items (list responses, docs/google-people-api.md §2.2).
    pub list_cap: bool,
}

/// `#` + base64 of the raw source etag.
pub fn source_etag_text(raw: [u8; 8]) -> String {
    format!("#{}", B64.encode(raw))
}

/// The person etag for a mask: `%` + base64 of a small protobuf holding the mask's field
/// numbers and the source etag (docs/google-people-api.md §2.3).
pub fn person_etag(mask: &FieldMask, raw: [u8; 8], varies: bool) -> String {
    let nums = if varies {
        mask.field_numbers()
    } else {
        Vec::new()
    };
    let mut bytes = Vec::with_capacity(nums.len() + 14);
    bytes.push(0x12);
    bytes.push(nums.len() as u8);
    bytes.extend_from_slice(&nums);
    bytes.push(0x22);
    bytes.push(8);
    bytes.extend_from_slice(&raw);
    format!("%{}", B64.encode(bytes))
}

/// The source etag bytes inside a person etag (`%…`) or a source etag (`#…`), if well formed.
pub fn etag_source_bytes(etag: &str) -> Option<[u8; 8]> {
    if let Some(rest) = etag.strip_prefix('#') {
        return B64.decode(rest).ok()?.try_into().ok();
    }
    let bytes = B64.decode(etag.strip_prefix('%')?).ok()?;
    let n = *bytes.get(1)? as usize;
    if bytes.first() != Some(&0x12) || bytes.get(2 + n) != Some(&0x22) {
        return None;
    }
    bytes.get(4 + n..12 + n)?.try_into().ok()
}

/// Render a stored contact with `mask`.
pub fn render(
    data: &PersonData,
    meta: RenderMeta<'_>,
    mask: &FieldMask,
    opts: RenderOpts,
) -> Value {
    let mut out = Map::new();
    out.insert("resourceName".into(), json!(meta.resource_name));
    out.insert(
        "etag".into(),
        json!(person_etag(
            mask,
            meta.source_etag,
            meta.etag_varies_by_mask
        )),
    );
    let source = json!({"type": meta.source_type, "id": meta.source_id});
    if mask.has("metadata") {
        out.insert(
            "metadata".into(),
            json!({
                "sources": [{
                    "type": meta.source_type,
                    "id": meta.source_id,
                    "etag": source_etag_text(meta.source_etag),
                    "updateTime": super::rfc3339(meta.update_time),
                }],
                "objectType": "PERSON",
            }),
        );
    }
    for field in PERSON_FIELDS {
        if field == "metadata" || !mask.has(field) {
            continue;
        }
        if field == "memberships" {
            if !data.memberships.is_empty() {
                let items: Vec<Value> = data
                    .memberships
                    .iter()
                    .map(|g| {
                        let id = g.strip_prefix("contactGroups/").unwrap_or(g);
                        json!({
                            "metadata": {"source": source},
                            "contactGroupMembership": {
                                "contactGroupId": id,
                                "contactGroupResourceName": g,
                            }
                        })
                    })
                    .collect();
                out.insert(field.into(), Value::Array(items));
            }
            continue;
        }
        let Some(items) = data.fields.get(field).filter(|i| !i.is_empty()) else {
            // Google omits absent fields rather than sending empty arrays.
            continue;
        };
        let cap = if opts.list_cap && matches!(field, "emailAddresses" | "phoneNumbers") {
            100
        } else {
            usize::MAX
        };
        let rendered: Vec<Value> = items
            .iter()
            .take(cap)
            .enumerate()
            .map(|(i, item)| render_item(field, item, i == 0, &source))
            .collect();
        out.insert(field.into(), Value::Array(rendered));
    }
    Value::Object(out)
}

/// A tombstone as returned in sync responses (docs/google-people-api.md §9.4).
pub fn render_tombstone(meta: RenderMeta<'_>, mask: &FieldMask) -> Value {
    json!({
        "resourceName": meta.resource_name,
        "etag": person_etag(mask, meta.source_etag, meta.etag_varies_by_mask),
        "metadata": {
            "sources": [{"type": "CONTACT", "id": meta.source_id}],
            "deleted": true,
        }
    })
}

fn render_item(field: &str, item: &Value, primary: bool, source: &Value) -> Value {
    let mut obj = item.as_object().cloned().unwrap_or_default();
    let mut meta = Map::new();
    if primary {
        meta.insert("primary".into(), json!(true));
        meta.insert("sourcePrimary".into(), json!(true));
    }
    meta.insert("source".into(), source.clone());
    let mut out = Map::new();
    out.insert("metadata".into(), Value::Object(meta));
    match field {
        "names" => {
            let get = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let (given, middle, family) = (get("givenName"), get("middleName"), get("familyName"));
            let first_part = [given.as_str(), middle.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let display = [
                get("honorificPrefix").as_str(),
                first_part.as_str(),
                family.as_str(),
                get("honorificSuffix").as_str(),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
            let display = if display.is_empty() {
                get("unstructuredName")
            } else {
                display
            };
            let last_first = match (family.is_empty(), first_part.is_empty()) {
                (false, false) => format!("{family}, {first_part}"),
                (false, true) => family.clone(),
                _ => display.clone(),
            };
            if !display.is_empty() {
                out.insert("displayName".into(), json!(display));
                out.insert("displayNameLastFirst".into(), json!(last_first));
                obj.entry("unstructuredName").or_insert(json!(display));
            }
        }
        "phoneNumbers" => {
            if let Some(v) = obj.get("value").and_then(Value::as_str)
                && let Some(c) = canonical_phone(v)
            {
                obj.insert("canonicalForm".into(), json!(c));
            }
        }
        "addresses" if !obj.contains_key("formattedValue") => {
            let get = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let city_line = [get("city"), get("region"), get("postalCode")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let formatted = [
                get("poBox"),
                get("streetAddress"),
                get("extendedAddress"),
                city_line,
                get("country"),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
            if !formatted.is_empty() {
                obj.insert("formattedValue".into(), json!(formatted));
            }
        }
        "genders" => {
            if let Some(v) = obj.get("value").and_then(Value::as_str) {
                obj.insert("formattedValue".into(), json!(formatted_type(v)));
            }
        }
        _ => {}
    }
    if let Some(t) = obj.get("type").and_then(Value::as_str)
        && field != "genders"
    {
        obj.insert("formattedType".into(), json!(formatted_type(t)));
    }
    for (k, v) in obj {
        out.insert(k, v);
    }
    Value::Object(out)
}

/// E.164 form of a phone number written with a leading `+`; numbers without a country code
/// are left without `canonicalForm` (Google would use the account's region).
pub fn canonical_phone(v: &str) -> Option<String> {
    let trimmed = v.trim();
    if !trimmed.starts_with('+') {
        return None;
    }
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    (digits.len() >= 7 && digits.len() <= 15).then(|| format!("+{digits}"))
}

/// Google's display form of a type keyword (`homeFax` → `Home Fax`); custom types as is.
pub fn formatted_type(t: &str) -> String {
    match t {
        "googleVoice" => "Google Voice".into(),
        "homePage" => "Home Page".into(),
        "appInstallPage" => "App Install Page".into(),
        _ if t.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && t.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            let mut out = String::new();
            for (i, c) in t.chars().enumerate() {
                if i == 0 {
                    out.push(c.to_ascii_uppercase());
                } else if c.is_ascii_uppercase() {
                    out.push(' ');
                    out.push(c);
                } else {
                    out.push(c);
                }
            }
            out
        }
        _ => t.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_parsing_strips_prefix_and_rejects_unknown_paths() {
        let m = FieldMask::parse(
            Some("person.names, emailAddresses"),
            &PERSON_FIELDS,
            "personFields",
            "people/get",
        )
        .unwrap();
        assert_eq!(m.canonical(), "emailAddresses,names");
        let e = FieldMask::parse(
            Some("names,foo"),
            &PERSON_FIELDS,
            "personFields",
            "people/get",
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("Invalid personFields mask path: \"foo\"")
        );
        let e = FieldMask::parse(Some(" , "), &PERSON_FIELDS, "personFields", "people/get")
            .unwrap_err();
        assert!(e.message.starts_with("personFields mask is required."));
    }

    #[test]
    fn person_etag_round_trips_its_source_etag_and_varies_by_mask() {
        let raw = [1, 2, 3, 4, 5, 6, 7, 8];
        let a = FieldMask::parse(Some("names"), &PERSON_FIELDS, "p", "d").unwrap();
        let b = FieldMask::parse(Some("names,emailAddresses"), &PERSON_FIELDS, "p", "d").unwrap();
        let ea = person_etag(&a, raw, true);
        let eb = person_etag(&b, raw, true);
        assert!(ea.starts_with('%'));
        assert_ne!(ea, eb);
        assert_eq!(etag_source_bytes(&ea), Some(raw));
        assert_eq!(etag_source_bytes(&eb), Some(raw));
        assert_eq!(etag_source_bytes(&source_etag_text(raw)), Some(raw));
        assert_eq!(person_etag(&a, raw, false), person_etag(&b, raw, false));
        assert_eq!(etag_source_bytes("%garbage"), None);
    }

    #[test]
    fn parse_person_validates_singletons_and_unknown_fields() {
        let e = parse_person(
            &json!({"names": [{"givenName": "A"}, {"givenName": "B"}]}),
            "person",
        )
        .unwrap_err();
        assert_eq!(e.status, "INVALID_ARGUMENT");
        let e = parse_person(&json!({"nmes": []}), "person").unwrap_err();
        assert!(e.message.contains("Unknown name \"nmes\""));
        let e = parse_person(&json!({"names": [{"givenNam": "A"}]}), "person").unwrap_err();
        assert!(e.message.contains("person.names[0]"));
        let p = parse_person(
            &json!({"etag": "%x", "names": [{"givenName": "Ada", "displayName": "ignored"}],
                    "photos": [{"url": "x"}],
                    "memberships": [{"contactGroupMembership": {"contactGroupResourceName": "contactGroups/starred"}}]}),
            "person",
        )
        .unwrap();
        assert_eq!(p.etag.as_deref(), Some("%x"));
        assert_eq!(p.fields["names"], vec![json!({"givenName": "Ada"})]);
        assert!(!p.fields.contains_key("photos"));
        assert_eq!(
            p.memberships,
            Some(vec!["contactGroups/starred".to_owned()])
        );
    }

    #[test]
    fn render_computes_output_only_fields() {
        let mut data = PersonData::default();
        data.fields.insert(
            "names".into(),
            vec![json!({"givenName": "Alan", "familyName": "Turing"})],
        );
        data.fields.insert(
            "phoneNumbers".into(),
            vec![json!({"value": "+44 55 5000 555", "type": "mobile"})],
        );
        data.memberships.insert("contactGroups/myContacts".into());
        let meta = RenderMeta {
            resource_name: "people/c1",
            source_id: "0123456789abcdef",
            source_etag: [0; 8],
            update_time: OffsetDateTime::UNIX_EPOCH,
            etag_varies_by_mask: true,
            source_type: "CONTACT",
        };
        let v = render(&data, meta, &FieldMask::all(), RenderOpts::default());
        assert_eq!(v["names"][0]["displayName"], "Alan Turing");
        assert_eq!(v["names"][0]["displayNameLastFirst"], "Turing, Alan");
        assert_eq!(v["names"][0]["metadata"]["primary"], true);
        assert_eq!(v["phoneNumbers"][0]["canonicalForm"], "+44555000555");
        assert_eq!(v["phoneNumbers"][0]["formattedType"], "Mobile");
        assert_eq!(
            v["memberships"][0]["contactGroupMembership"]["contactGroupId"],
            "myContacts"
        );
        assert_eq!(v["metadata"]["sources"][0]["type"], "CONTACT");
        assert!(v.get("emailAddresses").is_none());
        assert_eq!(formatted_type("homeFax"), "Home Fax");
        assert_eq!(formatted_type("My label"), "My label");
    }
}
