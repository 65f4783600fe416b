//! PieSync-style rules: IF conditions on the fields of a record flowing from
//! one side THEN actions on what is written to the other side. Pure: rules see
//! one record and its schema, and return the writes they add.
//!
//! A condition names a field by the app's field name or by well-known tag
//! (`dnd`, `lead-score`, `owner`, `medium`, `authority`...). `dnd` reads the
//! side's consent, whatever the app calls it: true means opted out.
//! Consent only tightens: `unmark-dnd` applies to records being created, never
//! to an existing opted-out record.

use serde::{Deserialize, Serialize};

use super::mapping::{ResolvedMapping, decode_consent, encode_consent};
use super::model::{Consent, Record, Side, Value, collapse_ws};
use super::source::FieldDef;

/// One IF/THEN rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Rule {
    /// A name for reports.
    pub name: String,
    /// The side whose records the conditions read; actions apply to what is
    /// written to the other side.
    pub from: Side,
    /// The condition; an empty `all` always holds.
    #[serde(default)]
    pub when: Condition,
    /// What to do when it holds, in order.
    pub then: Vec<Action>,
}

/// Why a rule's shape is wrong (one line each).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// No action.
    #[error("`then` is empty: give at least one action")]
    NoAction,
    /// A comparison without the value it compares with (the field is named).
    #[error("condition on `{0}` needs a `value`")]
    NoValue(String),
    /// `in-list` with a single value (the field is named).
    #[error("`in-list` on `{0}` needs a list value")]
    NotAList(String),
}

impl Rule {
    /// Checks the rule's shape.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.then.is_empty() {
            return Err(RuleError::NoAction);
        }
        for p in self.when.predicates() {
            let needs_value = !matches!(p.op, CompareOp::IsEmpty | CompareOp::NotEmpty);
            if needs_value && p.value.is_none() {
                return Err(RuleError::NoValue(p.field.clone()));
            }
            if p.op == CompareOp::InList && !matches!(p.value, Some(Value::Texts(_))) {
                return Err(RuleError::NotAList(p.field.clone()));
            }
        }
        Ok(())
    }
}

/// A combination of predicates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Every predicate holds.
    All(Vec<Predicate>),
    /// At least one predicate holds.
    Any(Vec<Predicate>),
}

impl Default for Condition {
    fn default() -> Self {
        Condition::All(Vec::new())
    }
}

impl Condition {
    fn predicates(&self) -> &[Predicate] {
        match self {
            Condition::All(p) | Condition::Any(p) => p,
        }
    }
}

/// One test on one field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Predicate {
    /// The app's field name or a well-known tag.
    pub field: String,
    /// How the field's value is compared.
    pub op: CompareOp,
    /// The operand (a list for `in-list`; none for `is-empty`/`not-empty`).
    #[serde(default)]
    pub value: Option<Value>,
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompareOp {
    /// Equal (text case-insensitively, numbers numerically).
    Eq,
    /// Not equal.
    Ne,
    /// Greater than (numbers, or text order).
    Gt,
    /// Less than.
    Lt,
    /// Text contains, or a list has the element.
    Contains,
    /// Empty or absent.
    IsEmpty,
    /// Present and not empty.
    NotEmpty,
    /// Equal to one of a list.
    InList,
}

/// What a rule does to the record written on the other side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Mark the record Do Not Disturb (opted out).
    MarkDnd,
    /// Unmark DND: only when the record is created (consent only tightens).
    UnmarkDnd,
    /// Set the `authority` field.
    GrantAuthority,
    /// Clear the `authority` field.
    RevokeAuthority,
    /// Set the `medium` field.
    SetMedium(String),
    /// Set a field, by the target app's field name or well-known tag.
    SetField {
        /// Field name or tag.
        field: String,
        /// The value written.
        value: Value,
    },
    /// Do not sync this record to the other side.
    Skip,
}

/// What the rules decided for one record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleOutcome {
    /// A rule said `skip`: its name.
    pub skip: Option<String>,
    /// Fields to write on the target (target field name, value), in rule order.
    pub writes: Vec<(String, Value)>,
    /// Explanations (rule name and what it did or could not do).
    pub notes: Vec<String>,
}

