//! Table tests: docs/sync-rules.md §3 (the field table) and §4 (the existence table)
//! as data, one or more cases per row carrying the row's number (`FIELD_ROWS`,
//! `EXISTENCE_ROWS`), then the consent rules (sync-rules §6) for every direction, the
//! seed's opt-out and delete options, and the breakers (sync-rules §10). Property tests
//! live in `props.rs`.

use std::collections::BTreeMap;

use super::*;
use crate::sync::baseline::Decision;
use crate::sync::baseline::LinkOrigin;
use crate::sync::mapping::resolve;
use crate::sync::model::{CanonKind, Consent};
use crate::sync::policy::{Direction, EntityPair, FieldMapping, OneWayEdits, RemoveAction, Winner};
use crate::sync::source::{FieldDef, FieldType};

mod matching;
mod props;
mod review;

pub(super) const NAME: &str = "first_name~first_name";
pub(super) const PHONE: &str = "mobile_number~mobile";
pub(super) const CONSENT: &str = "do_not_disturb~subscription_status";
pub(super) const TAGS: &str = "tags~tags";
pub(super) const EMAIL: &str = "email~emails";

/// Freshsales-like side A.
pub(super) fn fs_schema() -> Vec<FieldDef> {
    let mut tags = FieldDef::new("tags", FieldType::MultiChoice, Some("tags"));
    tags.multi_value = true;
    vec![
        FieldDef::new("email", FieldType::Email, Some("email")),
        FieldDef::new("first_name", FieldType::Text, Some("first-name")),
        FieldDef::new("mobile_number", FieldType::Phone, Some("mobile")),
        FieldDef::new("do_not_disturb", FieldType::Boolean, Some("dnd")),
        tags,
        FieldDef::new("has_authority", FieldType::Boolean, Some("authority")),
        FieldDef::new("lead_score", FieldType::Number, None),
    ]
}

/// Freshmarketer-like side B.
pub(super) fn fm_schema() -> Vec<FieldDef> {
    let mut tags = FieldDef::new("tags", FieldType::MultiChoice, Some("tags"));
    tags.multi_value = true;
    vec![
        FieldDef::new("emails", FieldType::Email, Some("email")),
        FieldDef::new("first_name", FieldType::Text, Some("first-name")),
        FieldDef::new("mobile", FieldType::Phone, Some("mobile")),
        FieldDef::new("subscription_status", FieldType::Number, Some("consent")),
        tags,
    ]
}

/// Table tests list a side "completely" even when it is empty, so the
/// side-empty breaker is off here (its own test turns it on).
pub(super) fn policy(dir: Direction) -> SyncPolicy {
    let mut p = SyncPolicy::new("fs-fm", vec![EntityPair::new("leads", "contacts")], dir);
    p.breaker.side_empty = false;
    p
}

pub(super) fn input(p: &SyncPolicy, a: Vec<Record>, b: Vec<Record>) -> EntityInput {
    let mapping = resolve(
        p,
        SidePair::new("leads", "contacts"),
        &fs_schema(),
        &fm_schema(),
    )
    .unwrap();
    let mut obs: SidePair<Observation> = SidePair::default();
    for r in a {
        obs.a.listed(r);
    }
    for r in b {
        obs.b.listed(r);
    }
    obs.a.complete = true;
    obs.b.complete = true;
    EntityInput {
        pair: p.entities[0].clone(),
        mapping,
        containers: SidePair::default(),
        obs,
    }
}

