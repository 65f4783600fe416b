//! The pure planner: `(baseline, observations of A and B, policy) -> Plan`.
//!
//! No I/O and no clock: the same inputs give the same plan, ops in the same
//! order with the same ids. The plan is what the executor runs and what a dry
//! run shows. It implements:
//! - the field table (sync-rules §3), per mapped field, against the base
//!   (`fields.rs`), with echo suppression by read-back aliases (sync-rules W2) and
//!   consent that only tightens (sync-rules §6): only "opted out" is ever written to an
//!   existing record;
//! - the existence table (sync-rules §4): match by e-mail, ambiguity, creates, deletes,
//!   scope exits, modification beats deletion (`existence.rs`);
//! - the breakers: a side that lists nothing, or too many deletes/overwrites
//!   (`breaker.rs`);
//! - what waits for the operator: `manual` conflicts, scope exits, the loop
//!   detector (`review.rs`).
//!
//! This file holds the plan's types, the entry point [`plan`], the planner's
//! shared bookkeeping, and [`apply_ack`] (the baseline after a write).
//!
//! Drift cannot hide here (sync-rules C5): change is measured against the
//! one shared base (or a side's recorded alias), never against a per-side
//! "seen" hash, so a side that silently differs from the base counts as
//! changed and is repaired by sync-rules F2, F3 or F5; two sides that agree with each
//! other but not with a stale base take sync-rules F4.
//!
//! Failure handling, retries and cursors are the executor's ([`super::run`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::baseline::{Baseline, FieldBase, Link, LinkState, WriteMark};
use super::mapping::ResolvedMapping;
use super::model::{Record, RecordKey, Side, SidePair, Value, digest};
use super::policy::{EntityPair, SyncPolicy};

/// What the planner reads about one entity pair.
#[derive(Clone, Debug)]
pub struct EntityInput {
    /// The entity names.
    pub pair: EntityPair,
    /// The resolved field mapping.
    pub mapping: ResolvedMapping,
    /// The container id of each side's scope, if scoped to one.
    pub containers: SidePair<Option<String>>,
    /// What was read from each side in this run.
    pub obs: SidePair<Observation>,
}

/// What was read from one side in this run (after mappers).
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// Records read: listed by `pull` (in scope) or found by a lookup.
    pub records: BTreeMap<String, Observed>,
    /// Ids the app reported deleted (or that a full listing and a lookup by id
    /// showed to be gone).
    pub deleted: BTreeSet<String>,
    /// Ids that exist but are no longer in the scope (left the list).
    pub left_scope: BTreeSet<String>,
    /// The listing was complete: every in-scope record is in `records`.
    pub complete: bool,
    /// Normalised e-mails looked up on this side in this run.
    pub searched: BTreeSet<String>,
    /// Records that could not be read or mapped: left alone, with the reason.
    pub failed: BTreeMap<String, String>,
}

impl Observation {
    /// Adds a record listed by the side's `pull` (in scope).
    pub fn listed(&mut self, r: Record) {
        self.records.insert(
            r.id.clone(),
            Observed {
                record: r,
                in_scope: true,
            },
        );
    }
}

/// One record read in this run.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The record as the app returned it.
    pub record: Record,
    /// It is known to be in the side's scope (listed by `pull`); false for a
    /// record found by a lookup, whose list membership is unknown.
    pub in_scope: bool,
}

/// The planner's output: the dry-run report and the executor's work list.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    /// Link rows to store before executing: new links, new bases without a
    /// write, state changes.
    pub links: Vec<Link>,
    /// Link keys to drop.
    pub unlink: Vec<String>,
    /// Writes, consent first, in a deterministic order.
    pub ops: Vec<PlannedOp>,
    /// Records left alone, with the reason.
    pub skips: Vec<Skip>,
    /// True conflicts and first-sync disagreements, with the decision.
    pub conflicts: Vec<ConflictNote>,
    /// Ambiguous matches, reported and left alone.
    pub ambiguous: Vec<Ambiguity>,
    /// Other per-record events (linked, detached, consent not propagated...).
    pub notes: Vec<Note>,
    /// The breaker tripped: only consent writes are kept.
    pub halted: Option<Halt>,
    /// Ops withheld by the breaker.
    pub withheld: usize,
    /// Linked records the planner needs to see to decide a field without a
    /// base (a new mapping, a field that appeared): (entity, side, id). The
    /// executor reads them and plans again.
    pub fetch: Vec<RecordKey>,
}

