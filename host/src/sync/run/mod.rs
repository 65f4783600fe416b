//! The executor: observe both sides, plan (pure), execute with the crash-safe
//! ordering of sync-rules §8, and keep the run log.
//!
//! Ordering, per run (one file per phase; sync-rules P1-P6):
//! 1. recover (`recover.rs`): ops left `planned`/`sent` by an interrupted run
//!    are resolved (a sent create is looked up by marker, then by e-mail,
//!    before anything is created again) or dropped to be re-planned;
//! 2. observe (`observe.rs`): pull pages from the saved cursors (a full listing
//!    when a cursor expired or the mapping changed, compared against the
//!    baseline), re-read records due for retry, look up unmatched e-mails on
//!    the other side;
//! 3. plan ([`super::plan`](mod@super::plan), pure), and check the breakers;
//! 4. record (`record.rs`) the plan (links, outbox `planned`, events) in one
//!    transaction;
//! 5. execute (`execute.rs`), per batch: mark `sent`; push; commit
//!    (`commit.rs`) every result with its new baseline in one transaction
//!    (acked, failed with back-off, or parked);
//! 6. commit (`commit.rs`): advance the cursors, only now that every op of the
//!    run is acked, failed into the retry index or parked.
//!
//! A crash anywhere leaves either the old state or acknowledged state; the next
//! run re-reads from the old cursors and the field table turns the writes
//! already made into no-ops (sync-rules P7).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use thiserror::Error;

use super::baseline::Baseline;
use super::mapping::{MappingError, ResolvedMapping, resolve};
use super::model::{Record, RecordKey, Side, SidePair};
use super::plan::{EntityInput, OpKind, Plan, PlannedOp, plan};
use super::policy::{PolicyError, SyncPolicy};
use super::source::{EntityInfo, Mappers, Source, SourceError, WriteOp};
use super::state::{
    Counters, Event, Flow, OpStatus, OutboxEntry, Requests, RetryEntry, RunKind, RunRecord,
    StateError, SyncStatus, SyncStore, Tombstone, Txn,
};

/// Ids per lookup by ids.
const IDS_PER_FIND: usize = 100;

/// A point of a run where a test may abort it, as a crash would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Both sides read, nothing planned.
    Observed,
    /// The plan is recorded (links, outbox `planned`).
    Recorded,
    /// A batch is marked `sent`, not yet pushed.
    BeforeSend,
    /// A batch was pushed; its results are not committed.
    AfterSend,
    /// A batch's results are committed.
    Committed,
    /// Every batch is done; cursors not yet advanced.
    BeforeCursors,
}

/// Crash injection for tests: return `Err` to stop the run at `point`.
pub trait Hooks: Send + Sync {
    /// Called at each point of a run.
    fn at(&self, point: Point) -> Result<(), Aborted>;
}

/// A run stopped by a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aborted;

/// No hooks.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn at(&self, _: Point) -> Result<(), Aborted> {
        Ok(())
    }
}

/// Why a run stopped.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The settings are inconsistent.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The fields cannot be mapped.
    #[error("sync `{sync}`: {source}")]
    Mapping {
        /// The sync's name (`[syncs.NAME]`).
        sync: String,
        /// Why the fields cannot be paired.
        source: MappingError,
    },
    /// A connector call failed; nothing after it ran, the next run resumes.
    #[error(
        "sync `{sync}`: side {side} ({connection}) {call} failed: {error}; the next run resumes from the last checkpoint"
    )]
    Source {
        /// The sync's name (`[syncs.NAME]`).
        sync: String,
        /// The side (a or b) it happened on.
        side: Side,
        /// The connection's name.
        connection: String,
        /// The connector call that failed (`describe`, `pull`, `push`...).
        call: &'static str,
        /// What the call returned.
        error: SourceError,
    },
    /// The connector does not serve an entity the sync names.
    #[error(
        "sync `{sync}`: side {side} ({connection}) has no entity `{entity}`: fix the sync's entities"
    )]
    NoEntity {
        /// The sync's name (`[syncs.NAME]`).
        sync: String,
        /// The side (a or b) it happened on.
        side: Side,
        /// The connection's name.
        connection: String,
        /// The entity the sync names.
        entity: String,
    },
    /// The scope names a list the app does not have.
    #[error(
        "sync `{sync}`: side {side} ({connection}) has no list `{container}` for `{entity}`; available: {available}"
    )]
    NoContainer {
        /// The sync's name (`[syncs.NAME]`).
        sync: String,
        /// The side (a or b) it happened on.
        side: Side,
        /// The connection's name.
        connection: String,
        /// The entity the sync names.
        entity: String,
        /// The list asked for.
        container: String,
        /// The lists it has.
        available: String,
    },
    /// Reading went past a bound of `[syncs.NAME.limits]`, or the connector's cursor
    /// did not advance: the run failed before planning anything (nothing written, the
    /// cursors stay).
    #[error(
        "sync `{sync}`: side {side} ({connection}): {problem}; the run failed and nothing was written"
    )]
    ReadLimit {
        /// The sync's name (`[syncs.NAME]`).
        sync: String,
        /// The side (a or b) it happened on.
        side: Side,
        /// The connection's name.
        connection: String,
        /// What was exceeded, with the setting to raise.
        problem: String,
    },
    /// A hook stopped the run (tests).
    #[error("run aborted at {0:?}")]
    Aborted(Point),
}

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Plan only: read both sides, write nothing anywhere.
    pub dry_run: bool,
    /// Run although the breaker halted the sync (or would halt this run).
    pub force: bool,
    /// Ignore cursors: list everything and compare it with the baseline.
    pub full: bool,
    /// The time (unix seconds) for back-off decisions and the run log.
    pub now: i64,
}

