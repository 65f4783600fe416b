//! `[syncs.NAME]`: a sync between two connections, read into the engine's
//! [`SyncPolicy`](crate::sync::policy::SyncPolicy).
//!
//! The table mirrors the policy's own shape (same kebab-case names), so the engine's
//! documentation of each setting applies here word for word; the config adds the two
//! connection names, the poll `interval`, an `entities` shorthand and human durations.
//! Fixed sets of values (directions, winners, actions...) are read with the engine's own
//! `serde` impls, so they are written once, in `sync::policy` and `sync::rules`.
//! After reading, [`SyncPolicy::validate`] checks what only the whole policy can tell.

use std::time::Duration;

use toml::de::DeValue;

use super::error::{ConfigError, KeyPath, Location};
use super::reader::{Item, Reader, Table};
use crate::sync::model::{Side, SidePair, Value};
use crate::sync::policy::{
    BreakerThresholds, ConflictPolicy, CreateOptions, DeleteOptions, Direction, EntityPair,
    FieldMapping, LeaveAction, LoopDetector, MappingConfig, OptOutOptions, ReadLimits,
    RemoveAction, RetryPolicy, Scope, SyncPolicy,
};
use crate::sync::rules::{Action, CompareOp, Condition, Predicate, Rule};

/// One `[syncs.NAME]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// The sync's name (`tandem sync ... NAME`, logs, the state file's keys).
    pub name: String,
    /// The connection on side A.
    pub a: String,
    /// The connection on side B.
    pub b: String,
    /// How often the daemon polls both sides.
    pub interval: Duration,
    /// How often the daemon lists both sides in full instead of reading changes since
    /// the cursors: list exits, hard deletes and anything a change feed cannot show.
    pub full_every: Duration,
    /// What the engine plans and executes by (`policy.mappers` names mapper plugins).
    pub policy: SyncPolicy,
    /// Settings of each mapper in this sync (`mapper-settings.PLUGIN`), read by the
    /// mapper through the `config` interface: one build serves every tenant's region.
    pub mapper_settings:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// Where the entry is.
    pub at: Location,
    pub(crate) refs: SyncRefs,
}

/// Where the references of a sync are written (for reference errors in pass 2).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct SyncRefs {
    pub a: Option<(Location, KeyPath)>,
    pub b: Option<(Location, KeyPath)>,
    pub mappers: Vec<(Location, KeyPath)>,
    /// Per mapper with settings: where each value is, and its table.
    pub mapper_settings: std::collections::BTreeMap<
        String,
        (std::collections::BTreeMap<String, Location>, Location),
    >,
}

/// The default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// The default time between full listings: a day, since change feeds miss list exits
/// (Freshworks lists, Google groups) and permanent deletes (docs/freshworks-api.md §11.2).
pub const DEFAULT_FULL_EVERY: Duration = Duration::from_secs(24 * 3600);

const SYNC_KEYS: &[&str] = &[
    "a",
    "b",
    "interval",
    "full-every",
    "entities",
    "direction",
    "scope",
    "conflict",
    "mapping",
    "mappers",
    "mapper-settings",
    "rules",
    "opt-out",
    "deletes",
    "create",
    "one-way-edits",
    "breaker",
    "retry",
    "loops",
    "limits",
];

/// `entities` shorthands: the CRM side's entities, each paired with B's `contacts`.
const ENTITY_SHORTHANDS: &[&str] = &["contacts", "leads", "both"];

pub(crate) fn read_syncs(cx: &mut Reader<'_>, section: Item<'_, '_>) -> Vec<SyncConfig> {
    let Some(mut t) = section.table(cx, &[]) else {
        return Vec::new();
    };
    t.entries()
        .into_iter()
        .filter_map(|(name, item)| read_sync(cx, name, item))
        .collect()
}