/// One write to one side.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct PlannedOp {
    /// Deterministic id (idempotency key).
    pub id: String,
    /// Entity pair index.
    pub entity: usize,
    /// The target side.
    pub side: Side,
    /// The target entity name.
    pub entity_name: String,
    /// The link it belongs to.
    pub link: String,
    /// What is written: create, update, delete, or a membership change.
    pub kind: OpKind,
    /// Why, for humans.
    pub reason: String,
    /// It carries a consent change (sent first, never held back by the breaker).
    pub consent: bool,
    /// Field bases to commit when acknowledged, by pair key.
    pub base: BTreeMap<String, FieldBase>,
    /// Keys also written to the other side: committed once both are acknowledged.
    pub joint: BTreeSet<String>,
    /// What an acknowledgement does to the link.
    pub effect: LinkEffect,
    /// The run that planned it (the loop detector counts acknowledged writes per run).
    #[serde(default)]
    pub run: u64,
    /// Pair keys this update leaves alone whose target value was unchanged when
    /// planned. If the app's answer shows one changed, the write itself moved it (parts
    /// of one structured value: a contact's only phone, set as its mobile, is its
    /// primary phone too): that is the side's own value, not an edit to copy over.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub kept: BTreeSet<String>,
}

/// A write, in the target app's field names and shapes.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// Create a record.
    Create {
        /// Fields to set.
        fields: Vec<(String, Value)>,
        /// The engine marker.
        marker: String,
        /// Containers to add it to.
        containers: Vec<String>,
    },
    /// Update fields.
    Update {
        /// The record's id in the app.
        id: String,
        /// Its version when observed.
        if_version: Option<String>,
        /// Fields to set.
        fields: Vec<(String, Value)>,
    },
    /// Delete a record.
    Delete {
        /// The record's id in the app.
        id: String,
    },
    /// Add a record to a container.
    AddToContainer {
        /// The container's id in the app.
        container: String,
        /// The record's id in the app.
        id: String,
    },
    /// Remove a record from a container.
    RemoveFromContainer {
        /// The container's id in the app.
        container: String,
        /// The record's id in the app.
        id: String,
    },
}

impl OpKind {
    /// `create`, `update`, ...
    pub fn label(&self) -> &'static str {
        match self {
            OpKind::Create { .. } => "create",
            OpKind::Update { .. } => "update",
            OpKind::Delete { .. } => "delete",
            OpKind::AddToContainer { .. } => "add-to-list",
            OpKind::RemoveFromContainer { .. } => "remove-from-list",
        }
    }

    fn order(&self) -> u8 {
        match self {
            OpKind::Create { .. } => 0,
            OpKind::Update { .. } => 1,
            OpKind::AddToContainer { .. } => 2,
            OpKind::RemoveFromContainer { .. } => 3,
            OpKind::Delete { .. } => 4,
        }
    }
}

/// What acknowledging an op does to its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkEffect {
    /// Only the field bases.
    None,
    /// A create: the read-back id becomes the link's id on the target side.
    SetId,
    /// The link is dropped.
    Drop,
    /// The link takes this state.
    State(LinkState),
    /// The record of this side left its scope and the other side's record was
    /// taken out of its list: the link is `Detached(side)` and remembers it
    /// ([`Review::unlisted`](super::baseline::Review::unlisted)).
    Unlisted(Side),
}

/// A record left alone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skip {
    /// Entity pair index.
    pub entity: usize,
    /// The side of the record.
    pub side: Side,
    /// The record's id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// A field both sides disagree on, and what was decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConflictNote {
    /// Entity pair index.
    pub entity: usize,
    /// The link's id (what `tandem sync resolve` takes).
    pub link: String,
    /// The pair key.
    pub field: String,
    /// A's value.
    pub a: Value,
    /// B's value.
    pub b: Value,
    /// The base, `None` on a first sync.
    pub base: Option<Value>,
    /// The winning side, if one.
    pub winner: Option<Side>,
    /// The decision in words.
    pub decision: String,
}

