//! A sync's settings as plain serde types: what the operator config resolves
//! to and what the planner reads. Defaults follow the seed documents: two-way
//! syncs create on both sides, Freshmarketer-style opt-outs are excluded,
//! nothing is ever deleted unless asked for, and the breaker is on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{Side, SidePair, Value};
use super::rules::Rule;

/// Everything that decides what a sync writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SyncPolicy {
    /// The sync's name: unique per host, used in the store's keys and in markers.
    pub name: String,
    /// The entity pairs kept in step (Freshsales `leads` and/or `contacts`
    /// against Freshmarketer `contacts`...).
    pub entities: Vec<EntityPair>,
    /// Which records of each side take part: one container, or all.
    #[serde(default)]
    pub scope: SidePair<Scope>,
    /// Which way values flow.
    pub direction: Direction,
    /// Who wins when both sides changed a field.
    #[serde(default)]
    pub conflict: ConflictPolicy,
    /// Which fields are paired.
    #[serde(default)]
    pub mapping: MappingConfig,
    /// Mapper plugins (tenant transforms), applied in order to every record read.
    #[serde(default)]
    pub mappers: Vec<String>,
    /// IF/THEN rules applied to records flowing from one side to the other.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// What opt-outs do.
    #[serde(default)]
    pub opt_out: OptOutOptions,
    /// What deletions do.
    #[serde(default)]
    pub deletes: DeleteOptions,
    /// When a linked record of this side leaves its scope (list), what
    /// happens to its counterpart (sync-rules E14). The link is kept,
    /// `detached`, whatever the action.
    #[serde(default)]
    pub on_leave: SidePair<LeaveAction>,
    /// The loop detector (sync-rules W6): when a link is quarantined.
    #[serde(default)]
    pub loops: LoopDetector,
    /// Whether records missing on a side are created there.
    #[serde(default)]
    pub create: CreateOptions,
    /// What an edit on the target of a one-way field does (sync-rules F9).
    #[serde(default)]
    pub one_way_edits: OneWayEdits,
    /// When a run halts instead of writing.
    #[serde(default)]
    pub breaker: BreakerThresholds,
    /// How failed writes are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How much one run may read before the sync fails (a connector that never ends
    /// its listing must not exhaust the host).
    #[serde(default)]
    pub limits: ReadLimits,
}

impl SyncPolicy {
    /// A policy with defaults everywhere, for tests and as a starting point.
    pub fn new(name: &str, entities: Vec<EntityPair>, direction: Direction) -> Self {
        SyncPolicy {
            name: name.into(),
            entities,
            scope: SidePair::default(),
            direction,
            conflict: ConflictPolicy::default(),
            mapping: MappingConfig::default(),
            mappers: Vec::new(),
            rules: Vec::new(),
            opt_out: OptOutOptions::default(),
            deletes: DeleteOptions::default(),
            on_leave: SidePair::default(),
            loops: LoopDetector::default(),
            create: CreateOptions::default(),
            one_way_edits: OneWayEdits::default(),
            breaker: BreakerThresholds::default(),
            retry: RetryPolicy::default(),
            limits: ReadLimits::default(),
        }
    }

    /// Whether values may flow from `from` to the other side.
    pub fn flows(&self, from: Side) -> bool {
        self.direction.allows(from)
    }

