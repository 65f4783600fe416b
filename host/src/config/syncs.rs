//! `[syncs.NAME]`: a sync between two connections and everything the engine takes.
//!
//! This module only reads the operator's file; the meaning of each setting (how
//! conflicts are decided, what a rule does) belongs to the sync engine.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::de::DeValue;

use super::error::Location;
use super::reader::{Cx, Item, Table};

/// One `[syncs.NAME]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// The sync's name (used by `tandem sync ... NAME`, in logs and in the state file).
    pub name: String,
    /// The connection on side A.
    pub a: String,
    /// The connection on side B.
    pub b: String,
    /// Mapper plugins applied in order to records on their way from one side to the other.
    pub mappers: Vec<String>,
    /// How often the daemon polls both sides.
    pub interval: Duration,
    /// Everything the engine's planner and executor take.
    pub settings: SyncSettings,
    /// Where the entry is.
    pub at: Location,
    pub(crate) refs: SyncRefs,
}

/// Where the references of a sync are written (for reference errors).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct SyncRefs {
    pub a: Option<(Location, super::KeyPath)>,
    pub b: Option<(Location, super::KeyPath)>,
    pub mappers: Vec<(Location, super::KeyPath)>,
}

/// The settings of a sync, as written by the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSettings {
    /// Which entities are synced.
    pub entities: Entities,
    /// Which way changes flow.
    pub direction: Direction,
    /// Which records of each side take part.
    pub scope: SidePair<Scope>,
    /// Create records that enter the scope after the initial sync.
    pub create_new: bool,
    /// How true conflicts are decided.
    pub conflict: ConflictConfig,
    /// Which fields are synced.
    pub fields: FieldsConfig,
    /// IF/THEN rules, in order.
    pub rules: Vec<Rule>,
    /// What happens to opted-out records.
    pub opt_outs: OptOuts,
    /// What happens to deleted records.
    pub deletes: SidePair<RemoveAction>,
    /// When a run halts instead of writing.
    pub breaker: Breaker,
}

/// A value per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SidePair<T> {
    /// Side A.
    pub a: T,
    /// Side B.
    pub b: T,
}

/// Entities of the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entities {
    /// Leads only (Freshsales Classic).
    Leads,
    /// Contacts only.
    Contacts,
    /// Leads and contacts.
    Both,
}

/// Which way changes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// A to B only.
    AToB,
    /// B to A only.
    BToA,
    /// Both ways.
    TwoWay,
}

/// The records of one side that take part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every record of the entities.
    #[default]
    All,
    /// Members of one list or group, by id or name.
    Container(String),
}

/// A side of the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SideName {
    /// Side A.
    A,
    /// Side B.
    B,
}

/// The conflict policy for true conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// A's value wins.
    AWins,
    /// B's value wins.
    BWins,
    /// The most recently updated record wins.
    MostRecent,
}

/// `[syncs.NAME.conflict]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictConfig {
    /// The default policy.
    pub policy: ConflictPolicy,
    /// Fields whose owner side always wins, keyed by A-side field name or well-known meaning.
    pub owners: BTreeMap<String, SideName>,
}

/// `[syncs.NAME.fields]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldsConfig {
    /// Pair fields of both sides by well-known meaning (email is always paired).
    pub defaults: bool,
    /// Custom pairs: A field name to B field name.
    pub map: BTreeMap<String, String>,
    /// Fields never synced (A-side names or well-known meanings).
    pub exclude: Vec<String>,
}

/// What happens on the other side to a synced record that opts out or is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoveAction {
    /// Leave it.
    #[default]
    Keep,
    /// Take it out of the synced list or group only.
    RemoveFromList,
    /// Delete it.
    Delete,
}

/// `[syncs.NAME.opt-outs]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptOuts {
    /// Leave records opted out on that side out of the sync.
    pub skip: SidePair<bool>,
    /// What the other side does when a synced record opts out on this side.
    pub on_opt_out: SidePair<RemoveAction>,
}

/// `[syncs.NAME.breaker]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breaker {
    /// Halt when a side lists nothing while the baseline has records.
    pub halt_on_empty_side: bool,
    /// Halt when planned deletes on a side exceed this share of linked records.
    pub max_delete_ratio: f64,
    /// Halt when planned overwrites on a side exceed this share of linked records.
    pub max_overwrite_ratio: f64,
    /// Halt when planned deletes on a side exceed this many records.
    pub max_deletes: u64,
}