impl RunOptions {
    /// What a stored run of these options is: `full` lists everything again.
    pub fn kind(&self) -> RunKind {
        if self.full {
            RunKind::Full
        } else {
            RunKind::Incremental
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// Everything planned was acknowledged, failed into the retry index or parked.
    Completed,
    /// A dry run: nothing was written.
    DryRun,
    /// The sync is paused: nothing was read or written.
    Paused,
    /// The breaker halted the sync: only consent changes were written.
    Halted(String),
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The sync's name (`[syncs.NAME]`).
    pub sync: String,
    /// The run's id in the log (none for dry runs and paused syncs).
    pub run: Option<u64>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The plan (the dry-run report).
    pub plan: Plan,
    /// Per direction (`a-to-b` = writes to B, `b-to-a`, `both`).
    pub counters: BTreeMap<Flow, Counters>,
    /// Writes that failed or were parked: (op id, error).
    pub failures: Vec<(String, String)>,
    /// The API requests the run made on each side (as in its record).
    pub requests: Option<SidePair<Requests>>,
}

impl RunReport {
    fn new(sync: &str, outcome: RunOutcome) -> Self {
        RunReport {
            sync: sync.into(),
            run: None,
            outcome,
            plan: Plan::default(),
            counters: BTreeMap::new(),
            failures: Vec::new(),
            requests: None,
        }
    }
}

/// One sync between two sources, ready to run.
pub struct Engine<'a, S, M> {
    policy: &'a SyncPolicy,
    store: &'a SyncStore,
    /// The two connections' sources: always the same type, so one field per side
    /// and no per-side dispatch.
    sources: SidePair<&'a S>,
    mappers: &'a M,
    names: SidePair<String>,
    hooks: &'a dyn Hooks,
    /// What the current run has read, against `policy.limits`.
    reads: std::sync::Mutex<ReadTally>,
    /// Records a mapper failed on (not ones it dropped on purpose) in the current run.
    mapper_failures: std::sync::Mutex<Vec<MapperFailure>>,
    /// The requests each side's source had sent when the current run started.
    sent_before: std::sync::Mutex<SidePair<u64>>,
}

/// What a run has read so far.
#[derive(Debug, Default)]
struct ReadTally {
    records: u64,
    bytes: u64,
    started: Option<std::time::Instant>,
}

/// A record a mapper failed on: it is left out of the run, reported as failed, and
/// re-read by a later run (the retry index).
#[derive(Clone, Debug)]
struct MapperFailure {
    entity: usize,
    side: Side,
    id: String,
    error: String,
}

/// Roughly how many bytes a record holds in memory (strings plus a fixed overhead per
/// value), for the read bounds.
fn record_size(r: &Record) -> u64 {
    let value = |v: &super::model::Value| -> usize {
        use super::model::Value as V;
        match v {
            V::Null | V::Bool(_) | V::Number(_) => 8,
            V::Text(t) => t.len(),
            V::Texts(ts) => ts.iter().map(|t| t.len() + 24).sum(),
        }
    };
    let fields: usize = r.fields.iter().map(|(k, v)| k.len() + value(v) + 48).sum();
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    (r.id.len() + opt(&r.version) + opt(&r.updated_at) + fields + 96) as u64
}

/// The digest of a cursor (`None`: the start of a listing).
fn cursor_digest(cursor: Option<&str>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    match cursor {
        Some(c) => {
            h.update([1]);
            h.update(c.as_bytes());
        }
        None => h.update([0]),
    }
    h.finalize().into()
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S, M> std::fmt::Debug for Engine<'_, S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.policy.name)
    }
}