pub(super) fn rec(id: &str, fields: &[(&str, Value)]) -> Record {
    Record {
        id: id.into(),
        version: Some("1".into()),
        updated_at: None,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

fn out() -> Value {
    Consent::OptedOut.value()
}

fn inn() -> Value {
    Consent::OptedIn.value()
}

/// A-side record with e-mail and first name.
fn fa(id: &str, name: Value) -> Record {
    rec(id, &[("email", t("jane@x.io")), ("first_name", name)])
}

fn fb(id: &str, name: Value) -> Record {
    rec(id, &[("emails", t("jane@x.io")), ("first_name", name)])
}

/// A link a1<->b1 with the given field bases.
fn link(bases: &[(&str, FieldBase)]) -> Link {
    let mut fields: BTreeMap<String, FieldBase> = bases
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    fields
        .entry(EMAIL.into())
        .or_insert_with(|| FieldBase::new(t("jane@x.io")));
    Link {
        key: "0/a/a1".into(),
        entity: 0,
        ids: SidePair::new(Some("a1".into()), Some("b1".into())),
        state: LinkState::Linked,
        fields,
        versions: SidePair::default(),
        match_key: Some("jane@x.io".into()),
        origin: LinkOrigin::Email,
        review: Default::default(),
        touched: Default::default(),
    }
}

fn base(v: Value) -> FieldBase {
    FieldBase::new(v)
}

fn run(p: &SyncPolicy, l: Option<Link>, a: Vec<Record>, b: Vec<Record>) -> Plan {
    let e = input(p, a, b);
    plan(p, &Baseline::from_links(l), &[e])
}

/// The single update op to `side`, as a field map.
fn update_to(plan: &Plan, side: Side) -> Option<BTreeMap<String, Value>> {
    let ops: Vec<_> = plan
        .ops
        .iter()
        .filter(|o| o.side == side && matches!(o.kind, OpKind::Update { .. }))
        .collect();
    assert!(ops.len() <= 1, "several updates to {side}: {ops:#?}");
    ops.first().map(|o| match &o.kind {
        OpKind::Update { fields, .. } => fields.iter().cloned().collect(),
        _ => unreachable!(),
    })
}

fn stored_base(plan: &Plan, key: &str) -> Option<FieldBase> {
    plan.links
        .iter()
        .find(|l| l.key == "0/a/a1")
        .and_then(|l| l.fields.get(key).cloned())
}

fn op_base(plan: &Plan, side: Side, key: &str) -> Option<Value> {
    plan.ops
        .iter()
        .find(|o| o.side == side)
        .and_then(|o| o.base.get(key))
        .map(|b| b.value.clone())
}

// ---------- sync-rules §3: the field table, as data ----------

/// A value in a table row (`const`-friendly).
#[derive(Clone, Copy, Debug)]
enum V {
    /// The record is not read in this run.
    Unread,
    /// The record is read without the field (ABSENT).
    Absent,
    /// Present and empty.
    Null,
    /// Text.
    T(&'static str),
    /// A multi-value set.
    L(&'static [&'static str]),
}

impl V {
    fn value(self) -> Value {
        match self {
            V::Null => Value::Null,
            V::T(s) => t(s),
            V::L(items) => Value::Texts(items.iter().map(|s| s.to_string()).collect()),
            V::Unread | V::Absent => panic!("{self:?} is not a value"),
        }
    }
}

/// The link's base for a row's field.
#[derive(Clone, Copy, Debug)]
enum Base {
    /// No link yet: a first sync.
    None,
    /// The link a1<->b1 with this base.
    Is(V),
    /// The link a1<->b1 with this base and an alias on one side.
    Alias(V, Side, V),
}

/// What a row expects of the plan.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// No op at all.
    NoOps,
    /// The one update to the side sets the row's field (that side's name) to the value.
    Update(Side, V),
    /// No update to the side.
    NoUpdate(Side),
    /// The op to the side commits this base for the row's field.
    OpBase(Side, V),
    /// The stored link a1<->b1 holds this base.
    Stored(V),
    /// Every stored link holds this base.
    StoredAll(V),
    /// The stored base's alias on the side.
    StoredAlias(Side, Option<V>),
    /// This many links stored.
    Links(usize),
    /// No conflict reported.
    NoConflicts,
    /// This many conflicts reported.
    Conflicts(usize),
    /// The first conflict's winner.
    WonBy(Option<Side>),
    /// The first conflict's base.
    ConflictBase(Option<V>),
    /// The first conflict's decision says this.
    Says(&'static str),
    /// Every op writes the row's field jointly (committed once both are acknowledged).
    Joint,
}

/// One case of a row of the field table (docs/sync-rules.md §3).
struct FieldRow {
    /// The row, as docs/sync-rules.md numbers it.
    row: &'static str,
    /// What the case shows.
    case: &'static str,
    policy: fn() -> SyncPolicy,
    /// The field pair's key and its field name on A and on B.
    key: &'static str,
    fields: [&'static str; 2],
    base: Base,
    /// What A's record a1 and B's record b1 hold (e-mail jane@x.io, first name "Jane"
    /// unless the row's field is the first name).
    a: V,
    b: V,
    /// The records' change times.
    times: [Option<&'static str>; 2],
    expect: &'static [Expect],
}

fn two_way() -> SyncPolicy {
    policy(Direction::TwoWay)
}

fn winner(w: Winner) -> SyncPolicy {
    let mut p = two_way();
    p.conflict.winner = w;
    p
}

fn one_way_winner(w: Winner) -> SyncPolicy {
    let mut p = policy(Direction::AToB);
    p.conflict.winner = w;
    p
}

fn one_way_revert() -> SyncPolicy {
    let mut p = policy(Direction::AToB);
    p.one_way_edits = OneWayEdits::Revert;
    p
}

const JANE: V = V::T("Jane");
const JANET: V = V::T("Janet");
const ANN: V = V::T("Ann");
const BEA: V = V::T("Bea");
const NAMES: [&str; 2] = ["first_name", "first_name"];
const NO_TIMES: [Option<&str>; 2] = [None, None];

/// A first-name case: the base, A's and B's values, what is expected.
const fn name_row(
    row: &'static str,
    case: &'static str,
    policy: fn() -> SyncPolicy,
    base: Base,
    a: V,
    b: V,
    expect: &'static [Expect],
) -> FieldRow {
    FieldRow {
        row,
        case,
        policy,
        key: NAME,
        fields: NAMES,
        base,
        a,
        b,
        times: NO_TIMES,
        expect,
    }
}

/// A true conflict on the first name (base "Jane", A "Ann", B "Bea") with change times.
const fn conflict_row(
    case: &'static str,
    policy: fn() -> SyncPolicy,
    times: [Option<&'static str>; 2],
    expect: &'static [Expect],
) -> FieldRow {
    FieldRow {
        times,
        ..name_row("F5", case, policy, Base::Is(JANE), ANN, BEA, expect)
    }
}

use Expect::*;

const FIELD_ROWS: &[FieldRow] = &[
    name_row(
        "F1",
        "both unchanged: nothing planned",
        two_way,
        Base::Is(JANE),
        JANE,
        JANE,
        &[NoOps, StoredAll(JANE)],
    ),
    name_row(
        "F1",
        "a read-back reformatting (B's alias) is not echoed",
        two_way,
        Base::Alias(JANE, Side::B, V::T("JANE")),
        JANE,
        V::T("JANE"),
        &[NoOps],
    ),
    FieldRow {
        row: "F1",
        case: "phone formats compare equal",
        policy: two_way,
        key: PHONE,
        fields: ["mobile_number", "mobile"],
        base: Base::Is(V::T("+15550100")),
        a: V::T("+1 (555) 0100"),
        b: V::T("+1-555-0100"),
        times: NO_TIMES,
        expect: &[NoOps],
    },
    name_row(
        "F2",
        "A changed: written to B, rebased",
        two_way,
        Base::Is(JANE),
        JANET,
        JANE,
        &[
            Update(Side::B, JANET),
            NoUpdate(Side::A),
            OpBase(Side::B, JANET),
        ],
    ),
    name_row(
        "F2",
        "B not read: B counts as holding the base",
        two_way,
        Base::Is(JANE),
        JANET,
        V::Unread,
        &[Update(Side::B, JANET)],
    ),
    name_row(
        "F2",
        "null is a change and clears the other side",
        two_way,
        Base::Is(JANE),
        V::Null,
        JANE,
        &[Update(Side::B, V::Null)],
    ),
    name_row(
        "F3",
        "B changed: written to A, rebased",
        two_way,
        Base::Is(JANE),
        JANE,
        JANET,
        &[
            Update(Side::A, JANET),
            NoUpdate(Side::B),
            OpBase(Side::A, JANET),
        ],
    ),
    name_row(
        "F4",
        "false conflict: rebased without writing",
        two_way,
        Base::Is(JANE),
        JANET,
        JANET,
        &[NoOps, NoConflicts, Stored(JANET)],
    ),
    conflict_row(
        "a-wins",
        || winner(Winner::AWins),
        NO_TIMES,
        &[
            Update(Side::B, ANN),
            NoUpdate(Side::A),
            Conflicts(1),
            WonBy(Some(Side::A)),
            ConflictBase(Some(JANE)),
        ],
    ),
    conflict_row(
        "b-wins",
        || winner(Winner::BWins),
        NO_TIMES,
        &[Update(Side::A, BEA), NoUpdate(Side::B)],
    ),
    conflict_row(
        "most-recent: B changed later",
        two_way,
        [Some("2024-05-01T10:00:00Z"), Some("2024-05-01T11:00:00Z")],
        &[Update(Side::A, BEA)],
    ),
    conflict_row(
        "most-recent: A changed later",
        two_way,
        [Some("2024-05-01T12:00:00Z"), Some("2024-05-01T11:00:00Z")],
        &[Update(Side::B, ANN)],
    ),
    conflict_row(
        "most-recent within 60 s: fallback B",
        || {
            let mut p = two_way();
            p.conflict.fallback = Side::B;
            p
        },
        [Some("2024-05-01T10:00:30Z"), Some("2024-05-01T10:00:00Z")],
        &[Update(Side::A, BEA)],
    ),
    conflict_row(
        "most-recent with a change time missing: fallback B",
        || {
            let mut p = two_way();
            p.conflict.fallback = Side::B;
            p
        },
        [Some("2024-05-01T10:00:30Z"), None],
        &[Update(Side::A, BEA)],
    ),
    conflict_row(
        "a per-field owner beats the policy",
        || {
            let mut p = winner(Winner::AWins);
            p.conflict.owners.insert("first-name".into(), Side::B);
            p
        },
        NO_TIMES,
        &[Update(Side::A, BEA), Says("owns")],
    ),
    FieldRow {
        row: "F5",
        case: "multi-value sets merge three ways",
        policy: two_way,
        key: TAGS,
        fields: ["tags", "tags"],
        base: Base::Is(V::L(&["a", "b"])),
        a: V::L(&["a", "b", "c"]),
        b: V::L(&["b"]),
        times: NO_TIMES,
        expect: &[
            Update(Side::A, V::L(&["b", "c"])),
            Update(Side::B, V::L(&["b", "c"])),
            Joint,
        ],
    },
    name_row(
        "F6",
        "first sync, equal values: the base without writes",
        two_way,
        Base::None,
        JANE,
        V::T(" Jane "),
        &[NoOps, Links(1), Stored(JANE)],
    ),
    name_row(
        "F7",
        "first sync fills B's empty side",
        two_way,
        Base::None,
        JANE,
        V::Null,
        &[Update(Side::B, JANE)],
    ),
    name_row(
        "F7",
        "first sync fills A's empty side",
        two_way,
        Base::None,
        V::Null,
        JANE,
        &[Update(Side::A, JANE)],
    ),
    name_row(
        "F7",
        "never erased with an empty value (a-wins)",
        || one_way_winner(Winner::AWins),
        Base::None,
        V::T(""),
        JANE,
        &[NoOps, Stored(JANE), StoredAlias(Side::A, Some(V::Null))],
    ),
    name_row(
        "F7",
        "never erased with an empty value (b-wins)",
        || one_way_winner(Winner::BWins),
        Base::None,
        V::T(""),
        JANE,
        &[NoOps, Stored(JANE), StoredAlias(Side::A, Some(V::Null))],
    ),
    name_row(
        "F7",
        "never erased with an empty value (most-recent)",
        || one_way_winner(Winner::MostRecent),
        Base::None,
        V::T(""),
        JANE,
        &[NoOps, Stored(JANE), StoredAlias(Side::A, Some(V::Null))],
    ),
    name_row(
        "F8",
        "first sync, both set: decided by the policy",
        || winner(Winner::BWins),
        Base::None,
        ANN,
        BEA,
        &[Update(Side::A, BEA), Conflicts(1), ConflictBase(None)],
    ),
    name_row(
        "F9",
        "a one-way target's edit is ignored by default",
        || policy(Direction::AToB),
        Base::Is(JANE),
        JANE,
        BEA,
        &[NoOps, StoredAlias(Side::B, Some(BEA))],
    ),
    name_row(
        "F9",
        "the source's next change still flows over an ignored edit",
        || policy(Direction::AToB),
        Base::Alias(JANE, Side::B, BEA),
        JANET,
        BEA,
        &[Update(Side::B, JANET)],
    ),
    name_row(
        "F9",
        "a one-way target's edit is reverted when configured",
        one_way_revert,
        Base::Is(JANE),
        JANE,
        BEA,
        &[Update(Side::B, JANE), NoUpdate(Side::A)],
    ),
    name_row(
        "F9",
        "never reverted to an empty value",
        one_way_revert,
        Base::Is(V::Null),
        V::Null,
        BEA,
        &[NoOps],
    ),
    name_row(
        "F10",
        "ABSENT on A counts as unchanged",
        two_way,
        Base::Is(JANE),
        V::Absent,
        JANE,
        &[NoOps],
    ),
    name_row(
        "F10",
        "ABSENT on A: B's change still flows",
        two_way,
        Base::Is(JANE),
        V::Absent,
        BEA,
        &[Update(Side::A, BEA)],
    ),
];

/// Side `side`'s record for a field row, or `None` when it is not read.
fn row_record(row: &FieldRow, side: Side) -> Option<Record> {
    let (v, field, time) = match side {
        Side::A => (row.a, row.fields[0], row.times[0]),
        Side::B => (row.b, row.fields[1], row.times[1]),
    };
    let mut r = match side {
        Side::A => fa("a1", JANE.value()),
        Side::B => fb("b1", JANE.value()),
    };
    match v {
        V::Unread => return None,
        V::Absent => {
            r.fields.remove(field);
        }
        v => {
            r.fields.insert(field.into(), v.value());
        }
    }
    r.updated_at = time.map(str::to_string);
    Some(r)
}

fn check_field_row(row: &FieldRow) {
    let p = (row.policy)();
    let l = match row.base {
        Base::None => None,
        Base::Is(v) => Some(link(&[(row.key, base(v.value()))])),
        Base::Alias(v, side, w) => Some(link(&[(
            row.key,
            base(v.value()).with_alias(side, w.value()),
        )])),
    };
    let records = |side| row_record(row, side).into_iter().collect::<Vec<_>>();
    let plan = run(&p, l, records(Side::A), records(Side::B));
    let field = |side: Side| match side {
        Side::A => row.fields[0],
        Side::B => row.fields[1],
    };
    for e in row.expect {
        match *e {
            NoOps => assert!(plan.ops.is_empty(), "{:#?}", plan.ops),
            Update(side, v) => assert_eq!(
                update_to(&plan, side).expect("an update")[field(side)],
                v.value()
            ),
            NoUpdate(side) => assert!(update_to(&plan, side).is_none(), "{:#?}", plan.ops),
            OpBase(side, v) => assert_eq!(op_base(&plan, side, row.key), Some(v.value())),
            Stored(v) => assert_eq!(stored_base(&plan, row.key).unwrap().value, v.value()),
            StoredAll(v) => assert!(
                plan.links
                    .iter()
                    .all(|l| l.fields[row.key].value == v.value()),
                "{:#?}",
                plan.links
            ),
            StoredAlias(side, v) => assert_eq!(
                *stored_base(&plan, row.key).unwrap().alias.get(side),
                v.map(V::value)
            ),
            Links(n) => assert_eq!(plan.links.len(), n),
            NoConflicts => assert!(plan.conflicts.is_empty(), "{:#?}", plan.conflicts),
            Conflicts(n) => assert_eq!(plan.conflicts.len(), n),
            WonBy(w) => assert_eq!(plan.conflicts[0].winner, w),
            ConflictBase(v) => assert_eq!(plan.conflicts[0].base, v.map(V::value)),
            Says(says) => assert!(
                plan.conflicts[0].decision.contains(says),
                "{:#?}",
                plan.conflicts
            ),
            Joint => assert!(plan.ops.iter().all(|o| o.joint.contains(row.key))),
        }
    }
}

/// Runs every case of a table; a failure names its row and case.
fn check_rows<R>(table: &str, rows: &[R], name: impl Fn(&R) -> String, check: impl Fn(&R)) {
    let mut failed = Vec::new();
    for row in rows {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(row)));
        if let Err(e) = outcome {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {why}", name(row)));
        }
    }
    assert!(
        failed.is_empty(),
        "{table}: {} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn the_field_table() {
    check_rows(
        "the field table (docs/sync-rules.md §3)",
        FIELD_ROWS,
        |r| format!("row {} ({})", r.row, r.case),
        check_field_row,
    );
}

/// Every row of a table in docs/sync-rules.md has at least one case, and every case
/// names a row the document defines.
fn rows_covered(prefix: char, cases: &[&str]) {
    let doc = include_str!("../../../../docs/sync-rules.md");
    let rows: BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next())
        .filter(|c| c.starts_with(prefix) && c[1..].parse::<u32>().is_ok())
        .collect();
    let cases: BTreeSet<&str> = cases.iter().copied().collect();
    assert_eq!(
        rows, cases,
        "rows of docs/sync-rules.md (left) and rows with a test case (right) differ"
    );
}

#[test]
fn every_row_of_the_field_table_has_a_case() {
    rows_covered('F', &FIELD_ROWS.iter().map(|r| r.row).collect::<Vec<_>>());
}

// Cases that need more than one plan.

fn first_sync(p: &SyncPolicy, a: Value, b: Value) -> Plan {
    run(p, None, vec![fa("a1", a)], vec![fb("b1", b)])
}

fn conflict_case(p: &SyncPolicy, ta: Option<&str>, tb: Option<&str>) -> Plan {
    let mut a = fa("a1", t("Ann"));
    a.updated_at = ta.map(str::to_string);
    let mut b = fb("b1", t("Bea"));
    b.updated_at = tb.map(str::to_string);
    run(p, Some(link(&[(NAME, base(t("Jane")))])), vec![a], vec![b])
}

/// The sync's own writes move a record's change time (a list add, a write whose answer
/// was lost or whose commit a crash undid): a restart decides as the first attempt did,
/// while a user's edit since still counts as one.
#[test]
fn most_recent_is_not_moved_by_the_syncs_own_writes() {
    let p = policy(Direction::TwoWay);
    let first = conflict_case(
        &p,
        Some("2024-05-01T10:00:00Z"),
        Some("2024-05-01T11:00:00Z"),
    );
    assert_eq!(update_to(&first, Side::A).unwrap()["first_name"], t("Bea"));
    let stored = first
        .links
        .iter()
        .find(|l| l.key == "0/a/a1")
        .unwrap()
        .clone();
    let mark = stored
        .touched
        .a
        .clone()
        .expect("the write to A is remembered");
    assert_eq!(mark.before.as_deref(), Some("2024-05-01T10:00:00Z"));
    assert!(stored.touched.b.is_none(), "nothing is written to B");

    // The run was interrupted: A's record was touched by the sync only (a list add),
    // which moved its change time past B's.
    let restart = |a_name: &str, link: Link| {
        let mut a = fa("a1", t(a_name));
        a.updated_at = Some("2024-05-01T13:00:00Z".into());
        let mut b = fb("b1", t("Bea"));
        b.updated_at = Some("2024-05-01T11:00:00Z".into());
        run(&p, Some(link), vec![a], vec![b])
    };
    let again = restart("Ann", stored.clone());
    assert_eq!(
        update_to(&again, Side::A).unwrap()["first_name"],
        t("Bea"),
        "B still wins: {:#?}",
        again.conflicts
    );
    assert_eq!(
        first.ops[0].id, again.ops[0].id,
        "the same write, the same op"
    );
    // Without the mark the sync's own write would have flipped the decision.
    let mut unmarked = stored.clone();
    unmarked.touched = SidePair::default();
    assert_eq!(
        update_to(&restart("Ann", unmarked), Side::B).unwrap()["first_name"],
        t("Ann")
    );
    // A user edited A after that: A's change time is a user's again.
    let edited = restart("Annie", stored);
    assert_eq!(
        update_to(&edited, Side::B).unwrap()["first_name"],
        t("Annie")
    );
    let kept = edited.links.iter().find(|l| l.key == "0/a/a1").unwrap();
    assert!(
        kept.touched.a.is_none(),
        "the edit retires the mark: {kept:#?}"
    );
}

#[test]
fn apply_ack_records_the_read_back_form_as_alias() {
    let p = policy(Direction::TwoWay);
    let e = input(&p, vec![], vec![]);
    let plan = run(
        &p,
        Some(link(&[(NAME, base(t("Jane")))])),
        vec![fa("a1", t("Janet"))],
        vec![fb("b1", t("Jane"))],
    );
    let op = &plan.ops[0];
    let mut l = link(&[(NAME, base(t("Jane")))]);
    let readback = fb("b1", t("JANET"));
    assert!(apply_ack(&mut l, op, Some(&readback), &e.mapping, true));
    let f = &l.fields[NAME];
    assert_eq!(f.value, t("Janet"));
    assert_eq!(f.alias.b, Some(t("JANET")));
    assert_eq!(f.written.b.map(|h| h.to_string()), Some(t("Janet").hash()));
    // The next run sees B's form as unchanged.
    let plan = run(&p, Some(l), vec![fa("a1", t("Janet"))], vec![readback]);
    assert!(plan.ops.is_empty(), "{:#?}", plan.ops);
}

#[test]
fn ops_are_deterministic() {
    let p = policy(Direction::TwoWay);
    let mk = || {
        run(
            &p,
            Some(link(&[(NAME, base(t("Jane")))])),
            vec![fa("a1", t("Janet")), fa("a2", t("X"))],
            vec![fb("b1", t("Jane"))],
        )
    };
    let (x, y) = (mk(), mk());
    assert_eq!(x.ops, y.ops);
    assert!(x.ops.iter().all(|o| o.id.len() == 24));
}

// ---------- sync-rules §4: the existence table, as data ----------

/// A record of an existence case.
#[derive(Clone, Copy, Debug)]
enum Rec {
    /// E-mail jane@x.io and this first name (`fa` / `fb`).
    Jane(&'static str, V),
    /// These fields only.
    With(&'static str, &'static [(&'static str, V)]),
}

impl Rec {
    fn record(self, side: Side) -> Record {
        match (self, side) {
            (Rec::Jane(id, v), Side::A) => fa(id, v.value()),
            (Rec::Jane(id, v), Side::B) => fb(id, v.value()),
            (Rec::With(id, fields), _) => {
                let fields: Vec<(&str, Value)> =
                    fields.iter().map(|(k, v)| (*k, v.value())).collect();
                rec(id, &fields)
            }
        }
    }
}

/// The link of an existence case.
#[derive(Clone, Copy, Debug)]
enum Lk {
    /// None.
    None,
    /// a1<->b1 with the first-name base "Jane", in this state.
    Jane(LinkState),
    /// a1<->b1 with the e-mail's base only.
    Bare,
    /// A's a1, whose create on B is pending (no id on B yet).
    PendingB,
}

impl Lk {
    fn link(self) -> Option<Link> {
        match self {
            Lk::None => None,
            Lk::Jane(state) => {
                let mut l = link(&[(NAME, base(t("Jane")))]);
                l.state = state;
                Some(l)
            }
            Lk::Bare => Some(link(&[])),
            Lk::PendingB => Some(Link {
                ids: SidePair::new(Some("a1".into()), None),
                fields: BTreeMap::new(),
                origin: LinkOrigin::Created(Side::B),
                ..link(&[])
            }),
        }
    }
}

/// What a case changes in the observations, the scopes or the operator's decisions.
#[derive(Clone, Copy, Debug)]
enum Obs {
    /// The side reports the record deleted.
    Deleted(Side, &'static str),
    /// The record left the side's scope.
    LeftScope(Side, &'static str),
    /// The record could not be read or mapped, for this reason.
    Failed(Side, &'static str, &'static str),
    /// The side's listing is not complete.
    Incomplete(Side),
    /// This e-mail was looked up on the side.
    Searched(Side, &'static str),
    /// The side is scoped to this container.
    Container(Side, &'static str),
    /// Found on the side by a lookup (its list membership unknown).
    Found(Side, Rec),
    /// The operator's decision about A's and B's records.
    Decided(&'static str, &'static str, Decision),
}

/// What the first op is or does.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Its target side.
    To(Side),
    /// Its effect on the link.
    Effect(LinkEffect),
    /// A create.
    Create,
    /// A create with the marker of this link, into these containers.
    CreateAs(&'static str, &'static [&'static str]),
    /// It sets this field (target side's name) to this value.
    Field(&'static str, V),
    /// A delete of this id.
    Delete(&'static str),
    /// A removal of this id from this container.
    Remove(&'static str, &'static str),
    /// An add of this id to this container.
    Add(&'static str, &'static str),
}

/// What an existence case expects of the plan.
#[derive(Clone, Copy, Debug)]
enum Ex {
    /// No op at all.
    Quiet,
    /// This many ops.
    OpCount(usize),
    /// This many links stored.
    LinkCount(usize),
    /// The first stored link was made so.
    Origin(LinkOrigin),
    /// The first stored link's ids.
    Ids(Option<&'static str>, Option<&'static str>),
    /// The first stored link's id on one side.
    Id(Side, Option<&'static str>),
    /// The first stored link's state.
    State(LinkState),
    /// The one update to the side sets this field to this value.
    Sets(Side, &'static str, V),
    /// No create.
    NoCreate,
    /// This many ambiguities reported.
    Ambiguous(usize),
    /// The first ambiguity's candidates on B.
    AmbiguousB(&'static [&'static str]),
    /// The first ambiguity's reason says this.
    AmbiguousWhy(&'static str),
    /// No ambiguity.
    NoAmbiguity,
    /// The first skip's reason says this.
    SkipWhy(&'static str),
    /// No skip.
    NoSkips,
    /// The first op.
    First(Op),
    /// The links dropped.
    Unlinked(&'static [&'static str]),
}

/// One case of a row of the existence table (docs/sync-rules.md §4).
struct ExistenceRow {
    /// The row, as docs/sync-rules.md numbers it.
    row: &'static str,
    /// What the case shows.
    case: &'static str,
    policy: fn() -> SyncPolicy,
    link: Lk,
    /// The records listed on A and on B (in scope, listings complete).
    a: &'static [Rec],
    b: &'static [Rec],
    obs: &'static [Obs],
    expect: &'static [Ex],
}

fn create_b_off() -> SyncPolicy {
    let mut p = two_way();
    p.create.b = false;
    p
}

fn b_to_a() -> SyncPolicy {
    policy(Direction::BToA)
}

fn on_delete_b(action: RemoveAction) -> SyncPolicy {
    let mut p = two_way();
    p.deletes.on_delete.b = action;
    p
}

fn b_scoped(list: &str) -> SyncPolicy {
    let mut p = two_way();
    p.scope.b = crate::sync::policy::Scope::Container(list.into());
    p
}

const A1: &[Rec] = &[Rec::Jane("a1", JANE)];
const A1_CHANGED: &[Rec] = &[Rec::Jane("a1", JANET)];
const B1: &[Rec] = &[Rec::Jane("b1", JANE)];
const B1_BEA: &[Rec] = &[Rec::Jane("b1", BEA)];
const NONE: &[Rec] = &[];
/// B's b1 deleted, A scoped to the list "LA".
const B1_DELETED: &[Obs] = &[Obs::Deleted(Side::B, "b1"), Obs::Container(Side::A, "LA")];

use Ex::*;

const EXISTENCE_ROWS: &[ExistenceRow] = &[
    ExistenceRow {
        row: "E1",
        case: "no e-mail: skipped",
        policy: two_way,
        link: Lk::None,
        a: &[Rec::With("a1", &[("first_name", JANE)])],
        b: NONE,
        obs: &[],
        expect: &[Quiet, SkipWhy("no e-mail")],
    },
    ExistenceRow {
        row: "E2",
        case: "one candidate: linked, then merged",
        policy: two_way,
        link: Lk::None,
        a: A1,
        b: &[Rec::With(
            "b1",
            &[("emails", V::T(" JANE@x.io ")), ("first_name", V::Null)],
        )],
        obs: &[],
        expect: &[
            LinkCount(1),
            Origin(LinkOrigin::Email),
            Ids(Some("a1"), Some("b1")),
            Sets(Side::B, "first_name", JANE),
            NoCreate,
        ],
    },
    ExistenceRow {
        row: "E3",
        case: "several candidates: ambiguous, left alone",
        policy: two_way,
        link: Lk::None,
        a: A1,
        b: &[Rec::Jane("b1", V::T("J")), Rec::Jane("b2", V::T("K"))],
        obs: &[],
        expect: &[Quiet, LinkCount(0), Ambiguous(1), AmbiguousB(&["b1", "b2"])],
    },
    ExistenceRow {
        row: "E3",
        case: "duplicates on one side are not created",
        policy: two_way,
        link: Lk::None,
        a: &[Rec::Jane("a1", JANE), Rec::Jane("a2", JANE)],
        b: NONE,
        obs: &[],
        expect: &[Quiet, Ambiguous(1)],
    },
    ExistenceRow {
        row: "E3",
        case: "an e-mail linked elsewhere is ambiguous",
        policy: two_way,
        link: Lk::Jane(LinkState::Linked),
        a: &[Rec::Jane("a1", JANE), Rec::Jane("a2", JANE)],
        b: B1,
        obs: &[],
        expect: &[NoCreate, Ambiguous(1), AmbiguousWhy("already linked")],
    },
    ExistenceRow {
        row: "E4",
        case: "no candidate: created with the marker, into the list",
        policy: || b_scoped("Newsletter"),
        link: Lk::None,
        a: A1,
        b: NONE,
        obs: &[Obs::Container(Side::B, "L1")],
        expect: &[
            OpCount(1),
            First(Op::To(Side::B)),
            First(Op::Effect(LinkEffect::SetId)),
            First(Op::CreateAs("0/a/a1", &["L1"])),
            First(Op::Field("emails", V::T("jane@x.io"))),
            First(Op::Field("first_name", JANE)),
            Ids(Some("a1"), None),
        ],
    },
    ExistenceRow {
        row: "E5",
        case: "not looked up on B: not created",
        policy: two_way,
        link: Lk::None,
        a: A1,
        b: NONE,
        obs: &[Obs::Incomplete(Side::B)],
        expect: &[Quiet, SkipWhy("looked up")],
    },
    ExistenceRow {
        row: "E5",
        case: "looked up on B: created",
        policy: two_way,
        link: Lk::None,
        a: A1,
        b: NONE,
        obs: &[
            Obs::Incomplete(Side::B),
            Obs::Searched(Side::B, "jane@x.io"),
        ],
        expect: &[OpCount(1)],
    },
    ExistenceRow {
        row: "E5",
        case: "creates on B disabled",
        policy: create_b_off,
        link: Lk::None,
        a: A1,
        b: NONE,
        obs: &[],
        expect: &[Quiet, SkipWhy("disabled")],
    },
    ExistenceRow {
        row: "E5",
        case: "one-way B to A: A's unmatched records are not created on B",
        policy: b_to_a,
        link: Lk::None,
        a: A1,
        b: NONE,
        obs: &[],
        expect: &[Quiet, NoSkips],
    },
    ExistenceRow {
        row: "E5",
        case: "one-way B to A: B's unmatched records are created on A",
        policy: b_to_a,
        link: Lk::None,
        a: NONE,
        b: B1,
        obs: &[],
        expect: &[First(Op::To(Side::A))],
    },
    ExistenceRow {
        row: "E6",
        case: "the operator's link joins records whose e-mails differ",
        policy: two_way,
        link: Lk::None,
        a: A1,
        b: &[Rec::With(
            "b1",
            &[("emails", V::T("j.doe@y.io")), ("first_name", JANE)],
        )],
        obs: &[Obs::Decided("a1", "b1", Decision::Link)],
        expect: &[LinkCount(1), Ids(Some("a1"), Some("b1")), NoCreate],
    },
    ExistenceRow {
        row: "E6",
        case: "records kept apart are not candidates: each side creates the other",
        policy: two_way,
        link: Lk::None,
        a: A1,
        b: B1,
        obs: &[Obs::Decided("a1", "b1", Decision::KeepApart)],
        expect: &[OpCount(2), NoAmbiguity],
    },
    ExistenceRow {
        row: "E7",
        case: "linked, both present: the field table",
        policy: two_way,
        link: Lk::Jane(LinkState::Linked),
        a: A1_CHANGED,
        b: B1,
        obs: &[],
        expect: &[OpCount(1), NoAmbiguity, NoSkips],
    },
    ExistenceRow {
        row: "E8",
        case: "a record that failed to map is left alone",
        policy: two_way,
        link: Lk::Jane(LinkState::Linked),
        a: NONE,
        b: B1_BEA,
        obs: &[Obs::Failed(Side::A, "a1", "mapper `x` failed")],
        expect: &[Quiet, SkipWhy("mapper")],
    },
    ExistenceRow {
        row: "E9",
        case: "B deleted, A unchanged: A kept by default",
        policy: two_way,
        link: Lk::Jane(LinkState::Linked),
        a: A1,
        b: NONE,
        obs: B1_DELETED,
        expect: &[Quiet, State(LinkState::Deleted(Side::B))],
    },
    ExistenceRow {
        row: "E9",
        case: "B deleted, A unchanged: deletes.on-delete = delete",
        policy: || on_delete_b(RemoveAction::Delete),
        link: Lk::Jane(LinkState::Linked),
        a: A1,
        b: NONE,
        obs: B1_DELETED,
        expect: &[
            OpCount(1),
            First(Op::Delete("a1")),
            First(Op::Effect(LinkEffect::Drop)),
        ],
    },
    ExistenceRow {
        row: "E9",
        case: "B deleted, A unchanged: deletes.on-delete = remove-from-list",
        policy: || on_delete_b(RemoveAction::RemoveFromContainer),
        link: Lk::Jane(LinkState::Linked),
        a: A1,
        b: NONE,
        obs: B1_DELETED,
        expect: &[First(Op::Remove("LA", "a1"))],
    },
    ExistenceRow {
        row: "E9",
        case: "a deletion does not flow against a one-way sync",
        policy: || {
            let mut p = policy(Direction::AToB);
            p.deletes.on_delete.b = RemoveAction::Delete;
            p
        },
        link: Lk::Jane(LinkState::Linked),
        a: A1,
        b: NONE,
        obs: B1_DELETED,
        expect: &[Quiet, State(LinkState::Deleted(Side::B))],
    },
    ExistenceRow {
        row: "E10",
        case: "B deleted, A changed: modification beats deletion",
        policy: || on_delete_b(RemoveAction::Delete),
        link: Lk::Jane(LinkState::Linked),
        a: A1_CHANGED,
        b: NONE,
        obs: B1_DELETED,
        expect: &[
            OpCount(1),
            First(Op::Create),
            First(Op::To(Side::B)),
            Id(Side::B, None),
        ],
    },
    ExistenceRow {
        row: "E11",
        case: "B deleted, another B record holds the e-mail: the link is re-pointed",
        policy: two_way,
        link: Lk::Jane(LinkState::Linked),
        a: A1,
        b: &[Rec::Jane("b2", JANE)],
        obs: &[Obs::Deleted(Side::B, "b1")],
        expect: &[Ids(Some("a1"), Some("b2")), NoCreate, NoAmbiguity],
    },
    ExistenceRow {
        row: "E11",
        case: "B deleted, several B records hold the e-mail: ambiguous, nothing else",
        policy: || on_delete_b(RemoveAction::Delete),
        link: Lk::Jane(LinkState::Linked),
        a: A1_CHANGED,
        b: &[Rec::Jane("b2", JANE), Rec::Jane("b3", JANE)],
        obs: &[Obs::Deleted(Side::B, "b1")],
        expect: &[
            Quiet,
            AmbiguousB(&["b2", "b3"]),
            AmbiguousWhy("is gone and several records"),
        ],
    },
    ExistenceRow {
        row: "E12",
        case: "deleted on both sides: the link is dropped",
        policy: two_way,
        link: Lk::Bare,
        a: NONE,
        b: NONE,
        obs: &[Obs::Deleted(Side::A, "a1"), Obs::Deleted(Side::B, "b1")],
        expect: &[Unlinked(&["0/a/a1"])],
    },
    ExistenceRow {
        row: "E13",
        case: "B deleted before, A unchanged: nothing",
        policy: two_way,
        link: Lk::Jane(LinkState::Deleted(Side::B)),
        a: A1,
        b: NONE,
        obs: &[],
        expect: &[Quiet],
    },
    ExistenceRow {
        row: "E13",
        case: "B deleted before, A changed later: re-created on B",
        policy: two_way,
        link: Lk::Jane(LinkState::Deleted(Side::B)),
        a: A1_CHANGED,
        b: NONE,
        obs: &[],
        expect: &[First(Op::Create)],
    },
    ExistenceRow {
        row: "E14",
        case: "left A's scope: detached, nothing written",
        policy: two_way,
        link: Lk::Jane(LinkState::Linked),
        a: NONE,
        b: B1_BEA,
        obs: &[Obs::LeftScope(Side::A, "a1")],
        expect: &[Quiet, State(LinkState::Detached(Side::A))],
    },
    ExistenceRow {
        row: "E14",
        case: "a detached link is not synced",
        policy: two_way,
        link: Lk::Jane(LinkState::Detached(Side::A)),
        a: NONE,
        b: B1_BEA,
        obs: &[],
        expect: &[Quiet],
    },
    ExistenceRow {
        row: "E15",
        case: "back in A's scope: linked again, the field table",
        policy: two_way,
        link: Lk::Jane(LinkState::Detached(Side::A)),
        a: A1,
        b: B1_BEA,
        obs: &[],
        expect: &[Sets(Side::A, "first_name", BEA), State(LinkState::Linked)],
    },
    ExistenceRow {
        row: "E16",
        case: "a pending create is planned again with the link's marker",
        policy: two_way,
        link: Lk::PendingB,
        a: A1,
        b: NONE,
        obs: &[],
        expect: &[OpCount(1), First(Op::CreateAs("0/a/a1", &[]))],
    },
    ExistenceRow {
        row: "E17",
        case: "matched by a lookup outside B's list: added to it",
        policy: || b_scoped("L"),
        link: Lk::None,
        a: A1,
        b: NONE,
        obs: &[
            Obs::Container(Side::B, "L1"),
            Obs::Incomplete(Side::B),
            Obs::Found(Side::B, Rec::Jane("b9", JANE)),
        ],
        expect: &[OpCount(1), First(Op::Add("L1", "b9"))],
    },
    ExistenceRow {
        row: "E18",
        case: "a record the sync removed is never written again",
        policy: two_way,
        link: Lk::Jane(LinkState::Removed(Side::B)),
        a: A1_CHANGED,
        b: B1,
        obs: &[],
        expect: &[Quiet],
    },
];

fn check_existence_row(row: &ExistenceRow) {
    let p = (row.policy)();
    let records = |side: Side, list: &[Rec]| list.iter().map(|r| r.record(side)).collect();
    let mut e = input(&p, records(Side::A, row.a), records(Side::B, row.b));
    let mut baseline = Baseline::from_links(row.link.link());
    for o in row.obs {
        match *o {
            Obs::Deleted(side, id) => {
                e.obs.get_mut(side).deleted.insert(id.into());
            }
            Obs::LeftScope(side, id) => {
                e.obs.get_mut(side).left_scope.insert(id.into());
            }
            Obs::Failed(side, id, why) => {
                e.obs.get_mut(side).failed.insert(id.into(), why.into());
            }
            Obs::Incomplete(side) => e.obs.get_mut(side).complete = false,
            Obs::Searched(side, m) => {
                e.obs.get_mut(side).searched.insert(m.into());
            }
            Obs::Container(side, c) => *e.containers.get_mut(side) = Some(c.into()),
            Obs::Found(side, r) => {
                let record = r.record(side);
                let observed = Observed {
                    record,
                    in_scope: false,
                };
                e.obs
                    .get_mut(side)
                    .records
                    .insert(observed.record.id.clone(), observed);
            }
            Obs::Decided(a, b, d) => {
                baseline.decisions.insert((0, a.into(), b.into()), d);
            }
        }
    }
    let plan = plan(&p, &baseline, &[e]);
    let first = || plan.ops.first().expect("an op");
    for x in row.expect {
        match *x {
            Quiet => assert!(plan.ops.is_empty(), "{:#?}", plan.ops),
            OpCount(n) => assert_eq!(plan.ops.len(), n, "{:#?}", plan.ops),
            LinkCount(n) => assert_eq!(plan.links.len(), n, "{:#?}", plan.links),
            Origin(o) => assert_eq!(plan.links[0].origin, o),
            Ids(a, b) => assert_eq!(
                plan.links[0].ids,
                SidePair::new(a.map(str::to_string), b.map(str::to_string))
            ),
            Id(side, id) => assert_eq!(
                plan.links[0].ids.get(side).as_deref(),
                id,
                "{:#?}",
                plan.links
            ),
            State(s) => assert_eq!(plan.links[0].state, s),
            Sets(side, field, v) => {
                assert_eq!(update_to(&plan, side).expect("an update")[field], v.value())
            }
            NoCreate => assert!(
                plan.ops
                    .iter()
                    .all(|o| !matches!(o.kind, OpKind::Create { .. })),
                "{:#?}",
                plan.ops
            ),
            Ambiguous(n) => assert_eq!(plan.ambiguous.len(), n, "{:#?}", plan.ambiguous),
            AmbiguousB(ids) => assert_eq!(plan.ambiguous[0].b, ids),
            AmbiguousWhy(says) => assert!(
                plan.ambiguous[0].reason.contains(says),
                "{:#?}",
                plan.ambiguous
            ),
            NoAmbiguity => assert!(plan.ambiguous.is_empty(), "{:#?}", plan.ambiguous),
            SkipWhy(says) => assert!(plan.skips[0].reason.contains(says), "{:#?}", plan.skips),
            NoSkips => assert!(plan.skips.is_empty(), "{:#?}", plan.skips),
            Unlinked(keys) => assert_eq!(plan.unlink, keys),
            First(Op::To(side)) => assert_eq!(first().side, side),
            First(Op::Effect(fx)) => assert_eq!(first().effect, fx),
            First(Op::Create) => assert!(
                matches!(first().kind, OpKind::Create { .. }),
                "{:#?}",
                plan.ops
            ),
            First(Op::CreateAs(link, lists)) => {
                let OpKind::Create {
                    marker: m,
                    containers,
                    ..
                } = &first().kind
                else {
                    panic!("{:#?}", plan.ops)
                };
                assert_eq!(m, &marker("fs-fm", link));
                assert_eq!(containers, lists);
            }
            First(Op::Field(name, v)) => {
                let (OpKind::Create { fields, .. } | OpKind::Update { fields, .. }) = &first().kind
                else {
                    panic!("{:#?}", plan.ops)
                };
                let fields: BTreeMap<_, _> = fields.iter().cloned().collect();
                assert_eq!(fields[name], v.value());
            }
            First(Op::Delete(id)) => assert_eq!(first().kind, OpKind::Delete { id: id.into() }),
            First(Op::Remove(container, id)) => assert_eq!(
                first().kind,
                OpKind::RemoveFromContainer {
                    container: container.into(),
                    id: id.into()
                }
            ),
            First(Op::Add(container, id)) => assert_eq!(
                first().kind,
                OpKind::AddToContainer {
                    container: container.into(),
                    id: id.into()
                }
            ),
        }
    }
}

#[test]
fn the_existence_table() {
    check_rows(
        "the existence table (docs/sync-rules.md §4)",
        EXISTENCE_ROWS,
        |r| format!("row {} ({})", r.row, r.case),
        check_existence_row,
    );
}

#[test]
fn every_row_of_the_existence_table_has_a_case() {
    rows_covered(
        'E',
        &EXISTENCE_ROWS.iter().map(|r| r.row).collect::<Vec<_>>(),
    );
}

// Cases that need more than one plan, or more than one entity pair.

#[test]
fn existence_left_scope_detaches_and_returning_reattaches() {
    let p = policy(Direction::TwoWay);
    let mut e = input(&p, vec![], vec![fb("b1", t("Bea"))]);
    e.obs.a.left_scope.insert("a1".into());
    let plan1 = plan(
        &p,
        &Baseline::from_links([link(&[(NAME, base(t("Jane")))])]),
        &[e],
    );
    assert!(plan1.ops.is_empty());
    assert_eq!(plan1.links[0].state, LinkState::Detached(Side::A));
    let detached = plan1.links[0].clone();
    let plan2 = run(&p, Some(detached.clone()), vec![], vec![fb("b1", t("Bea"))]);
    assert!(
        plan2.ops.is_empty(),
        "detached links are not synced: {:#?}",
        plan2.ops
    );
    let plan3 = run(
        &p,
        Some(detached),
        vec![fa("a1", t("Jane"))],
        vec![fb("b1", t("Bea"))],
    );
    assert_eq!(update_to(&plan3, Side::A).unwrap()["first_name"], t("Bea"));
    assert_eq!(plan3.links[0].state, LinkState::Linked);
}

#[test]
fn existence_pending_create_is_planned_again_with_the_same_marker() {
    let p = policy(Direction::TwoWay);
    let first = run(&p, None, vec![fa("a1", t("Jane"))], vec![]);
    let pending = first.links[0].clone();
    let again = run(&p, Some(pending), vec![fa("a1", t("Jane"))], vec![]);
    assert_eq!(again.ops.len(), 1);
    let (OpKind::Create { marker: m1, .. }, OpKind::Create { marker: m2, .. }) =
        (&first.ops[0].kind, &again.ops[0].kind)
    else {
        panic!()
    };
    assert_eq!(m1, m2);
}

#[test]
fn both_leads_and_contacts_create_on_the_shared_side_once() {
    let mut p = policy(Direction::TwoWay);
    p.entities = vec![
        EntityPair::new("leads", "contacts"),
        EntityPair::new("contacts", "contacts"),
    ];
    let mk = |ix: usize| {
        let mut e = input(&p, vec![], vec![fb("b1", t("Bea"))]);
        e.pair = p.entities[ix].clone();
        e
    };
    let plan = plan(&p, &Baseline::default(), &[mk(0), mk(1)]);
    let creates: Vec<_> = plan
        .ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Create { .. }))
        .collect();
    assert_eq!(creates.len(), 1, "{:#?}", plan.ops);
    assert_eq!(creates[0].entity_name, "leads");
}

// ---------- consent (sync-rules §6 and the seed's DND section) ----------

fn consent_link(v: Value) -> Link {
    link(&[(CONSENT, base(v)), (NAME, base(t("Jane")))])
}

fn with_consent(r: Record, field: &str, v: Value) -> Record {
    let mut r = r;
    r.fields.insert(field.into(), v);
    r
}

/// A linked pair, both opted in, then `side` opts out: does it flow?
fn opt_out_on(dir: Direction, side: Side) -> (Option<Value>, Option<Value>) {
    let p = policy(dir);
    let l = consent_link(inn());
    let a = with_consent(
        fa("a1", t("Jane")),
        "do_not_disturb",
        Value::Bool(side == Side::A),
    );
    let b = with_consent(
        fb("b1", t("Jane")),
        "subscription_status",
        Value::Number(if side == Side::B { 0.0 } else { 1.0 }),
    );
    let plan = run(&p, Some(l), vec![a], vec![b]);
    (
        update_to(&plan, Side::A).and_then(|f| f.get("do_not_disturb").cloned()),
        update_to(&plan, Side::B).and_then(|f| f.get("subscription_status").cloned()),
    )
}

#[test]
fn consent_two_way_dnd_becomes_unsubscribed() {
    assert_eq!(
        opt_out_on(Direction::TwoWay, Side::A),
        (None, Some(Value::Number(0.0)))
    );
}

#[test]
fn consent_two_way_unsubscribe_becomes_dnd() {
    assert_eq!(
        opt_out_on(Direction::TwoWay, Side::B),
        (Some(Value::Bool(true)), None)
    );
}

#[test]
fn consent_one_way_fs_to_fm_dnd_flows() {
    assert_eq!(
        opt_out_on(Direction::AToB, Side::A),
        (None, Some(Value::Number(0.0)))
    );
}

#[test]
fn consent_one_way_fs_to_fm_unsubscribe_does_not_flow_back() {
    assert_eq!(opt_out_on(Direction::AToB, Side::B), (None, None));
}

#[test]
fn consent_one_way_fm_to_fs_unsubscribe_becomes_dnd() {
    assert_eq!(
        opt_out_on(Direction::BToA, Side::B),
        (Some(Value::Bool(true)), None)
    );
}

#[test]
fn consent_one_way_fm_to_fs_dnd_does_not_flow() {
    assert_eq!(opt_out_on(Direction::BToA, Side::A), (None, None));
}

#[test]
fn consent_bounced_and_spam_count_as_opted_out() {
    for code in [3.0, 4.0] {
        let p = policy(Direction::TwoWay);
        let a = with_consent(fa("a1", t("Jane")), "do_not_disturb", Value::Bool(false));
        let b = with_consent(
            fb("b1", t("Jane")),
            "subscription_status",
            Value::Number(code),
        );
        let plan = run(&p, Some(consent_link(inn())), vec![a], vec![b]);
        assert_eq!(
            update_to(&plan, Side::A).unwrap()["do_not_disturb"],
            Value::Bool(true),
            "status {code}"
        );
    }
}

#[test]
fn consent_resubscribe_is_never_propagated_in_any_direction() {
    for dir in [Direction::TwoWay, Direction::AToB, Direction::BToA] {
        for side in Side::BOTH {
            let p = policy(dir);
            let l = consent_link(out());
            let a = with_consent(
                fa("a1", t("Jane")),
                "do_not_disturb",
                Value::Bool(side != Side::A),
            );
            let b = with_consent(
                fb("b1", t("Jane")),
                "subscription_status",
                Value::Number(if side == Side::B { 1.0 } else { 0.0 }),
            );
            let plan = run(&p, Some(l), vec![a.clone()], vec![b.clone()]);
            assert!(plan.ops.is_empty(), "{dir:?} {side}: {:#?}", plan.ops);
            // Stable: the loosened side is accepted as is on the next run too.
            let next = Baseline::from_links(plan.links.clone());
            let again = super::plan(&p, &next, &[input(&p, vec![a], vec![b])]);
            assert!(
                again.ops.is_empty(),
                "{dir:?} {side} second run: {:#?}",
                again.ops
            );
        }
    }
}

#[test]
fn consent_true_conflict_opted_out_wins_whatever_the_policy() {
    for winner in [Winner::AWins, Winner::BWins, Winner::MostRecent] {
        let mut p = policy(Direction::TwoWay);
        p.conflict.winner = winner;
        let a = with_consent(fa("a1", t("Jane")), "do_not_disturb", Value::Bool(false));
        let b = with_consent(
            fb("b1", t("Jane")),
            "subscription_status",
            Value::Number(4.0),
        );
        let plan = run(&p, None, vec![a], vec![b]);
        assert_eq!(
            update_to(&plan, Side::A).unwrap()["do_not_disturb"],
            Value::Bool(true),
            "{winner:?}"
        );
        assert!(update_to(&plan, Side::B).is_none());
    }
}

#[test]
fn consent_first_sync_never_writes_opted_in_to_an_existing_record() {
    let p = policy(Direction::TwoWay);
    let a = with_consent(fa("a1", t("Jane")), "do_not_disturb", Value::Bool(false));
    let plan = run(&p, None, vec![a], vec![fb("b1", t("Jane"))]);
    assert!(plan.ops.is_empty(), "{:#?}", plan.ops);
}

#[test]
fn consent_is_sent_explicitly_on_create() {
    let p = policy(Direction::TwoWay);
    let a = with_consent(fa("a1", t("Jane")), "do_not_disturb", Value::Bool(true));
    let plan = run(&p, None, vec![a], vec![]);
    let OpKind::Create { fields, .. } = &plan.ops[0].kind else {
        panic!()
    };
    assert!(fields.contains(&("subscription_status".into(), Value::Number(0.0))));
    assert!(plan.ops[0].consent);
}

// ---------- the seed's opt-out and delete options ----------

#[test]
fn seed_exclude_freshmarketer_opt_outs_is_on_by_default() {
    let p = policy(Direction::TwoWay);
    let b = with_consent(
        rec("b1", &[("emails", t("u@x.io"))]),
        "subscription_status",
        Value::Number(0.0),
    );
    let plan = run(&p, None, vec![], vec![b.clone()]);
    assert!(plan.ops.is_empty());
    assert!(plan.skips[0].reason.contains("opted out"));
    let mut p = policy(Direction::TwoWay);
    p.opt_out.exclude.b = Some(false);
    assert_eq!(run(&p, None, vec![], vec![b]).ops.len(), 1);
}

#[test]
fn seed_excluded_opt_out_still_links_so_the_opt_out_reaches_the_crm() {
    let p = policy(Direction::TwoWay);
    let a = with_consent(fa("a1", t("Jane")), "do_not_disturb", Value::Bool(false));
    let b = with_consent(
        fb("b1", t("Jane")),
        "subscription_status",
        Value::Number(0.0),
    );
    let plan = run(&p, None, vec![a], vec![b]);
    assert_eq!(
        update_to(&plan, Side::A).unwrap()["do_not_disturb"],
        Value::Bool(true)
    );
}

#[test]
fn seed_freshsales_dnd_records_are_synced_unless_removal_is_enabled() {
    let a = with_consent(fa("a1", t("Jane")), "do_not_disturb", Value::Bool(true));
    assert_eq!(
        run(&policy(Direction::AToB), None, vec![a.clone()], vec![])
            .ops
            .len(),
        1
    );
    let mut p = policy(Direction::AToB);
    p.opt_out.on_opt_out.a = RemoveAction::Delete;
    let plan = run(&p, None, vec![a], vec![]);
    assert!(plan.ops.is_empty());
}

fn fs_opts_out(action: RemoveAction) -> Plan {
    let mut p = policy(Direction::AToB);
    p.scope.b = crate::sync::policy::Scope::Container("Newsletter".into());
    p.opt_out.on_opt_out.a = action;
    let a = with_consent(fa("a1", t("Jane")), "do_not_disturb", Value::Bool(true));
    let b = with_consent(
        fb("b1", t("Jane")),
        "subscription_status",
        Value::Number(1.0),
    );
    let mut e = input(&p, vec![a], vec![b]);
    e.containers.b = Some("L1".into());
    plan(&p, &Baseline::from_links([consent_link(inn())]), &[e])
}

#[test]
fn seed_remove_opted_out_freshsales_record_from_the_list() {
    let plan = fs_opts_out(RemoveAction::RemoveFromContainer);
    let kinds: Vec<_> = plan.ops.iter().map(|o| o.kind.clone()).collect();
    assert!(
        kinds.contains(&OpKind::RemoveFromContainer {
            container: "L1".into(),
            id: "b1".into()
        }),
        "{kinds:#?}"
    );
    assert_eq!(
        update_to(&plan, Side::B).unwrap()["subscription_status"],
        Value::Number(0.0)
    );
    let rm = plan
        .ops
        .iter()
        .find(|o| matches!(o.kind, OpKind::RemoveFromContainer { .. }))
        .unwrap();
    assert_eq!(rm.effect, LinkEffect::State(LinkState::Removed(Side::B)));
}

#[test]
fn seed_remove_opted_out_freshsales_record_entirely() {
    let plan = fs_opts_out(RemoveAction::Delete);
    assert_eq!(plan.ops.len(), 1, "{:#?}", plan.ops);
    assert_eq!(plan.ops[0].kind, OpKind::Delete { id: "b1".into() });
}

#[test]
fn seed_keep_opted_out_freshsales_record_only_unsubscribes() {
    let plan = fs_opts_out(RemoveAction::Keep);
    assert_eq!(plan.ops.len(), 1);
    assert_eq!(
        update_to(&plan, Side::B).unwrap()["subscription_status"],
        Value::Number(0.0)
    );
}

fn fs_deleted(action: RemoveAction) -> Plan {
    let mut p = policy(Direction::AToB);
    p.scope.b = crate::sync::policy::Scope::Container("Newsletter".into());
    p.deletes.on_delete.a = action;
    let mut e = input(&p, vec![], vec![fb("b1", t("Jane"))]);
    e.obs.a.deleted.insert("a1".into());
    e.containers.b = Some("L1".into());
    plan(
        &p,
        &Baseline::from_links([link(&[(NAME, base(t("Jane")))])]),
        &[e],
    )
}

#[test]
fn seed_remove_deleted_freshsales_record_from_the_list() {
    let plan = fs_deleted(RemoveAction::RemoveFromContainer);
    assert_eq!(
        plan.ops[0].kind,
        OpKind::RemoveFromContainer {
            container: "L1".into(),
            id: "b1".into()
        }
    );
}

#[test]
fn seed_remove_deleted_freshsales_record_entirely() {
    let plan = fs_deleted(RemoveAction::Delete);
    assert_eq!(plan.ops[0].kind, OpKind::Delete { id: "b1".into() });
}

#[test]
fn seed_deleted_freshsales_record_kept_by_default() {
    let plan = fs_deleted(RemoveAction::Keep);
    assert!(plan.ops.is_empty());
}

// ---------- rules ----------

#[test]
fn rules_act_on_records_flowing_to_the_other_side() {
    use crate::sync::rules::{Action, CompareOp, Condition, Predicate, Rule};
    let mut p = policy(Direction::BToA);
    p.rules = vec![
        Rule {
            name: "vip".into(),
            from: Side::B,
            when: Condition::All(vec![Predicate {
                field: "tags".into(),
                op: CompareOp::Contains,
                value: Some(t("vip")),
            }]),
            then: vec![
                Action::GrantAuthority,
                Action::SetField {
                    field: "lead_score".into(),
                    value: Value::Number(90.0),
                },
            ],
        },
        Rule {
            name: "no-test".into(),
            from: Side::B,
            when: Condition::All(vec![Predicate {
                field: "first_name".into(),
                op: CompareOp::Eq,
                value: Some(t("Test")),
            }]),
            then: vec![Action::Skip],
        },
    ];
    let mut b1 = rec("b1", &[("emails", t("v@x.io")), ("first_name", t("Vera"))]);
    b1.fields
        .insert("tags".into(), Value::Texts(vec!["vip".into()]));
    let b2 = rec("b2", &[("emails", t("t@x.io")), ("first_name", t("Test"))]);
    let plan = run(&p, None, vec![], vec![b1, b2]);
    assert_eq!(plan.ops.len(), 1, "{:#?}", plan.ops);
    let OpKind::Create { fields, .. } = &plan.ops[0].kind else {
        panic!()
    };
    assert!(fields.contains(&("has_authority".into(), Value::Bool(true))));
    assert!(fields.contains(&("lead_score".into(), Value::Number(90.0))));
    assert!(
        plan.skips
            .iter()
            .any(|s| s.id == "b2" && s.reason.contains("no-test"))
    );
}

#[test]
fn rules_mark_dnd_on_an_existing_record_only_when_it_differs() {
    use crate::sync::rules::{Action, CompareOp, Condition, Predicate, Rule};
    let mut p = policy(Direction::TwoWay);
    p.rules = vec![Rule {
        name: "bounced".into(),
        from: Side::B,
        when: Condition::All(vec![Predicate {
            field: "first_name".into(),
            op: CompareOp::Eq,
            value: Some(t("Spam")),
        }]),
        then: vec![Action::MarkDnd],
    }];
    let l = link(&[(NAME, base(t("Spam")))]);
    let a = with_consent(fa("a1", t("Spam")), "do_not_disturb", Value::Bool(false));
    let plan = run(&p, Some(l.clone()), vec![a], vec![fb("b1", t("Spam"))]);
    assert_eq!(
        update_to(&plan, Side::A).unwrap()["do_not_disturb"],
        Value::Bool(true)
    );
    let a = with_consent(fa("a1", t("Spam")), "do_not_disturb", Value::Bool(true));
    let plan = run(&p, Some(l), vec![a], vec![fb("b1", t("Spam"))]);
    assert!(update_to(&plan, Side::A).is_none());
}

// ---------- breakers (sync-rules §10) ----------

fn many_links(n: usize) -> Vec<Link> {
    (0..n)
        .map(|i| {
            let mut l = link(&[(NAME, base(t("Jane")))]);
            l.key = format!("0/a/a{i}");
            l.ids = SidePair::new(Some(format!("a{i}")), Some(format!("b{i}")));
            l.fields
                .insert(EMAIL.into(), base(t(&format!("p{i}@x.io"))));
            l
        })
        .collect()
}

fn rec_i(side: Side, i: usize, name: &str) -> Record {
    match side {
        Side::A => rec(
            &format!("a{i}"),
            &[("email", t(&format!("p{i}@x.io"))), ("first_name", t(name))],
        ),
        Side::B => rec(
            &format!("b{i}"),
            &[
                ("emails", t(&format!("p{i}@x.io"))),
                ("first_name", t(name)),
            ],
        ),
    }
}

#[test]
fn breaker_side_listing_nothing_halts() {
    let mut p = policy(Direction::TwoWay);
    p.breaker.side_empty = true;
    let a: Vec<Record> = (0..5).map(|i| rec_i(Side::A, i, "Jane")).collect();
    let plan = plan(
        &p,
        &Baseline::from_links(many_links(5)),
        &[input(&p, a, vec![])],
    );
    let halt = plan.halted.expect("halted");
    assert_eq!(halt.reason, "side-empty");
    assert!(halt.message.contains("side B"));
    assert!(plan.ops.is_empty() && plan.links.is_empty());
}

#[test]
fn breaker_too_many_deletes_halts_but_keeps_consent() {
    let mut p = policy(Direction::TwoWay);
    p.deletes.on_delete.a = RemoveAction::Delete;
    let links = many_links(30);
    let mut e = input(
        &p,
        vec![],
        (0..30).map(|i| rec_i(Side::B, i, "Jane")).collect(),
    );
    for i in 0..10 {
        e.obs.a.deleted.insert(format!("a{i}"));
    }
    // One record opts out on A: its consent still flows.
    let mut a = with_consent(
        rec_i(Side::A, 20, "Jane"),
        "do_not_disturb",
        Value::Bool(true),
    );
    a.fields.insert("first_name".into(), t("Changed"));
    e.obs.a.listed(a);
    let mut links = links;
    links[20].fields.insert(CONSENT.into(), base(inn()));
    let plan = plan(&p, &Baseline::from_links(links), &[e]);
    assert_eq!(plan.halted.as_ref().unwrap().reason, "too-many-deletes");
    assert_eq!(plan.ops.len(), 1, "{:#?}", plan.ops);
    let OpKind::Update { fields, .. } = &plan.ops[0].kind else {
        panic!()
    };
    assert_eq!(
        fields,
        &vec![("subscription_status".to_string(), Value::Number(0.0))]
    );
    assert_eq!(plan.withheld, 10);
}

#[test]
fn breaker_too_many_overwrites_halts_and_small_syncs_are_exempt() {
    let p = policy(Direction::TwoWay);
    let a: Vec<Record> = (0..30).map(|i| rec_i(Side::A, i, "Changed")).collect();
    let b: Vec<Record> = (0..30).map(|i| rec_i(Side::B, i, "Jane")).collect();
    let plan1 = plan(
        &p,
        &Baseline::from_links(many_links(30)),
        &[input(&p, a, b)],
    );
    assert_eq!(plan1.halted.unwrap().reason, "too-many-overwrites");
    let a: Vec<Record> = (0..5).map(|i| rec_i(Side::A, i, "Changed")).collect();
    let b: Vec<Record> = (0..5).map(|i| rec_i(Side::B, i, "Jane")).collect();
    let plan2 = plan(&p, &Baseline::from_links(many_links(5)), &[input(&p, a, b)]);
    assert!(plan2.halted.is_none());
    assert_eq!(plan2.ops.len(), 5);
}

#[test]
fn the_breakers_ask_for_link_counts_whenever_they_could_change_the_plan() {
    // The engine plans without counting the links (a read of every link key) and counts
    // only when `needs_link_counts` says the breakers could then judge otherwise.
    let mut p = policy(Direction::TwoWay);
    p.breaker.side_empty = true;
    let changed = |n: usize, links: usize| {
        let a: Vec<Record> = (0..n).map(|i| rec_i(Side::A, i, "Changed")).collect();
        let b: Vec<Record> = (0..n).map(|i| rec_i(Side::B, i, "Jane")).collect();
        (
            Baseline::from_links(many_links(links)),
            vec![input(&p, a, b)],
        )
    };
    let empty_b = || {
        let a: Vec<Record> = (0..5).map(|i| rec_i(Side::A, i, "Jane")).collect();
        (
            Baseline::from_links(many_links(5)),
            vec![input(&p, a, vec![])],
        )
    };
    for (what, (counted, inputs), needs) in [
        ("1 update of 30 links", changed(1, 30), false),
        (
            "10 updates of 30 links (within 0.5 x min-linked)",
            changed(10, 30),
            false,
        ),
        ("11 updates of 30 links", changed(11, 30), true),
        ("30 updates of 30 links", changed(30, 30), true),
        ("a complete side listing nothing", empty_b(), true),
    ] {
        let uncounted = Baseline {
            counts: BTreeMap::new(),
            ..counted.clone()
        };
        let first = plan(&p, &uncounted, &inputs);
        assert_eq!(needs_link_counts(&p, &first, &inputs), needs, "{what}");
        let right = plan(&p, &counted, &inputs);
        if !needs {
            assert_eq!(format!("{first:?}"), format!("{right:?}"), "{what}");
        }
    }
    // And a plan the count halts is one that asked for it.
    let (counted, inputs) = changed(30, 30);
    assert!(plan(&p, &counted, &inputs).halted.is_some());
}

#[test]
fn custom_mapping_one_way_field_inside_two_way_sync() {
    let mut p = policy(Direction::TwoWay);
    p.mapping.fields.push(FieldMapping {
        a: "lead_score".into(),
        b: "first_name".into(),
        direction: Some(Direction::AToB),
        owner: None,
    });
    let m = resolve(
        &p,
        SidePair::new("leads", "contacts"),
        &fs_schema(),
        &fm_schema(),
    )
    .unwrap();
    assert_eq!(m.pairs[0].flows, SidePair::new(true, false));
}

// ---------- fields the sync cannot write, or never saw ----------

/// Side A's company is read-only (a CRM's account name); side B's is writable
/// (a Google organization): the pair flows A -> B only.
pub(super) fn company_mapping(p: &SyncPolicy) -> ResolvedMapping {
    let mut a = fs_schema();
    let mut company = FieldDef::new("company", FieldType::Text, Some("company"));
    company.writable = false;
    a.push(company);
    let mut b = fm_schema();
    b.push(FieldDef::new("org", FieldType::Text, Some("company")));
    resolve(p, SidePair::new("leads", "contacts"), &a, &b).unwrap()
}

fn company_input(p: &SyncPolicy, a: Vec<Record>, b: Vec<Record>) -> EntityInput {
    let mut e = input(p, a, b);
    e.mapping = company_mapping(p);
    e
}

#[test]
fn a_read_only_field_the_create_did_not_write_never_overwrites_the_source() {
    let p = policy(Direction::TwoWay);
    let b1 = rec(
        "b1",
        &[
            ("emails", t("jane@x.io")),
            ("first_name", t("Jane")),
            ("org", t("Acme")),
        ],
    );
    // Run 1: b1 is created on A; the company cannot be written there.
    let e = company_input(&p, vec![], vec![b1]);
    let plan1 = plan(&p, &Baseline::default(), std::slice::from_ref(&e));
    let create = plan1
        .ops
        .iter()
        .find(|o| matches!(o.kind, OpKind::Create { .. }))
        .expect("a create on A");
    let OpKind::Create { fields, .. } = &create.kind else {
        unreachable!()
    };
    assert!(fields.iter().all(|(n, _)| n != "company"), "{fields:?}");
    // The app's answer leaves the read-only field out.
    let mut link = plan1.links[0].clone();
    let answer = rec(
        "a1",
        &[("email", t("jane@x.io")), ("first_name", t("Jane"))],
    );
    assert!(apply_ack(
        &mut link,
        create,
        Some(&answer),
        &e.mapping,
        true
    ));

    // Run 2, nothing changed: A is listed (its record is new since the cursor)
    // with its empty company; B is not read.
    let a1 = |company: Value| {
        rec(
            "a1",
            &[
                ("email", t("jane@x.io")),
                ("first_name", t("Jane")),
                ("company", company),
            ],
        )
    };
    let mut e2 = company_input(&p, vec![a1(Value::Null)], vec![]);
    e2.obs.b.complete = false;
    let plan2 = plan(&p, &Baseline::from_links([link]), &[e2.clone()]);
    assert!(plan2.ops.is_empty(), "nothing changed: {:#?}", plan2.ops);
    let stored = plan2.links[0].fields["company~org"].clone();
    assert_eq!(stored.value, t("Acme"));
    assert_eq!(stored.alias.a, Some(Value::Null), "{stored:?}");

    // Run 3, nothing changed again: still nothing; then a real edit on A flows.
    let link = plan2.links[0].clone();
    let again = plan(&p, &Baseline::from_links([link.clone()]), &[e2]);
    assert!(again.is_empty(), "{again:#?}");
    let mut e3 = company_input(&p, vec![a1(t("Globex"))], vec![]);
    e3.obs.b.complete = false;
    let plan3 = plan(&p, &Baseline::from_links([link]), &[e3]);
    assert_eq!(
        update_to(&plan3, Side::B),
        Some(BTreeMap::from([("org".to_string(), t("Globex"))]))
    );
}

/// B's `b1` (no first name) created on side A by a first run, acknowledged with an answer
/// that leaves the first name out: the link, `b1`, and that answer.
fn created_without_first_name(p: &SyncPolicy) -> (Link, Record, Record) {
    let b1 = rec(
        "b1",
        &[("emails", t("jane@x.io")), ("first_name", Value::Null)],
    );
    let e = input(p, vec![], vec![b1.clone()]);
    let plan1 = plan(p, &Baseline::default(), std::slice::from_ref(&e));
    let mut link = plan1.links[0].clone();
    let answer = rec("a1", &[("email", t("jane@x.io"))]);
    assert!(apply_ack(
        &mut link,
        &plan1.ops[0],
        Some(&answer),
        &e.mapping,
        true
    ));
    (link, b1, answer)
}

#[test]
fn an_app_default_on_a_created_record_is_not_a_change() {
    // B's record has no first name: A's app fills one in on create ("Unknown").
    let p = policy(Direction::TwoWay);
    let (link, b1, _) = created_without_first_name(&p);
    let a1 = rec(
        "a1",
        &[("email", t("jane@x.io")), ("first_name", t("Unknown"))],
    );
    let plan2 = run(&p, Some(link), vec![a1], vec![b1]);
    assert!(plan2.ops.is_empty(), "{:#?}", plan2.ops);
}

/// A created record's field the sync left unwritten is adopted at the record's first
/// read, present or not; a value put there after that is a user's edit and is copied.
#[test]
fn a_value_put_on_a_created_record_after_its_first_read_is_an_edit() {
    let p = policy(Direction::TwoWay);
    let (link, b1, answer) = created_without_first_name(&p);
    // Read back without the field: nothing to copy, and the side is seen now.
    let plan2 = run(&p, Some(link.clone()), vec![answer], vec![b1.clone()]);
    assert!(plan2.ops.is_empty(), "{:#?}", plan2.ops);
    let link = plan2.links.first().cloned().unwrap_or(link);
    assert!(!link.fields[NAME].unseen.a, "{:#?}", link.fields[NAME]);
    let plan3 = run(&p, Some(link), vec![fa("a1", t("Ann"))], vec![b1]);
    assert_eq!(
        update_to(&plan3, Side::B),
        Some(BTreeMap::from([("first_name".to_string(), t("Ann"))]))
    );
}

/// Reverting a one-way target's edit keeps the source side's alias: an empty field
/// there (read-only, say) must not look emptied on the next run.
#[test]
fn row9_revert_keeps_the_source_sides_alias() {
    let mut p = policy(Direction::AToB);
    p.one_way_edits = OneWayEdits::Revert;
    let fb0 = FieldBase::new(t("Jane")).with_alias(Side::A, Value::Null);
    let plan1 = run(
        &p,
        Some(link(&[(NAME, fb0)])),
        vec![fa("a1", Value::Null)],
        vec![fb("b1", t("Bea"))],
    );
    assert_eq!(update_to(&plan1, Side::B).unwrap()["first_name"], t("Jane"));
    let revert = &plan1.ops[0];
    assert_eq!(
        revert.base[NAME].alias.a,
        Some(Value::Null),
        "{:#?}",
        revert.base
    );
    assert_eq!(revert.base[NAME].alias.b, None);
}

/// A write that moves another field of the same record (two parts of one structured
/// value in the app, like Google's first phone, which is the primary phone and may be
/// the mobile one) is no user's edit there: the next run copies nothing back.
#[test]
fn a_field_moved_by_the_sync_own_write_is_not_an_edit() {
    let p = policy(Direction::TwoWay);
    let l = link(&[
        ("first_name~first_name", base(t("Jane"))),
        ("mobile_number~mobile", base(Value::Null)),
    ]);
    let a1 = rec(
        "a1",
        &[
            ("email", t("jane@x.io")),
            ("first_name", t("Jane")),
            ("mobile_number", t("+15550100")),
        ],
    );
    let b1 = rec(
        "b1",
        &[
            ("emails", t("jane@x.io")),
            ("first_name", t("Jane")),
            ("mobile", Value::Null),
        ],
    );
    let e = input(&p, vec![a1.clone()], vec![b1]);
    let plan1 = plan(
        &p,
        &Baseline::from_links([l.clone()]),
        std::slice::from_ref(&e),
    );
    let op = plan1
        .ops
        .iter()
        .find(|o| o.side == Side::B)
        .expect("mobile to B");
    assert!(op.kept.contains("first_name~first_name"), "{op:#?}");
    let mut stored = plan1.links.first().cloned().unwrap_or(l);
    // B's answer: the mobile as written, and a first name the write moved.
    let answer = rec(
        "b1",
        &[
            ("emails", t("jane@x.io")),
            ("first_name", t("Jane D.")),
            ("mobile", t("+15550100")),
        ],
    );
    assert!(apply_ack(&mut stored, op, Some(&answer), &e.mapping, true));
    let plan2 = run(&p, Some(stored.clone()), vec![a1.clone()], vec![answer]);
    assert!(plan2.ops.is_empty(), "{:#?}", plan2.ops);
    // A later edit there is one.
    let b1 = rec(
        "b1",
        &[
            ("emails", t("jane@x.io")),
            ("first_name", t("Janet")),
            ("mobile", t("+15550100")),
        ],
    );
    let plan3 = run(&p, Some(stored), vec![a1], vec![b1]);
    assert_eq!(
        update_to(&plan3, Side::A),
        Some(BTreeMap::from([("first_name".to_string(), t("Janet"))]))
    );
}

/// The linked record of one side is gone and two others there share its e-mail: the
/// operator picks; the run neither re-creates a third nor touches the survivor.
#[test]
fn a_gone_record_with_several_namesakes_is_an_ambiguity_not_a_recreate() {
    let p = policy(Direction::TwoWay);
    let l = link(&[(NAME, base(t("Jane")))]);
    let mut e = input(
        &p,
        vec![fa("a1", t("Janet"))],
        vec![fb("b2", t("Jane")), fb("b3", t("Jane"))],
    );
    e.obs.b.deleted.insert("b1".into());
    let plan = plan(&p, &Baseline::from_links([l]), std::slice::from_ref(&e));
    assert!(plan.ops.is_empty(), "{:#?}", plan.ops);
    assert!(
        plan.ambiguous
            .iter()
            .any(|a| a.b == ["b2".to_string(), "b3".to_string()]),
        "{:#?}",
        plan.ambiguous
    );
}