/// One `[[syncs.NAME.rules]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// A label for logs.
    pub name: Option<String>,
    /// The flow it applies to; `None`: every flow of the sync.
    pub direction: Option<Direction>,
    /// Conditions that must all hold.
    pub conditions: Vec<Condition>,
    /// Actions applied to matching records on the target side.
    pub actions: Vec<Action>,
}

/// A condition on a field of the source record.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Field name or well-known meaning (`dnd`, `lead-score`, `owner`, `medium`, `cf_region`).
    pub field: String,
    /// The comparison.
    pub op: Op,
    /// The operand (none for `is-empty` / `is-set`).
    pub value: Option<RuleValue>,
}

/// Comparisons of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Text contains, or list has.
    Contains,
    /// Equal to one of a list.
    In,
    /// Empty or absent.
    IsEmpty,
    /// Not empty.
    IsSet,
}

/// A literal in a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleValue {
    /// Text.
    Text(String),
    /// A number.
    Number(f64),
    /// A flag.
    Bool(bool),
    /// A list of texts.
    Texts(Vec<String>),
}

/// An action of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Mark as Do Not Disturb.
    MarkDnd,
    /// Grant authority.
    GrantAuthority,
    /// Revoke authority.
    RevokeAuthority,
    /// Set the medium.
    SetMedium(String),
    /// Set a field.
    SetField(String, RuleValue),
    /// Do not sync the record.
    Skip,
}

/// Default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

const SYNC_KEYS: &[&str] = &[
    "a",
    "b",
    "entities",
    "direction",
    "scope",
    "create-new",
    "interval",
    "mappers",
    "conflict",
    "fields",
    "rules",
    "opt-outs",
    "deletes",
    "breaker",
];

pub(crate) fn read_syncs(cx: &mut Cx<'_>, section: Item<'_, '_>) -> Vec<SyncConfig> {
    let Some(mut t) = section.table(cx, &[]) else {
        return Vec::new();
    };
    t.entries()
        .into_iter()
        .filter_map(|(name, item)| read_sync(cx, name, item))
        .collect()
}

fn read_sync(cx: &mut Cx<'_>, name: &str, item: Item<'_, '_>) -> Option<SyncConfig> {
    let mut t = item.table(cx, SYNC_KEYS)?;
    let at = t.loc(cx);
    let mut refs = SyncRefs::default();
    let side = |cx: &mut Cx<'_>, t: &mut Table<'_, '_>, key: &str| {
        let i = t.require(
            cx,
            key,
            &format!(
                "name the connection on side {}: {key} = \"NAME\"",
                key.to_uppercase()
            ),
        )?;
        let conn = i.name(cx)?;
        Some((conn, (i.loc(cx), i.path.clone())))
    };
    let a = side(cx, &mut t, "a");
    let b = side(cx, &mut t, "b");
    let mut s = SyncSettings {
        entities: Entities::Contacts,
        direction: Direction::TwoWay,
        scope: SidePair::default(),
        create_new: true,
        conflict: ConflictConfig {
            policy: ConflictPolicy::MostRecent,
            owners: BTreeMap::new(),
        },
        fields: FieldsConfig {
            defaults: true,
            map: BTreeMap::new(),
            exclude: Vec::new(),
        },
        rules: Vec::new(),
        opt_outs: OptOuts {
            skip: SidePair { a: false, b: true },
            on_opt_out: SidePair::default(),
        },
        deletes: SidePair::default(),
        breaker: Breaker {
            halt_on_empty_side: true,
            max_delete_ratio: 0.1,
            max_overwrite_ratio: 0.5,
            max_deletes: 100,
        },
    };
    if let Some(i) = t.get("entities")
        && let Some(v) = i.choice(cx)
    {
        s.entities = v;
    }
    if let Some(i) = t.get("direction")
        && let Some(v) = i.choice(cx)
    {
        s.direction = v;
    }
    if let Some(i) = t.get("create-new")
        && let Some(v) = i.bool(cx)
    {
        s.create_new = v;
    }
    if let Some(i) = t.get("scope")
        && let Some(v) = read_scope(cx, &i)
    {
        s.scope = v;
    }
    let mut interval = DEFAULT_INTERVAL;
    if let Some(i) = t.get("interval") {
        match i.duration(cx) {
            Some(d) if d < Duration::from_secs(1) => {
                i.invalid::<()>(cx, "must be at least \"1s\"");
            }
            Some(d) => interval = d,
            None => {}
        }
    }
    let mut mappers = Vec::new();
    if let Some(i) = t.get("mappers") {
        for (m, item) in i.strings(cx).unwrap_or_default() {
            refs.mappers.push((item.loc(cx), item.path.clone()));
            mappers.push(m);
        }
    }
    if let Some(i) = t.get("conflict")
        && let Some(v) = read_conflict(cx, i)
    {
        s.conflict = v;
    }
    if let Some(i) = t.get("fields")
        && let Some(v) = read_fields(cx, i)
    {
        s.fields = v;
    }
    if let Some(i) = t.get("rules")
        && let Some(v) = read_rules(cx, i)
    {
        s.rules = v;
    }
    if let Some(i) = t.get("opt-outs")
        && let Some(v) = read_opt_outs(cx, i, s.opt_outs)
    {
        s.opt_outs = v;
    }
    if let Some(i) = t.get("deletes")
        && let Some(v) = read_deletes(cx, i)
    {
        s.deletes = v;
    }
    if let Some(i) = t.get("breaker")
        && let Some(v) = read_breaker(cx, i, s.breaker)
    {
        s.breaker = v;
    }
    t.finish(cx);
    let (a, a_ref) = a?;
    let (b, b_ref) = b?;
    refs.a = Some(a_ref);
    refs.b = Some(b_ref);
    // Settings that failed have been reported (so `load` fails) and keep their defaults;
    // the references are still checked in pass 2.
    Some(SyncConfig {
        name: name.to_owned(),
        a,
        b,
        mappers,
        interval,
        settings: s,
        at,
        refs,
    })
}