    /// Checks what serde cannot: one line per problem, naming the setting.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |msg: String| Err(PolicyError::Invalid(format!("sync `{}`: {msg}", self.name)));
        if self.name.is_empty() || self.name.contains(['\0', '/']) {
            return bad("the name must be non-empty, without `/` or NUL".into());
        }
        if self.entities.is_empty() {
            return bad("`entities` is empty: list at least one entity pair".into());
        }
        for side in Side::BOTH {
            if let Scope::Container(c) = self.scope.get(side)
                && c.trim().is_empty()
            {
                return bad(format!(
                    "`scope.{}` names an empty container",
                    side.as_str()
                ));
            }
            let leave = match self.on_leave.get(side) {
                LeaveAction::RemoveFromContainer => RemoveAction::RemoveFromContainer,
                LeaveAction::Keep | LeaveAction::Unsubscribe => RemoveAction::Keep,
            };
            let removal = [
                ("opt-out.on-opt-out", *self.opt_out.on_opt_out.get(side)),
                ("deletes.on-delete", *self.deletes.on_delete.get(side)),
                ("scope.on-leave", leave),
            ];
            if *self.on_leave.get(side) != LeaveAction::Keep && *self.scope.get(side) == Scope::All
            {
                return bad(format!(
                    "`scope.on-leave.{}` acts when a record leaves side {side}'s list, but side {side} \
                     syncs all records: set `scope.{}` to a list or remove the setting",
                    side.as_str(),
                    side.as_str()
                ));
            }
            for (key, action) in removal {
                if action == RemoveAction::RemoveFromContainer
                    && *self.scope.get(side.other()) == Scope::All
                {
                    return bad(format!(
                        "`{key}.{}` is `remove-from-list` but side {} syncs all records: \
                         set `scope.{}` to a list or choose `keep`/`delete`",
                        side.as_str(),
                        side.other(),
                        side.other().as_str()
                    ));
                }
            }
        }
        for f in &self.mapping.fields {
            if let Some(d) = f.direction
                && self.direction.intersect(d).is_none()
            {
                return bad(format!(
                    "field `{}`/`{}` flows {} but the sync flows {}",
                    f.a,
                    f.b,
                    d.label(),
                    self.direction.label()
                ));
            }
        }
        let l = &self.loops;
        if l.max_writes == 0 || l.max_writes as usize >= super::baseline::Review::MAX_WRITES {
            return bad(format!(
                "`loops.max-writes` must be between 1 and {}",
                super::baseline::Review::MAX_WRITES - 1
            ));
        }
        if l.window == 0 {
            return bad("`loops.window` must be at least 1 run".into());
        }
        let b = &self.breaker;
        if !(0.0..=1.0).contains(&b.max_delete_ratio)
            || !(0.0..=1.0).contains(&b.max_overwrite_ratio)
        {
            return bad("breaker ratios must be between 0 and 1".into());
        }
        for r in &self.rules {
            r.validate().map_err(|e| {
                PolicyError::Invalid(format!("sync `{}`: rule `{}`: {e}", self.name, r.name))
            })?;
        }
        Ok(())
    }
}

/// A problem with a sync's settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A setting is out of range or contradicts another.
    #[error("{0}")]
    Invalid(String),
}

/// One entity of each side, kept in step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EntityPair {
    /// Entity name on side A.
    pub a: String,
    /// Entity name on side B.
    pub b: String,
    /// Create side-A records of this entity from unmatched B records. Defaults
    /// to `create.a`, except that when several pairs share the same B entity
    /// only the first one creates on A (a Freshmarketer contact becomes a lead
    /// OR a contact, never both).
    #[serde(default)]
    pub create_a: Option<bool>,
    /// Create side-B records from unmatched A records; same rule mirrored.
    #[serde(default)]
    pub create_b: Option<bool>,
}

impl EntityPair {
    /// A pair with default creation.
    pub fn new(a: &str, b: &str) -> Self {
        EntityPair {
            a: a.into(),
            b: b.into(),
            create_a: None,
            create_b: None,
        }
    }

    /// The entity name on one side.
    pub fn name(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }
}

/// Which records of a side take part.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Every record of the entity.
    #[default]
    All,
    /// The members of one container (list, group), by id or name.
    Container(String),
}

/// Which way values flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From A to B only.
    AToB,
    /// From B to A only.
    BToA,
    /// Both ways.
    TwoWay,
}

impl Direction {
    /// Whether values may flow from `from` to the other side.
    pub fn allows(self, from: Side) -> bool {
        matches!(
            (self, from),
            (Direction::TwoWay, _) | (Direction::AToB, Side::A) | (Direction::BToA, Side::B)
        )
    }

    /// The flows both directions allow, if any.
    pub fn intersect(self, other: Direction) -> Option<Direction> {
        match (
            self.allows(Side::A) && other.allows(Side::A),
            self.allows(Side::B) && other.allows(Side::B),
        ) {
            (true, true) => Some(Direction::TwoWay),
            (true, false) => Some(Direction::AToB),
            (false, true) => Some(Direction::BToA),
            (false, false) => None,
        }
    }

    /// `a-to-b`, `b-to-a` or `two-way`.
    pub fn label(self) -> &'static str {
        match self {
            Direction::AToB => "a-to-b",
            Direction::BToA => "b-to-a",
            Direction::TwoWay => "two-way",
        }
    }
}

