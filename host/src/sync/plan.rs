//! The pure planner: `(baseline, observations of A and B, policy) -> Plan`.
//!
//! No I/O and no clock: the same inputs give the same plan, ops in the same
//! order with the same ids. The plan is what the executor runs and what a dry
//! run shows. It implements:
//! - the field-level decision table (§2.4), per mapped field, against the base;
//! - the existence table (§2.5): match by e-mail, ambiguity, creates, deletes,
//!   scope exits, modification beats deletion;
//! - echo suppression by read-back aliases (§2.8);
//! - consent only tightens (§2.7): only "opted out" is ever written to an
//!   existing record;
//! - the breakers: a side that lists nothing, or too many deletes/overwrites.
//!
//! Drift (§2.4's cross-check) cannot hide here: change is measured against the
//! one shared base (or a side's recorded alias), never against a per-side
//! "seen" hash, so a side that silently differs from the base counts as
//! changed and is repaired by rows 2, 3 or 5; two sides that agree with each
//! other but not with a stale base take row 4.
//!
//! Failure handling, retries and cursors are the executor's ([`super::run`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::baseline::{
    Baseline, Decision, FieldBase, Link, LinkOrigin, LinkState, Touch, WriteMark,
};
use super::mapping::{FieldPair, ResolvedMapping};
use super::model::{CanonKind, Consent, Record, Side, SidePair, Value, digest};
use super::policy::{EntityPair, OneWayEdits, RemoveAction, SyncPolicy, Winner};
use super::rules;

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
    /// The record.
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
    pub fetch: Vec<(usize, Side, String)>,
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
    /// The write.
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
        /// The record.
        id: String,
        /// Its version when observed.
        if_version: Option<String>,
        /// Fields to set.
        fields: Vec<(String, Value)>,
    },
    /// Delete a record.
    Delete {
        /// The record.
        id: String,
    },
    /// Add a record to a container.
    AddToContainer {
        /// The container.
        container: String,
        /// The record.
        id: String,
    },
    /// Remove a record from a container.
    RemoveFromContainer {
        /// The container.
        container: String,
        /// The record.
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
    /// The link.
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
    /// The link.
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
    fn side_state<'o>(&self, e: &'o EntityInput, link: &Link, side: Side) -> SideState<'o> {
        let Some(id) = link.id(side) else {
            return SideState::Pending;
        };
        let obs = e.obs.get(side);
        if let Some(reason) = obs.failed.get(id) {
            SideState::Failed(reason)
        } else if let Some(o) = obs.records.get(id) {
            SideState::Present(o)
        } else if obs.deleted.contains(id) {
            SideState::Gone
        } else if obs.left_scope.contains(id) {
            SideState::Out
        } else {
            SideState::Unseen
        }
    }

    // ----- links (§2.5, rows with a link) -----

    fn link(&mut self, ix: usize, e: &EntityInput, link: &Link) {
        let sa = self.side_state(e, link, Side::A);
        let sb = self.side_state(e, link, Side::B);
        match link.state {
            LinkState::Linked | LinkState::Quarantined => self.linked(ix, e, link.clone(), sa, sb),
            LinkState::Detached(s) => {
                let st = if s == Side::A { &sa } else { &sb };
                if matches!(st, SideState::Present(o) if o.in_scope) {
                    let mut l = link.clone();
                    l.state = LinkState::Linked;
                    self.note(
                        ix,
                        &l.key,
                        format!("back in side {s}'s scope: syncing again"),
                    );
                    let (sa, sb) = self.rejoin(ix, e, &mut l, s, sa, sb);
                    self.linked(ix, e, l, sa, sb);
                }
            }
            LinkState::Deleted(s) => {
                let (st, other) = if s == Side::A { (&sa, &sb) } else { (&sb, &sa) };
                if let SideState::Gone = other {
                    self.note(
                        ix,
                        &link.key,
                        "deleted on both sides: link dropped when its tombstones expire".into(),
                    );
                    self.plan.unlink.push(link.key.clone());
                } else if let SideState::Present(_) = st {
                    let mut l = link.clone();
                    l.state = LinkState::Linked;
                    self.note(
                        ix,
                        &l.key,
                        format!("record on side {s} is back: syncing again"),
                    );
                    self.linked(ix, e, l, sa, sb);
                } else if let SideState::Present(o) = other
                    && self.changed_since_base(e, link, s.other(), &o.record)
                {
                    self.recreate(
                        ix,
                        e,
                        link,
                        s,
                        o,
                        "modified after its counterpart was deleted",
                    );
                }
            }
            LinkState::Removed(_) => {}
        }
    }

    fn linked(&mut self, ix: usize, e: &EntityInput, link: Link, sa: SideState, sb: SideState) {
        use SideState::*;
        match (&sa, &sb) {
            (Failed(r), _) | (_, Failed(r)) => {
                let side = if matches!(sa, Failed(_)) {
                    Side::A
                } else {
                    Side::B
                };
                let id = link.id(side).unwrap_or_default().to_string();
                self.skip(ix, side, &id, format!("could not be read: {r}"));
            }
            (Gone, Gone) => {
                self.note(
                    ix,
                    &link.key,
                    "deleted on both sides: link dropped when its tombstones expire".into(),
                );
                self.plan.unlink.push(link.key.clone());
            }
            (Gone, _) => self.deleted(ix, e, link, Side::A, &sb),
            (_, Gone) => self.deleted(ix, e, link, Side::B, &sa),
            (Out, _) | (_, Out) => {
                let (side, other) = if matches!(sa, Out) {
                    (Side::A, &sb)
                } else {
                    (Side::B, &sa)
                };
                let other = if let Present(o) = other {
                    Some(*o)
                } else {
                    None
                };
                self.left_scope(ix, e, link, side, other);
            }
            (Pending, Present(o)) => self.create(ix, e, &link, Side::A, o, "pending create"),
            (Present(o), Pending) => self.create(ix, e, &link, Side::B, o, "pending create"),
            (Unseen, Unseen) if link.review.recheck => {
                self.fetch_unseen(ix, &link, SidePair::default())
            }
            (Pending, _) | (_, Pending) | (Unseen, Unseen) => {}
            _ => {
                let ra = if let Present(o) = &sa { Some(*o) } else { None };
                let rb = if let Present(o) = &sb { Some(*o) } else { None };
                self.merge(ix, e, link, SidePair::new(ra, rb), false);
            }
        }
    }

    /// A linked record was deleted on side `gone`; `survivor` is the other side.
    fn deleted(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: Link,
        gone: Side,
        survivor: &SideState,
    ) {
        let keep = gone.other();
        let src = if let SideState::Present(o) = survivor {
            Some(*o)
        } else {
            None
        };
        if self.repoint(ix, e, &link, gone, src) {
            return;
        }
        let modified = match survivor {
            SideState::Present(o) => self.changed_since_base(e, &link, keep, &o.record),
            _ => false,
        };
        if modified && let SideState::Present(o) = survivor {
            if self.policy.flows(keep) && self.may_create(ix, e, gone) {
                self.recreate(ix, e, &link, gone, o, "modification beats deletion");
                return;
            }
            let mut l = link;
            l.state = LinkState::Deleted(gone);
            self.note(ix, &l.key, format!("deleted on side {gone}; its counterpart was modified since the last sync and is kept"));
            self.plan.links.push(l);
            return;
        }
        let action = if self.policy.flows(gone) {
            *self.policy.deletes.on_delete.get(gone)
        } else {
            RemoveAction::Keep
        };
        let target_id = link.id(keep).map(str::to_string);
        let container = e.containers.get(keep).clone();
        // With a delete or removal to make, the link changes only when it is
        // acknowledged: a crash before that re-plans it from the same tombstone.
        let mut l = link;
        match (action, target_id, container) {
            (RemoveAction::Delete, Some(id), _) => {
                let reason = format!("deleted on side {gone} (deletes.on-delete = delete)");
                self.push_op(
                    ix,
                    e,
                    &l,
                    keep,
                    OpKind::Delete { id },
                    reason,
                    Pending::default(),
                    LinkEffect::Drop,
                );
            }
            (RemoveAction::RemoveFromContainer, Some(id), Some(container)) => {
                let reason =
                    format!("deleted on side {gone} (deletes.on-delete = remove-from-list)");
                let kind = OpKind::RemoveFromContainer { container, id };
                self.push_op(
                    ix,
                    e,
                    &l,
                    keep,
                    kind,
                    reason,
                    Pending::default(),
                    LinkEffect::Drop,
                );
            }
            _ => {
                let why = if self.policy.flows(gone) {
                    "counterpart kept (deletes.on-delete = keep)"
                } else {
                    "one-way sync: deletions on this side do not flow"
                };
                l.state = LinkState::Deleted(gone);
                self.note(ix, &l.key, format!("deleted on side {gone}; {why}"));
                self.plan.links.push(l);
            }
        }
    }

    /// Creates the record of side `on` again from the other side's record.
    fn recreate(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &Link,
        on: Side,
        src: &Observed,
        why: &str,
    ) {
        if self.repoint(ix, e, link, on, Some(src))
            || !(self.policy.flows(on.other()) && self.may_create(ix, e, on))
        {
            return;
        }
        let emails = e.mapping.emails(on.other(), &src.record);
        if emails.first().is_some_and(|m| {
            self.creating
                .get(on)
                .contains(&(e.pair.name(on).to_string(), m.clone()))
        }) {
            self.skip(
                ix,
                on.other(),
                &src.record.id,
                format!("a record with this e-mail is already being created on side {on}"),
            );
            return;
        }
        let obs = e.obs.get(on);
        if !obs.complete && (emails.is_empty() || !emails.iter().all(|m| obs.searched.contains(m)))
        {
            self.skip(
                ix,
                on.other(),
                &src.record.id,
                format!("not yet looked up on side {on}: not re-created"),
            );
            return;
        }
        let mut l = link.clone();
        *l.ids.get_mut(on) = None;
        l.state = LinkState::Linked;
        l.fields.clear();
        *l.versions.get_mut(on) = None;
        self.note(ix, &l.key, format!("re-creating on side {on}: {why}"));
        self.plan.links.push(l.clone());
        self.create(ix, e, &l, on, src, why);
    }

    /// The record of side `gone` was deleted, but an unclaimed record with the
    /// same e-mail exists there (a merge, or a re-entry): re-point the link to
    /// it instead of deleting or re-creating (§2.6). Returns whether it handled the link: re-pointed,
    /// or several candidates reported as an ambiguity (nothing else may happen to it then).
    fn repoint(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &Link,
        gone: Side,
        src: Option<&Observed>,
    ) -> bool {
        let keep = gone.other();
        let email = src
            .and_then(|o| e.mapping.match_key(keep, &o.record))
            .or_else(|| {
                match link
                    .fields
                    .get(&e.mapping.email_pair().key)
                    .map(|f| &f.value)
                {
                    Some(Value::Text(s)) => Some(s.clone()),
                    _ => link.match_key.clone(),
                }
            });
        let Some(email) = email else { return false };
        let entity = e.pair.name(gone).to_string();
        let candidates: Vec<&Observed> = e
            .obs
            .get(gone)
            .records
            .values()
            .filter(|o| {
                !self
                    .claimed
                    .get(gone)
                    .contains(&(entity.clone(), o.record.id.clone()))
            })
            .filter(|o| e.mapping.emails(gone, &o.record).contains(&email))
            .collect();
        match candidates.as_slice() {
            [] => false,
            [one] => {
                let mut l = link.clone();
                *l.ids.get_mut(gone) = Some(one.record.id.clone());
                l.state = LinkState::Linked;
                l.fields.clear();
                *l.versions.get_mut(gone) = None;
                self.claim(e, gone, &one.record.id);
                self.note(ix, &l.key, format!("side {gone} record was replaced by {} with the same e-mail: link re-pointed", one.record.id));
                let obs = match gone {
                    Side::A => SidePair::new(Some(*one), src),
                    Side::B => SidePair::new(src, Some(*one)),
                };
                if src.is_some() {
                    self.merge(ix, e, l, obs, true);
                } else {
                    self.plan.links.push(l);
                }
                true
            }
            many => {
                let ids: Vec<String> = many.iter().map(|o| o.record.id.clone()).collect();
                let (a, b) = match gone {
                    Side::A => (
                        ids,
                        link.id(Side::B).map(str::to_string).into_iter().collect(),
                    ),
                    Side::B => (
                        link.id(Side::A).map(str::to_string).into_iter().collect(),
                        ids,
                    ),
                };
                self.plan.ambiguous.push(Ambiguity { entity: ix, email, a, b, reason: format!("the linked record on side {gone} is gone and several records there share its e-mail") });
                // Handled: the operator picks one; neither a re-create (a third record
                // with that e-mail) nor a delete of the survivor happens meanwhile.
                true
            }
        }
    }

    fn changed_since_base(&self, e: &EntityInput, link: &Link, side: Side, r: &Record) -> bool {
        e.mapping
            .pairs
            .iter()
            .any(|p| match (link.fields.get(&p.key), p.read(side, r)) {
                (Some(fb), Some(v)) => !fb.matches(side, &v),
                _ => false,
            })
    }

    // ----- field merge (§2.4) -----

    fn merge(
        &mut self,
        ix: usize,
        e: &EntityInput,
        mut link: Link,
        obs: SidePair<Option<&Observed>>,
        new_link: bool,
    ) {
        let recs = SidePair::new(obs.a.map(|o| &o.record), obs.b.map(|o| &o.record));
        let mut pending: SidePair<Pending> = SidePair::default();
        let mut stored = false;
        let mut opted_out_now: Option<Side> = None;
        if link.review.recheck {
            // The operator asked for this link: read both records, then plan it.
            self.fetch_unseen(ix, &link, recs);
            link.review.recheck = recs.a.is_none() || recs.b.is_none();
        }
        let times = SidePair::new(
            change_time(&e.mapping, &link, Side::A, recs.a),
            change_time(&e.mapping, &link, Side::B, recs.b),
        );
        for pair in &e.mapping.pairs {
            let mut vals = SidePair::new(
                recs.a.and_then(|r| pair.read(Side::A, r)),
                recs.b.and_then(|r| pair.read(Side::B, r)),
            );
            review::fill_open(&link, pair, &mut vals);
            let fb = link.fields.get(&pair.key);
            if fb.is_none() {
                for side in Side::BOTH {
                    let unseen = recs.get(side).is_none()
                        && vals
                            .get(side.other())
                            .as_ref()
                            .is_some_and(|v| !v.is_empty());
                    if let (true, Some(id)) = (unseen, link.id(side)) {
                        self.plan.fetch.push((ix, side, id.to_string()));
                    }
                }
            }
            if pair.is_consent()
                && let Some(fb) = fb
            {
                for side in Side::BOTH {
                    let v = vals.get(side).as_ref();
                    if v.is_some_and(|v| {
                        !fb.matches(side, v) && Consent::of(v) == Some(Consent::OptedOut)
                    }) {
                        opted_out_now = Some(side);
                    }
                }
            }
            let read = SidePair::new(recs.a.is_some(), recs.b.is_some());
            let d = self.decide(pair, fb, vals.clone(), read, times);
            if let Some((winner, decision)) = d.conflict {
                self.plan.conflicts.push(ConflictNote {
                    entity: ix,
                    link: link.key.clone(),
                    field: pair.key.clone(),
                    a: vals.a.clone().unwrap_or_default(),
                    b: vals.b.clone().unwrap_or_default(),
                    base: fb.map(|f| f.value.clone()),
                    winner,
                    decision,
                });
            }
            if let Some(n) = d.note {
                self.note(ix, &link.key, format!("{}: {n}", pair.key));
            }
            // The base the link holds while this run's writes are sent: a base decided
            // without writes is stored first (a first sync's, say); one that comes with
            // writes only once they are acknowledged.
            let held = if d.write.a.is_none() && d.write.b.is_none() {
                d.base.as_ref().or(fb)
            } else {
                fb
            };
            if let Some(fb) = held.filter(|_| !d.manual) {
                for side in Side::BOTH {
                    let same = vals.get(side).as_ref().is_some_and(|v| fb.matches(side, v));
                    if same && d.write.get(side).is_none() {
                        pending.get_mut(side).kept.insert(pair.key.clone());
                    }
                }
            }
            review::track_open(&mut link, pair, &vals, d.manual);
            let writes: Vec<Side> = Side::BOTH
                .into_iter()
                .filter(|s| d.write.get(*s).is_some())
                .collect();
            match (writes.is_empty(), d.base) {
                (true, Some(b)) if link.fields.get(&pair.key) != Some(&b) => {
                    link.fields.insert(pair.key.clone(), b);
                    stored = true;
                }
                (false, Some(b)) => {
                    for side in &writes {
                        let v = d.write.get(*side).clone().unwrap_or_default();
                        let p = pending.get_mut(*side);
                        p.set(&pair.def(*side).name, pair.from_canonical(*side, &v));
                        p.base.insert(pair.key.clone(), b.clone());
                        p.why.push(format!("{} ({})", pair.def(*side).name, d.why));
                        p.consent |= pair.is_consent();
                        if writes.len() == 2 {
                            p.joint.insert(pair.key.clone());
                        }
                    }
                }
                _ => {}
            }
        }

        // Rules: records flowing from S to T.
        let mut skipped: SidePair<bool> = SidePair::default();
        for from in Side::BOTH {
            let to = from.other();
            let Some(src) = recs.get(from) else { continue };
            if !self.policy.flows(from) || self.policy.rules.is_empty() || link.id(to).is_none() {
                continue;
            }
            let out = rules::evaluate(&self.policy.rules, from, src, &e.mapping, false);
            for n in &out.notes {
                self.note(ix, &link.key, n.clone());
            }
            if let Some(rule) = out.skip {
                *skipped.get_mut(to) = true;
                *pending.get_mut(to) = Pending::default();
                let id = src.id.clone();
                self.skip(
                    ix,
                    from,
                    &id,
                    format!("rule `{rule}`: not synced to side {to}"),
                );
                continue;
            }
            for (name, v) in out.writes {
                let current = recs.get(to).and_then(|r| r.fields.get(&name));
                if current == Some(&v)
                    || current.is_some_and(|c| same_consent(&e.mapping, to, &name, c, &v))
                {
                    continue;
                }
                let p = pending.get_mut(to);
                if let Some(pair) = e.mapping.pairs.iter().find(|p| p.def(to).name == name) {
                    let canon = pair.to_canonical(to, &v);
                    if pair.is_consent() && Consent::of(&canon) != Some(Consent::OptedOut) {
                        continue;
                    }
                    let b = p.base.remove(&pair.key).unwrap_or_else(|| {
                        link.fields
                            .get(&pair.key)
                            .cloned()
                            .unwrap_or_else(|| FieldBase::new(canon.clone()))
                    });
                    let mut b = FieldBase {
                        value: canon.clone(),
                        hash: canon.hash(),
                        ..b
                    };
                    *b.unseen.get_mut(to) = false;
                    p.base.insert(pair.key.clone(), b);
                    p.consent |= pair.is_consent();
                }
                p.set(&name, v);
                p.why.push(format!("{name} (rule)"));
            }
        }

        // Opt-out removal: a record that opted out on S leaves T (seed option).
        let mut effect: SidePair<LinkEffect> = SidePair::both(LinkEffect::None);
        let mut extra: Vec<(Side, OpKind, String)> = Vec::new();
        if let Some(s) = opted_out_now {
            let t = s.other();
            let action = *self.policy.opt_out.on_opt_out.get(s);
            if self.policy.flows(s)
                && !*skipped.get(t)
                && let Some(id) = link.id(t).map(str::to_string)
            {
                let why = format!(
                    "opted out on side {s} (opt-out.on-opt-out = {})",
                    match action {
                        RemoveAction::Delete => "delete",
                        RemoveAction::RemoveFromContainer => "remove-from-list",
                        RemoveAction::Keep => "keep",
                    }
                );
                match (action, e.containers.get(t)) {
                    (RemoveAction::Delete, _) => {
                        *pending.get_mut(t) = Pending::default();
                        extra.push((t, OpKind::Delete { id }, why));
                    }
                    (RemoveAction::RemoveFromContainer, Some(c)) => {
                        extra.push((
                            t,
                            OpKind::RemoveFromContainer {
                                container: c.clone(),
                                id,
                            },
                            why,
                        ));
                    }
                    _ => {}
                }
                if !extra.is_empty() {
                    *effect.get_mut(t) = LinkEffect::State(LinkState::Removed(t));
                }
            }
        }

        // Membership of a record matched by lookup (its list membership unknown).
        if new_link {
            for t in Side::BOTH {
                let (Some(o), Some(c)) = (obs.get(t), e.containers.get(t)) else {
                    continue;
                };
                if !o.in_scope && self.policy.flows(t.other()) && !*skipped.get(t) {
                    let kind = OpKind::AddToContainer {
                        container: c.clone(),
                        id: o.record.id.clone(),
                    };
                    extra.push((
                        t,
                        kind,
                        "matched by e-mail: added to the synced list".into(),
                    ));
                }
            }
        }

        self.guard_loops(ix, e, &mut link, &mut pending, &mut extra);

        // Remember what this plan writes to each record, before it is sent.
        for side in Side::BOTH {
            let Some(r) = recs.get(side) else { continue };
            let writes = (!pending.get(side).fields.is_empty() && link.id(side).is_some())
                || extra.iter().any(|(s, _, _)| *s == side);
            let written = writes.then(|| &pending.get(side).base);
            *link.touched.get_mut(side) = touch(&e.mapping, &link, side, r, written);
        }

        for side in Side::BOTH {
            if let Some(r) = recs.get(side)
                && link.versions.get(side) != &r.version
                && pending.get(side).fields.is_empty()
            {
                *link.versions.get_mut(side) = r.version.clone();
                stored = true;
            }
        }
        if stored || new_link || self.baseline.links.get(&link.key) != Some(&link) {
            self.plan.links.push(link.clone());
        }
        for side in Side::BOTH {
            let p = std::mem::take(pending.get_mut(side));
            if p.fields.is_empty() {
                continue;
            }
            let Some(id) = link.id(side).map(str::to_string) else {
                continue;
            };
            let if_version = recs.get(side).and_then(|r| r.version.clone());
            let reason = format!("update {}", p.why.join(", "));
            let mut p = p;
            p.kept
                .retain(|k| !p.base.contains_key(k) && !link.review.open.contains_key(k));
            let kind = OpKind::Update {
                id,
                if_version,
                fields: p.fields.clone(),
            };
            self.push_op(ix, e, &link, side, kind, reason, p, LinkEffect::None);
        }
        for (side, kind, why) in extra {
            let fx = *effect.get(side);
            self.push_op(ix, e, &link, side, kind, why, Pending::default(), fx);
        }
    }

    /// The field-level decision table (§2.4) for one field.
    fn decide(
        &self,
        pair: &FieldPair,
        fb: Option<&FieldBase>,
        vals: SidePair<Option<Value>>,
        read: SidePair<bool>,
        times: Times,
    ) -> FieldDecision {
        let Some(fb) = fb else {
            return self.first_sync(pair, vals, times);
        };
        // A side whose value was never seen takes what it holds now as its
        // alias: an empty read-only field or an app default is not a change.
        let adopted = fb.adopt(&vals, read);
        let fb = adopted.as_ref().unwrap_or(fb);
        let mut d = self.decide_known(pair, fb, vals, times);
        if d.base.is_none() {
            d.base = adopted;
        }
        d
    }

    /// [`Self::decide`] against a base whose sides have both been seen (or are not read now).
    fn decide_known(
        &self,
        pair: &FieldPair,
        fb: &FieldBase,
        vals: SidePair<Option<Value>>,
        times: Times,
    ) -> FieldDecision {
        let changed = |side: Side| {
            vals.get(side)
                .as_ref()
                .is_some_and(|v| !fb.matches(side, v))
        };
        match (changed(Side::A), changed(Side::B), vals.a, vals.b) {
            // Row 1 (and row 10: ABSENT counts as unchanged).
            (false, false, _, _) => FieldDecision::default(),
            // Rows 2 and 3 (and 9 when the flow is not allowed).
            (true, false, Some(a), b) => self.flow(pair, fb, Side::A, a, b),
            (false, true, a, Some(b)) => self.flow(pair, fb, Side::B, b, a),
            (true, true, Some(a), Some(b)) if a == b => FieldDecision {
                // Row 4: false conflict.
                base: Some(FieldBase::new(a)),
                ..FieldDecision::default()
            },
            // Row 5: true conflict.
            (true, true, Some(a), Some(b)) => self.conflict(pair, Some(fb), a, b, times),
            _ => FieldDecision::default(),
        }
    }

    /// Side `s` changed to `v`; the other side did not (its value is `other`, if read).
    fn flow(
        &self,
        pair: &FieldPair,
        fb: &FieldBase,
        s: Side,
        v: Value,
        other: Option<Value>,
    ) -> FieldDecision {
        let t = s.other();
        if pair.is_consent() && Consent::of(&v) != Some(Consent::OptedOut) {
            // Consent only tightens: a re-subscribe or a cleared status stays on its side.
            let note = (Consent::of(&fb.value) == Some(Consent::OptedOut)).then(|| {
                format!("side {s} loosened consent to {v}; not propagated (consent only tightens)")
            });
            return FieldDecision {
                base: Some(fb.clone().with_alias(s, v)),
                note,
                ..FieldDecision::default()
            };
        }
        if *pair.flows.get(s) {
            let mut d = FieldDecision {
                base: Some(FieldBase::new(v.clone())),
                why: "changed on the other side",
                ..FieldDecision::default()
            };
            if other.as_ref() != Some(&v) {
                *d.write.get_mut(t) = Some(v);
            }
            return d;
        }
        // Row 9: the target of a one-way field changed.
        let revert = self.policy.one_way_edits == OneWayEdits::Revert
            && !pair.is_consent()
            && !fb.value.is_empty();
        if revert {
            // Side `s` will hold the base again; side `t` keeps its alias (an empty
            // read-only field there is still no edit).
            let mut base = fb.clone();
            *base.alias.get_mut(s) = None;
            let mut d = FieldDecision {
                base: Some(base),
                why: "one-way field reverted",
                ..FieldDecision::default()
            };
            *d.write.get_mut(s) = Some(fb.value.clone());
            return d;
        }
        FieldDecision {
            base: Some(fb.clone().with_alias(s, v)),
            ..FieldDecision::default()
        }
    }

    /// Rows 6-8: no base yet (first sync of this pair, or a new mapping).
    fn first_sync(
        &self,
        pair: &FieldPair,
        vals: SidePair<Option<Value>>,
        times: Times,
    ) -> FieldDecision {
        let (Some(a), Some(b)) = (vals.a, vals.b) else {
            return FieldDecision::default();
        };
        if a == b {
            return FieldDecision {
                base: Some(FieldBase::new(a)),
                ..FieldDecision::default()
            };
        }
        let fill = |empty: Side, full: Value, had: Value| {
            let consent_loosening =
                pair.is_consent() && Consent::of(&full) != Some(Consent::OptedOut);
            if *pair.flows.get(empty.other()) && !consent_loosening {
                let mut d = FieldDecision {
                    base: Some(FieldBase::new(full.clone())),
                    why: "filled an empty field",
                    ..FieldDecision::default()
                };
                *d.write.get_mut(empty) = Some(full);
                d
            } else {
                FieldDecision {
                    base: Some(FieldBase::new(full).with_alias(empty, had)),
                    ..FieldDecision::default()
                }
            }
        };
        match (a.is_empty(), b.is_empty()) {
            (true, _) => fill(Side::A, b, a),
            (_, true) => fill(Side::B, a, b),
            _ => self.conflict(pair, None, a, b, times),
        }
    }

    /// Rows 5 and 8: both sides hold different non-equal values.
    fn conflict(
        &self,
        pair: &FieldPair,
        fb: Option<&FieldBase>,
        a: Value,
        b: Value,
        times: Times,
    ) -> FieldDecision {
        let vals = SidePair::new(a, b);
        if pair.is_consent() {
            let out = |s: Side| Consent::of(vals.get(s)) == Some(Consent::OptedOut);
            return match (out(Side::A), out(Side::B)) {
                (true, _) => self.won(
                    pair,
                    Side::A,
                    vals,
                    "opted-out wins (consent only tightens)",
                ),
                (_, true) => self.won(
                    pair,
                    Side::B,
                    vals,
                    "opted-out wins (consent only tightens)",
                ),
                _ => {
                    let keep = if vals.a.is_empty() { Side::B } else { Side::A };
                    FieldDecision {
                        base: Some(
                            FieldBase::new(vals.get(keep).clone())
                                .with_alias(keep.other(), vals.get(keep.other()).clone()),
                        ),
                        ..FieldDecision::default()
                    }
                }
            };
        }
        if let (Some(fb), CanonKind::Set) = (fb, pair.kind) {
            return self.merge_sets(pair, fb, vals);
        }
        match self.winner(pair, times, &vals) {
            Some((winner, why)) => self.won(pair, winner, vals, &why),
            None => FieldDecision {
                manual: true,
                conflict: Some((
                    None,
                    "manual: nothing written; both values kept until `tandem sync resolve`".into(),
                )),
                ..FieldDecision::default()
            },
        }
    }

    fn won(&self, pair: &FieldPair, w: Side, vals: SidePair<Value>, why: &str) -> FieldDecision {
        let l = w.other();
        let wv = vals.get(w).clone();
        let mut d = FieldDecision {
            why: "conflict won by the other side",
            ..FieldDecision::default()
        };
        if *pair.flows.get(w) {
            d.base = Some(FieldBase::new(wv.clone()));
            *d.write.get_mut(l) = Some(wv);
            d.conflict = Some((Some(w), format!("side {w} wins: {why}")));
        } else {
            d.base = Some(FieldBase::new(wv).with_alias(l, vals.get(l).clone()));
            d.conflict = Some((
                Some(w),
                format!("side {w} wins: {why}; side {l} keeps its value (one-way)"),
            ));
        }
        d
    }

    /// Three-way set merge: additions on either side kept, removals on either side applied.
    fn merge_sets(&self, pair: &FieldPair, fb: &FieldBase, vals: SidePair<Value>) -> FieldDecision {
        let set = |v: &Value| -> BTreeSet<String> {
            match v {
                Value::Texts(items) => items.iter().cloned().collect(),
                Value::Null => BTreeSet::new(),
                other => other.as_text().into_iter().collect(),
            }
        };
        let (base, a, b) = (set(&fb.value), set(&vals.a), set(&vals.b));
        let removed: BTreeSet<String> = base
            .difference(&a)
            .chain(base.difference(&b))
            .cloned()
            .collect();
        let merged: Vec<String> = a
            .union(&b)
            .filter(|x| !removed.contains(*x))
            .cloned()
            .collect();
        let m = if merged.is_empty() {
            Value::Null
        } else {
            Value::Texts(merged)
        };
        let mut d = FieldDecision {
            conflict: Some((None, "both sides changed the set: merged".into())),
            why: "sets merged",
            ..FieldDecision::default()
        };
        let mut base = FieldBase::new(m.clone());
        for side in Side::BOTH {
            if *vals.get(side) == m {
                continue;
            }
            if *pair.flows.get(side.other()) {
                *d.write.get_mut(side) = Some(m.clone());
            } else {
                base = base.with_alias(side, vals.get(side).clone());
            }
        }
        d.base = Some(base);
        d
    }

    /// Who wins a conflict on `pair`, and why; `None` when the rule is `manual`.
    fn winner(
        &self,
        pair: &FieldPair,
        times: Times,
        vals: &SidePair<Value>,
    ) -> Option<(Side, String)> {
        if let Some(owner) = pair.owner {
            return Some((owner, format!("side {owner} owns this field")));
        }
        let c = &self.policy.conflict;
        let rule = pair.rule.unwrap_or(c.winner);
        Some(match rule {
            Winner::Manual => return None,
            Winner::PreferAUnlessBlank | Winner::PreferBUnlessBlank => {
                let (w, label) = if rule == Winner::PreferAUnlessBlank {
                    (Side::A, "prefer-a-unless-blank")
                } else {
                    (Side::B, "prefer-b-unless-blank")
                };
                if vals.get(w).is_empty() {
                    let l = w.other();
                    (
                        l,
                        format!("side {w}'s value is blank, so side {l}'s wins ({label})"),
                    )
                } else {
                    (w, format!("conflict policy {label}"))
                }
            }
            Winner::AWins => (Side::A, "conflict policy a-wins".into()),
            Winner::BWins => (Side::B, "conflict policy b-wins".into()),
            Winner::MostRecent => match (times.a, times.b) {
                (Some(ta), Some(tb))
                    if (ta - tb).whole_seconds().unsigned_abs() > u64::from(c.skew_seconds) =>
                {
                    let w = if ta > tb { Side::A } else { Side::B };
                    (w, format!("side {w} changed most recently"))
                }
                (Some(_), Some(_)) => (
                    c.fallback,
                    format!(
                        "changes within {}s: fallback side {}",
                        c.skew_seconds, c.fallback
                    ),
                ),
                _ => (
                    c.fallback,
                    format!("a change time is missing: fallback side {}", c.fallback),
                ),
            },
        })
    }

    // ----- unlinked records: match, create (§2.5, rows without a link) -----

    fn unlinked(&mut self, ix: usize, e: &EntityInput, baseline: &Baseline) {
        let decisions = &baseline.decisions;
        // Every e-mail of every record (primary and secondary addresses), and
        // the records holding each e-mail, per side.
        let mut emails: SidePair<BTreeMap<String, Vec<String>>> = SidePair::default();
        let mut holders: SidePair<BTreeMap<String, BTreeSet<String>>> = SidePair::default();
        // Same-side duplicates are judged on the match key (primary address)
        // only: two records of one app that share a secondary address are two
        // people as far as creating them elsewhere goes.
        let mut primaries: SidePair<BTreeMap<String, BTreeSet<String>>> = SidePair::default();
        for side in Side::BOTH {
            for (id, o) in &e.obs.get(side).records {
                let ms = e.mapping.emails(side, &o.record);
                if ms.is_empty() {
                    if !self.is_claimed(e, side, id) && o.in_scope && self.policy.flows(side) {
                        self.skip(
                            ix,
                            side,
                            id,
                            "no e-mail: not matched or created (avoids duplicates)".into(),
                        );
                    }
                    continue;
                }
                for m in &ms {
                    holders
                        .get_mut(side)
                        .entry(m.clone())
                        .or_default()
                        .insert(id.clone());
                }
                primaries
                    .get_mut(side)
                    .entry(ms[0].clone())
                    .or_default()
                    .insert(id.clone());
                emails.get_mut(side).insert(id.clone(), ms);
            }
        }
        // The operator's links first (§2.6): they win over any e-mail match.
        for ((dix, a, b), d) in decisions {
            if *dix != ix || *d != Decision::Link {
                continue;
            }
            let seen = emails.a.contains_key(a) && emails.b.contains_key(b);
            if seen && !self.is_claimed(e, Side::A, a) && !self.is_claimed(e, Side::B, b) {
                let key =
                    shared(&emails.a[a], &emails.b[b]).unwrap_or_else(|| emails.a[a][0].clone());
                self.new_link(ix, e, &key, a, b);
                self.note(
                    ix,
                    &format!("{ix}/a/{a}"),
                    "linked by the operator (tandem sync resolve --link)".into(),
                );
            }
        }
        // Candidates are decided against the records free now, so that the
        // links made below are disjoint and the result does not depend on order.
        let free: SidePair<BTreeSet<String>> = SidePair::new(
            self.free_ids(e, Side::A, emails.a.keys()),
            self.free_ids(e, Side::B, emails.b.keys()),
        );
        // The linked counterpart of each linked record, so that a record kept
        // apart from a person is not reported as a duplicate of that person's
        // record on its own side either.
        let mut partner: SidePair<BTreeMap<String, String>> = SidePair::default();
        for l in baseline.links.values().chain(&self.plan.links) {
            if let (true, Some(a), Some(b)) = (l.entity == ix, l.id(Side::A), l.id(Side::B)) {
                partner.a.insert(a.to_string(), b.to_string());
                partner.b.insert(b.to_string(), a.to_string());
            }
        }
        let apart = |side: Side, id: &str, other: &str| {
            let (a, b) = match side {
                Side::A => (id, other),
                Side::B => (other, id),
            };
            decisions.get(&(ix, a.to_string(), b.to_string())) == Some(&Decision::KeepApart)
        };
        let cands = |side: Side, id: &str| -> Candidates {
            let t = side.other();
            let mut c = Candidates::default();
            for m in &emails.get(side)[id] {
                for other in holders.get(t).get(m).into_iter().flatten() {
                    let (a, b) = match side {
                        Side::A => (id, other.as_str()),
                        Side::B => (other.as_str(), id),
                    };
                    let key = (ix, a.to_string(), b.to_string());
                    if decisions.get(&key) == Some(&Decision::KeepApart) {
                        continue;
                    }
                    if free.get(t).contains(other) {
                        c.free_t.insert(other.clone());
                    } else {
                        c.taken_t.insert(other.clone());
                    }
                }
            }
            let first = &emails.get(side)[id][0];
            for other in primaries.get(side).get(first).into_iter().flatten() {
                if other == id {
                    continue;
                }
                if free.get(side).contains(other) {
                    c.free_s.insert(other.clone());
                } else if !partner
                    .get(side)
                    .get(other)
                    .is_some_and(|p| apart(side, id, p))
                {
                    c.taken_s.insert(other.clone());
                }
            }
            c
        };
        let mut reported: SidePair<BTreeSet<String>> = SidePair::default();
        for s in Side::BOTH {
            let t = s.other();
            for id in free.get(s) {
                if self.is_claimed(e, s, id) {
                    continue;
                }
                if reported.get(s).contains(id) {
                    self.held
                        .get_mut(s)
                        .insert((e.pair.name(s).to_string(), id.clone()));
                    continue;
                }
                let mine = &emails.get(s)[id];
                let c = cands(s, id);
                let mut free_here = false;
                let mut ambiguous = |this: &mut Self, reason: String| {
                    let ids_s: Vec<String> = std::iter::once(id.clone())
                        .chain(c.free_s.iter().cloned())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let ids_t: Vec<String> = c.free_t.union(&c.taken_t).cloned().collect();
                    reported.get_mut(s).extend(ids_s.iter().cloned());
                    reported.get_mut(t).extend(c.free_t.iter().cloned());
                    let (a, b) = match s {
                        Side::A => (ids_s, ids_t),
                        Side::B => (ids_t, ids_s),
                    };
                    this.plan.ambiguous.push(Ambiguity {
                        entity: ix,
                        email: mine[0].clone(),
                        a,
                        b,
                        reason,
                    });
                };
                if c.free_t.len() == 1 && c.taken_t.is_empty() {
                    let y = c.free_t.iter().next().cloned().unwrap_or_default();
                    let back = cands(t, &y);
                    if back.free_t.len() == 1 && back.taken_t.is_empty() {
                        let key =
                            shared(mine, &emails.get(t)[&y]).unwrap_or_else(|| mine[0].clone());
                        let (a, b) = match s {
                            Side::A => (id.as_str(), y.as_str()),
                            Side::B => (y.as_str(), id.as_str()),
                        };
                        self.new_link(ix, e, &key, a, b);
                    } else {
                        let n = back.free_t.len() + back.taken_t.len();
                        ambiguous(
                            self,
                            format!(
                                "side {t} record {y} matches {n} records on side {s} by e-mail"
                            ),
                        );
                    }
                } else if c.free_t.is_empty() {
                    if !c.free_s.is_empty() {
                        if self.policy.flows(s) {
                            ambiguous(
                                self,
                                format!(
                                    "{} records on side {s} share an e-mail",
                                    c.free_s.len() + 1
                                ),
                            );
                        }
                    } else if !c.taken_t.is_empty() {
                        if self.policy.flows(s) {
                            ambiguous(
                                self,
                                format!(
                                    "side {t} record {} with this e-mail is already linked to another record",
                                    join(&c.taken_t)
                                ),
                            );
                        }
                    } else if !c.taken_s.is_empty() {
                        if self.policy.flows(s) {
                            ambiguous(
                                self,
                                format!(
                                    "side {s} record {} with this e-mail is already linked: {id} looks like a duplicate",
                                    join(&c.taken_s)
                                ),
                            );
                        }
                    } else {
                        // Decided once every entity pair has matched (see `plan`).
                        free_here = true;
                        self.deferred.push((ix, s, id.clone(), mine.clone()));
                    }
                } else {
                    ambiguous(
                        self,
                        format!(
                            "{} candidates on side {t} ({} already linked) and {} other records on side {s} share its e-mails",
                            c.free_t.len() + c.taken_t.len(),
                            c.taken_t.len(),
                            c.free_s.len() + c.taken_s.len(),
                        ),
                    );
                }
                if !free_here {
                    self.held
                        .get_mut(s)
                        .insert((e.pair.name(s).to_string(), id.clone()));
                }
            }
        }
    }

    /// A create deferred by [`Self::unlinked`], now that every entity pair has
    /// matched: made unless the record was linked, matched or reported by a pair
    /// of the same entity, or a record with its e-mail is already being created.
    fn deferred_create(
        &mut self,
        ix: usize,
        e: &EntityInput,
        s: Side,
        id: &str,
        emails: &[String],
    ) {
        let t = s.other();
        let entities = self.entities;
        let name = e.pair.name(s);
        let key = (name.to_string(), id.to_string());
        if self.is_claimed(e, s, id) || self.held.get(s).contains(&key) {
            return;
        }
        // Another pair of the same entity creates it (only the first may, by default).
        let others: Vec<usize> = (0..entities.len())
            .filter(|j| *j != ix && entities[*j].pair.name(s) == name)
            .collect();
        if !self.may_create(ix, e, t)
            && self.deferred.iter().any(|(j, side, other, _)| {
                *side == s && other == id && self.may_create(*j, &entities[*j], t)
            })
        {
            return;
        }
        // Every pair of this entity must have looked for it on its side-t entity:
        // one that did not might hold the person (a contact, not a lead).
        for j in others {
            let obs = entities[j].obs.get(t);
            if !obs.complete && !emails.iter().all(|m| obs.searched.contains(m)) {
                let other = entities[j].pair.name(t).to_string();
                self.skip(
                    ix,
                    s,
                    id,
                    format!("not yet looked up among side {t}'s `{other}`"),
                );
                return;
            }
        }
        if self
            .creating
            .get(t)
            .contains(&(e.pair.name(t).to_string(), emails[0].clone()))
        {
            let ids = vec![id.to_string()];
            let (a, b) = match s {
                Side::A => (ids, Vec::new()),
                Side::B => (Vec::new(), ids),
            };
            self.plan.ambiguous.push(Ambiguity {
                entity: ix,
                email: emails[0].clone(),
                a,
                b,
                reason: format!("a record with this e-mail is already being created on side {t}"),
            });
            return;
        }
        self.maybe_create(ix, e, s, id, emails);
    }

    fn is_claimed(&self, e: &EntityInput, side: Side, id: &str) -> bool {
        self.claimed
            .get(side)
            .contains(&(e.pair.name(side).to_string(), id.to_string()))
    }

    fn free_ids<'i>(
        &self,
        e: &EntityInput,
        side: Side,
        ids: impl Iterator<Item = &'i String>,
    ) -> BTreeSet<String> {
        ids.filter(|id| !self.is_claimed(e, side, id))
            .cloned()
            .collect()
    }

    fn new_link(&mut self, ix: usize, e: &EntityInput, email: &str, a: &str, b: &str) {
        let (oa, ob) = (&e.obs.a.records[a], &e.obs.b.records[b]);
        let link = Link {
            key: format!("{ix}/a/{a}"),
            entity: ix,
            ids: SidePair::new(Some(a.to_string()), Some(b.to_string())),
            state: LinkState::Linked,
            fields: BTreeMap::new(),
            versions: SidePair::new(oa.record.version.clone(), ob.record.version.clone()),
            match_key: Some(email.to_string()),
            origin: LinkOrigin::Email,
            review: Default::default(),
            touched: Default::default(),
        };
        self.claim(e, Side::A, a);
        self.claim(e, Side::B, b);
        self.note(ix, &link.key, format!("linked A:{a} and B:{b} by e-mail"));
        self.merge(ix, e, link, SidePair::new(Some(oa), Some(ob)), true);
    }

    fn claim(&mut self, e: &EntityInput, side: Side, id: &str) {
        self.claimed
            .get_mut(side)
            .insert((e.pair.name(side).to_string(), id.to_string()));
    }

    /// Whether records are created on `side` for entity pair `ix`.
    fn may_create(&self, ix: usize, e: &EntityInput, side: Side) -> bool {
        let explicit = match side {
            Side::A => e.pair.create_a,
            Side::B => e.pair.create_b,
        };
        explicit.unwrap_or_else(|| {
            let src = side.other();
            let first = self
                .entities
                .iter()
                .position(|p| p.pair.name(src) == e.pair.name(src));
            self.policy.create.on(side) && first == Some(ix)
        })
    }

    fn excluded(&self, e: &EntityInput, side: Side, r: &Record) -> bool {
        let o = &self.policy.opt_out;
        let default = e
            .mapping
            .consent
            .get(side)
            .as_ref()
            .is_some_and(|d| d.is("consent"));
        let on =
            o.exclude.get(side).unwrap_or(default) || *o.on_opt_out.get(side) != RemoveAction::Keep;
        on && e.mapping.consent(side, r) == Some(Consent::OptedOut)
    }

    /// An unlinked record of side `s` with no candidate on the other side.
    fn maybe_create(&mut self, ix: usize, e: &EntityInput, s: Side, id: &str, emails: &[String]) {
        let t = s.other();
        let email = emails[0].as_str();
        let o = &e.obs.get(s).records[id];
        if !o.in_scope || !self.policy.flows(s) {
            return;
        }
        let reason = if !self.may_create(ix, e, t) {
            Some(format!(
                "creating records on side {t} is disabled for this entity"
            ))
        } else if self.excluded(e, s, &o.record) {
            Some(format!(
                "opted out on side {s}: excluded (opt-out settings)"
            ))
        } else if let Some(rule) =
            rules::evaluate(&self.policy.rules, s, &o.record, &e.mapping, true).skip
        {
            // Checked before the lookup: the engine does not look up what a rule skips.
            Some(format!("rule `{rule}`: not created on side {t}"))
        } else if !e.obs.get(t).complete
            && !emails.iter().all(|m| e.obs.get(t).searched.contains(m))
        {
            Some(format!("not yet looked up on side {t}"))
        } else {
            None
        };
        if let Some(r) = reason {
            self.skip(ix, s, id, r);
            return;
        }
        let link = Link {
            key: format!("{ix}/{}/{id}", s.as_str()),
            entity: ix,
            ids: match s {
                Side::A => SidePair::new(Some(id.to_string()), None),
                Side::B => SidePair::new(None, Some(id.to_string())),
            },
            state: LinkState::Linked,
            fields: BTreeMap::new(),
            versions: SidePair::default(),
            match_key: Some(email.to_string()),
            origin: LinkOrigin::Created(t),
            review: Default::default(),
            touched: Default::default(),
        };
        self.create(ix, e, &link, t, o, "no match on the other side");
    }

    /// Plans the create of `link`'s record on side `t` from `src` (a record of the other side).
    fn create(
        &mut self,
        ix: usize,
        e: &EntityInput,
        link: &Link,
        t: Side,
        src: &Observed,
        why: &str,
    ) {
        let s = t.other();
        let out = rules::evaluate(&self.policy.rules, s, &src.record, &e.mapping, true);
        if let Some(rule) = out.skip {
            self.skip(
                ix,
                s,
                &src.record.id,
                format!("rule `{rule}`: not created on side {t}"),
            );
            return;
        }
        let mut p = Pending::default();
        for pair in &e.mapping.pairs {
            let v = pair.read(s, &src.record).unwrap_or(Value::Null);
            let base = if *pair.flows.get(s) && !v.is_empty() {
                p.set(&pair.def(t).name, pair.from_canonical(t, &v));
                p.consent |= pair.is_consent();
                FieldBase::new(v)
            } else {
                // Not written there (read-only, or nothing to write): what the new
                // record holds is known only from the app's answer or the next read.
                FieldBase::new(v).unseen_on(t)
            };
            p.base.insert(pair.key.clone(), base);
        }
        for (name, v) in out.writes {
            if let Some(pair) = e.mapping.pairs.iter().find(|p| p.def(t).name == name) {
                let canon = pair.to_canonical(t, &v);
                p.base.insert(pair.key.clone(), FieldBase::new(canon));
            }
            p.set(&name, v);
        }
        for n in out.notes {
            self.note(ix, &link.key, n);
        }
        self.claim(e, s, &src.record.id);
        for m in e.mapping.emails(s, &src.record) {
            self.creating
                .get_mut(t)
                .insert((e.pair.name(t).to_string(), m));
        }
        let mut l = link.clone();
        *l.versions.get_mut(s) = src.record.version.clone();
        // `recreate` pushed this link just before: replace it, don't scan.
        if self.plan.links.last().is_some_and(|x| x.key == l.key) {
            self.plan.links.pop();
        }
        self.plan.links.push(l.clone());
        let kind = OpKind::Create {
            fields: p.fields.clone(),
            marker: marker(&self.policy.name, &l.key),
            containers: e.containers.get(t).iter().cloned().collect(),
        };
        let reason = format!("create from side {s} record {} ({why})", src.record.id);
        self.push_op(ix, e, &l, t, kind, reason, p, LinkEffect::SetId);
    }

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

    /// §2.5 safety breakers, checked before anything is executed.
    fn breaker(&mut self, baseline: &Baseline) {
        let b = &self.policy.breaker;
        let mut halt: Option<Halt> = None;
        if b.side_empty {
            for (ix, e) in self.entities.iter().enumerate() {
                for side in Side::BOTH {
                    let obs = e.obs.get(side);
                    let listed = obs.records.values().filter(|o| o.in_scope).count();
                    if halt.is_none() && obs.complete && listed == 0 && baseline.count(ix) > 0 {
                        halt = Some(Halt {
                            reason: "side-empty".into(),
                            message: format!(
                                "side {side} lists no `{}` records while {} are linked: halted instead of deleting; check the connection, then run with --force",
                                e.pair.name(side),
                                baseline.count(ix)
                            ),
                        });
                    }
                }
            }
        }
        let linked: usize = baseline.counts.values().sum();
        for side in Side::BOTH {
            let ops = self.plan.ops.iter().filter(|o| o.side == side);
            let deletes = ops
                .clone()
                .filter(|o| {
                    matches!(
                        o.kind,
                        OpKind::Delete { .. } | OpKind::RemoveFromContainer { .. }
                    )
                })
                .count();
            let updates = ops
                .filter(|o| matches!(o.kind, OpKind::Update { .. }))
                .count();
            let over = |count: usize, ratio: f64, cap: Option<usize>| {
                cap.is_some_and(|c| count > c)
                    || (linked >= b.min_linked && count as f64 > ratio * linked as f64)
            };
            if halt.is_none() && over(deletes, b.max_delete_ratio, b.max_deletes) {
                halt = Some(Halt {
                    reason: "too-many-deletes".into(),
                    message: format!(
                        "{deletes} deletions/removals planned on side {side} for {linked} links: halted; review the dry run, then run with --force"
                    ),
                });
            }
            if halt.is_none() && over(updates, b.max_overwrite_ratio, b.max_overwrites) {
                halt = Some(Halt {
                    reason: "too-many-overwrites".into(),
                    message: format!(
                        "{updates} updates planned on side {side} for {linked} links: halted; review the dry run, then run with --force"
                    ),
                });
            }
        }
        let Some(halt) = halt else { return };
        // Consent changes are never held back (§2.7): keep only their fields.
        let before = self.plan.ops.len();
        let mut kept = Vec::new();
        for mut op in std::mem::take(&mut self.plan.ops) {
            if !op.consent || !baseline.links.contains_key(&op.link) {
                continue;
            }
            let OpKind::Update { fields, .. } = &mut op.kind else {
                continue;
            };
            let e = &self.entities[op.entity];
            let consent_pair = e.mapping.consent_pair();
            let Some(pair) = consent_pair else { continue };
            fields.retain(|(n, _)| *n == pair.def(op.side).name);
            op.base.retain(|k, _| *k == pair.key);
            op.joint.clear();
            op.reason = format!("{} (consent change kept while halted)", op.reason);
            kept.push(op);
        }
        self.plan.withheld = before - kept.len();
        self.plan.ops = kept;
        self.plan.links.clear();
        self.plan.unlink.clear();
        self.plan.halted = Some(halt);
    }
}