/// What observation produced for the planner and the cursor step.
struct Gathered {
    inputs: Vec<EntityInput>,
    baseline: Baseline,
    cursors: Vec<SidePair<Option<String>>>,
    infos: Vec<SidePair<EntityInfo>>,
    fingerprints: Vec<String>,
}

impl Gathered {
    /// Frees what only the planner reads: the fields of every record read and of every
    /// baseline link (their ids, versions and states stay, which recording the plan
    /// reads), so that they are freed before the plan is recorded and executed.
    fn shed(&mut self) {
        for input in &mut self.inputs {
            for side in Side::BOTH {
                for o in input.obs.get_mut(side).records.values_mut() {
                    o.record.fields = BTreeMap::new();
                }
            }
        }
        for link in self.baseline.links.values_mut() {
            link.fields = BTreeMap::new();
            link.review = Default::default();
            link.touched = Default::default();
        }
    }
}

/// Per-run bookkeeping while executing.
struct Ledger {
    run: RunRecord,
    seq: u64,
    joint: BTreeSet<(String, Side)>,
    retries: BTreeMap<RecordKey, RetryEntry>,
    failures: Vec<(String, String)>,
    /// Ops recorded for this run and not yet settled, with their attempts so far.
    queued: BTreeMap<String, u32>,
}

impl Ledger {
    fn entry(&self, op: &PlannedOp, status: OpStatus) -> OutboxEntry {
        OutboxEntry {
            op: op.clone(),
            status,
            attempts: self.queued.get(&op.id).copied().unwrap_or(0),
            next_attempt_at: None,
            error: None,
            run: self.run.id,
        }
    }
}

impl Ledger {
    fn count(&mut self, direction: Flow, f: impl FnOnce(&mut Counters)) {
        f(self.run.counters.entry(direction).or_default());
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        t: &Txn<'_>,
        direction: Flow,
        action: &str,
        entity: &str,
        records: Vec<String>,
        link: Option<&str>,
        reason: String,
    ) -> Result<(), StateError> {
        self.seq += 1;
        t.put_event(&Event {
            run: self.run.id,
            seq: self.seq,
            direction,
            action: action.into(),
            entity: entity.into(),
            records,
            link: link.map(str::to_string),
            reason,
        })
    }
}

impl<'a, S: Source, M: Mappers> Engine<'a, S, M> {
    /// An engine for `policy` between the sources of sides A and B.
    pub fn new(
        policy: &'a SyncPolicy,
        store: &'a SyncStore,
        sources: SidePair<&'a S>,
        mappers: &'a M,
    ) -> Self {
        Engine {
            policy,
            store,
            sources,
            mappers,
            names: SidePair::new("a".into(), "b".into()),
            hooks: &NoHooks,
            reads: Default::default(),
            mapper_failures: Default::default(),
            sent_before: Default::default(),
        }
    }

    /// Names the two connections (used in errors and mapper contexts).
    pub fn with_names(mut self, a: &str, b: &str) -> Self {
        self.names = SidePair::new(a.into(), b.into());
        self
    }

    /// Installs crash-injection hooks.
    pub fn with_hooks(mut self, hooks: &'a dyn Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    fn sync(&self) -> &str {
        &self.policy.name
    }

    fn hook(&self, p: Point) -> Result<(), EngineError> {
        self.hooks.at(p).map_err(|_| EngineError::Aborted(p))
    }

