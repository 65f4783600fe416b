//! Field mapping: which field of A is kept in step with which field of B, how
//! their values are brought to one canonical form, and how a canonical value
//! is written back in each app's own terms.
//!
//! Defaults pair fields by well-known meaning (e-mail always, and a Freshsales
//! `dnd` flag with a Freshmarketer `consent` status); hand-made pairs replace
//! them; unmapped fields are never synced. Consent is typed: DND true,
//! unsubscribed, bounced and reported-as-spam all mean "opted out".

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::model::{
    CanonKind, Consent, Record, Side, SidePair, Value, collapse_ws, digest, normalise,
    normalise_email,
};
use super::policy::{Direction, SyncPolicy, Winner};
use super::source::{FieldDef, FieldType};
use tandem_well_known as wk;

/// Well-known tags never paired automatically: engine bookkeeping and ids
/// that mean nothing in the other app.
const NOT_AUTO: &[&str] = &[
    wk::MARKER,
    wk::CREATED_AT,
    wk::UPDATED_AT,
    wk::OWNER,
    wk::LIFECYCLE_STAGE,
];

/// Tags with a different name but the same meaning.
const COMPATIBLE: &[(&str, &str)] = &[(wk::DND, wk::CONSENT), (wk::CONSENT, wk::DND)];

/// One mapped pair of fields.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldPair {
    /// The pair's key in the baseline: `a-name~b-name`.
    pub key: String,
    /// Side A's field.
    pub a: FieldDef,
    /// Side B's field.
    pub b: FieldDef,
    /// How values are compared.
    pub kind: CanonKind,
    /// `flows.a`: A's value may be written to B; `flows.b`: B's to A.
    pub flows: SidePair<bool>,
    /// This side always wins the field's conflicts.
    pub owner: Option<Side>,
    /// The field's own conflict rule (`conflict.fields`), replacing the
    /// sync's `winner` (the owner still comes first).
    pub rule: Option<Winner>,
}

impl FieldPair {
    /// The field definition of one side.
    pub fn def(&self, side: Side) -> &FieldDef {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// Whether this pair carries e-mail consent.
    pub fn is_consent(&self) -> bool {
        self.kind == CanonKind::Consent
    }

    /// The canonical form of a value read from `side`.
    pub fn to_canonical(&self, side: Side, raw: &Value) -> Value {
        let def = self.def(side);
        if self.kind == CanonKind::Consent {
            return decode_consent(def, raw).map_or(Value::Null, Consent::value);
        }
        let raw = labels_of(def, raw);
        normalise(self.kind, &raw)
    }

    /// A canonical value in the terms of `side`'s field, for writing there.
    pub fn from_canonical(&self, side: Side, canon: &Value) -> Value {
        let def = self.def(side);
        if canon.is_empty() {
            return Value::Null;
        }
        if self.kind == CanonKind::Consent {
            return Consent::of(canon).map_or(Value::Null, |c| encode_consent(def, c));
        }
        let v = choices_of(def, canon);
        shape_for(def, v)
    }

    /// The canonical value of this pair in a record of `side`; `None` when the
    /// field is ABSENT from the record.
    pub fn read(&self, side: Side, record: &Record) -> Option<Value> {
        record
            .fields
            .get(&self.def(side).name)
            .map(|raw| self.to_canonical(side, raw))
    }
}

/// The field pairs of one entity pair.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedMapping {
    /// Every pair, in a stable order (custom pairs, then defaults by A's schema order).
    pub pairs: Vec<FieldPair>,
    /// Index of the e-mail pair (the match key).
    pub email: usize,
    /// The field each side's opt-out state is read from, paired or not.
    pub consent: SidePair<Option<FieldDef>>,
    /// Each side's full schema (rules may test unmapped fields).
    pub schema: SidePair<Vec<FieldDef>>,
}

impl ResolvedMapping {
    /// The e-mail pair.
    pub fn email_pair(&self) -> &FieldPair {
        &self.pairs[self.email]
    }

    /// The consent pair, when consent is mapped.
    pub fn consent_pair(&self) -> Option<&FieldPair> {
        self.pairs.iter().find(|p| p.is_consent())
    }