/// Who wins a true conflict (both sides changed a field to different values).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConflictPolicy {
    /// The default rule.
    #[serde(default)]
    pub winner: Winner,
    /// `most-recent`: timestamps closer than this are a tie, decided by `fallback`.
    #[serde(default = "default_skew")]
    pub skew_seconds: u32,
    /// Who wins a `most-recent` tie or when a timestamp is missing.
    #[serde(default = "side_a")]
    pub fallback: Side,
    /// Per-field owners (system of record), by mapped key or either side's
    /// field name: the owner always wins that field.
    #[serde(default)]
    pub owners: BTreeMap<String, Side>,
    /// Per-field rules, by the same keys as `owners`: replace `winner` for that
    /// field (an owner, if any, still comes first).
    #[serde(default)]
    pub fields: BTreeMap<String, Winner>,
}

impl Default for ConflictPolicy {
    fn default() -> Self {
        ConflictPolicy {
            winner: Winner::default(),
            skew_seconds: default_skew(),
            fallback: Side::A,
            owners: BTreeMap::new(),
            fields: BTreeMap::new(),
        }
    }
}

fn default_skew() -> u32 {
    60
}

fn side_a() -> Side {
    Side::A
}

/// The default conflict rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Winner {
    /// Side A's value wins.
    AWins,
    /// Side B's value wins.
    BWins,
    /// The record changed most recently wins (ties go to the fallback side).
    #[default]
    MostRecent,
    /// Side A's value wins, unless it is blank: then side B's value wins.
    PreferAUnlessBlank,
    /// Side B's value wins, unless it is blank: then side A's value wins.
    PreferBUnlessBlank,
    /// Nobody wins: nothing is written to the field, both values are kept on
    /// the link and shown until the operator picks one
    /// (`tandem sync resolve NAME --field F --take a|b ID`).
    Manual,
}

/// What happens to the counterpart of a record that left its side's scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaveAction {
    /// Nothing: the pair is no longer synced until the record returns.
    #[default]
    Keep,
    /// Take the counterpart out of the other side's synced list (it is put
    /// back when the record returns).
    #[serde(rename = "remove-from-list")]
    RemoveFromContainer,
    /// Mark the counterpart opted out of e-mail (DND / unsubscribed): consent
    /// only tightens, so it is never re-subscribed when the record returns.
    Unsubscribe,
}

impl LeaveAction {
    /// The config spelling.
    pub fn label(self) -> &'static str {
        match self {
            LeaveAction::Keep => "keep",
            LeaveAction::RemoveFromContainer => "remove-from-list",
            LeaveAction::Unsubscribe => "unsubscribe",
        }
    }
}

/// The loop detector (sync-rules W6): a link written too often, or a field
/// flipping between two values run after run, is quarantined: not written
/// again until the operator releases it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LoopDetector {
    /// More writes than this to one link (both sides counted) within `window`
    /// runs quarantine it.
    #[serde(default = "default_loop_writes")]
    pub max_writes: u32,
    /// The window, in runs (the current one included).
    #[serde(default = "default_loop_window")]
    pub window: u32,
    /// Quarantine a link when a field's written value goes back and forth
    /// between two values (x, y, x, y) within the window.
    #[serde(default = "yes")]
    pub alternation: bool,
}

impl Default for LoopDetector {
    fn default() -> Self {
        LoopDetector {
            max_writes: default_loop_writes(),
            window: default_loop_window(),
            alternation: true,
        }
    }
}

fn default_loop_writes() -> u32 {
    8
}
fn default_loop_window() -> u32 {
    10
}

/// Which fields are paired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MappingConfig {
    /// Pair fields with the same well-known meaning automatically (e-mail is
    /// always paired, whatever this says).
    #[serde(default = "yes")]
    pub defaults: bool,
    /// Default pairs to leave out, by well-known tag or either side's field name
    /// (a field "left blank").
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Pairs chosen by hand; they replace default pairs using either field.
    #[serde(default)]
    pub fields: Vec<FieldMapping>,
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            defaults: true,
            exclude: Vec::new(),
            fields: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// One hand-made field pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FieldMapping {
    /// Field name on side A.
    pub a: String,
    /// Field name on side B.
    pub b: String,
    /// Restrict this field's flow (within the sync's direction).
    #[serde(default)]
    pub direction: Option<Direction>,
    /// This side always wins this field's conflicts.
    #[serde(default)]
    pub owner: Option<Side>,
}