/// Reads one sync. Settings that fail are reported and keep their defaults (the load
/// fails anyway); the sync is still returned so pass 2 checks its references.
fn read_sync(cx: &mut Reader<'_>, name: &str, item: Item<'_, '_>) -> Option<SyncConfig> {
    let mut t = item.table(cx, SYNC_KEYS)?;
    let at = t.loc(cx);
    let errors_before = cx.errors.len();
    let mut refs = SyncRefs::default();
    let a = read_side_ref(cx, &mut t, "a");
    let b = read_side_ref(cx, &mut t, "b");
    let entities = match t.require(
        cx,
        "entities",
        "say what is synced: entities = \"contacts\", \"leads\" or \"both\"",
    ) {
        Some(i) => read_entities(cx, &i).unwrap_or_default(),
        None => Vec::new(),
    };
    let direction = t
        .require(
            cx,
            "direction",
            "say which way changes flow: direction = \"two-way\", \"a-to-b\" or \"b-to-a\"",
        )
        .and_then(|i| i.choice(cx))
        .unwrap_or(Direction::TwoWay);
    let mut p = SyncPolicy::new(name, entities, direction);
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
    let mut full_every = DEFAULT_FULL_EVERY;
    if let Some(i) = t.get("full-every") {
        match i.duration(cx) {
            Some(d) if d < Duration::from_secs(1) => {
                i.invalid::<()>(cx, "must be at least \"1s\"");
            }
            Some(d) => full_every = d,
            None => {}
        }
    }
    if let Some(i) = t.get("scope")
        && let Some((v, leave)) = read_scope(cx, &i)
    {
        p.scope = v;
        p.on_leave = leave;
    }
    if let Some(i) = t.get("conflict")
        && let Some(v) = read_conflict(cx, &i)
    {
        p.conflict = v;
    }
    if let Some(i) = t.get("mapping")
        && let Some(v) = read_mapping(cx, &i)
    {
        p.mapping = v;
    }
    if let Some(i) = t.get("mappers") {
        for (m, item) in i.strings(cx).unwrap_or_default() {
            refs.mappers.push((item.loc(cx), item.path.clone()));
            p.mappers.push(m);
        }
    }
    let mut mapper_settings = std::collections::BTreeMap::new();
    if let Some(i) = t.get("mapper-settings")
        && let Some(mut table) = i.table(cx, &[])
    {
        for (mapper, item) in table.entries() {
            if !p.mappers.iter().any(|m| m == mapper) {
                cx.push(ConfigError::UnknownKey {
                    at: item.loc(cx),
                    key: item.path.clone(),
                    did_you_mean: super::error::closest(
                        mapper,
                        p.mappers.iter().map(String::as_str),
                    ),
                    expected: if p.mappers.is_empty() {
                        "none (list the mapper in mappers = [...] first)".to_owned()
                    } else {
                        p.mappers.join(", ")
                    },
                });
                continue;
            }
            let table_at = item.loc(cx);
            if let Some((values, at)) = super::connections::read_settings(cx, item) {
                refs.mapper_settings
                    .insert(mapper.to_owned(), (at, table_at));
                mapper_settings.insert(mapper.to_owned(), values);
            }
        }
    }
    if let Some(i) = t.get("rules") {
        p.rules = read_rules(cx, &i);
    }
    if let Some(i) = t.get("opt-out")
        && let Some(v) = read_opt_out(cx, &i)
    {
        p.opt_out = v;
    }
    if let Some(i) = t.get("deletes")
        && let Some(v) = read_deletes(cx, &i)
    {
        p.deletes = v;
    }
    if let Some(i) = t.get("create")
        && let Some(v) = read_create(cx, &i)
    {
        p.create = v;
    }
    if let Some(i) = t.get("one-way-edits")
        && let Some(v) = i.choice(cx)
    {
        p.one_way_edits = v;
    }
    if let Some(i) = t.get("breaker")
        && let Some(v) = read_breaker(cx, &i)
    {
        p.breaker = v;
    }
    if let Some(i) = t.get("retry")
        && let Some(v) = read_retry(cx, &i)
    {
        p.retry = v;
    }
    if let Some(i) = t.get("loops")
        && let Some(v) = read_loops(cx, &i)
    {
        p.loops = v;
    }
    if let Some(i) = t.get("limits")
        && let Some(v) = read_read_limits(cx, &i)
    {
        p.limits = v;
    }
    t.finish(cx);
    // Whole-policy checks only make sense once every setting read cleanly.
    if cx.errors.len() == errors_before
        && let Err(e) = p.validate()
    {
        cx.push(ConfigError::Invalid {
            at: at.clone(),
            key: item.path.clone(),
            problem: e.to_string(),
        });
    }
    let (a, a_ref) = a?;
    let (b, b_ref) = b?;
    refs.a = Some(a_ref);
    refs.b = Some(b_ref);
    Some(SyncConfig {
        name: name.to_owned(),
        a,
        b,
        interval,
        full_every,
        policy: p,
        mapper_settings,
        at,
        refs,
    })
}