    fn source_err(
        &self,
        side: Side,
        call: &'static str,
    ) -> impl Fn(SourceError) -> EngineError + '_ {
        move |error| EngineError::Source {
            sync: self.sync().into(),
            side,
            connection: self.names.get(side).clone(),
            call,
            error,
        }
    }

    /// The source of one side.
    fn source(&self, side: Side) -> &'a S {
        self.sources.get(side)
    }

    /// Runs the sync once.
    pub async fn run(&self, opts: RunOptions) -> Result<RunReport, EngineError> {
        if self.store.has_view(self.sync()) {
            return self.run_viewed(opts).await;
        }
        // The sync's small tables, read once for the whole run (state::RunView).
        let store = self.store.for_run(self.sync())?;
        let engine = Engine {
            policy: self.policy,
            store: &store,
            sources: self.sources,
            mappers: self.mappers,
            names: self.names.clone(),
            hooks: self.hooks,
            reads: Default::default(),
            mapper_failures: Default::default(),
            sent_before: Default::default(),
        };
        engine.run_viewed(opts).await
    }

    /// Runs the sync once, on a store with the run's view of the sync.
    async fn run_viewed(&self, opts: RunOptions) -> Result<RunReport, EngineError> {
        self.policy.validate()?;
        let sync = self.sync().to_string();
        match self.store.status(&sync)? {
            SyncStatus::Paused => return Ok(RunReport::new(&sync, RunOutcome::Paused)),
            SyncStatus::Halted { reason } if !opts.force && !opts.dry_run => {
                return Ok(RunReport::new(&sync, RunOutcome::Halted(reason)));
            }
            _ => {}
        }
        let sent = |s: Side| self.source(s).requests().map_or(0, |r| r.sent);
        *lock(&self.sent_before) = SidePair::new(sent(Side::A), sent(Side::B));
        if !opts.dry_run {
            self.recover(&opts).await?;
            self.purge_tombstones(opts.now)?;
        }
        *lock(&self.reads) = ReadTally {
            started: Some(std::time::Instant::now()),
            ..ReadTally::default()
        };
        lock(&self.mapper_failures).clear();
        let mut obs = match self.observe(&opts).await {
            Ok(obs) => obs,
            Err(e) => return Err(self.failed_reading(e, &opts)),
        };
        self.hook(Point::Observed)?;
        // A plan made again replaces the one before, which is dropped first: on a first
        // sync a plan holds every record's fields and bases, and two of them at once were
        // the run's peak of memory (docs/performance.md §6).
        let mut plan = plan(self.policy, &obs.baseline, &obs.inputs);
        if !plan.fetch.is_empty() {
            let fetch = std::mem::take(&mut plan).fetch;
            if let Err(e) = self.fetch(&mut obs, &fetch).await {
                return Err(self.failed_reading(e, &opts));
            }
            plan = super::plan::plan(self.policy, &obs.baseline, &obs.inputs);
        }
        if super::plan::needs_link_counts(self.policy, &plan, &obs.inputs) {
            obs.baseline.counts = self.store.link_counts(&sync)?;
            drop(std::mem::take(&mut plan));
            plan = super::plan::plan(self.policy, &obs.baseline, &obs.inputs);
        }
        if opts.dry_run {
            let mut report = RunReport::new(&sync, RunOutcome::DryRun);
            report.plan = plan;
            return Ok(report);
        }
        let forced = opts.force && plan.halted.is_some();
        if forced {
            // The operator reviewed the dry run: plan again without breakers.
            let mut p = self.policy.clone();
            p.breaker.side_empty = false;
            p.breaker.max_deletes = None;
            p.breaker.max_overwrites = None;
            p.breaker.min_linked = usize::MAX;
            drop(std::mem::take(&mut plan));
            plan = super::plan::plan(&p, &obs.baseline, &obs.inputs);
        }
        // The plan is final: what is recorded and executed from here needs the records'
        // and links' ids and states, not their fields.
        obs.shed();
        let (exec, outcome) = if plan.ops.is_empty() {
            // Nothing to send: the plan's record and the run's end go in one commit (an
            // idle run costs one read and one write of the state).
            self.hook(Point::Recorded)?;
            self.hook(Point::BeforeCursors)?;
            self.store.write(&sync, |t| {
                let mut exec = self.record_in(t, &plan, &obs, &opts)?;
                let outcome = self.finish_in(t, &plan, &obs, &mut exec, &opts)?;
                Ok((exec, outcome))
            })?
        } else {
            let mut exec = self.record(&plan, &obs, &opts)?;
            self.hook(Point::Recorded)?;
            self.execute(&plan, &obs, &mut exec, &opts).await?;
            self.hook(Point::BeforeCursors)?;
            let outcome = self.finish(&plan, &obs, &mut exec, &opts)?;
            (exec, outcome)
        };
        Ok(RunReport {
            sync,
            run: Some(exec.run.id),
            outcome,
            plan,
            counters: exec.run.counters,
            failures: exec.failures,
            requests: exec.run.requests,
        })
    }

    /// A run that went past a read bound is written into the run log (outcome `failed`,
    /// the reason as its message), so that `sync status` and `sync logs` show why; other
    /// errors pass as they are.
    fn failed_reading(&self, e: EngineError, opts: &RunOptions) -> EngineError {
        if !matches!(e, EngineError::ReadLimit { .. }) || opts.dry_run {
            return e;
        }
        let written = self.store.write(self.sync(), |t| {
            let mut run = t.begin_run(opts.kind(), opts.now)?;
            run.outcome = "failed".into();
            run.message = Some(e.to_string());
            run.ended_at = Some(opts.now);
            run.requests = self.run_requests();
            t.put_run(&run)
        });
        match written {
            Ok(()) => e,
            Err(store) => store.into(),
        }
    }

    /// The requests the current run made on each side so far, with each account's quota
    /// now; `None` when the sources do not count them.
    fn run_requests(&self) -> Option<SidePair<Requests>> {
        let before = *lock(&self.sent_before);
        let side = |s: Side| {
            let mut r = self.source(s).requests()?;
            r.sent = r.sent.saturating_sub(*before.get(s));
            Some(r)
        };
        Some(SidePair::new(side(Side::A)?, side(Side::B)?))
    }

    /// Counts what was read from `side` against the run's bounds (`policy.limits`).
    fn tally(&self, side: Side, records: &[Record], deleted: usize) -> Result<(), EngineError> {
        let l = &self.policy.limits;
        let bytes: u64 = records.iter().map(record_size).sum::<u64>() + 32 * deleted as u64;
        let mut t = lock(&self.reads);
        t.records += (records.len() + deleted) as u64;
        t.bytes += bytes;
        let problem = if t.records > l.run_records {
            format!(
                "the run read more than {} records (limits.run-records)",
                l.run_records
            )
        } else if t.bytes > l.run_bytes {
            format!(
                "the run read more than {} bytes (limits.run-size)",
                l.run_bytes
            )
        } else if t
            .started
            .is_some_and(|s| s.elapsed() > std::time::Duration::from_secs(l.read_seconds))
        {
            format!(
                "the run spent more than {}s reading (limits.read-time)",
                l.read_seconds
            )
        } else {
            return Ok(());
        };
        Err(self.read_limit(side, problem))
    }

    fn read_limit(&self, side: Side, problem: String) -> EngineError {
        EngineError::ReadLimit {
            sync: self.sync().into(),
            side,
            connection: self.names.get(side).clone(),
            problem,
        }
    }

    /// A tombstone seen `now`, expiring after the sync's retention.
    fn tombstone(&self, link: String, now: i64, decision: String) -> Tombstone {
        Tombstone {
            link,
            detected_at: now,
            decision,
            expires_at: Some(now.saturating_add(self.policy.deletes.retention_seconds())),
        }
    }

    fn entity_names(&self, ix: usize) -> SidePair<String> {
        let p = &self.policy.entities[ix];
        SidePair::new(p.a.clone(), p.b.clone())
    }

    async fn mapping_for(&self, ix: usize) -> Result<ResolvedMapping, EngineError> {
        let names = self.entity_names(ix);
        let sa = self
            .source(Side::A)
            .schema(&names.a)
            .await
            .map_err(self.source_err(Side::A, "schema"))?;
        let sb = self
            .source(Side::B)
            .schema(&names.b)
            .await
            .map_err(self.source_err(Side::B, "schema"))?;
        resolve(self.policy, SidePair::new(&names.a, &names.b), &sa, &sb).map_err(|source| {
            EngineError::Mapping {
                sync: self.sync().into(),
                source,
            }
        })
    }
}