/// Evaluates every rule reading `from` against `record` and returns what they
/// add to the write on the other side. `creating` says whether the target
/// record is being created (the only time `unmark-dnd` applies).
pub fn evaluate(
    rules: &[Rule],
    from: Side,
    record: &Record,
    mapping: &ResolvedMapping,
    creating: bool,
) -> RuleOutcome {
    let mut out = RuleOutcome::default();
    let target = from.other();
    for rule in rules.iter().filter(|r| r.from == from) {
        if !holds(&rule.when, record, mapping, from) {
            continue;
        }
        for action in &rule.then {
            apply(rule, action, target, mapping, creating, &mut out);
        }
    }
    out
}

fn apply(
    rule: &Rule,
    action: &Action,
    target: Side,
    mapping: &ResolvedMapping,
    creating: bool,
    out: &mut RuleOutcome,
) {
    let schema = mapping.schema.get(target);
    let set = |tag_or_name: &str, v: Value, out: &mut RuleOutcome| match find(schema, tag_or_name) {
        Some(def) if def.writable => out.writes.push((def.name.clone(), v)),
        _ => out.notes.push(format!(
            "rule `{}`: side {target} has no writable `{tag_or_name}` field",
            rule.name
        )),
    };
    match action {
        Action::Skip => {
            if out.skip.is_none() {
                out.skip = Some(rule.name.clone());
            }
        }
        Action::MarkDnd | Action::UnmarkDnd => {
            let c = if *action == Action::MarkDnd {
                Consent::OptedOut
            } else {
                Consent::OptedIn
            };
            if c == Consent::OptedIn && !creating {
                out.notes.push(format!(
                    "rule `{}`: unmark-dnd not applied to an existing record (consent only tightens)",
                    rule.name
                ));
                return;
            }
            match mapping.consent.get(target) {
                Some(def) if def.writable => {
                    out.writes.push((def.name.clone(), encode_consent(def, c)))
                }
                _ => out.notes.push(format!(
                    "rule `{}`: side {target} has no writable consent field",
                    rule.name
                )),
            }
        }
        Action::GrantAuthority => set("authority", Value::Bool(true), out),
        Action::RevokeAuthority => set("authority", Value::Bool(false), out),
        Action::SetMedium(m) => set("medium", Value::Text(m.clone()), out),
        Action::SetField { field, value } => set(field, value.clone(), out),
    }
}

/// A field by exact name first, then by well-known tag.
fn find<'a>(schema: &'a [FieldDef], name: &str) -> Option<&'a FieldDef> {
    schema
        .iter()
        .find(|d| d.name == name)
        .or_else(|| schema.iter().find(|d| d.is(name)))
}

/// Whether a condition holds for a record of `side`.
pub fn holds(cond: &Condition, record: &Record, mapping: &ResolvedMapping, side: Side) -> bool {
    let test = |p: &Predicate| test(p, field_value(&p.field, record, mapping, side).as_ref());
    match cond {
        Condition::All(ps) => ps.iter().all(test),
        Condition::Any(ps) => ps.iter().any(test),
    }
}

/// The value a predicate reads: `dnd` is the side's consent as a flag.
fn field_value(
    name: &str,
    record: &Record,
    mapping: &ResolvedMapping,
    side: Side,
) -> Option<Value> {
    let schema = mapping.schema.get(side);
    if name == "dnd" && schema.iter().all(|d| d.name != "dnd") {
        let def = mapping.consent.get(side).as_ref()?;
        let raw = record.fields.get(&def.name)?;
        return Some(
            decode_consent(def, raw).map_or(Value::Null, |c| Value::Bool(c == Consent::OptedOut)),
        );
    }
    let field = find(schema, name).map_or(name, |d| d.name.as_str());
    record.fields.get(field).cloned()
}