fn read_side_ref(
    cx: &mut Reader<'_>,
    t: &mut Table<'_, '_>,
    key: &str,
) -> Option<(String, (Location, KeyPath))> {
    let hint = format!(
        "name the connection on side {}: {key} = \"NAME\"",
        key.to_uppercase()
    );
    let i = t.require(cx, key, &hint)?;
    let conn = i.name(cx)?;
    Some((conn, (i.loc(cx), i.path.clone())))
}

/// `"contacts"`, `"leads"`, `"both"`, or `[{ a = "leads", b = "contacts" }, ...]`.
fn read_entities(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<Vec<EntityPair>> {
    if let DeValue::String(_) = item.value.get_ref() {
        return Some(match item.one_of(cx, ENTITY_SHORTHANDS)? {
            "leads" => vec![EntityPair::new("leads", "contacts")],
            "both" => vec![
                EntityPair::new("leads", "contacts"),
                EntityPair::new("contacts", "contacts"),
            ],
            _ => vec![EntityPair::new("contacts", "contacts")],
        });
    }
    let mut out = Vec::new();
    for e in item.array(cx)? {
        let Some(mut t) = e.table(cx, &["a", "b", "create-a", "create-b"]) else {
            continue;
        };
        let a = t.require(cx, "a", "the entity on side A: a = \"leads\"");
        let b = t.require(cx, "b", "the entity on side B: b = \"contacts\"");
        let create_a = t.get("create-a");
        let create_b = t.get("create-b");
        t.finish(cx);
        let (Some(a), Some(b)) = (a.and_then(|i| i.name(cx)), b.and_then(|i| i.name(cx))) else {
            continue;
        };
        let mut pair = EntityPair::new(&a, &b);
        pair.create_a = create_a.and_then(|i| i.bool(cx));
        pair.create_b = create_b.and_then(|i| i.bool(cx));
        out.push(pair);
    }
    Some(out)
}

/// `scope = "all"`, or per side: `scope = { b = "Newsletter" }` (`"all"` or a container),
/// with what happens when a record leaves a side's list: `on-leave = "remove-from-list"`
/// (both sides) or `on-leave = { b = "unsubscribe" }`.
fn read_scope(
    cx: &mut Reader<'_>,
    item: &Item<'_, '_>,
) -> Option<(SidePair<Scope>, SidePair<LeaveAction>)> {
    if let DeValue::String(s) = item.value.get_ref() {
        if s == "all" {
            return Some((SidePair::default(), SidePair::default()));
        }
        return item.invalid(
            cx,
            format!("write scope = \"all\", or name the side: scope = {{ b = {s:?} }}"),
        );
    }
    let mut t = item.table(cx, &["a", "b", "on-leave"])?;
    let a = t.get("a");
    let b = t.get("b");
    let leave = t.get("on-leave");
    t.finish(cx);
    let scope = |cx: &mut Reader<'_>, i: Option<Item<'_, '_>>| {
        i.and_then(|i| i.name(cx))
            .map(|s| {
                if s == "all" {
                    Scope::All
                } else {
                    Scope::Container(s)
                }
            })
            .unwrap_or_default()
    };
    let scopes = SidePair::new(scope(cx, a), scope(cx, b));
    let leave = match leave {
        None => SidePair::default(),
        Some(i) => match i.value.get_ref() {
            DeValue::String(_) => SidePair::both(i.choice::<LeaveAction>(cx).unwrap_or_default()),
            _ => {
                let pair = read_side_pair(cx, &i, |cx, i| i.choice::<LeaveAction>(cx))
                    .unwrap_or_else(|| SidePair::new(None, None));
                SidePair::new(pair.a.unwrap_or_default(), pair.b.unwrap_or_default())
            }
        },
    };
    Some((scopes, leave))
}