/// What to do with the counterpart of a record that opted out, was deleted, ...
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoveAction {
    /// Leave it (the link is kept; nothing is deleted).
    #[default]
    Keep,
    /// Remove it from the synced container only.
    #[serde(rename = "remove-from-list")]
    RemoveFromContainer,
    /// Delete it from the other app entirely.
    Delete,
}

/// Opt-out handling (seed: "Advanced settings").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OptOutOptions {
    /// Do not create, on the other side, records that are opted out on this
    /// side. `None` means the default: on for a side whose consent field is a
    /// marketing subscription (well-known `consent`, as Freshmarketer's
    /// "Exclude Freshmarketer email opt-outs", default on), off for a side whose
    /// consent is a `dnd` flag. Opted-out records that match an existing record
    /// are still linked, so that the opt-out reaches the other app.
    #[serde(default)]
    pub exclude: SidePair<Option<bool>>,
    /// When a linked record of this side opts out, what happens to its
    /// counterpart on the other side (seed: "Remove opted-out Freshsales
    /// leads/contacts: from Freshmarketer completely or from the synced list").
    /// Anything but `keep` also excludes this side's opted-out records from creates.
    #[serde(default)]
    pub on_opt_out: SidePair<RemoveAction>,
}

/// Deletion handling (seed: "Remove deleted Freshsales leads/contacts").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DeleteOptions {
    /// When a linked record of this side is deleted, what happens to its
    /// counterpart on the other side. Default `keep` (never delete). A
    /// counterpart modified since the last sync is kept and re-created instead
    /// (modification beats deletion).
    #[serde(default)]
    pub on_delete: SidePair<RemoveAction>,
    /// Days a deletion's tombstone is kept (sync-rules I7, E12); a link deleted on both
    /// sides is dropped only when its tombstones expire. Default 30.
    #[serde(default = "DeleteOptions::default_retention")]
    pub tombstone_retention_days: u32,
}

impl DeleteOptions {
    /// The default tombstone retention, in days.
    pub const DEFAULT_RETENTION_DAYS: u32 = 30;

    fn default_retention() -> u32 {
        Self::DEFAULT_RETENTION_DAYS
    }

    /// How long a tombstone is kept, in seconds.
    pub fn retention_seconds(&self) -> i64 {
        i64::from(self.tombstone_retention_days) * 86_400
    }
}

impl Default for DeleteOptions {
    fn default() -> Self {
        DeleteOptions {
            on_delete: SidePair::default(),
            tombstone_retention_days: Self::DEFAULT_RETENTION_DAYS,
        }
    }
}

/// Whether unmatched records are created on the other side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CreateOptions {
    /// Create records on side A (from unmatched B records).
    #[serde(default = "yes")]
    pub a: bool,
    /// Create records on side B (from unmatched A records).
    #[serde(default = "yes")]
    pub b: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions { a: true, b: true }
    }
}

impl CreateOptions {
    /// Whether records are created on `side`.
    pub fn on(&self, side: Side) -> bool {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }
}

/// What an edit on the target side of a one-way field does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OneWayEdits {
    /// Leave it until the source changes that field again ("only the source's
    /// change flows").
    #[default]
    Ignore,
    /// Write the source's value back over it (a strict mirror). Never with an
    /// empty value, never for consent.
    Revert,
}

/// When a run halts with a report instead of writing (sync-rules §10).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BreakerThresholds {
    /// Halt when a side that had linked records lists none.
    #[serde(default = "yes")]
    pub side_empty: bool,
    /// Halt when planned deletes/removals on a side exceed this share of its links.
    #[serde(default = "default_delete_ratio")]
    pub max_delete_ratio: f64,
    /// Halt when planned updates on a side exceed this share of its links.
    #[serde(default = "default_overwrite_ratio")]
    pub max_overwrite_ratio: f64,
    /// Ratios apply from this many links up (small syncs change a lot at once).
    #[serde(default = "default_min_linked")]
    pub min_linked: usize,
    /// Absolute cap on deletes/removals per side and run, if any.
    #[serde(default)]
    pub max_deletes: Option<usize>,
    /// Absolute cap on updates per side and run, if any.
    #[serde(default)]
    pub max_overwrites: Option<usize>,
}