/// Applies an acknowledged op to its link: field bases (with the target's
/// read-back form as alias, §2.8), the new id of a created record, versions and
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
            *fb.written.get_mut(side) = Some(fb.hash.clone());
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
                .map(|(k, fb)| (k.clone(), fb.hash.clone()))
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

/// Change times per side, as `most-recent` compares them.
type Times = SidePair<Option<OffsetDateTime>>;

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

/// When a user last changed side `side`'s record: the app's change time, unless the
/// record still holds what it held when the sync planned its own write to it (or what
/// that write left), whose change time is then the sync's, not a user's.
fn change_time(
    m: &ResolvedMapping,
    link: &Link,
    side: Side,
    r: Option<&Record>,
) -> Option<OffsetDateTime> {
    let r = r?;
    match link.touched.get(side) {
        Some(t) if t.values.contains(&side_digest(m, side, r, None)) => t
            .before
            .as_deref()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()),
        _ => r.updated_at(),
    }
}

/// The mark to keep for side `side`'s record `r` after this plan: with `written`
/// (the bases of the fields this plan writes there; empty for list membership), a
/// new mark carrying the user's change time forward; without, an earlier mark only
/// while the record still matches it (a user's edit since retires it).
fn touch(
    m: &ResolvedMapping,
    link: &Link,
    side: Side,
    r: &Record,
    written: Option<&BTreeMap<String, FieldBase>>,
) -> Option<Touch> {
    let now = side_digest(m, side, r, None);
    let old = link
        .touched
        .get(side)
        .as_ref()
        .filter(|t| t.values.contains(&now));
    let written = match written {
        Some(w) => w,
        None => return old.cloned(),
    };
    let mut values: BTreeSet<String> = old.map(|t| t.values.clone()).unwrap_or_default();
    values.insert(side_digest(m, side, r, Some(written)));
    values.insert(now);
    Some(Touch {
        before: match old {
            Some(t) => t.before.clone(),
            None => r.updated_at.clone(),
        },
        values,
    })
}

/// Whether a rule's consent write would not change `current` (same opt-out state).
fn same_consent(m: &ResolvedMapping, side: Side, name: &str, current: &Value, v: &Value) -> bool {
    match m.consent.get(side) {
        Some(def) if def.name == name => {
            let c = super::mapping::decode_consent(def, current);
            c.is_some() && c == super::mapping::decode_consent(def, v)
        }
        _ => false,
    }
}

mod review;
pub use review::{ReviewError, release, take};

#[cfg(test)]
mod tests;