fn test(p: &Predicate, actual: Option<&Value>) -> bool {
    let empty = actual.is_none_or(Value::is_empty);
    match p.op {
        CompareOp::IsEmpty => empty,
        CompareOp::NotEmpty => !empty,
        _ if empty => {
            matches!(p.op, CompareOp::Ne) && p.value.as_ref().is_some_and(|v| !v.is_empty())
        }
        CompareOp::Eq => p
            .value
            .as_ref()
            .is_some_and(|v| same(actual.unwrap_or(&Value::Null), v)),
        CompareOp::Ne => p
            .value
            .as_ref()
            .is_none_or(|v| !same(actual.unwrap_or(&Value::Null), v)),
        CompareOp::Gt | CompareOp::Lt => {
            let (Some(a), Some(v)) = (actual, p.value.as_ref()) else {
                return false;
            };
            let ord = match (a.as_number(), v.as_number()) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => a.as_text().zip(v.as_text()).map(|(x, y)| x.cmp(&y)),
            };
            ord == Some(if p.op == CompareOp::Gt {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            })
        }
        CompareOp::Contains => {
            let (Some(a), Some(v)) = (actual, p.value.as_ref().and_then(Value::as_text)) else {
                return false;
            };
            let needle = fold(&v);
            match a {
                Value::Texts(items) => items.iter().any(|s| fold(s) == needle),
                other => other.as_text().is_some_and(|s| fold(&s).contains(&needle)),
            }
        }
        CompareOp::InList => match &p.value {
            Some(Value::Texts(items)) => {
                let a = actual.unwrap_or(&Value::Null);
                items.iter().any(|s| same(a, &Value::Text(s.clone())))
            }
            _ => false,
        },
    }
}

fn fold(s: &str) -> String {
    collapse_ws(s).to_lowercase()
}

