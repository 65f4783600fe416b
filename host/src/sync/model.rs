//! The engine's data model: values and records as they cross the connector
//! boundary (mirroring `tandem:plugin/types`), the two sides of a sync, and the
//! canonical form every compared value is brought to (normalised and hashed).
//!
//! NULL and ABSENT are kept apart everywhere: a field listed with
//! [`Value::Null`] was cleared by a user; a field missing from
//! [`Record::fields`] is unknown and never counts as a change (sync-rules C3).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One field value, as in the WIT `value` variant.
///
/// Serialised untagged (`null`, `true`, `1.5`, `"text"`, `["a", "b"]`) so that
/// the operator config can write rule values naturally and the store stays
/// readable. Deserialised by a visitor, not `#[serde(untagged)]`, which would
/// build an error for every variant it tries (baselines decode many values).
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
#[serde(untagged)]
pub enum Value {
    /// Present and empty: the user cleared the field.
    #[default]
    Null,
    /// A flag.
    Bool(bool),
    /// A number (64-bit ids travel as text).
    Number(f64),
    /// Text, dates and date-times included.
    Text(String),
    /// A multi-valued field.
    Texts(Vec<String>),
}

impl Value {
    /// Empty after normalisation: null, blank text, an empty list.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(s) => s.trim().is_empty(),
            Value::Texts(v) => v.iter().all(|s| s.trim().is_empty()),
            Value::Bool(_) | Value::Number(_) => false,
        }
    }

    /// The value as text, for comparisons in rules and for display.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(format_number(*n)),
            Value::Text(s) => Some(s.clone()),
            Value::Texts(v) => Some(v.join(", ")),
        }
    }

    /// The value as a number, parsing numeric text.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Text(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// The value as a flag, accepting the usual textual spellings.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => Some(*n != 0.0),
            Value::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "1" | "on" => Some(true),
                "false" | "no" | "n" | "0" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// A short hash of the value's canonical encoding (hex, 128 bits).
    pub fn hash(&self) -> String {
        ValueHash::of(self).to_string()
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, a flag, a number, a string or a list of strings")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Text(v))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(s) = seq.next_element::<String>()? {
            items.push(s);
        }
        Ok(Value::Texts(items))
    }
}

/// [`Value::hash`] as 16 bytes, written and read as its 32 hex digits. Every mapped field
/// of every link's base carries one to three of them, so they are kept as bytes rather
/// than as text (docs/performance.md §6).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueHash(pub [u8; 16]);

impl ValueHash {
    /// The hash of `v`'s canonical encoding.
    pub fn of(v: &Value) -> ValueHash {
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let mut h = [0u8; 16];
        h.copy_from_slice(&digest[..16]);
        ValueHash(h)
    }
}

impl fmt::Display for ValueHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ValueHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValueHash({self})")
    }
}

impl Serialize for ValueHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for ValueHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        let mut h = [0u8; 16];
        hex::decode_to_slice(text.as_bytes(), &mut h).map_err(|_| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&text),
                &"a value hash of 32 hex digits",
            )
        })?;
        Ok(ValueHash(h))
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("(empty)"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => f.write_str(&format_number(*n)),
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Texts(v) => write!(f, "{v:?}"),
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// A record of one entity as the app stores it (WIT `record`), fields keyed by
/// the app's own field names. Fields not listed are ABSENT.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Record {
    /// The app's identifier, opaque to the engine.
    pub id: String,
    /// An opaque version token (etag, revision), if the app has one.
    pub version: Option<String>,
    /// When the app last changed the record, RFC 3339.
    pub updated_at: Option<String>,
    /// The fields the app returned.
    pub fields: BTreeMap<String, Value>,
}

impl Record {
    /// The last-change time, when present and well-formed.
    pub fn updated_at(&self) -> Option<OffsetDateTime> {
        self.updated_at
            .as_deref()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
    }
}

/// One record of a sync: its entity pair (an index into the policy's `entities`), its
/// side and its id there. The key of the retry index, the tombstones and the records a
/// run re-reads. Ordered like the tuple it replaces; serialised as that tuple,
/// `[entity, "a"|"b", id]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "(usize, Side, String)", into = "(usize, Side, String)")]
pub struct RecordKey {
    /// The entity pair.
    pub entity: usize,
    /// The side.
    pub side: Side,
    /// The record's id on that side.
    pub id: String,
}

impl RecordKey {
    /// Record `id` of entity pair `entity` on `side`.
    pub fn new(entity: usize, side: Side, id: impl Into<String>) -> Self {
        RecordKey {
            entity,
            side,
            id: id.into(),
        }
    }
}

impl From<(usize, Side, String)> for RecordKey {
    fn from((entity, side, id): (usize, Side, String)) -> Self {
        RecordKey { entity, side, id }
    }
}

impl From<RecordKey> for (usize, Side, String) {
    fn from(k: RecordKey) -> Self {
        (k.entity, k.side, k.id)
    }
}