/// Several candidates for one e-mail: reported, never guessed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ambiguity {
    /// Entity pair index.
    pub entity: usize,
    /// The normalised e-mail.
    pub email: String,
    /// Candidates on A.
    pub a: Vec<String>,
    /// Candidates on B.
    pub b: Vec<String>,
    /// Why it is ambiguous.
    pub reason: String,
}

/// A per-record event that is not a write.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Note {
    /// Entity pair index.
    pub entity: usize,
    /// The link's id (what `tandem sync resolve` takes).
    pub link: String,
    /// What happened.
    pub text: String,
}

/// Why the breaker halted the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Halt {
    /// `side-empty`, `too-many-deletes` or `too-many-overwrites`.
    pub reason: String,
    /// One line for the operator.
    pub message: String,
}

/// Per-side counts of a plan, for the dry run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SideSummary {
    /// Records created on this side.
    pub create: usize,
    /// Records updated.
    pub update: usize,
    /// Records deleted.
    pub delete: usize,
    /// Records added to the list.
    pub add: usize,
    /// Records removed from the list.
    pub remove: usize,
}

impl Plan {
    /// Counts per target side.
    pub fn summary(&self) -> SidePair<SideSummary> {
        let mut s: SidePair<SideSummary> = SidePair::default();
        for op in &self.ops {
            let c = s.get_mut(op.side);
            match op.kind {
                OpKind::Create { .. } => c.create += 1,
                OpKind::Update { .. } => c.update += 1,
                OpKind::Delete { .. } => c.delete += 1,
                OpKind::AddToContainer { .. } => c.add += 1,
                OpKind::RemoveFromContainer { .. } => c.remove += 1,
            }
        }
        s
    }

    /// Whether the plan writes nothing and changes no state.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.links.is_empty() && self.unlink.is_empty()
    }
}

/// The engine marker written with a record created for `link`.
pub fn marker(sync: &str, link: &str) -> String {
    format!("tandem-{}", digest(&[sync, link]))
}

/// Plans one run. Pure and deterministic.
pub fn plan(policy: &SyncPolicy, baseline: &Baseline, entities: &[EntityInput]) -> Plan {
    let mut p = Planner {
        policy,
        entities,
        plan: Plan::default(),
        claimed: SidePair::default(),
        creating: SidePair::default(),
        held: SidePair::default(),
        deferred: Vec::new(),
        baseline,
    };
    for link in baseline.links.values() {
        let Some(e) = entities.get(link.entity) else {
            continue;
        };
        for side in Side::BOTH {
            if let Some(id) = link.id(side) {
                p.claimed
                    .get_mut(side)
                    .insert((e.pair.name(side).to_string(), id.to_string()));
            }
        }
    }
    for (ix, e) in entities.iter().enumerate() {
        for link in baseline.links.values().filter(|l| l.entity == ix) {
            // Deleted on both sides: nothing to do until the tombstones expire,
            // unless a record came back (restored from the app's bin).
            let back = Side::BOTH.into_iter().any(|s| {
                link.id(s)
                    .is_some_and(|id| e.obs.get(s).records.contains_key(id))
            });
            if baseline.gone.contains(&link.key) && !back {
                continue;
            }
            p.link(ix, e, link);
        }
        p.unlinked(ix, e, baseline);
    }
    // Creates come after every entity pair has matched: a record of one side may have
    // its counterpart in another pair's entity (`entities = "both"`: a Freshmarketer
    // contact that is a Freshsales contact must not also become a lead).
    for (ix, s, id, emails) in p.deferred.clone() {
        p.deferred_create(ix, &entities[ix], s, &id, &emails);
    }
    p.finish(baseline)
}

struct Planner<'a> {
    policy: &'a SyncPolicy,
    entities: &'a [EntityInput],
    plan: Plan,
    /// (entity name, id) per side already linked, in the baseline or by this plan.
    claimed: SidePair<BTreeSet<(String, String)>>,
    /// (entity name, e-mail) per side of the records this plan creates.
    creating: SidePair<BTreeSet<(String, String)>>,
    /// (entity name, id) per side of unlinked records that some entity pair
    /// matched, found ambiguous or otherwise did not leave free to create.
    held: SidePair<BTreeSet<(String, String)>>,
    /// Creates waiting for every entity pair's matching: (pair, side of the
    /// record, its id, its e-mails).
    deferred: Vec<(usize, Side, String, Vec<String>)>,
    /// The input links (a link is stored again only when it changed), and
    /// the run's number for the loop detector.
    baseline: &'a Baseline,
}