    /// The normalised match key (primary e-mail) of a record of `side`.
    pub fn match_key(&self, side: Side, record: &Record) -> Option<String> {
        match self.email_pair().read(side, record)? {
            Value::Text(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// Every normalised e-mail of a record of `side`, the match key first: the
    /// e-mail pair's value and the values of fields tagged `emails` (an app's
    /// secondary addresses). Matching uses all of them, so a person whose
    /// address is a secondary one on the other side is not duplicated.
    pub fn emails(&self, side: Side, record: &Record) -> Vec<String> {
        let mut out: Vec<String> = self.match_key(side, record).into_iter().collect();
        let primary = &self.email_pair().def(side).name;
        let more = self
            .schema
            .get(side)
            .iter()
            .filter(|d| d.is(wk::EMAILS) || (d.name == *primary))
            .filter_map(|d| record.fields.get(&d.name));
        for v in more {
            let items: Vec<&str> = match v {
                Value::Text(s) => vec![s.as_str()],
                Value::Texts(list) => list.iter().map(String::as_str).collect(),
                _ => Vec::new(),
            };
            for s in items {
                let m = normalise_email(s);
                if !m.is_empty() && !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// The fields of a record of `side` that the engine reads when the sync has no rules
    /// (rules may test and set any field): the paired fields, the consent field and the
    /// secondary e-mails ([`Self::emails`]).
    pub fn read_fields(&self, side: Side) -> BTreeSet<String> {
        let primary = &self.email_pair().def(side).name;
        self.pairs
            .iter()
            .map(|p| p.def(side).name.clone())
            .chain(self.consent.get(side).iter().map(|d| d.name.clone()))
            .chain(
                self.schema
                    .get(side)
                    .iter()
                    .filter(|d| d.is(wk::EMAILS) || d.name == *primary)
                    .map(|d| d.name.clone()),
            )
            .collect()
    }

    /// Whether a record of `side` is opted out of e-mail (DND, unsubscribed,
    /// bounced, spam); `None` when the side has no consent field or it is empty.
    pub fn consent(&self, side: Side, record: &Record) -> Option<Consent> {
        let def = self.consent.get(side).as_ref()?;
        decode_consent(def, record.fields.get(&def.name)?)
    }

    /// The canonical projection of a record: pair key -> value, ABSENT fields left out.
    pub fn project(&self, side: Side, record: &Record) -> BTreeMap<String, Value> {
        self.pairs
            .iter()
            .filter_map(|p| p.read(side, record).map(|v| (p.key.clone(), v)))
            .collect()
    }

    /// A digest of the pairs and their flows: it changes when the mapping does.
    pub fn fingerprint(&self) -> String {
        let parts: Vec<String> = self
            .pairs
            .iter()
            .map(|p| format!("{}:{:?}:{}{}", p.key, p.kind, p.flows.a, p.flows.b))
            .collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        digest(&refs)
    }
}

/// Why a mapping cannot be resolved.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MappingError {
    /// A side has no e-mail field, so records cannot be matched.
    #[error(
        "side {side} entity `{entity}` has no field tagged `email`: records cannot be matched; \
         use a connector that reports its e-mail field"
    )]
    NoEmail {
        /// The side whose schema lacks the tag.
        side: Side,
        /// The entity (`contacts`...).
        entity: String,
    },
    /// A hand-made pair names a field the app does not have.
    #[error("field `{field}` is not in side {side}'s schema of `{entity}`: check the mapping")]
    UnknownField {
        /// The side whose schema lacks the field.
        side: Side,
        /// The entity (`contacts`...).
        entity: String,
        /// The field name as the mapping wrote it.
        field: String,
    },
    /// The e-mail pair was excluded.
    #[error("the e-mail field cannot be excluded from the mapping: it is the match key")]
    EmailExcluded,
    /// A field is used by two hand-made pairs.
    #[error("field `{field}` of side {side} is mapped twice: keep one pair")]
    MappedTwice {
        /// The side of the field.
        side: Side,
        /// The app's field name.
        field: String,
    },
}

/// Pairs the fields of one entity pair according to the sync's mapping settings.
pub fn resolve(
    policy: &SyncPolicy,
    entity: SidePair<&str>,
    schema_a: &[FieldDef],
    schema_b: &[FieldDef],
) -> Result<ResolvedMapping, MappingError> {
    let cfg = &policy.mapping;
    let schema = SidePair::new(schema_a, schema_b);
    let excluded = |d: &FieldDef| {
        cfg.exclude
            .iter()
            .any(|x| *x == d.name || d.well_known.as_deref() == Some(x.as_str()))
    };
    let mut pairs: Vec<FieldPair> = Vec::new();
    let mut used: SidePair<BTreeSet<String>> = SidePair::default();

    for m in &cfg.fields {
        let mut defs = SidePair::new(None, None);
        for (side, name) in [(Side::A, &m.a), (Side::B, &m.b)] {
            let def = schema
                .get(side)
                .iter()
                .find(|d| d.name == *name)
                .ok_or_else(|| MappingError::UnknownField {
                    side,
                    entity: entity.get(side).to_string(),
                    field: name.clone(),
                })?;
            if !used.get_mut(side).insert(def.name.clone()) {
                return Err(MappingError::MappedTwice {
                    side,
                    field: name.clone(),
                });
            }
            *defs.get_mut(side) = Some(def.clone());
        }
        let dir = m.direction.and_then(|d| policy.direction.intersect(d));
        let (Some(a), Some(b)) = (defs.a, defs.b) else {
            continue;
        };
        pairs.push(make_pair(
            policy,
            a,
            b,
            dir.unwrap_or(policy.direction),
            m.owner,
        ));
    }

    let email_of = |side: Side| schema.get(side).iter().find(|d| d.is(wk::EMAIL)).cloned();
    let (Some(email_a), Some(email_b)) = (email_of(Side::A), email_of(Side::B)) else {
        let side = if email_of(Side::A).is_none() {
            Side::A
        } else {
            Side::B
        };
        return Err(MappingError::NoEmail {
            side,
            entity: entity.get(side).to_string(),
        });
    };
    if excluded(&email_a) || excluded(&email_b) {
        return Err(MappingError::EmailExcluded);
    }

    let auto = cfg.defaults;
    for a in schema_a {
        let Some(tag) = a.well_known.as_deref() else {
            continue;
        };
        let is_email = a.name == email_a.name;
        if !is_email && (!auto || NOT_AUTO.contains(&tag) || a.kind == FieldType::Reference) {
            continue;
        }
        if used.a.contains(&a.name) || (!is_email && excluded(a)) {
            continue;
        }
        let found = schema_b.iter().find(|b| {
            let Some(bt) = b.well_known.as_deref() else {
                return false;
            };
            let same = bt == tag || COMPATIBLE.contains(&(tag, bt));
            same && !used.b.contains(&b.name) && (is_email || !excluded(b))
        });
        let Some(b) = found else { continue };
        if is_email && b.name != email_b.name {
            continue;
        }
        if !a.writable && !b.writable {
            continue;
        }
        used.a.insert(a.name.clone());
        used.b.insert(b.name.clone());
        let owner = owner_of(policy, &a.name, &b.name, Some(tag));
        pairs.push(make_pair(
            policy,
            a.clone(),
            b.clone(),
            policy.direction,
            owner,
        ));
    }

    let email = pairs
        .iter()
        .position(|p| p.a.name == email_a.name && p.b.name == email_b.name)
        .or_else(|| pairs.iter().position(|p| p.kind == CanonKind::Email))
        .ok_or(MappingError::EmailExcluded)?;

    let consent_of = |side: Side| {
        pairs
            .iter()
            .find(|p| p.is_consent())
            .map(|p| p.def(side).clone())
            .or_else(|| {
                schema
                    .get(side)
                    .iter()
                    .find(|d| d.is(wk::DND) || d.is(wk::CONSENT))
                    .cloned()
            })
    };
    let consent = SidePair::new(consent_of(Side::A), consent_of(Side::B));
    Ok(ResolvedMapping {
        pairs,
        email,
        consent,
        schema: SidePair::new(schema_a.to_vec(), schema_b.to_vec()),
    })
}

fn owner_of(policy: &SyncPolicy, a: &str, b: &str, tag: Option<&str>) -> Option<Side> {
    let owners = &policy.conflict.owners;
    let key = format!("{a}~{b}");
    [Some(key.as_str()), Some(a), Some(b), tag]
        .into_iter()
        .flatten()
        .find_map(|k| owners.get(k).copied())
}

/// The per-field rule of a pair, by the same keys as [`owner_of`].
fn rule_of(policy: &SyncPolicy, a: &str, b: &str, tag: Option<&str>) -> Option<Winner> {
    let rules = &policy.conflict.fields;
    let key = format!("{a}~{b}");
    [Some(key.as_str()), Some(a), Some(b), tag]
        .into_iter()
        .flatten()
        .find_map(|k| rules.get(k).copied())
}

fn make_pair(
    policy: &SyncPolicy,
    a: FieldDef,
    b: FieldDef,
    dir: Direction,
    owner: Option<Side>,
) -> FieldPair {
    let kind = kind_of(&a, &b);
    let flows = SidePair::new(
        dir.allows(Side::A) && b.writable,
        dir.allows(Side::B) && a.writable,
    );
    let owner = owner.or_else(|| owner_of(policy, &a.name, &b.name, a.well_known.as_deref()));
    let rule = rule_of(policy, &a.name, &b.name, a.well_known.as_deref());
    FieldPair {
        key: format!("{}~{}", a.name, b.name),
        a,
        b,
        kind,
        flows,
        owner,
        rule,
    }
}

/// The canonical kind of a pair, from both definitions.
fn kind_of(a: &FieldDef, b: &FieldDef) -> CanonKind {
    let either = |f: &dyn Fn(&FieldDef) -> bool| f(a) || f(b);
    if either(&|d| d.is(wk::DND) || d.is(wk::CONSENT)) {
        CanonKind::Consent
    } else if either(&|d| d.is(wk::EMAIL) || d.kind == FieldType::Email) {
        CanonKind::Email
    } else if a.multi_value && b.multi_value {
        CanonKind::Set
    } else if either(&|d| d.is(wk::PHONE) || d.is(wk::MOBILE) || d.kind == FieldType::Phone) {
        CanonKind::Phone
    } else if either(&|d| d.kind == FieldType::Number || d.is(wk::LEAD_SCORE)) {
        CanonKind::Number
    } else if either(&|d| d.kind == FieldType::Boolean) {
        CanonKind::Bool
    } else if either(&|d| d.kind == FieldType::Datetime) {
        CanonKind::DateTime
    } else if either(&|d| d.kind == FieldType::LongText) {
        CanonKind::LongText
    } else {
        CanonKind::Text
    }
}

/// Choice values to labels, so that two apps' option ids compare by meaning.
fn labels_of(def: &FieldDef, raw: &Value) -> Value {
    if def.choices.is_empty() {
        return raw.clone();
    }
    let label = |s: &str| {
        def.choices
            .iter()
            .find(|c| c.value == s)
            .map_or_else(|| s.to_string(), |c| c.label.clone())
    };
    match raw {
        Value::Texts(items) => Value::Texts(items.iter().map(|s| label(s)).collect()),
        Value::Number(_) | Value::Text(_) => raw
            .as_text()
            .map_or(Value::Null, |s| Value::Text(label(&s))),
        other => other.clone(),
    }
}

/// Labels back to the target's choice values (case-insensitive).
fn choices_of(def: &FieldDef, canon: &Value) -> Value {
    if def.choices.is_empty() {
        return canon.clone();
    }
    let value = |s: &str| {
        let want = collapse_ws(s).to_lowercase();
        def.choices
            .iter()
            .find(|c| c.label.to_lowercase() == want || c.value.to_lowercase() == want)
            .map_or_else(|| s.to_string(), |c| c.value.clone())
    };
    match canon {
        Value::Texts(items) => Value::Texts(items.iter().map(|s| value(s)).collect()),
        Value::Text(s) => Value::Text(value(s)),
        other => other.clone(),
    }
}

/// Gives a canonical value the shape the target field takes.
fn shape_for(def: &FieldDef, v: Value) -> Value {
    match def.kind {
        FieldType::Number => match v.as_number() {
            Some(n) => Value::Number(n),
            None => v,
        },
        FieldType::Boolean => v.as_bool().map_or(v, Value::Bool),
        _ if def.multi_value => match v {
            Value::Texts(_) | Value::Null => v,
            other => other
                .as_text()
                .map_or(Value::Null, |s| Value::Texts(vec![s])),
        },
        _ => match v {
            Value::Texts(items) => Value::Text(items.join(", ")),
            Value::Text(_) | Value::Null => v,
            other => other.as_text().map_or(Value::Null, Value::Text),
        },
    }
}

/// Reads an app's consent field: a `dnd` flag, or a marketing status
/// (Freshmarketer `subscription_status`: 0 unsubscribed, 1 subscribed, 2 not
/// subscribed, 3 reported as spam, 4 bounced), by code or by label.
pub fn decode_consent(def: &FieldDef, raw: &Value) -> Option<Consent> {
    if raw.is_empty() {
        return None;
    }
    if def.is(wk::DND) {
        return raw.as_bool().map(|dnd| {
            if dnd {
                Consent::OptedOut
            } else {
                Consent::OptedIn
            }
        });
    }
    if let Value::Bool(given) = raw {
        return Some(if *given {
            Consent::OptedIn
        } else {
            Consent::OptedOut
        });
    }
    let labelled = labels_of(def, raw).as_text()?;
    let word = collapse_ws(&labelled).to_lowercase();
    if let Ok(code) = word.parse::<f64>() {
        return match code as i64 {
            0 | 3 | 4 => Some(Consent::OptedOut),
            1 | 2 => Some(Consent::OptedIn),
            _ => None,
        };
    }
    const OUT: &[&str] = &[
        "unsub",
        "bounce",
        "spam",
        "suppress",
        "opted-out",
        "opted out",
        "opt-out",
        "complain",
        "blocked",
        "dnd",
    ];
    const IN: &[&str] = &[
        "subscribed",
        "opted-in",
        "opted in",
        "pending",
        "transactional",
    ];
    if OUT.iter().any(|w| word.contains(w)) {
        Some(Consent::OptedOut)
    } else if IN.iter().any(|w| word.contains(w)) {
        Some(Consent::OptedIn)
    } else {
        None
    }
}

/// Writes consent in an app's terms: `dnd = true/false`, or the marketing
/// status meaning unsubscribed / subscribed.
pub fn encode_consent(def: &FieldDef, c: Consent) -> Value {
    if def.is(wk::DND) || def.kind == FieldType::Boolean {
        let dnd = c == Consent::OptedOut;
        return Value::Bool(if def.is(wk::DND) { dnd } else { !dnd });
    }
    let (word, code) = match c {
        Consent::OptedOut => ("unsubscribed", 0.0),
        Consent::OptedIn => ("subscribed", 1.0),
    };
    if !def.choices.is_empty() {
        let hit = def
            .choices
            .iter()
            .find(|ch| ch.label.to_lowercase() == word || ch.value.to_lowercase() == word)
            .or_else(|| {
                def.choices
                    .iter()
                    .find(|ch| ch.value == format!("{}", code as i64))
            });
        if let Some(ch) = hit {
            return Value::Text(ch.value.clone());
        }
    }
    match def.kind {
        FieldType::Number | FieldType::Choice => Value::Number(code),
        _ => Value::Text(word.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::policy::{EntityPair, FieldMapping};
    use crate::sync::source::Choice;

    fn fs_schema() -> Vec<FieldDef> {
        vec![
            FieldDef::new("email", FieldType::Email, Some("email")),
            FieldDef::new("first_name", FieldType::Text, Some("first-name")),
            FieldDef::new("mobile_number", FieldType::Phone, Some("mobile")),
            FieldDef::new("do_not_disturb", FieldType::Boolean, Some("dnd")),
            FieldDef::new("owner_id", FieldType::Reference, Some("owner")),
            FieldDef::new("cf_region", FieldType::Text, None),
        ]
    }

    fn fm_schema() -> Vec<FieldDef> {
        let mut status = FieldDef::new("subscription_status", FieldType::Number, Some("consent"));
        status.choices = vec![];
        vec![
            FieldDef::new("emails", FieldType::Email, Some("email")),
            FieldDef::new("first_name", FieldType::Text, Some("first-name")),
            FieldDef::new("mobile", FieldType::Phone, Some("mobile")),
            status,
            FieldDef::new("owner_id", FieldType::Reference, Some("owner")),
            FieldDef::new("region", FieldType::Text, None),
        ]
    }

    fn policy() -> SyncPolicy {
        SyncPolicy::new(
            "s",
            vec![EntityPair::new("contacts", "contacts")],
            Direction::TwoWay,
        )
    }

    fn keys(m: &ResolvedMapping) -> Vec<&str> {
        m.pairs.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn defaults_pair_by_meaning_and_leave_custom_fields_unmapped() {
        let m = resolve(
            &policy(),
            SidePair::new("contacts", "contacts"),
            &fs_schema(),
            &fm_schema(),
        )
        .unwrap();
        assert_eq!(
            keys(&m),
            [
                "email~emails",
                "first_name~first_name",
                "mobile_number~mobile",
                "do_not_disturb~subscription_status"
            ]
        );
        assert_eq!(m.email_pair().kind, CanonKind::Email);
        assert!(m.consent_pair().is_some());
    }

    /// What a listing keeps of a record when the sync has no rules: the paired fields,
    /// the consent field (paired or not) and the secondary e-mails; not the rest.
    #[test]
    fn the_fields_read_are_the_paired_consent_and_email_fields() {
        let mut p = policy();
        p.mapping.exclude = vec!["mobile".into(), "consent".into(), "dnd".into()];
        let mut fm = fm_schema();
        fm.push(FieldDef::new(
            "other_emails",
            FieldType::Email,
            Some("emails"),
        ));
        let m = resolve(&p, SidePair::new("c", "c"), &fs_schema(), &fm).unwrap();
        assert_eq!(keys(&m), ["email~emails", "first_name~first_name"]);
        let names = |side: Side| -> Vec<String> { m.read_fields(side).into_iter().collect() };
        assert_eq!(names(Side::A), ["do_not_disturb", "email", "first_name"]);
        assert_eq!(
            names(Side::B),
            [
                "emails",
                "first_name",
                "other_emails",
                "subscription_status"
            ]
        );
    }

    #[test]
    fn custom_pairs_and_exclusions_apply_but_email_is_always_mapped() {
        let mut p = policy();
        p.mapping.defaults = false;
        p.mapping.fields.push(FieldMapping {
            a: "cf_region".into(),
            b: "region".into(),
            direction: Some(Direction::AToB),
            owner: None,
        });
        let m = resolve(&p, SidePair::new("c", "c"), &fs_schema(), &fm_schema()).unwrap();
        assert_eq!(keys(&m), ["cf_region~region", "email~emails"]);
        assert_eq!(m.pairs[0].flows, SidePair::new(true, false));

        let mut p = policy();
        p.mapping.exclude = vec!["first-name".into(), "mobile".into()];
        let m = resolve(&p, SidePair::new("c", "c"), &fs_schema(), &fm_schema()).unwrap();
        assert_eq!(
            keys(&m),
            ["email~emails", "do_not_disturb~subscription_status"]
        );

        p.mapping.exclude = vec!["email".into()];
        assert_eq!(
            resolve(&p, SidePair::new("c", "c"), &fs_schema(), &fm_schema()),
            Err(MappingError::EmailExcluded)
        );
    }

    #[test]
    fn missing_email_or_unknown_field_is_a_clear_error() {
        let no_email: Vec<FieldDef> = fs_schema().into_iter().skip(1).collect();
        let err = resolve(
            &policy(),
            SidePair::new("leads", "c"),
            &no_email,
            &fm_schema(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("side A entity `leads`"), "{err}");
        let mut p = policy();
        p.mapping.fields.push(FieldMapping {
            a: "nope".into(),
            b: "region".into(),
            direction: None,
            owner: None,
        });
        let err = resolve(&p, SidePair::new("c", "c"), &fs_schema(), &fm_schema()).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }

    #[test]
    fn one_way_sync_and_read_only_fields_limit_flows() {
        let mut p = policy();
        p.direction = Direction::BToA;
        let mut fm = fm_schema();
        fm[1].writable = false;
        let m = resolve(&p, SidePair::new("c", "c"), &fs_schema(), &fm).unwrap();
        for pair in &m.pairs {
            assert!(!pair.flows.a, "{} must not flow A->B", pair.key);
            assert!(pair.flows.b);
        }
    }

    #[test]
    fn dnd_and_subscription_status_translate_both_ways() {
        let m = resolve(
            &policy(),
            SidePair::new("c", "c"),
            &fs_schema(),
            &fm_schema(),
        )
        .unwrap();
        let c = m.consent_pair().unwrap();
        let out = Consent::OptedOut.value();
        let inn = Consent::OptedIn.value();
        assert_eq!(c.to_canonical(Side::A, &Value::Bool(true)), out);
        assert_eq!(c.to_canonical(Side::A, &Value::Bool(false)), inn);
        for (code, want) in [
            (0.0, &out),
            (1.0, &inn),
            (2.0, &inn),
            (3.0, &out),
            (4.0, &out),
        ] {
            assert_eq!(
                &c.to_canonical(Side::B, &Value::Number(code)),
                want,
                "status {code}"
            );
        }
        assert_eq!(c.to_canonical(Side::B, &Value::Text("Bounced".into())), out);
        assert_eq!(c.from_canonical(Side::A, &out), Value::Bool(true));
        assert_eq!(c.from_canonical(Side::B, &out), Value::Number(0.0));
        assert_eq!(c.from_canonical(Side::B, &inn), Value::Number(1.0));
    }

    #[test]
    fn consent_choices_are_read_and_written_by_label() {
        let mut def = FieldDef::new("status", FieldType::Choice, Some("consent"));
        def.choices = vec![
            Choice {
                value: "s1".into(),
                label: "Subscribed".into(),
            },
            Choice {
                value: "u0".into(),
                label: "Unsubscribed".into(),
            },
            Choice {
                value: "b4".into(),
                label: "Bounced".into(),
            },
        ];
        assert_eq!(
            decode_consent(&def, &Value::Text("b4".into())),
            Some(Consent::OptedOut)
        );
        assert_eq!(
            decode_consent(&def, &Value::Text("s1".into())),
            Some(Consent::OptedIn)
        );
        assert_eq!(
            encode_consent(&def, Consent::OptedOut),
            Value::Text("u0".into())
        );
    }

    #[test]
    fn choices_compare_by_label_and_write_by_value() {
        let mut a = FieldDef::new("medium", FieldType::Choice, Some("medium"));
        a.choices = vec![Choice {
            value: "7".into(),
            label: "Web".into(),
        }];
        let b = FieldDef::new("medium", FieldType::Text, Some("medium"));
        let email = FieldDef::new("email", FieldType::Email, Some("email"));
        let m = resolve(
            &policy(),
            SidePair::new("c", "c"),
            &[email.clone(), a],
            &[email, b],
        )
        .unwrap();
        let p = &m.pairs[1];
        assert_eq!(
            p.to_canonical(Side::A, &Value::Text("7".into())),
            Value::Text("Web".into())
        );
        assert_eq!(
            p.from_canonical(Side::A, &Value::Text("web".into())),
            Value::Text("7".into())
        );
    }

    #[test]
    fn values_take_the_target_shape() {
        let n = FieldDef::new("score", FieldType::Number, None);
        assert_eq!(shape_for(&n, Value::Text("5".into())), Value::Number(5.0));
        let mut multi = FieldDef::new("tags", FieldType::Text, None);
        multi.multi_value = true;
        assert_eq!(
            shape_for(&multi, Value::Text("x".into())),
            Value::Texts(vec!["x".into()])
        );
    }
}