/// What the operator can do about an ambiguous match with these candidates.
pub fn resolve_hint(sync: &str, a: &[String], b: &[String]) -> String {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) => format!(
            "to decide, run `tandem sync resolve {sync} --link {x} {y}` (the same person) or `tandem sync resolve {sync} --keep-apart {x} {y}` (different people)"
        ),
        _ => "several records of one app share the address: merge them in the app".into(),
    }
}

fn op_target_id(op: &PlannedOp) -> Option<String> {
    match &op.kind {
        OpKind::Create { .. } => None,
        OpKind::Update { id, .. }
        | OpKind::Delete { id }
        | OpKind::AddToContainer { id, .. }
        | OpKind::RemoveFromContainer { id, .. } => Some(id.clone()),
    }
}

/// The connector's form of a planned write.
fn write_op(kind: &OpKind) -> WriteOp {
    match kind.clone() {
        OpKind::Create {
            fields,
            marker,
            containers,
        } => WriteOp::Create {
            fields,
            marker: Some(marker),
            containers,
        },
        OpKind::Update {
            id,
            if_version,
            fields,
        } => WriteOp::Update {
            id,
            if_version,
            fields,
        },
        OpKind::Delete { id } => WriteOp::Delete(id),
        OpKind::AddToContainer { container, id } => WriteOp::AddToContainer {
            container,
            ids: vec![id],
        },
        OpKind::RemoveFromContainer { container, id } => WriteOp::RemoveFromContainer {
            container,
            ids: vec![id],
        },
    }
}

mod commit;
mod execute;
mod observe;
mod record;
mod recover;

#[cfg(test)]
mod tests;