/// One of the two connected apps of a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The first connection of the sync.
    A,
    /// The second connection of the sync.
    B,
}

impl Side {
    /// Both sides, A first.
    pub const BOTH: [Side; 2] = [Side::A, Side::B];

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `"a"` or `"b"`, used in keys and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// A value per side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidePair<T> {
    /// The value for side A.
    #[serde(default)]
    pub a: T,
    /// The value for side B.
    #[serde(default)]
    pub b: T,
}

impl<T> SidePair<T> {
    /// A pair from its two halves.
    pub fn new(a: T, b: T) -> Self {
        SidePair { a, b }
    }

    /// The value of one side.
    pub fn get(&self, side: Side) -> &T {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// The value of one side, mutably.
    pub fn get_mut(&mut self, side: Side) -> &mut T {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }
}

impl<T: Clone> SidePair<T> {
    /// The same value on both sides.
    pub fn both(v: T) -> Self {
        SidePair { a: v.clone(), b: v }
    }
}

/// How the values of a mapped field pair are compared and translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanonKind {
    /// Single-line text: trimmed, inner whitespace collapsed.
    Text,
    /// Multi-line text: trimmed, line endings unified, lines kept.
    LongText,
    /// An email address: lower-case, trimmed.
    Email,
    /// A phone number: digits with an optional leading `+` (`00` becomes `+`).
    Phone,
    /// A number.
    Number,
    /// A flag.
    Bool,
    /// A date-time, brought to UTC RFC 3339 when it parses.
    DateTime,
    /// An unordered set of texts: sorted, deduplicated.
    Set,
    /// E-mail consent: `opted-out` or `opted-in` (see [`Consent`]).
    Consent,
}

/// The canonical consent value: whether the person opted out of e-mail.
///
/// `OptedIn` means "not opted out" (subscribed or never asked); `OptedOut`
/// covers DND, unsubscribed, bounced and reported-as-spam.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Consent {
    /// Not opted out.
    OptedIn,
    /// Opted out, bounced or complained: never e-mail.
    OptedOut,
}

impl Consent {
    /// The canonical value.
    pub fn value(self) -> Value {
        Value::Text(
            match self {
                Consent::OptedIn => "opted-in",
                Consent::OptedOut => "opted-out",
            }
            .into(),
        )
    }

    /// Reads a canonical consent value.
    pub fn of(v: &Value) -> Option<Consent> {
        match v {
            Value::Text(s) if s == "opted-out" => Some(Consent::OptedOut),
            Value::Text(s) if s == "opted-in" => Some(Consent::OptedIn),
            _ => None,
        }
    }
}

/// Brings a value to the canonical form of `kind`: the form in which both
/// sides' values are compared, hashed, stored in the baseline and written.
pub fn normalise(kind: CanonKind, v: &Value) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    match kind {
        CanonKind::Text => text_of(v).map_or(Value::Null, |s| text(collapse_ws(&s))),
        CanonKind::LongText => text_of(v).map_or(Value::Null, |s| {
            text(s.replace("\r\n", "\n").trim().to_string())
        }),
        CanonKind::Email => text_of(v).map_or(Value::Null, |s| text(normalise_email(&s))),
        CanonKind::Phone => text_of(v).map_or(Value::Null, |s| text(normalise_phone(&s))),
        CanonKind::Number => match v.as_number() {
            // -0 and 0 are one value.
            Some(n) => Value::Number(if n == 0.0 { 0.0 } else { n }),
            None => text_of(v).map_or(Value::Null, |s| text(collapse_ws(&s))),
        },
        CanonKind::Bool => v.as_bool().map_or_else(
            || text_of(v).map_or(Value::Null, |s| text(collapse_ws(&s))),
            Value::Bool,
        ),
        CanonKind::DateTime => text_of(v).map_or(Value::Null, |s| text(normalise_datetime(&s))),
        CanonKind::Set => {
            let mut items: Vec<String> = match v {
                Value::Texts(items) => items.iter().map(|s| collapse_ws(s)).collect(),
                other => text_of(other)
                    .into_iter()
                    .map(|s| collapse_ws(&s))
                    .collect(),
            };
            items.retain(|s| !s.is_empty());
            items.sort();
            items.dedup();
            if items.is_empty() {
                Value::Null
            } else {
                Value::Texts(items)
            }
        }
        // Consent is decoded per app by the mapping (it needs the field's
        // definition); a value reaching here is already canonical.
        CanonKind::Consent => match Consent::of(v) {
            Some(c) => c.value(),
            None => Value::Null,
        },
    }
}

fn text(s: String) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Text(s)
    }
}

/// The text of a scalar value; the first element of a list (a multi-valued
/// field paired with a single-valued one carries its primary value).
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Texts(items) => items.iter().find(|s| !s.trim().is_empty()).cloned(),
        other => other.as_text(),
    }
}