/// A `{ a = ..., b = ... }` table, either key optional.
fn read_side_pair<T>(
    cx: &mut Reader<'_>,
    item: &Item<'_, '_>,
    read: impl Fn(&mut Reader<'_>, &Item<'_, '_>) -> Option<T>,
) -> Option<SidePair<Option<T>>> {
    let mut t = item.table(cx, &["a", "b"])?;
    let a = t.get("a");
    let b = t.get("b");
    t.finish(cx);
    Some(SidePair::new(
        a.and_then(|i| read(cx, &i)),
        b.and_then(|i| read(cx, &i)),
    ))
}

fn read_conflict(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<ConflictPolicy> {
    let mut t = item.table(cx, &["winner", "owners", "fields", "skew", "fallback"])?;
    let mut c = ConflictPolicy::default();
    if let Some(v) = t.get("winner").and_then(|i| i.choice(cx)) {
        c.winner = v;
    }
    if let Some(i) = t.get("skew")
        && let Some(d) = i.duration(cx)
    {
        c.skew_seconds = u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    }
    if let Some(v) = t.get("fallback").and_then(|i| i.choice::<Side>(cx)) {
        c.fallback = v;
    }
    if let Some(i) = t.get("owners")
        && let Some(mut owners) = i.table(cx, &[])
    {
        for (field, side) in owners.entries() {
            if let Some(s) = side.choice::<Side>(cx) {
                c.owners.insert(field.to_owned(), s);
            }
        }
    }
    if let Some(i) = t.get("fields")
        && let Some(mut rules) = i.table(cx, &[])
    {
        for (field, rule) in rules.entries() {
            if c.owners.contains_key(field) {
                rule.invalid::<()>(
                    cx,
                    format!(
                        "`{field}` has an owner in conflict.owners already; keep one of the two"
                    ),
                );
            } else if let Some(r) = rule.choice(cx) {
                c.fields.insert(field.to_owned(), r);
            }
        }
    }
    t.finish(cx);
    Some(c)
}

fn read_mapping(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<MappingConfig> {
    let mut t = item.table(cx, &["defaults", "exclude", "fields"])?;
    let mut m = MappingConfig::default();
    if let Some(v) = t.get("defaults").and_then(|i| i.bool(cx)) {
        m.defaults = v;
    }
    if let Some(i) = t.get("exclude") {
        for (field, f) in i.strings(cx).unwrap_or_default() {
            if field == "email" {
                // Email is the match key: without it nothing could be linked.
                f.invalid::<()>(
                    cx,
                    "email is always synced (it is the match key); remove it from exclude",
                );
            } else {
                m.exclude.push(field);
            }
        }
    }
    if let Some(i) = t.get("fields") {
        for f in i.array(cx).unwrap_or_default() {
            if let Some(pair) = read_field_mapping(cx, &f) {
                m.fields.push(pair);
            }
        }
    }
    t.finish(cx);
    Some(m)
}

fn read_field_mapping(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<FieldMapping> {
    let mut t = item.table(cx, &["a", "b", "direction", "owner"])?;
    let a = t.require(cx, "a", "the field on side A: a = \"cf_plan\"");
    let b = t.require(cx, "b", "the field on side B: b = \"plan\"");
    let direction = t.get("direction");
    let owner = t.get("owner");
    t.finish(cx);
    let a = a.and_then(|i| i.name(cx));
    let b = b.and_then(|i| i.name(cx));
    let direction = direction.and_then(|i| i.choice(cx));
    let owner = owner.and_then(|i| i.choice(cx));
    Some(FieldMapping {
        a: a?,
        b: b?,
        direction,
        owner,
    })
}

fn read_opt_out(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<OptOutOptions> {
    let mut t = item.table(cx, &["exclude", "on-opt-out"])?;
    let mut o = OptOutOptions::default();
    if let Some(i) = t.get("exclude")
        && let Some(pair) = read_side_pair(cx, &i, |cx, i| i.bool(cx))
    {
        o.exclude = pair;
    }
    if let Some(i) = t.get("on-opt-out")
        && let Some(pair) = read_side_pair(cx, &i, |cx, i| i.choice::<RemoveAction>(cx))
    {
        o.on_opt_out = SidePair::new(pair.a.unwrap_or_default(), pair.b.unwrap_or_default());
    }
    t.finish(cx);
    Some(o)
}

fn read_deletes(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<DeleteOptions> {
    let mut t = item.table(cx, &["on-delete", "tombstone-retention-days"])?;
    let mut d = DeleteOptions::default();
    if let Some(i) = t.get("on-delete")
        && let Some(pair) = read_side_pair(cx, &i, |cx, i| i.choice::<RemoveAction>(cx))
    {
        d.on_delete = SidePair::new(pair.a.unwrap_or_default(), pair.b.unwrap_or_default());
    }
    if let Some(i) = t.get("tombstone-retention-days")
        && let Some(v) = i.u64(cx)
    {
        match u32::try_from(v) {
            Ok(n @ 1..=3650) => d.tombstone_retention_days = n,
            _ => {
                i.invalid::<()>(cx, "a number of days from 1 to 3650, e.g. 30");
            }
        }
    }
    t.finish(cx);
    Some(d)
}

fn read_create(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<CreateOptions> {
    let pair = read_side_pair(cx, item, |cx, i| i.bool(cx))?;
    let d = CreateOptions::default();
    Some(CreateOptions {
        a: pair.a.unwrap_or(d.a),
        b: pair.b.unwrap_or(d.b),
    })
}

fn read_breaker(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<BreakerThresholds> {
    let mut t = item.table(
        cx,
        &[
            "side-empty",
            "max-delete-ratio",
            "max-overwrite-ratio",
            "min-linked",
            "max-deletes",
            "max-overwrites",
        ],
    )?;
    let mut b = BreakerThresholds::default();
    if let Some(v) = t.get("side-empty").and_then(|i| i.bool(cx)) {
        b.side_empty = v;
    }
    for (key, slot) in [
        ("max-delete-ratio", &mut b.max_delete_ratio),
        ("max-overwrite-ratio", &mut b.max_overwrite_ratio),
    ] {
        if let Some(i) = t.get(key) {
            match i.f64(cx) {
                Some(v) if (0.0..=1.0).contains(&v) => *slot = v,
                Some(_) => {
                    i.invalid::<()>(cx, "a share between 0 and 1, e.g. 0.1 for 10%");
                }
                None => {}
            }
        }
    }
    if let Some(v) = t.get("min-linked").and_then(|i| i.u64(cx)) {
        b.min_linked = usize::try_from(v).unwrap_or(usize::MAX);
    }
    if let Some(v) = t.get("max-deletes").and_then(|i| i.u64(cx)) {
        b.max_deletes = Some(usize::try_from(v).unwrap_or(usize::MAX));
    }
    if let Some(v) = t.get("max-overwrites").and_then(|i| i.u64(cx)) {
        b.max_overwrites = Some(usize::try_from(v).unwrap_or(usize::MAX));
    }
    t.finish(cx);
    Some(b)
}

fn read_retry(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<RetryPolicy> {
    let mut t = item.table(cx, &["max-attempts", "base-delay", "max-delay"])?;
    let mut r = RetryPolicy::default();
    if let Some(i) = t.get("max-attempts")
        && let Some(v) = i.u64(cx)
    {
        match u32::try_from(v) {
            Ok(n) if n > 0 => r.max_attempts = n,
            _ => {
                i.invalid::<()>(cx, "a whole number from 1 up");
            }
        }
    }
    if let Some(d) = t.get("base-delay").and_then(|i| i.duration(cx)) {
        r.base_delay_seconds = d.as_secs();
    }
    if let Some(d) = t.get("max-delay").and_then(|i| i.duration(cx)) {
        r.max_delay_seconds = d.as_secs();
    }
    t.finish(cx);
    Some(r)
}

/// `[syncs.NAME.limits]`: what one run may read (records, sizes, time, cursor size).
fn read_read_limits(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<ReadLimits> {
    let mut t = item.table(
        cx,
        &[
            "listing-records",
            "listing-size",
            "run-records",
            "run-size",
            "read-time",
            "cursor-size",
        ],
    )?;
    let mut l = ReadLimits::default();
    for (key, slot) in [
        ("listing-records", &mut l.listing_records),
        ("run-records", &mut l.run_records),
    ] {
        if let Some(i) = t.get(key) {
            match i.u64(cx) {
                Some(0) => {
                    i.invalid::<()>(cx, "a whole number from 1 up");
                }
                Some(v) => *slot = v,
                None => {}
            }
        }
    }
    for (key, slot) in [
        ("listing-size", &mut l.listing_bytes),
        ("run-size", &mut l.run_bytes),
        ("cursor-size", &mut l.cursor_bytes),
    ] {
        if let Some(i) = t.get(key) {
            match i.size(cx) {
                Some(0) => {
                    i.invalid::<()>(cx, "must be greater than 0");
                }
                Some(v) => *slot = v,
                None => {}
            }
        }
    }
    if let Some(i) = t.get("read-time") {
        match i.duration(cx) {
            Some(d) if d < Duration::from_secs(1) => {
                i.invalid::<()>(cx, "must be at least \"1s\"");
            }
            Some(d) => l.read_seconds = d.as_secs(),
            None => {}
        }
    }
    t.finish(cx);
    Some(l)
}

fn read_loops(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<LoopDetector> {
    let mut t = item.table(cx, &["max-writes", "window", "alternation"])?;
    let mut l = LoopDetector::default();
    let max = crate::sync::baseline::Review::MAX_WRITES as u64 - 1;
    if let Some(i) = t.get("max-writes")
        && let Some(v) = i.u64(cx)
    {
        match v {
            1.. if v <= max => l.max_writes = v as u32,
            _ => {
                i.invalid::<()>(cx, format!("a whole number from 1 to {max}"));
            }
        }
    }
    if let Some(i) = t.get("window")
        && let Some(v) = i.u64(cx)
    {
        match u32::try_from(v) {
            Ok(n) if n > 0 => l.window = n,
            _ => {
                i.invalid::<()>(cx, "a number of runs, from 1 up");
            }
        }
    }
    if let Some(v) = t.get("alternation").and_then(|i| i.bool(cx)) {
        l.alternation = v;
    }
    t.finish(cx);
    Some(l)
}

fn read_rules(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Vec<Rule> {
    item.array(cx)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| read_rule(cx, &r))
        .collect()
}

/// `{ name, from = "a" | "b", when = { all | any = [predicates] }, then = [actions] }`.
fn read_rule(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<Rule> {
    let mut t = item.table(cx, &["name", "from", "when", "then"])?;
    let name = t.require(
        cx,
        "name",
        "name the rule for the logs: name = \"hot leads\"",
    );
    let from = t.require(
        cx,
        "from",
        "say whose records the rule reads: from = \"a\" or \"b\"",
    );
    let when = t.get("when");
    let then = t.require(
        cx,
        "then",
        "give at least one action: then = [\"mark-dnd\"] or then = [{ set-medium = \"Google\" }]",
    );
    t.finish(cx);
    let name = name.and_then(|i| i.name(cx));
    let from = from.and_then(|i| i.choice::<Side>(cx));
    let when = match when {
        Some(w) => read_condition(cx, &w),
        None => Some(Condition::default()),
    };
    let then = then.and_then(|i| {
        let items = i.array(cx)?;
        if items.is_empty() {
            return i.invalid(cx, "give at least one action");
        }
        let actions: Vec<Action> = items.iter().filter_map(|a| read_action(cx, a)).collect();
        (actions.len() == items.len()).then_some(actions)
    });
    Some(Rule {
        name: name?,
        from: from?,
        when: when?,
        then: then?,
    })
}

/// `{ all = [...] }` or `{ any = [...] }`.
fn read_condition(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<Condition> {
    let mut t = item.table(cx, &["all", "any"])?;
    let all = t.get("all");
    let any = t.get("any");
    t.finish(cx);
    let (list, make): (Item<'_, '_>, fn(Vec<Predicate>) -> Condition) = match (all, any) {
        (Some(a), None) => (a, Condition::All),
        (None, Some(a)) => (a, Condition::Any),
        (Some(_), Some(a)) => {
            return a.invalid(cx, "all and any are exclusive; nest them in two rules");
        }
        (None, None) => {
            return item.invalid(cx, "write when = { all = [...] } or when = { any = [...] }");
        }
    };
    let items = list.array(cx)?;
    let preds: Vec<Predicate> = items.iter().filter_map(|p| read_predicate(cx, p)).collect();
    (preds.len() == items.len()).then(|| make(preds))
}

fn read_predicate(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<Predicate> {
    let mut t = item.table(cx, &["field", "op", "value"])?;
    let field = t.require(cx, "field", "name the field: field = \"lead-score\"");
    let op = t.get("op");
    let value = t.get("value");
    t.finish(cx);
    let field = field.and_then(|i| i.name(cx))?;
    let op = match op {
        Some(o) => o.choice::<CompareOp>(cx)?,
        None => CompareOp::Eq,
    };
    let needs_value = !matches!(op, CompareOp::IsEmpty | CompareOp::NotEmpty);
    let value = match (value, needs_value) {
        (Some(v), true) => Some(read_value(cx, &v)?),
        (None, true) => {
            cx.push(ConfigError::Missing {
                at: item.loc(cx),
                key: item.path.key("value"),
                hint: "this comparison needs a value: value = ...".into(),
            });
            return None;
        }
        (Some(v), false) => {
            return v.invalid(cx, "is-empty and not-empty take no value; remove it");
        }
        (None, false) => None,
    };
    if op == CompareOp::InList && !matches!(value, Some(Value::Texts(_))) {
        return item.invalid(
            cx,
            "in-list needs a list: value = [\"Pro\", \"Enterprise\"]",
        );
    }
    Some(Predicate { field, op, value })
}

/// An action: `"mark-dnd"`, or a one-key table: `{ set-medium = "Google" }`,
/// `{ set-field = { field = "cf_x", value = 1 } }`. The names come from the engine's
/// [`Action`] (`serde`), so an unknown one lists them all.
fn read_action(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<Action> {
    if let DeValue::String(_) = item.value.get_ref() {
        let name = item.str(cx)?;
        return match name {
            "set-medium" | "set-field" => item.invalid(
                cx,
                format!("{name} takes a value: write {{ {name} = ... }} (see examples/demo.toml)"),
            ),
            _ => item.choice::<Action>(cx),
        };
    }
    let mut t = item.table(cx, &["set-medium", "set-field"])?;
    let medium = t.get("set-medium");
    let field = t.get("set-field");
    t.finish(cx);
    match (medium, field) {
        (Some(m), None) => m.name(cx).map(Action::SetMedium),
        (None, Some(f)) => {
            let mut ft = f.table(cx, &["field", "value"])?;
            let name = ft.require(cx, "field", "name the target field: field = \"cf_source\"");
            let value = ft.require(cx, "value", "give the value: value = \"...\"");
            ft.finish(cx);
            let name = name.and_then(|i| i.name(cx));
            let value = value.and_then(|i| read_value(cx, &i));
            Some(Action::SetField {
                field: name?,
                value: value?,
            })
        }
        _ => item.invalid(
            cx,
            "an action table holds exactly one of set-medium or set-field",
        ),
    }
}

/// A rule literal: text, number, boolean or a list of texts.
fn read_value(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<Value> {
    match item.value.get_ref() {
        DeValue::String(s) => Some(Value::Text(s.to_string())),
        DeValue::Boolean(b) => Some(Value::Bool(*b)),
        DeValue::Integer(_) | DeValue::Float(_) => item.f64(cx).map(Value::Number),
        DeValue::Array(_) => item
            .strings(cx)
            .map(|v| Value::Texts(v.into_iter().map(|(s, _)| s).collect())),
        _ => item.wrong_type(cx, "text, a number, true/false or a list of texts"),
    }
}