/// Equality across types: numbers numerically, flags as flags, text folded.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Bool(_), _) | (_, Value::Bool(_)) => {
            a.as_bool().is_some() && a.as_bool() == b.as_bool()
        }
        (Value::Number(_), _) | (_, Value::Number(_)) => {
            a.as_number().is_some() && a.as_number() == b.as_number()
        }
        (Value::Texts(x), Value::Texts(y)) => {
            let mut x: Vec<String> = x.iter().map(|s| fold(s)).collect();
            let mut y: Vec<String> = y.iter().map(|s| fold(s)).collect();
            x.sort();
            y.sort();
            x == y
        }
        _ => a.as_text().map(|s| fold(&s)) == b.as_text().map(|s| fold(&s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::mapping::resolve;
    use crate::sync::model::SidePair;
    use crate::sync::policy::{Direction, EntityPair, SyncPolicy};
    use crate::sync::source::FieldType;

    fn mapping() -> ResolvedMapping {
        let fs = vec![
            FieldDef::new("email", FieldType::Email, Some("email")),
            FieldDef::new("do_not_disturb", FieldType::Boolean, Some("dnd")),
            FieldDef::new("lead_score", FieldType::Number, Some("lead-score")),
            FieldDef::new("medium", FieldType::Text, Some("medium")),
            FieldDef::new("has_authority", FieldType::Boolean, Some("authority")),
            FieldDef::new("owner_id", FieldType::Reference, Some("owner")),
            FieldDef::new("cf_tier", FieldType::Text, None),
        ];
        let gc = vec![
            FieldDef::new("emailAddresses", FieldType::Email, Some("email")),
            FieldDef::new("memberships", FieldType::MultiChoice, Some("tags")),
        ];
        let p = SyncPolicy::new(
            "s",
            vec![EntityPair::new("contacts", "people")],
            Direction::TwoWay,
        );
        resolve(&p, SidePair::new("contacts", "people"), &fs, &gc).unwrap()
    }

    fn rec(fields: &[(&str, Value)]) -> Record {
        Record {
            id: "1".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Record::default()
        }
    }

    fn pred(field: &str, op: CompareOp, value: Option<Value>) -> Predicate {
        Predicate {
            field: field.into(),
            op,
            value,
        }
    }

    #[test]
    fn every_comparison_reads_tags_and_names() {
        let m = mapping();
        let r = rec(&[
            ("do_not_disturb", Value::Bool(true)),
            ("lead_score", Value::Number(75.0)),
            ("medium", Value::Text("Web Form".into())),
            ("owner_id", Value::Text("17".into())),
            ("cf_tier", Value::Text("Gold".into())),
        ]);
        let cases = [
            (pred("dnd", CompareOp::Eq, Some(Value::Bool(true))), true),
            (
                pred("lead-score", CompareOp::Gt, Some(Value::Number(50.0))),
                true,
            ),
            (
                pred("lead-score", CompareOp::Lt, Some(Value::Number(50.0))),
                false,
            ),
            (
                pred("owner", CompareOp::Eq, Some(Value::Text("17".into()))),
                true,
            ),
            (
                pred(
                    "medium",
                    CompareOp::Contains,
                    Some(Value::Text("web".into())),
                ),
                true,
            ),
            (
                pred(
                    "medium",
                    CompareOp::Ne,
                    Some(Value::Text("web form".into())),
                ),
                false,
            ),
            (pred("authority", CompareOp::IsEmpty, None), true),
            (pred("cf_tier", CompareOp::NotEmpty, None), true),
            (
                pred(
                    "cf_tier",
                    CompareOp::InList,
                    Some(Value::Texts(vec!["silver".into(), "gold".into()])),
                ),
                true,
            ),
            (
                pred(
                    "cf_tier",
                    CompareOp::InList,
                    Some(Value::Texts(vec!["silver".into()])),
                ),
                false,
            ),
            (
                pred("authority", CompareOp::Ne, Some(Value::Bool(true))),
                true,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(
                holds(&Condition::All(vec![p.clone()]), &r, &m, Side::A),
                want,
                "{p:?}"
            );
        }
        let any = Condition::Any(vec![
            pred("cf_tier", CompareOp::Eq, Some(Value::Text("none".into()))),
            pred("dnd", CompareOp::Eq, Some(Value::Bool(true))),
        ]);
        assert!(holds(&any, &r, &m, Side::A));
        let all = Condition::All(vec![
            pred("cf_tier", CompareOp::Eq, Some(Value::Text("none".into()))),
            pred("dnd", CompareOp::Eq, Some(Value::Bool(true))),
        ]);
        assert!(!holds(&all, &r, &m, Side::A));
    }

    #[test]
    fn actions_write_on_the_target_side() {
        let m = mapping();
        let rules = vec![Rule {
            name: "hot".into(),
            from: Side::B,
            when: Condition::All(vec![]),
            then: vec![
                Action::MarkDnd,
                Action::GrantAuthority,
                Action::SetMedium("google".into()),
                Action::SetField {
                    field: "cf_tier".into(),
                    value: Value::Text("Gold".into()),
                },
            ],
        }];
        let out = evaluate(&rules, Side::B, &rec(&[]), &m, false);
        assert_eq!(
            out.writes,
            vec![
                ("do_not_disturb".into(), Value::Bool(true)),
                ("has_authority".into(), Value::Bool(true)),
                ("medium".into(), Value::Text("google".into())),
                ("cf_tier".into(), Value::Text("Gold".into())),
            ]
        );
        assert!(
            evaluate(&rules, Side::A, &rec(&[]), &m, false)
                .writes
                .is_empty()
        );
    }

    #[test]
    fn unmark_dnd_only_on_create_and_skip_is_reported() {
        let m = mapping();
        let rules = vec![Rule {
            name: "r".into(),
            from: Side::B,
            when: Condition::default(),
            then: vec![Action::UnmarkDnd, Action::RevokeAuthority, Action::Skip],
        }];
        let existing = evaluate(&rules, Side::B, &rec(&[]), &m, false);
        assert_eq!(
            existing.writes,
            vec![("has_authority".into(), Value::Bool(false))]
        );
        assert!(existing.notes[0].contains("consent only tightens"));
        assert_eq!(existing.skip.as_deref(), Some("r"));
        let created = evaluate(&rules, Side::B, &rec(&[]), &m, true);
        assert_eq!(
            created.writes[0],
            ("do_not_disturb".into(), Value::Bool(false))
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let r = Rule {
            name: "r".into(),
            from: Side::A,
            when: Condition::All(vec![pred(
                "x",
                CompareOp::InList,
                Some(Value::Text("a".into())),
            )]),
            then: vec![Action::Skip],
        };
        assert!(r.validate().unwrap_err().to_string().contains("in-list"));
    }
}