/// `scope = "all"`, or `scope = { a = "all", b = "Newsletter" }`.
fn read_scope(cx: &mut Cx<'_>, item: &Item<'_, '_>) -> Option<SidePair<Scope>> {
    let one = |cx: &mut Cx<'_>, i: &Item<'_, '_>| {
        let s = i.name(cx)?;
        Some(if s == "all" {
            Scope::All
        } else {
            Scope::Container(s)
        })
    };
    match item.value.get_ref() {
        DeValue::String(_) => {
            let s = item.str(cx)?;
            if s == "all" {
                Some(SidePair::default())
            } else {
                item.invalid(
                    cx,
                    format!("write scope = \"all\", or name the side: scope = {{ b = {s:?} }}"),
                )
            }
        }
        _ => {
            let mut t = item.table(cx, &["a", "b"])?;
            let a = t.get("a");
            let b = t.get("b");
            t.finish(cx);
            let a = a.map_or(Some(Scope::All), |i| one(cx, &i));
            let b = b.map_or(Some(Scope::All), |i| one(cx, &i));
            Some(SidePair { a: a?, b: b? })
        }
    }
}

fn read_conflict(cx: &mut Cx<'_>, item: Item<'_, '_>) -> Option<ConflictConfig> {
    let mut t = item.table(cx, &["policy", "owners"])?;
    let policy = t.get("policy");
    let owners = t.get("owners");
    t.finish(cx);
    let policy = match policy {
        Some(p) => p.choice(cx),
        None => Some(ConflictPolicy::MostRecent),
    };
    let mut map = BTreeMap::new();
    let mut ok = true;
    if let Some(o) = owners {
        match o.table(cx, &[]) {
            Some(mut ot) => {
                for (field, side) in ot.entries() {
                    match side.choice(cx) {
                        Some(s) => {
                            map.insert(field.to_owned(), s);
                        }
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(ConflictConfig {
        policy: policy?,
        owners: map,
    })
}

fn read_fields(cx: &mut Cx<'_>, item: Item<'_, '_>) -> Option<FieldsConfig> {
    let mut t = item.table(cx, &["defaults", "map", "exclude"])?;
    let defaults = t.get("defaults");
    let map = t.get("map");
    let exclude = t.get("exclude");
    t.finish(cx);
    let defaults = defaults.map_or(Some(true), |d| d.bool(cx));
    let mut pairs = BTreeMap::new();
    let mut ok = true;
    if let Some(m) = map {
        match m.table(cx, &[]) {
            Some(mut mt) => {
                for (a, b) in mt.entries() {
                    match b.name(cx) {
                        Some(b) => {
                            pairs.insert(a.to_owned(), b);
                        }
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    let exclude = match exclude {
        Some(e) => e
            .strings(cx)
            .map(|v| v.into_iter().map(|(s, _)| s).collect()),
        None => Some(Vec::new()),
    };
    if let Some(ex) = &exclude
        && ex.iter().any(|f| f == "email")
    {
        // Email is the match key: excluding it would make every record unmatchable.
        ok = false;
        cx.push(super::ConfigError::Invalid {
            at: item.loc(cx),
            key: item.path.key("exclude"),
            problem: "email is always synced (it is the match key); remove it from exclude".into(),
        });
    }
    ok.then_some(FieldsConfig {
        defaults: defaults?,
        map: pairs,
        exclude: exclude?,
    })
}

fn read_opt_outs(cx: &mut Cx<'_>, item: Item<'_, '_>, mut o: OptOuts) -> Option<OptOuts> {
    let mut t = item.table(cx, &["skip-a", "skip-b", "a-opted-out", "b-opted-out"])?;
    let mut ok = true;
    for (key, slot) in [("skip-a", &mut o.skip.a), ("skip-b", &mut o.skip.b)] {
        if let Some(i) = t.get(key) {
            match i.bool(cx) {
                Some(v) => *slot = v,
                None => ok = false,
            }
        }
    }
    for (key, slot) in [
        ("a-opted-out", &mut o.on_opt_out.a),
        ("b-opted-out", &mut o.on_opt_out.b),
    ] {
        if let Some(i) = t.get(key) {
            match i.choice(cx) {
                Some(v) => *slot = v,
                None => ok = false,
            }
        }
    }
    t.finish(cx);
    ok.then_some(o)
}

fn read_deletes(cx: &mut Cx<'_>, item: Item<'_, '_>) -> Option<SidePair<RemoveAction>> {
    let mut t = item.table(cx, &["a-deleted", "b-deleted"])?;
    let mut d = SidePair::<RemoveAction>::default();
    let mut ok = true;
    for (key, slot) in [("a-deleted", &mut d.a), ("b-deleted", &mut d.b)] {
        if let Some(i) = t.get(key) {
            match i.choice(cx) {
                Some(v) => *slot = v,
                None => ok = false,
            }
        }
    }
    t.finish(cx);
    ok.then_some(d)
}

fn read_breaker(cx: &mut Cx<'_>, item: Item<'_, '_>, mut b: Breaker) -> Option<Breaker> {
    let mut t = item.table(
        cx,
        &[
            "halt-on-empty-side",
            "max-delete-ratio",
            "max-overwrite-ratio",
            "max-deletes",
        ],
    )?;
    let mut ok = true;
    if let Some(i) = t.get("halt-on-empty-side") {
        ok &= i.bool(cx).map(|v| b.halt_on_empty_side = v).is_some();
    }
    for (key, slot) in [
        ("max-delete-ratio", &mut b.max_delete_ratio),
        ("max-overwrite-ratio", &mut b.max_overwrite_ratio),
    ] {
        if let Some(i) = t.get(key) {
            match i.f64(cx) {
                Some(v) if (0.0..=1.0).contains(&v) => *slot = v,
                Some(_) => {
                    ok &= i
                        .invalid::<()>(cx, "a share between 0 and 1, e.g. 0.1 for 10%")
                        .is_some()
                }
                None => ok = false,
            }
        }
    }
    if let Some(i) = t.get("max-deletes") {
        ok &= i.u64(cx).map(|v| b.max_deletes = v).is_some();
    }
    t.finish(cx);
    ok.then_some(b)
}

fn read_rules(cx: &mut Cx<'_>, item: Item<'_, '_>) -> Option<Vec<Rule>> {
    let items = item.array(cx)?;
    let mut out = Vec::new();
    let mut ok = true;
    for r in items {
        match read_rule(cx, r) {
            Some(rule) => out.push(rule),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_rule(cx: &mut Cx<'_>, item: Item<'_, '_>) -> Option<Rule> {
    let mut t = item.table(cx, &["name", "direction", "if", "then"])?;
    let name = t.get("name");
    let direction = t.get("direction");
    let conditions = t.get("if");
    let actions = t.get("then");
    t.finish(cx);
    if conditions.is_none() && actions.is_none() {
        return item.invalid(cx, "a rule needs `if` conditions, `then` actions, or both");
    }
    let name = match name {
        Some(n) => Some(n.name(cx)?),
        None => None,
    };
    let direction = match direction {
        Some(d) => Some(d.choice(cx)?),
        None => None,
    };
    let mut ok = true;
    let mut conds = Vec::new();
    for c in conditions.and_then(|c| c.array(cx)).unwrap_or_default() {
        match read_condition(cx, c) {
            Some(c) => conds.push(c),
            None => ok = false,
        }
    }
    let mut acts = Vec::new();
    for a in actions.and_then(|a| a.array(cx)).unwrap_or_default() {
        match read_action(cx, a) {
            Some(a) => acts.push(a),
            None => ok = false,
        }
    }
    ok.then_some(Rule {
        name,
        direction,
        conditions: conds,
        actions: acts,
    })
}

fn read_condition(cx: &mut Cx<'_>, item: Item<'_, '_>) -> Option<Condition> {
    let mut t = item.table(cx, &["field", "op", "value"])?;
    let field = t.require(cx, "field", "name the field: field = \"lead-score\"");
    let op = t.get("op");
    let value = t.get("value");
    t.finish(cx);
    let field = field?.name(cx);
    let op = match op {
        Some(o) => o.choice(cx)?,
        None => Op::Eq,
    };
    let needs_value = !matches!(op, Op::IsEmpty | Op::IsSet);
    let value = match (&value, needs_value) {
        (Some(v), true) => Some(read_rule_value(cx, v)?),
        (None, true) => {
            cx.push(super::ConfigError::Missing {
                at: item.loc(cx),
                key: item.path.key("value"),
                hint: "this comparison needs a value: value = ...".into(),
            });
            return None;
        }
        (Some(v), false) => return v.invalid(cx, "is-empty and is-set take no value; remove it"),
        (None, false) => None,
    };
    Some(Condition {
        field: field?,
        op,
        value,
    })
}

const ACTIONS: &[&str] = &[
    "mark-dnd",
    "grant-authority",
    "revoke-authority",
    "set-medium",
    "set-field",
    "skip",
];

fn read_action(cx: &mut Cx<'_>, item: Item<'_, '_>) -> Option<Action> {
    let mut t = item.table(cx, &["action", "field", "value"])?;
    let action = t.require(cx, "action", "name the action: action = \"set-field\"");
    let field = t.get("field");
    let value = t.get("value");
    t.finish(cx);
    let action = action?.one_of(cx, ACTIONS)?;
    let takes_field = action == "set-field";
    let takes_value = matches!(action, "set-field" | "set-medium");
    if let (Some(f), false) = (&field, takes_field) {
        return f.invalid(cx, format!("{action} takes no field; remove it"));
    }
    if let (Some(v), false) = (&value, takes_value) {
        return v.invalid(cx, format!("{action} takes no value; remove it"));
    }
    let need = |cx: &mut Cx<'_>, key: &str, i: &Option<Item<'_, '_>>| {
        if i.is_none() {
            cx.push(super::ConfigError::Missing {
                at: item.loc(cx),
                key: item.path.key(key),
                hint: format!("{action} needs {key} = ..."),
            });
        }
    };
    if takes_field {
        need(cx, "field", &field);
    }
    if takes_value {
        need(cx, "value", &value);
    }
    Some(match action {
        "mark-dnd" => Action::MarkDnd,
        "grant-authority" => Action::GrantAuthority,
        "revoke-authority" => Action::RevokeAuthority,
        "skip" => Action::Skip,
        "set-medium" => Action::SetMedium(value?.name(cx)?),
        _ => Action::SetField(field?.name(cx)?, read_rule_value(cx, &value?)?),
    })
}

fn read_rule_value(cx: &mut Cx<'_>, item: &Item<'_, '_>) -> Option<RuleValue> {
    match item.value.get_ref() {
        DeValue::String(s) => Some(RuleValue::Text(s.to_string())),
        DeValue::Boolean(b) => Some(RuleValue::Bool(*b)),
        DeValue::Integer(_) | DeValue::Float(_) => item.f64(cx).map(RuleValue::Number),
        DeValue::Array(_) => item
            .strings(cx)
            .map(|v| RuleValue::Texts(v.into_iter().map(|(s, _)| s).collect())),
        _ => item.wrong_type(cx, "text, a number, true/false or a list of texts"),
    }
}