/// Collapses runs of whitespace into one space and trims.
pub fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The match-key form of an e-mail address: trimmed and lower-cased. Plus
/// tags and dots are kept (sync-rules I2: stripping them merges different people).
pub fn normalise_email(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Digits with an optional leading `+`; a leading `00` becomes `+`. Numbers
/// without a country code stay national: no country is guessed.
pub fn normalise_phone(s: &str) -> String {
    let trimmed = s.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return collapse_ws(trimmed);
    }
    if trimmed.starts_with('+') {
        format!("+{digits}")
    } else if let Some(rest) = digits.strip_prefix("00") {
        format!("+{rest}")
    } else {
        digits
    }
}

fn normalise_datetime(s: &str) -> String {
    let s = s.trim();
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => t
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .unwrap_or_else(|_| s.to_string()),
        Err(_) => s.to_string(),
    }
}

/// A stable hex digest of several parts, used for op ids and markers.
pub fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan's `fetch` list (`tandem sync plan --json`) reads and writes as the tuples
    /// it held before, and keys order as those tuples did.
    #[test]
    fn a_record_key_is_written_and_ordered_as_its_tuple() {
        let k = RecordKey::new(1, Side::B, "880123");
        assert_eq!(serde_json::to_string(&k).unwrap(), r#"[1,"b","880123"]"#);
        let back: RecordKey = serde_json::from_str(r#"[1,"b","880123"]"#).unwrap();
        assert_eq!(back, k);
        let mut keys = vec![
            RecordKey::new(1, Side::A, "2"),
            RecordKey::new(0, Side::B, "1"),
            RecordKey::new(0, Side::A, "9"),
            RecordKey::new(0, Side::A, "10"),
        ];
        let mut tuples: Vec<(usize, Side, String)> = keys.iter().cloned().map(Into::into).collect();
        keys.sort();
        tuples.sort();
        assert_eq!(
            keys.into_iter()
                .map(<(usize, Side, String)>::from)
                .collect::<Vec<_>>(),
            tuples
        );
    }

    #[test]
    fn null_and_empty_text_are_the_same_canonical_value() {
        assert_eq!(
            normalise(CanonKind::Text, &Value::Text("  ".into())),
            Value::Null
        );
        assert_eq!(
            normalise(CanonKind::Set, &Value::Texts(vec![])),
            Value::Null
        );
    }

    #[test]
    fn email_is_lower_cased_and_trimmed_but_tags_kept() {
        let v = normalise(
            CanonKind::Email,
            &Value::Text(" Jane.Doe+x@Example.COM ".into()),
        );
        assert_eq!(v, Value::Text("jane.doe+x@example.com".into()));
    }

    #[test]
    fn phone_keeps_digits_and_plus() {
        assert_eq!(normalise_phone("+1 (555) 010-0199"), "+15550100199");
        assert_eq!(normalise_phone("0049 30 1234"), "+49301234");
        assert_eq!(normalise_phone("030 1234"), "0301234");
    }

    #[test]
    fn whitespace_collapses_and_sets_sort() {
        assert_eq!(
            normalise(CanonKind::Text, &Value::Text(" Jane \t  Doe ".into())),
            Value::Text("Jane Doe".into())
        );
        assert_eq!(
            normalise(
                CanonKind::Set,
                &Value::Texts(vec!["b".into(), "a".into(), "b".into(), " ".into()])
            ),
            Value::Texts(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn numbers_parse_from_text_and_bools_from_words() {
        assert_eq!(
            normalise(CanonKind::Number, &Value::Text("42".into())),
            Value::Number(42.0)
        );
        assert_eq!(
            normalise(CanonKind::Bool, &Value::Text("Yes".into())),
            Value::Bool(true)
        );
        assert_eq!(
            normalise(CanonKind::Number, &Value::Number(-0.0)),
            Value::Number(0.0)
        );
    }

    #[test]
    fn datetimes_are_brought_to_utc() {
        assert_eq!(
            normalise(
                CanonKind::DateTime,
                &Value::Text("2024-05-01T12:00:00+02:00".into())
            ),
            Value::Text("2024-05-01T10:00:00Z".into())
        );
    }

    #[test]
    fn hash_tells_null_from_empty_list_and_types_apart() {
        assert_ne!(Value::Null.hash(), Value::Text("".into()).hash());
        assert_ne!(Value::Number(1.0).hash(), Value::Text("1".into()).hash());
        assert_eq!(
            Value::Text("x".into()).hash(),
            Value::Text("x".into()).hash()
        );
    }

    #[test]
    fn value_round_trips_untagged() {
        let v = vec![
            Value::Null,
            Value::Bool(true),
            Value::Number(1.5),
            Value::Text("x".into()),
            Value::Texts(vec!["a".into()]),
        ];
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"[null,true,1.5,"x",["a"]]"#);
        assert_eq!(serde_json::from_str::<Vec<Value>>(&json).unwrap(), v);
    }
}