impl Default for BreakerThresholds {
    fn default() -> Self {
        BreakerThresholds {
            side_empty: true,
            max_delete_ratio: default_delete_ratio(),
            max_overwrite_ratio: default_overwrite_ratio(),
            min_linked: default_min_linked(),
            max_deletes: None,
            max_overwrites: None,
        }
    }
}

fn default_delete_ratio() -> f64 {
    0.1
}
fn default_overwrite_ratio() -> f64 {
    0.5
}
fn default_min_linked() -> usize {
    20
}

/// Bounds on what one run reads (`[syncs.NAME.limits]`). Everything a run reads is
/// held in memory until it is planned, so a connector answering `more = true` forever
/// would grow the host without them; a run that reaches one fails with the key to
/// raise, and the sync's other runs and the daemon's other syncs go on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReadLimits {
    /// Records (and deletions) one listing — one entity of one side — may return.
    pub listing_records: u64,
    /// Bytes (estimated) one listing may return.
    pub listing_bytes: u64,
    /// Records a run may read in all: every listing, re-read and lookup.
    pub run_records: u64,
    /// Bytes (estimated) a run may read in all.
    pub run_bytes: u64,
    /// Wall time a run may spend reading both sides, in seconds.
    pub read_seconds: u64,
    /// Largest cursor a connector may hand back (it is stored per sync and side).
    pub cursor_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            listing_records: 1_000_000,
            listing_bytes: 1 << 30,
            run_records: 2_000_000,
            run_bytes: 2 << 30,
            read_seconds: 6 * 3600,
            cursor_bytes: 64 << 10,
        }
    }
}

/// How failed writes are retried on later runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts before a write is parked with its error.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First back-off, doubled per attempt.
    #[serde(default = "default_base_delay")]
    pub base_delay_seconds: u64,
    /// Back-off cap.
    #[serde(default = "default_max_delay")]
    pub max_delay_seconds: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_attempts(),
            base_delay_seconds: default_base_delay(),
            max_delay_seconds: default_max_delay(),
        }
    }
}

fn default_attempts() -> u32 {
    5
}
fn default_base_delay() -> u64 {
    60
}
fn default_max_delay() -> u64 {
    3600
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1`.
    pub fn backoff_seconds(&self, attempts: u32) -> u64 {
        let exp = attempts.saturating_sub(1).min(20);
        self.base_delay_seconds
            .saturating_mul(1u64 << exp)
            .min(self.max_delay_seconds)
    }
}

/// A literal value in a rule or action (same shape as a field value).
pub type Literal = Value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_round_trips_through_json_with_defaults() {
        let json = r#"{"name":"fs-fm","entities":[{"a":"leads","b":"contacts"}],
            "direction":"two-way","scope":{"b":{"container":"Newsletter"}},
            "deletes":{"on-delete":{"a":"remove-from-list"}}}"#;
        let p: SyncPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(p.scope.b, Scope::Container("Newsletter".into()));
        assert_eq!(p.scope.a, Scope::All);
        assert_eq!(p.deletes.on_delete.a, RemoveAction::RemoveFromContainer);
        assert!(p.create.a && p.create.b);
        assert_eq!(p.conflict.winner, Winner::MostRecent);
        p.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let json = r#"{"name":"x","entities":[],"direction":"two-way","colour":"red"}"#;
        let err = serde_json::from_str::<SyncPolicy>(json).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn remove_from_list_needs_a_list_on_the_other_side() {
        let mut p = SyncPolicy::new(
            "s",
            vec![EntityPair::new("leads", "contacts")],
            Direction::TwoWay,
        );
        p.opt_out.on_opt_out.a = RemoveAction::RemoveFromContainer;
        let err = p.validate().unwrap_err().to_string();
        assert!(err.contains("scope.b"), "{err}");
        p.scope.b = Scope::Container("L".into());
        p.validate().unwrap();
    }

    #[test]
    fn field_direction_must_fit_the_sync() {
        let mut p = SyncPolicy::new("s", vec![EntityPair::new("c", "c")], Direction::AToB);
        p.mapping.fields.push(FieldMapping {
            a: "x".into(),
            b: "y".into(),
            direction: Some(Direction::BToA),
            owner: None,
        });
        assert!(p.validate().is_err());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryPolicy::default();
        assert_eq!(r.backoff_seconds(1), 60);
        assert_eq!(r.backoff_seconds(2), 120);
        assert_eq!(r.backoff_seconds(30), 3600);
    }
}