/// The records sharing an e-mail with one unlinked record of side `s`.
#[derive(Default)]
struct Candidates {
    /// Unlinked records of the other side.
    free_t: BTreeSet<String>,
    /// Linked records of the other side.
    taken_t: BTreeSet<String>,
    /// Other unlinked records of side `s`.
    free_s: BTreeSet<String>,
    /// Linked records of side `s`.
    taken_s: BTreeSet<String>,
}

/// The first e-mail of `x` (primary first) that `y` also has.
fn shared(x: &[String], y: &[String]) -> Option<String> {
    x.iter().find(|m| y.contains(m)).cloned()
}

fn join(ids: &BTreeSet<String>) -> String {
    ids.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Where one side of a link stands in this run.
enum SideState<'a> {
    /// Read in this run.
    Present(&'a Observed),
    /// Not read: unchanged since the cursor.
    Unseen,
    /// Deleted.
    Gone,
    /// Left the scope.
    Out,
    /// Could not be read or mapped.
    Failed(&'a str),
    /// Its create is pending.
    Pending,
}

/// What the field table decided for one field.
#[derive(Default)]
struct FieldDecision {
    /// Canonical values to write per side.
    write: SidePair<Option<Value>>,
    /// The new base (committed with the writes, or stored at once without).
    base: Option<FieldBase>,
    /// A conflict to report: winner and decision.
    conflict: Option<(Option<Side>, String)>,
    /// A note.
    note: Option<String>,
    /// Why a write happens (for the op's reason).
    why: &'static str,
    /// A `manual` true conflict: nothing written, both values kept on the link.
    manual: bool,
}

/// Writes accumulated for one link and side.
#[derive(Default)]
struct Pending {
    fields: Vec<(String, Value)>,
    base: BTreeMap<String, FieldBase>,
    joint: BTreeSet<String>,
    why: Vec<String>,
    consent: bool,
    kept: BTreeSet<String>,
}

impl Pending {
    fn set(&mut self, name: &str, v: Value) {
        self.fields.retain(|(n, _)| n != name);
        self.fields.push((name.to_string(), v));
    }
}

impl<'a> Planner<'a> {
    // ----- links (sync-rules E7-E18, the rows with a link): `existence.rs` -----

    // ----- field merge (sync-rules §3): `fields.rs` -----

    // ----- unlinked records: match, create (sync-rules E1-E6, the rows without a link): `existence.rs` -----

    // ----- output -----

    #[allow(clippy::too_many_arguments)]
    fn push_op(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &Link,
        side: Side,
        kind: OpKind,
        reason: String,
        p: Pending,
        effect: LinkEffect,
    ) {
        self.plan.ops.push(PlannedOp {
            id: String::new(),
            entity: ix,
            side,
            entity_name: e.pair.name(side).to_string(),
            link: link.key.clone(),
            kind,
            reason,
            consent: p.consent,
            base: p.base,
            joint: p.joint,
            effect,
            run: self.baseline.run,
            kept: p.kept,
        });
    }

    fn skip(&mut self, ix: usize, side: Side, id: &str, reason: String) {
        self.plan.skips.push(Skip {
            entity: ix,
            side,
            id: id.to_string(),
            reason,
        });
    }

    fn note(&mut self, ix: usize, link: &str, text: String) {
        self.plan.notes.push(Note {
            entity: ix,
            link: link.to_string(),
            text,
        });
    }

    fn finish(mut self, baseline: &Baseline) -> Plan {
        self.breaker(baseline);
        let sync = self.policy.name.clone();
        let links_before: BTreeMap<&str, &Link> = baseline
            .links
            .iter()
            .map(|(k, l)| (k.as_str(), l))
            .collect();
        for op in &mut self.plan.ops {
            let payload = serde_json::to_string(&op.kind).unwrap_or_default();
            let base = links_before
                .get(op.link.as_str())
                .map(|l| serde_json::to_string(&l.fields).unwrap_or_default())
                .unwrap_or_default();
            op.id = digest(&[
                &sync,
                &op.link,
                op.side.as_str(),
                op.kind.label(),
                &payload,
                &base,
            ]);
        }
        self.plan.ops.sort_by(|x, y| {
            (!x.consent, x.side, x.entity, x.kind.order(), &x.link, &x.id).cmp(&(
                !y.consent,
                y.side,
                y.entity,
                y.kind.order(),
                &y.link,
                &y.id,
            ))
        });
        self.plan.links.sort_by(|x, y| x.key.cmp(&y.key));
        self.plan.links.dedup_by(|x, y| x.key == y.key);
        self.plan.unlink.sort();
        self.plan.unlink.dedup();
        self.plan.fetch.sort();
        self.plan.fetch.dedup();
        self.plan
    }
}

/// Applies an acknowledged op to its link: field bases (with the target's
/// read-back form as alias, sync-rules W2), the new id of a created record, versions and
/// state. `joint_done` says whether the other side's op sharing `op.joint`
/// fields was acknowledged too (only then are those fields committed).
/// Returns false when the link is to be dropped.
pub fn apply_ack(
    link: &mut Link,
    op: &PlannedOp,
    readback: Option<&Record>,
    mapping: &ResolvedMapping,
    joint_done: bool,
) -> bool {
    let side = op.side;
    if let (LinkEffect::SetId, Some(r)) = (op.effect, readback) {
        *link.ids.get_mut(side) = Some(r.id.clone());
    }
    if let Some(r) = readback {
        *link.versions.get_mut(side) = r.version.clone();
    }
    for (key, fb) in &op.base {
        if op.joint.contains(key) && !joint_done {
            continue;
        }
        let mut fb = fb.clone();
        if !*fb.unseen.get(side) {
            *fb.written.get_mut(side) = Some(fb.hash);
        }
        let echo = mapping
            .pairs
            .iter()
            .find(|p| p.key == *key)
            .and_then(|p| readback.and_then(|r| p.read(side, r)));
        if let Some(v) = echo {
            fb = fb.with_alias(side, v);
        }
        link.fields.insert(key.clone(), fb);
    }
    // Acknowledged: from now on only what the app answered (its own form of what was
    // written) carries no user edit; a user who puts the old values back edits.
    if let (Some(r), Some(t)) = (readback, link.touched.get_mut(side)) {
        t.values = BTreeSet::from([side_digest(mapping, side, r, None)]);
    }
    if let (OpKind::Update { .. }, Some(r)) = (&op.kind, readback) {
        for pair in mapping.pairs.iter().filter(|p| op.kept.contains(&p.key)) {
            if let (Some(fb), Some(v)) = (link.fields.get(&pair.key), pair.read(side, r))
                && !fb.matches(side, &v)
            {
                let fb = fb.clone().with_alias(side, v);
                link.fields.insert(pair.key.clone(), fb);
            }
        }
    }
    if matches!(op.kind, OpKind::Create { .. } | OpKind::Update { .. }) && !op.base.is_empty() {
        link.review.remember(WriteMark {
            run: op.run,
            side,
            fields: op
                .base
                .iter()
                .map(|(k, fb)| (k.clone(), fb.hash.to_string()))
                .collect(),
        });
    }
    match op.effect {
        LinkEffect::Drop => false,
        LinkEffect::State(s) => {
            link.state = s;
            true
        }
        LinkEffect::Unlisted(s) => {
            link.state = LinkState::Detached(s);
            link.review.unlisted = Some(s.other());
            true
        }
        LinkEffect::None | LinkEffect::SetId => true,
    }
}

/// A digest of one side's mapped values in `r`, with `written` (canonical values by
/// pair key) in place of what `r` holds; an absent field counts as empty.
pub(crate) fn side_digest(
    m: &ResolvedMapping,
    side: Side,
    r: &Record,
    written: Option<&BTreeMap<String, FieldBase>>,
) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(m.pairs.len() * 2);
    for p in &m.pairs {
        let v = match written.and_then(|w| w.get(&p.key)) {
            Some(fb) => fb.value.clone(),
            None => p.read(side, r).unwrap_or(Value::Null),
        };
        parts.push(p.key.clone());
        parts.push(v.hash());
    }
    digest(&parts.iter().map(String::as_str).collect::<Vec<_>>())
}

mod breaker;
pub use breaker::needs_link_counts;
mod existence;
mod fields;
mod review;
pub use review::{ReviewError, release, take};

#[cfg(test)]
mod tests;
