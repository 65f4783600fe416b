//! The executor: observe both sides, plan (pure), execute with the crash-safe
//! ordering of §2.9, and keep the run log.
//!
//! Ordering, per run:
//! 1. recover: ops left `planned`/`sent` by an interrupted run are resolved
//!    (a sent create is looked up by marker, then by e-mail, before anything
//!    is created again) or dropped to be re-planned;
//! 2. observe: pull pages from the saved cursors (a full listing when a cursor
//!    expired or the mapping changed, compared against the baseline), re-read
//!    records due for retry, look up unmatched e-mails on the other side;
//! 3. plan, and check the breakers;
//! 4. record the plan (links, outbox `planned`, events) in one transaction;
//! 5. per batch: mark `sent`; push; commit every result with its new baseline
//!    in one transaction (acked, failed with back-off, or parked);
//! 6. advance the cursors, only now that every op of the run is acked, failed
//!    into the retry index or parked.
//!
//! A crash anywhere leaves either the old state or acknowledged state; the next
//! run re-reads from the old cursors and the field table turns the writes
//! already made into no-ops (§2.9).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use thiserror::Error;

use super::baseline::{Baseline, Decision, Link, LinkState};
use super::mapping::{MappingError, ResolvedMapping, resolve};
use super::model::{Record, Side, SidePair, normalise_email};
use super::plan::{
    EntityInput, LinkEffect, Observation, Observed, OpKind, Plan, PlannedOp, apply_ack, plan,
};
use super::policy::{PolicyError, Scope, SyncPolicy};
use super::source::{
    EntityInfo, FieldDef, Lookup, MapContext, Mappers, PullRequest, Source, SourceError, Write,
    WriteOp,
};
use super::state::{
    Counters, Event, OpStatus, OutboxEntry, PendingAmbiguity, RetryEntry, RunRecord, StateError,
    SyncStatus, SyncStore, Tombstone, TombstoneKey, Txn, direction_to,
};

/// Records a recovery lookup found, per ((side, entity), marker or e-mail).
type Found = BTreeMap<((Side, String), String), Vec<Record>>;

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
        /// The sync.
        sync: String,
        /// The problem.
        source: MappingError,
    },
    /// A connector call failed; nothing after it ran, the next run resumes.
    #[error(
        "sync `{sync}`: side {side} ({connection}) {call} failed: {error}; the next run resumes from the last checkpoint"
    )]
    Source {
        /// The sync.
        sync: String,
        /// The side.
        side: Side,
        /// The connection's name.
        connection: String,
        /// The call.
        call: &'static str,
        /// The error.
        error: SourceError,
    },
    /// The connector does not serve an entity the sync names.
    #[error(
        "sync `{sync}`: side {side} ({connection}) has no entity `{entity}`: fix the sync's entities"
    )]
    NoEntity {
        /// The sync.
        sync: String,
        /// The side.
        side: Side,
        /// The connection's name.
        connection: String,
        /// The entity.
        entity: String,
    },
    /// The scope names a list the app does not have.
    #[error(
        "sync `{sync}`: side {side} ({connection}) has no list `{container}` for `{entity}`; available: {available}"
    )]
    NoContainer {
        /// The sync.
        sync: String,
        /// The side.
        side: Side,
        /// The connection's name.
        connection: String,
        /// The entity.
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
        /// The sync.
        sync: String,
        /// The side.
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
    /// The sync.
    pub sync: String,
    /// The run's id in the log (none for dry runs and paused syncs).
    pub run: Option<u64>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The plan (the dry-run report).
    pub plan: Plan,
    /// Per direction (`a-to-b` = writes to B, `b-to-a`, `both`).
    pub counters: BTreeMap<String, Counters>,
    /// Writes that failed or were parked: (op id, error).
    pub failures: Vec<(String, String)>,
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
        }
    }
}

/// One sync between two sources, ready to run.
pub struct Engine<'a, A, B, M> {
    policy: &'a SyncPolicy,
    store: &'a SyncStore,
    a: &'a A,
    b: &'a B,
    mappers: &'a M,
    names: SidePair<String>,
    hooks: &'a dyn Hooks,
    /// What the current run has read, against `policy.limits`.
    reads: std::sync::Mutex<ReadTally>,
    /// Records a mapper failed on (not ones it dropped on purpose) in the current run.
    mapper_failures: std::sync::Mutex<Vec<MapperFailure>>,
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

impl<A, B, M> std::fmt::Debug for Engine<'_, A, B, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.policy.name)
    }
}

/// What observation produced for the planner and the cursor step.
struct Observed2 {
    inputs: Vec<EntityInput>,
    baseline: Baseline,
    cursors: Vec<SidePair<Option<String>>>,
    infos: Vec<SidePair<EntityInfo>>,
    fingerprints: Vec<String>,
}

/// Per-run bookkeeping while executing.
struct Exec {
    run: RunRecord,
    seq: u64,
    joint: BTreeSet<(String, Side)>,
    retries: BTreeMap<(usize, Side, String), RetryEntry>,
    failures: Vec<(String, String)>,
    /// Ops recorded for this run and not yet settled, with their attempts so far.
    queued: BTreeMap<String, u32>,
}

impl Exec {
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

impl Exec {
    fn count(&mut self, direction: &str, f: impl FnOnce(&mut Counters)) {
        f(self.run.counters.entry(direction.to_string()).or_default());
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        t: &Txn<'_>,
        direction: &str,
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
            direction: direction.into(),
            action: action.into(),
            entity: entity.into(),
            records,
            link: link.map(str::to_string),
            reason,
        })
    }
}

impl<'a, A: Source, B: Source, M: Mappers> Engine<'a, A, B, M> {
    /// An engine for `policy` between sources `a` and `b`.
    pub fn new(
        policy: &'a SyncPolicy,
        store: &'a SyncStore,
        a: &'a A,
        b: &'a B,
        mappers: &'a M,
    ) -> Self {
        Engine {
            policy,
            store,
            a,
            b,
            mappers,
            names: SidePair::new("a".into(), "b".into()),
            hooks: &NoHooks,
            reads: Default::default(),
            mapper_failures: Default::default(),
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

    // ----- side dispatch -----

    async fn entities(&self, side: Side) -> Result<Vec<EntityInfo>, SourceError> {
        match side {
            Side::A => self.a.entities().await,
            Side::B => self.b.entities().await,
        }
    }

    async fn schema(&self, side: Side, entity: &str) -> Result<Vec<FieldDef>, SourceError> {
        match side {
            Side::A => self.a.schema(entity).await,
            Side::B => self.b.schema(entity).await,
        }
    }

    async fn containers(
        &self,
        side: Side,
        entity: &str,
    ) -> Result<Vec<super::source::Container>, SourceError> {
        match side {
            Side::A => self.a.containers(entity).await,
            Side::B => self.b.containers(entity).await,
        }
    }

    async fn pull(&self, side: Side, req: PullRequest) -> Result<super::source::Page, SourceError> {
        match side {
            Side::A => self.a.pull(req).await,
            Side::B => self.b.pull(req).await,
        }
    }

    async fn find(
        &self,
        side: Side,
        entity: &str,
        lookup: Lookup,
    ) -> Result<Vec<Record>, SourceError> {
        match side {
            Side::A => self.a.find(entity, lookup).await,
            Side::B => self.b.find(entity, lookup).await,
        }
    }

    async fn find_many(
        &self,
        side: Side,
        entity: &str,
        lookups: Vec<Lookup>,
    ) -> Result<Vec<Vec<Record>>, SourceError> {
        if lookups.is_empty() {
            return Ok(Vec::new());
        }
        match side {
            Side::A => self.a.find_many(entity, lookups).await,
            Side::B => self.b.find_many(entity, lookups).await,
        }
    }

    async fn push(
        &self,
        side: Side,
        entity: &str,
        writes: Vec<Write>,
    ) -> Result<Vec<super::source::WriteResult>, SourceError> {
        match side {
            Side::A => self.a.push(entity, writes).await,
            Side::B => self.b.push(entity, writes).await,
        }
    }

    /// Runs the sync once.
    pub async fn run(&self, opts: RunOptions) -> Result<RunReport, EngineError> {
        self.policy.validate()?;
        let sync = self.sync().to_string();
        match self.store.status(&sync)? {
            SyncStatus::Paused => return Ok(RunReport::new(&sync, RunOutcome::Paused)),
            SyncStatus::Halted { reason } if !opts.force && !opts.dry_run => {
                return Ok(RunReport::new(&sync, RunOutcome::Halted(reason)));
            }
            _ => {}
        }
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
        let mut plan = plan(self.policy, &obs.baseline, &obs.inputs);
        if !plan.fetch.is_empty() {
            if let Err(e) = self.fetch(&mut obs, &plan.fetch).await {
                return Err(self.failed_reading(e, &opts));
            }
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
            plan = super::plan::plan(&p, &obs.baseline, &obs.inputs);
        }
        let mut exec = self.record(&plan, &obs, &opts)?;
        self.hook(Point::Recorded)?;
        self.execute(&plan, &obs, &mut exec, &opts).await?;
        self.hook(Point::BeforeCursors)?;
        let outcome = self.finish(&plan, &obs, &mut exec, &opts)?;
        Ok(RunReport {
            sync,
            run: Some(exec.run.id),
            outcome,
            plan,
            counters: exec.run.counters,
            failures: exec.failures,
        })
    }

    /// A run that went past a read bound is written into the run log (outcome `failed`,
    /// the reason as its message), so that `sync status` and `sync logs` show why; other
    /// errors pass as they are.
    fn failed_reading(&self, e: EngineError, opts: &RunOptions) -> EngineError {
        if !matches!(e, EngineError::ReadLimit { .. }) || opts.dry_run {
            return e;
        }
        let kind = if opts.full { "full" } else { "incremental" };
        let written = self.store.write(self.sync(), |t| {
            let mut run = t.begin_run(kind, opts.now)?;
            run.outcome = "failed".into();
            run.message = Some(e.to_string());
            run.ended_at = Some(opts.now);
            t.put_run(&run)
        });
        match written {
            Ok(()) => e,
            Err(store) => store.into(),
        }
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

    // ----- 1. recovery -----

    /// Resolves ops an interrupted run left `planned` or `sent`.
    async fn recover(&self, opts: &RunOptions) -> Result<(), EngineError> {
        let sync = self.sync();
        let stale: Vec<OutboxEntry> = self
            .store
            .outbox(sync)?
            .into_iter()
            .filter(|e| match e.status {
                OpStatus::Planned | OpStatus::Sent => true,
                // A failed create may have reached the app (a lost response).
                OpStatus::Failed => matches!(e.op.kind, OpKind::Create { .. }),
                OpStatus::Acked | OpStatus::Parked => false,
            })
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        // List membership is not re-derived by the next plan (a link matched
        // outside the list is stored before its add is acked): replay it.
        let (membership, stale): (Vec<OutboxEntry>, Vec<OutboxEntry>) =
            stale.into_iter().partition(|e| {
                matches!(e.status, OpStatus::Planned | OpStatus::Sent)
                    && matches!(
                        e.op.kind,
                        OpKind::AddToContainer { .. } | OpKind::RemoveFromContainer { .. }
                    )
            });
        self.replay_membership(membership, opts).await?;
        // The lookups of every create that may have been sent, in batches: markers
        // first, then the e-mails of those no marker found.
        let (by_marker, by_email) = self.recovery_lookups(&stale).await?;
        let mut resolved: Vec<(OutboxEntry, Option<Record>)> = Vec::new();
        for e in stale {
            let found = self.find_created(&e, &by_marker, &by_email)?;
            resolved.push((e, found));
        }
        // A create is the record *and* its list membership (the connector adds it
        // after creating it): a create found here may have missed its list.
        let unlisted = self.complete_membership(&resolved).await?;
        for (e, found) in resolved {
            let op = &e.op;
            if unlisted.contains(&op.id) {
                // Its list add failed for now: the row stays, the next run finds it again.
                continue;
            }
            let mapping = match &found {
                Some(_) => Some(self.mapping_for(op.entity).await?),
                None => None,
            };
            self.store.write(sync, |t| {
                match (&found, &mapping) {
                    (Some(r), Some(m)) => {
                        if let Some(mut link) = t.link(&op.link)? {
                            apply_ack(&mut link, op, Some(r), m, op.joint.is_empty());
                            let names = self.entity_names(op.entity);
                            t.put_link(&link, (names.a.as_str(), names.b.as_str()))?;
                            // Done: its records wait for no retry any more.
                            for s in Side::BOTH {
                                if let Some(id) = link.id(s) {
                                    t.remove_retry(op.entity, s, id)?;
                                }
                            }
                        }
                        // Found: acknowledged; the outbox row goes.
                        t.remove_op(&op.id)?;
                    }
                    // A failed create not found stays failed: its retry entry
                    // and back-off still apply; it is re-planned when due.
                    _ if e.status == OpStatus::Failed => {}
                    _ => t.remove_op(&op.id)?,
                }
                Ok(())
            })?;
        }
        // Runs that never finished are marked interrupted.
        let runs = self.store.runs(sync)?;
        self.store.write(sync, |t| {
            for mut r in runs.into_iter().filter(|r| r.outcome == "running") {
                r.outcome = "interrupted".into();
                r.ended_at = Some(opts.now);
                t.put_run(&r)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The record an interrupted or unanswered create made, if it reached the app:
    /// found by its marker, then by its e-mail (one unlinked hit only), in the
    /// lookups [`Self::recovery_lookups`] made for the whole batch.
    fn find_created(
        &self,
        e: &OutboxEntry,
        by_marker: &Found,
        by_email: &Found,
    ) -> Result<Option<Record>, EngineError> {
        let op = &e.op;
        // A `planned` create too: its `sent` mark is flushed with the run's
        // final commit, so after a crash it may have been sent all the same.
        let (OpStatus::Planned | OpStatus::Sent | OpStatus::Failed, OpKind::Create { marker, .. }) =
            (e.status, &op.kind)
        else {
            return Ok(None);
        };
        let sync = self.sync();
        let key = (op.side, op.entity_name.clone());
        if let Some(hits) = by_marker.get(&(key.clone(), marker.clone()))
            && hits.len() == 1
        {
            return Ok(hits.first().cloned());
        }
        if let Some(link) = self.store.link(sync, &op.link)?
            && let Some(email) = &link.match_key
            && let Some(hits) = by_email.get(&(key, email.clone()))
        {
            // Checked now, not when looked up: an earlier op of this recovery may
            // have linked the record meanwhile.
            let names = self.entity_names(op.entity);
            let linked = self.store.links_for(
                sync,
                hits.iter()
                    .map(|r| (op.side, names.get(op.side).as_str(), r.id.as_str())),
            )?;
            if hits.len() == 1 && linked.is_empty() {
                return Ok(hits.first().cloned());
            }
        }
        Ok(None)
    }

    /// Adds the records of found creates to the lists their create named (adding a
    /// member twice is harmless), one push per entity and side so that the
    /// connector batches them. Returns the creates whose add failed for now.
    async fn complete_membership(
        &self,
        resolved: &[(OutboxEntry, Option<Record>)],
    ) -> Result<BTreeSet<String>, EngineError> {
        let mut groups: BTreeMap<(usize, Side), Vec<(String, Write)>> = BTreeMap::new();
        for (e, found) in resolved {
            let (Some(r), OpKind::Create { containers, .. }) = (found, &e.op.kind) else {
                continue;
            };
            for (i, c) in containers.iter().enumerate() {
                groups.entry((e.op.entity, e.op.side)).or_default().push((
                    e.op.id.clone(),
                    Write {
                        reference: format!("{}/{i}", e.op.id),
                        op: WriteOp::AddToContainer {
                            container: c.clone(),
                            ids: vec![r.id.clone()],
                        },
                    },
                ));
            }
        }
        let mut failed = BTreeSet::new();
        for ((ix, side), writes) in groups {
            let names = self.entity_names(ix);
            let ops: Vec<(String, String)> = writes
                .iter()
                .map(|(op, w)| (op.clone(), w.reference.clone()))
                .collect();
            let results = self
                .push(
                    side,
                    names.get(side),
                    writes.into_iter().map(|(_, w)| w).collect(),
                )
                .await
                .map_err(self.source_err(side, "push"))?;
            let by_ref: BTreeMap<String, Result<Option<Record>, SourceError>> = results
                .into_iter()
                .map(|r| (r.reference, r.outcome))
                .collect();
            for (op, reference) in ops {
                match by_ref.get(&reference) {
                    Some(Ok(_)) | Some(Err(SourceError::NotFound(_))) => {
                        tracing::info!(sync = self.sync(), op = %op, "recovered create added to its list");
                    }
                    Some(Err(e)) if !e.is_retryable() => {
                        tracing::warn!(sync = self.sync(), op = %op, error = %e, "recovered create: its list refused it");
                    }
                    _ => {
                        failed.insert(op);
                    }
                }
            }
        }
        Ok(failed)
    }

    /// What the app holds for the creates among `stale` (ops an interrupted run may
    /// have sent): the records per marker, then per match e-mail for the creates whose
    /// marker found no single record, each side and entity in one batch
    /// ([`Source::find_many`]).
    async fn recovery_lookups(&self, stale: &[OutboxEntry]) -> Result<(Found, Found), EngineError> {
        let creates: Vec<(&PlannedOp, &String)> = stale
            .iter()
            .filter_map(|e| match (&e.op.kind, e.status) {
                (
                    OpKind::Create { marker, .. },
                    OpStatus::Planned | OpStatus::Sent | OpStatus::Failed,
                ) => Some((&e.op, marker)),
                _ => None,
            })
            .collect();
        let mut markers: BTreeMap<(Side, String), BTreeSet<String>> = BTreeMap::new();
        for (op, marker) in &creates {
            markers
                .entry((op.side, op.entity_name.clone()))
                .or_default()
                .insert((*marker).clone());
        }
        let by_marker = self.lookup_batches(markers, Lookup::Marker).await?;
        let mut emails: BTreeMap<(Side, String), BTreeSet<String>> = BTreeMap::new();
        for (op, marker) in &creates {
            let key = (op.side, op.entity_name.clone());
            if by_marker
                .get(&(key.clone(), (*marker).clone()))
                .is_some_and(|hits| hits.len() == 1)
            {
                continue;
            }
            if let Some(link) = self.store.link(self.sync(), &op.link)?
                && let Some(email) = link.match_key
            {
                emails.entry(key).or_default().insert(email);
            }
        }
        let by_email = self.lookup_batches(emails, Lookup::Email).await?;
        Ok((by_marker, by_email))
    }

    /// Looks up `values` per (side, entity), as `lookup(value)`, one batch each.
    async fn lookup_batches(
        &self,
        values: BTreeMap<(Side, String), BTreeSet<String>>,
        lookup: fn(String) -> Lookup,
    ) -> Result<Found, EngineError> {
        let mut out = BTreeMap::new();
        for ((side, entity), values) in values {
            let values: Vec<String> = values.into_iter().collect();
            let found = self
                .find_many(side, &entity, values.iter().cloned().map(lookup).collect())
                .await
                .map_err(self.source_err(side, "find"))?;
            for (value, records) in values.into_iter().zip(found) {
                out.insert(((side, entity.clone()), value), records);
            }
        }
        Ok(out)
    }

    /// Sends again the add/remove-membership ops an interrupted run left
    /// `planned` or `sent` (both are idempotent) and commits each result as
    /// the run would have: the link takes the op's effect, the row goes. A
    /// retryable failure stops here (rows kept, replayed by the next run); a
    /// permanent one drops the row, as the app refused it.
    async fn replay_membership(
        &self,
        ops: Vec<OutboxEntry>,
        opts: &RunOptions,
    ) -> Result<(), EngineError> {
        let sync = self.sync();
        let mut groups: BTreeMap<(usize, Side), Vec<PlannedOp>> = BTreeMap::new();
        for e in ops {
            groups
                .entry((e.op.entity, e.op.side))
                .or_default()
                .push(e.op);
        }
        for ((ix, side), ops) in groups {
            let mapping = self.mapping_for(ix).await?;
            let names = self.entity_names(ix);
            let writes: Vec<Write> = ops
                .iter()
                .map(|op| Write {
                    reference: op.id.clone(),
                    op: write_op(&op.kind),
                })
                .collect();
            let results = self
                .push(side, names.get(side), writes)
                .await
                .map_err(self.source_err(side, "push"))?;
            let mut by_ref: BTreeMap<String, Result<Option<Record>, SourceError>> = results
                .into_iter()
                .map(|r| (r.reference, r.outcome))
                .collect();
            let mut retry: Option<SourceError> = None;
            self.store.write(sync, |t| {
                for op in &ops {
                    let outcome = by_ref.remove(&op.id).unwrap_or_else(|| {
                        Err(SourceError::Transient(
                            "the connector returned no result for this write".into(),
                        ))
                    });
                    match outcome {
                        Ok(_) | Err(SourceError::NotFound(_)) => {}
                        Err(e) if e.is_retryable() => {
                            retry.get_or_insert(e);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(sync, op = %op.id, error = %e, "replayed {} refused: dropped", op.kind.label());
                            t.remove_op(&op.id)?;
                            continue;
                        }
                    }
                    if let Some(mut link) = t.link(&op.link)? {
                        let entities = (names.a.as_str(), names.b.as_str());
                        if apply_ack(&mut link, op, None, &mapping, true) {
                            t.put_link(&link, entities)?;
                        } else {
                            t.remove_link(&op.link, entities)?;
                            if let Some(id) = link.id(op.side) {
                                t.put_tombstone(
                                    op.entity,
                                    op.side,
                                    id,
                                    &self.tombstone(op.link.clone(), opts.now, op.reason.clone()),
                                )?;
                            }
                        }
                    }
                    tracing::info!(sync, op = %op.id, "replayed {} of an interrupted run", op.kind.label());
                    t.remove_op(&op.id)?;
                }
                Ok(())
            })?;
            if let Some(e) = retry {
                return Err(self.source_err(side, "push")(e));
            }
        }
        Ok(())
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

    /// Purges expired tombstones (§2.6), at the start of a run. A link deleted
    /// on both sides is dropped with them once every one of its tombstones
    /// has expired (until then they all stay, so the link is not re-examined).
    fn purge_tombstones(&self, now: i64) -> Result<(), EngineError> {
        let sync = self.sync();
        let rows = self.store.tombstone_rows(sync)?;
        let expired = |t: &Tombstone| t.expires_at.is_some_and(|e| e <= now);
        if !rows.iter().any(|(_, t)| expired(t)) {
            return Ok(());
        }
        let mut by_link: BTreeMap<&str, Vec<&(TombstoneKey, Tombstone)>> = BTreeMap::new();
        for row in &rows {
            by_link.entry(row.1.link.as_str()).or_default().push(row);
        }
        self.store.write(sync, |t| {
            for (key, rows) in by_link {
                if !rows.iter().any(|(_, tb)| expired(tb)) {
                    continue;
                }
                let link = t.link(key)?;
                let gone = link.as_ref().is_some_and(|l| {
                    let ids: Vec<(Side, &str)> = Side::BOTH
                        .into_iter()
                        .filter_map(|s| l.id(s).map(|i| (s, i)))
                        .collect();
                    !ids.is_empty()
                        && ids.iter().all(|(s, i)| {
                            rows.iter()
                                .any(|((e, rs, ri), _)| *e == l.entity && rs == s && ri == i)
                        })
                });
                let all_expired = rows.iter().all(|(_, tb)| expired(tb));
                if gone && !all_expired {
                    continue;
                }
                if let (true, Some(l)) = (gone, &link) {
                    let names = self.entity_names(l.entity);
                    t.remove_link(key, (names.a.as_str(), names.b.as_str()))?;
                    tracing::info!(
                        sync,
                        link = key,
                        "deleted on both sides: tombstones expired, link dropped"
                    );
                }
                for ((e, s, id), tb) in rows {
                    if expired(tb) {
                        t.remove_tombstone(*e, *s, id)?;
                    }
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Links deleted on both sides, waiting for their tombstones to expire.
    fn gone_links(&self, links: &BTreeMap<String, Link>) -> Result<BTreeSet<String>, EngineError> {
        let tomb: BTreeSet<(usize, Side, String)> = self
            .store
            .tombstone_rows(self.sync())?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        Ok(links
            .values()
            .filter(|l| {
                let ids: Vec<(Side, &str)> = Side::BOTH
                    .into_iter()
                    .filter_map(|s| l.id(s).map(|i| (s, i)))
                    .collect();
                !ids.is_empty()
                    && ids
                        .iter()
                        .all(|(s, i)| tomb.contains(&(l.entity, *s, i.to_string())))
            })
            .map(|l| l.key.clone())
            .collect())
    }

    fn entity_names(&self, ix: usize) -> SidePair<String> {
        let p = &self.policy.entities[ix];
        SidePair::new(p.a.clone(), p.b.clone())
    }

    async fn mapping_for(&self, ix: usize) -> Result<ResolvedMapping, EngineError> {
        let names = self.entity_names(ix);
        let sa = self
            .schema(Side::A, &names.a)
            .await
            .map_err(self.source_err(Side::A, "schema"))?;
        let sb = self
            .schema(Side::B, &names.b)
            .await
            .map_err(self.source_err(Side::B, "schema"))?;
        resolve(self.policy, SidePair::new(&names.a, &names.b), &sa, &sb).map_err(|source| {
            EngineError::Mapping {
                sync: self.sync().into(),
                source,
            }
        })
    }

    // ----- 2. observation -----

    async fn observe(&self, opts: &RunOptions) -> Result<Observed2, EngineError> {
        let sync = self.sync();
        let mut all_infos: SidePair<Option<Vec<EntityInfo>>> = SidePair::default();
        let mut out = Observed2 {
            inputs: Vec::new(),
            baseline: Baseline::default(),
            cursors: Vec::new(),
            infos: Vec::new(),
            fingerprints: Vec::new(),
        };
        // A new operator decision: read everything once, so that the records
        // it names are planned again although they did not change.
        let rescan = self.store.rescan(sync)?;
        for (ix, pair) in self.policy.entities.iter().enumerate() {
            let mut infos: Vec<EntityInfo> = Vec::new();
            for side in Side::BOTH {
                if all_infos.get(side).is_none() {
                    let list = self
                        .entities(side)
                        .await
                        .map_err(self.source_err(side, "describe"))?;
                    *all_infos.get_mut(side) = Some(list);
                }
                let info = all_infos
                    .get(side)
                    .iter()
                    .flatten()
                    .find(|i| i.name == pair.name(side))
                    .cloned();
                let info = info.ok_or_else(|| EngineError::NoEntity {
                    sync: sync.into(),
                    side,
                    connection: self.names.get(side).clone(),
                    entity: pair.name(side).into(),
                })?;
                infos.push(info);
            }
            let infos = SidePair::new(infos[0].clone(), infos[1].clone());
            let mapping = self.mapping_for(ix).await?;
            let fingerprint = mapping.fingerprint();
            let full = opts.full
                || rescan
                || self.store.mapping(sync, ix)?.as_deref() != Some(fingerprint.as_str());
            let mut containers: SidePair<Option<String>> = SidePair::default();
            let mut obs: SidePair<Observation> = SidePair::default();
            let mut cursors: SidePair<Option<String>> = SidePair::default();
            for side in Side::BOTH {
                let container = self.container(side, pair.name(side)).await?;
                let cursor = if full {
                    None
                } else {
                    self.store.cursor(sync, ix, side)?
                };
                let (o, next) = self
                    .listing(side, ix, infos.get(side), container.clone(), cursor)
                    .await?;
                *obs.get_mut(side) = o;
                *cursors.get_mut(side) = next;
                *containers.get_mut(side) = container;
            }
            out.inputs.push(EntityInput {
                pair: pair.clone(),
                mapping,
                containers,
                obs,
            });
            out.cursors.push(cursors);
            out.infos.push(infos);
            out.fingerprints.push(fingerprint);
        }
        self.reread_retries(&mut out, opts).await?;
        self.reread_ambiguous(&mut out).await?;
        let mut links = self.load_links(&out)?;
        self.lookups(&mut out, &mut links).await?;
        self.missing(&mut out, &links).await?;
        let gone = self.gone_links(&links)?;
        out.baseline = Baseline {
            links,
            counts: self.store.link_counts(sync)?,
            run: self.store.next_run(sync)?,
            decisions: self.store.decisions(sync)?,
            gone,
        };
        Ok(out)
    }

    /// The container id of a side's scope.
    async fn container(&self, side: Side, entity: &str) -> Result<Option<String>, EngineError> {
        let Scope::Container(want) = self.policy.scope.get(side) else {
            return Ok(None);
        };
        let list = self
            .containers(side, entity)
            .await
            .map_err(self.source_err(side, "containers"))?;
        let hit = list
            .iter()
            .find(|c| c.id == *want)
            .or_else(|| list.iter().find(|c| c.name == *want));
        match hit {
            Some(c) => Ok(Some(c.id.clone())),
            None => Err(EngineError::NoContainer {
                sync: self.sync().into(),
                side,
                connection: self.names.get(side).clone(),
                entity: entity.into(),
                container: want.clone(),
                available: list
                    .iter()
                    .map(|c| format!("`{}`", c.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Pulls every page from `cursor` (a full listing when `None`, or when the
    /// cursor expired). Returns the observation and the checkpoint to save.
    async fn listing(
        &self,
        side: Side,
        ix: usize,
        info: &EntityInfo,
        container: Option<String>,
        cursor: Option<String>,
    ) -> Result<(Observation, Option<String>), EngineError> {
        let mut cursor = cursor;
        'restart: loop {
            let full = cursor.is_none();
            let mut obs = Observation {
                complete: full,
                ..Observation::default()
            };
            let mut next = cursor.clone();
            let limits = &self.policy.limits;
            // Cursors already asked for in this listing (digests, so that long ones cost
            // nothing): asking again would go round in a circle.
            let mut asked: BTreeSet<[u8; 32]> = BTreeSet::new();
            let (mut records_n, mut bytes_n) = (0u64, 0u64);
            loop {
                if !asked.insert(cursor_digest(next.as_deref())) {
                    return Err(self.read_limit(
                        side,
                        format!(
                            "the connector's listing of `{}` did not advance (it returned a cursor it had returned before, with more pages to come): its pagination is broken",
                            info.name
                        ),
                    ));
                }
                let req = PullRequest {
                    entity: info.name.clone(),
                    container: container.clone(),
                    cursor: next.clone(),
                    full,
                    page_size: info.max_page_size.clamp(1, 1000),
                };
                let page = match self.pull(side, req).await {
                    Ok(p) => p,
                    Err(SourceError::CursorExpired(_)) if cursor.is_some() => {
                        tracing::info!(sync = self.sync(), %side, entity = %info.name, "cursor expired: full listing compared with the baseline");
                        cursor = None;
                        continue 'restart;
                    }
                    Err(e) => return Err(self.source_err(side, "pull")(e)),
                };
                if let Some(c) = &page.next_cursor
                    && c.len() as u64 > limits.cursor_bytes
                {
                    return Err(self.read_limit(
                        side,
                        format!(
                            "the connector returned a cursor of {} bytes for `{}`, more than {} (limits.cursor-size)",
                            c.len(),
                            info.name,
                            limits.cursor_bytes
                        ),
                    ));
                }
                self.tally(side, &page.records, page.deleted.len())?;
                records_n += (page.records.len() + page.deleted.len()) as u64;
                bytes_n += page.records.iter().map(record_size).sum::<u64>()
                    + 32 * page.deleted.len() as u64;
                if records_n > limits.listing_records {
                    return Err(self.read_limit(
                        side,
                        format!(
                            "the listing of `{}` returned more than {} records (limits.listing-records)",
                            info.name, limits.listing_records
                        ),
                    ));
                }
                if bytes_n > limits.listing_bytes {
                    return Err(self.read_limit(
                        side,
                        format!(
                            "the listing of `{}` returned more than {} bytes (limits.listing-size)",
                            info.name, limits.listing_bytes
                        ),
                    ));
                }
                obs.deleted.extend(page.deleted);
                let (records, failed) = self.map_records(side, ix, page.records).await;
                for r in records {
                    obs.deleted.remove(&r.id);
                    obs.listed(r);
                }
                obs.failed.extend(failed);
                next = page.next_cursor.or(next);
                if !page.more {
                    return Ok((obs, next));
                }
            }
        }
    }

    /// Runs the sync's mappers over records read from `side`.
    async fn map_records(
        &self,
        side: Side,
        ix: usize,
        records: Vec<Record>,
    ) -> (Vec<Record>, BTreeMap<String, String>) {
        let mut failed = BTreeMap::new();
        if self.policy.mappers.is_empty() || records.is_empty() {
            return (records, failed);
        }
        let ctx = MapContext {
            sync: self.sync().into(),
            source: self.names.get(side).clone(),
            target: self.names.get(side.other()).clone(),
            entity: self.policy.entities[ix].name(side).into(),
        };
        let mut current = records;
        for name in &self.policy.mappers {
            let ids: Vec<String> = current.iter().map(|r| r.id.clone()).collect();
            let mut results = self.mappers.map(name, &ctx, current).await.into_iter();
            let mut next = Vec::new();
            for id in ids {
                match results.next() {
                    Some(Ok(Some(mut r))) => {
                        r.id = id;
                        next.push(r);
                    }
                    Some(Ok(None)) => {
                        failed.insert(id, format!("dropped by mapper `{name}`"));
                    }
                    Some(Err(e)) => {
                        let error = format!("mapper `{name}` failed: {e}");
                        lock(&self.mapper_failures).push(MapperFailure {
                            entity: ix,
                            side,
                            id: id.clone(),
                            error: error.clone(),
                        });
                        failed.insert(id, error);
                    }
                    None => {
                        failed.insert(id, format!("mapper `{name}` returned no result"));
                    }
                }
            }
            current = next;
        }
        (current, failed)
    }

    /// Re-reads records whose writes failed earlier (the retry index), so that
    /// they are planned again although the cursor moved past them.
    async fn reread_retries(
        &self,
        out: &mut Observed2,
        opts: &RunOptions,
    ) -> Result<(), EngineError> {
        let due: Vec<RetryEntry> = self
            .store
            .retries(self.sync())?
            .into_iter()
            .filter(|r| r.next_attempt_at <= opts.now)
            .collect();
        let mut by: BTreeMap<(usize, Side), Vec<String>> = BTreeMap::new();
        for r in due {
            if r.entity < out.inputs.len()
                && !out.inputs[r.entity]
                    .obs
                    .get(r.side)
                    .records
                    .contains_key(&r.id)
            {
                by.entry((r.entity, r.side)).or_default().push(r.id);
            }
        }
        for ((ix, side), ids) in by {
            let entity = self.policy.entities[ix].name(side).to_string();
            for chunk in ids.chunks(IDS_PER_FIND) {
                let found = self.find_ids(side, &entity, chunk).await?;
                self.tally(side, &found, 0)?;
                let (records, failed) = self.map_records(side, ix, found).await;
                let obs = out.inputs[ix].obs.get_mut(side);
                let seen: BTreeSet<String> = records
                    .iter()
                    .map(|r| r.id.clone())
                    .chain(failed.keys().cloned())
                    .collect();
                for r in records {
                    obs.listed(r);
                }
                obs.failed.extend(failed);
                for id in chunk.iter().filter(|id| !seen.contains(*id)) {
                    obs.deleted.insert(id.clone());
                }
            }
        }
        Ok(())
    }

    /// Reads the other candidates of an unresolved ambiguity when this run read one of
    /// them: an incremental listing shows only what changed, and judged on part of its
    /// candidates the match would look unique and be guessed (invariant 8).
    async fn reread_ambiguous(&self, out: &mut Observed2) -> Result<(), EngineError> {
        let mut by: BTreeMap<(usize, Side), BTreeSet<String>> = BTreeMap::new();
        for p in self.store.pending_ambiguities(self.sync())? {
            let Some(e) = out.inputs.get(p.entity) else {
                continue;
            };
            let ids = SidePair::new(&p.a, &p.b);
            let read = |s: Side| {
                ids.get(s)
                    .iter()
                    .any(|i| e.obs.get(s).records.contains_key(i.as_str()))
            };
            if !read(Side::A) && !read(Side::B) {
                continue;
            }
            for s in Side::BOTH {
                let o = e.obs.get(s);
                for id in ids.get(s).iter() {
                    if !o.records.contains_key(id.as_str())
                        && !o.deleted.contains(id.as_str())
                        && !o.failed.contains_key(id.as_str())
                    {
                        by.entry((p.entity, s)).or_default().insert(id.clone());
                    }
                }
            }
        }
        for ((ix, side), ids) in by {
            // Read by id, its list membership is unknown (as for a lookup).
            let in_scope = *self.policy.scope.get(side) == Scope::All;
            let ids: Vec<String> = ids.into_iter().collect();
            self.read_ids(out, ix, side, &ids, in_scope).await?;
        }
        Ok(())
    }

    /// Reads records of entity pair `ix`'s side by id into the run's observations
    /// (a record the listing gave stays as listed).
    async fn read_ids(
        &self,
        out: &mut Observed2,
        ix: usize,
        side: Side,
        ids: &[String],
        in_scope: bool,
    ) -> Result<(), EngineError> {
        let entity = self.policy.entities[ix].name(side).to_string();
        for chunk in ids.chunks(IDS_PER_FIND) {
            let found = self.find_ids(side, &entity, chunk).await?;
            self.tally(side, &found, 0)?;
            let (records, failed) = self.map_records(side, ix, found).await;
            let obs = out.inputs[ix].obs.get_mut(side);
            for r in records {
                obs.records.entry(r.id.clone()).or_insert(Observed {
                    record: r,
                    in_scope,
                });
            }
            obs.failed.extend(failed);
        }
        Ok(())
    }

    /// Records that exist by id (re-reads, fetches): through `find-many`, where a
    /// connector can read many ids with one search.
    async fn find_ids(
        &self,
        side: Side,
        entity: &str,
        ids: &[String],
    ) -> Result<Vec<Record>, EngineError> {
        let found = self
            .find_many(side, entity, vec![Lookup::Ids(ids.to_vec())])
            .await
            .map_err(self.source_err(side, "find"))?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Reads linked records the planner asked for (fields without a base).
    async fn fetch(
        &self,
        out: &mut Observed2,
        wanted: &[(usize, Side, String)],
    ) -> Result<(), EngineError> {
        let mut by: BTreeMap<(usize, Side), Vec<String>> = BTreeMap::new();
        for (ix, side, id) in wanted {
            by.entry((*ix, *side)).or_default().push(id.clone());
        }
        for ((ix, side), ids) in by {
            self.read_ids(out, ix, side, &ids, true).await?;
        }
        Ok(())
    }

    /// The links touching anything observed (all links when a side was listed in full).
    fn load_links(&self, out: &Observed2) -> Result<BTreeMap<String, Link>, EngineError> {
        let sync = self.sync();
        let any_full = out
            .inputs
            .iter()
            .any(|e| e.obs.a.complete || e.obs.b.complete);
        let links = if any_full {
            self.store.links(sync)?
        } else {
            let mut keys: Vec<(Side, String, String)> = Vec::new();
            for e in &out.inputs {
                for side in Side::BOTH {
                    let o = e.obs.get(side);
                    let entity = e.pair.name(side).to_string();
                    for id in o
                        .records
                        .keys()
                        .chain(o.deleted.iter())
                        .chain(o.left_scope.iter())
                        .chain(o.failed.keys())
                    {
                        keys.push((side, entity.clone(), id.clone()));
                    }
                }
            }
            self.store.links_for(
                sync,
                keys.iter().map(|(s, e, i)| (*s, e.as_str(), i.as_str())),
            )?
        };
        // Links the operator acted on (`tandem sync resolve`) are planned
        // although their records did not change.
        let rechecks = self.store.rechecks(sync)?;
        Ok(links
            .into_iter()
            .chain(rechecks)
            .map(|l| (l.key.clone(), l))
            .collect())
    }

    /// Looks up, on the other side, the e-mails of unlinked records, when that
    /// side was not listed in full (§2.5: match before create).
    async fn lookups(
        &self,
        out: &mut Observed2,
        links: &mut BTreeMap<String, Link>,
    ) -> Result<(), EngineError> {
        for ix in 0..out.inputs.len() {
            for side in Side::BOTH {
                let other = side.other();
                // A complete listing of a list (not of the whole app) can still miss a
                // record the app holds outside the list: creating it there would
                // overwrite that record (an upsert), consent included.
                let scoped = *self.policy.scope.get(other) != Scope::All;
                if (out.inputs[ix].obs.get(other).complete && !scoped) || !self.policy.flows(side) {
                    continue;
                }
                let listed: BTreeSet<String> = if out.inputs[ix].obs.get(other).complete {
                    let e = &out.inputs[ix];
                    e.obs
                        .get(other)
                        .records
                        .values()
                        .flat_map(|o| e.mapping.emails(other, &o.record))
                        .collect()
                } else {
                    BTreeSet::new()
                };
                let linked: BTreeSet<&str> = links.values().filter_map(|l| l.id(side)).collect();
                let e = &out.inputs[ix];
                let emails: BTreeSet<String> = e
                    .obs
                    .get(side)
                    .records
                    .values()
                    .filter(|o| o.in_scope && !linked.contains(o.record.id.as_str()))
                    // A record the rules keep from the other side needs no counterpart
                    // there: looking it up would only spend the other app's budget.
                    .filter(|o| {
                        super::rules::evaluate(
                            &self.policy.rules,
                            side,
                            &o.record,
                            &e.mapping,
                            true,
                        )
                        .skip
                        .is_none()
                    })
                    // Every address, secondary ones too: the other side may know
                    // the person by any of them.
                    .flat_map(|o| e.mapping.emails(side, &o.record))
                    .filter(|m| !listed.contains(m))
                    .collect();
                // A linked record deleted on `other`: a record with the same
                // e-mail there may replace it (re-pointed, not re-created).
                let email_key = e.mapping.email_pair().key.clone();
                let replaced: Vec<String> = links
                    .values()
                    .filter(|l| {
                        l.entity == ix
                            && l.id(other)
                                .is_some_and(|id| e.obs.get(other).deleted.contains(id))
                    })
                    .filter_map(|l| match l.fields.get(&email_key).map(|f| &f.value) {
                        Some(super::model::Value::Text(m)) => Some(m.clone()),
                        _ => l.match_key.clone(),
                    })
                    .collect();
                let emails: BTreeSet<String> = emails.into_iter().chain(replaced).collect();
                let entity = e.pair.name(other).to_string();
                let other_all = *self.policy.scope.get(other) == Scope::All;
                let emails: Vec<String> = emails
                    .into_iter()
                    .filter(|m| !out.inputs[ix].obs.get(other).searched.contains(m))
                    .collect();
                if emails.is_empty() {
                    continue;
                }
                // One batch for every address (a few requests for connectors with
                // `lookup-api`, one `find` per address for the others).
                let found = self
                    .find_many(
                        other,
                        &entity,
                        emails
                            .iter()
                            .map(|m| Lookup::Email(normalise_email(m)))
                            .collect(),
                    )
                    .await
                    .map_err(self.source_err(other, "find"))?;
                // A record found by several addresses is mapped and kept once.
                let mut unique: BTreeMap<String, Record> = BTreeMap::new();
                for r in found.into_iter().flatten() {
                    unique.entry(r.id.clone()).or_insert(r);
                }
                let found: Vec<Record> = unique.into_values().collect();
                self.tally(other, &found, 0)?;
                let (records, failed) = self.map_records(other, ix, found).await;
                let more = self.store.links_for(
                    self.sync(),
                    records
                        .iter()
                        .map(|r| (other, entity.as_str(), r.id.as_str())),
                )?;
                for l in more {
                    links.entry(l.key.clone()).or_insert(l);
                }
                let obs = out.inputs[ix].obs.get_mut(other);
                for r in records {
                    obs.records.entry(r.id.clone()).or_insert(Observed {
                        record: r,
                        in_scope: other_all,
                    });
                }
                obs.failed.extend(failed);
                obs.searched.extend(emails);
            }
        }
        Ok(())
    }

    /// Linked records missing from a complete listing: deleted, or out of scope?
    async fn missing(
        &self,
        out: &mut Observed2,
        links: &BTreeMap<String, Link>,
    ) -> Result<(), EngineError> {
        for ix in 0..out.inputs.len() {
            for side in Side::BOTH {
                let obs = out.inputs[ix].obs.get(side);
                if !obs.complete {
                    continue;
                }
                let ids: Vec<String> = links
                    .values()
                    .filter(|l| {
                        l.entity == ix && !matches!(l.state, LinkState::Removed(s) if s == side)
                    })
                    .filter_map(|l| l.id(side))
                    .filter(|id| {
                        !obs.records.contains_key(*id)
                            && !obs.deleted.contains(*id)
                            && !obs.failed.contains_key(*id)
                    })
                    .map(str::to_string)
                    .collect();
                let entity = self.policy.entities[ix].name(side).to_string();
                let scoped = *self.policy.scope.get(side) != Scope::All;
                for chunk in ids.chunks(IDS_PER_FIND) {
                    let found = self
                        .find(side, &entity, Lookup::Ids(chunk.to_vec()))
                        .await
                        .map_err(self.source_err(side, "find"))?;
                    let present: BTreeMap<String, Record> =
                        found.into_iter().map(|r| (r.id.clone(), r)).collect();
                    let obs = out.inputs[ix].obs.get_mut(side);
                    for id in chunk {
                        match present.get(id) {
                            Some(_) if scoped => {
                                obs.left_scope.insert(id.clone());
                            }
                            Some(r) => obs.listed(r.clone()),
                            None => {
                                obs.deleted.insert(id.clone());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    // ----- 4. recording -----

    fn record(&self, plan: &Plan, obs: &Observed2, opts: &RunOptions) -> Result<Exec, EngineError> {
        let sync = self.sync();
        let retries: BTreeMap<(usize, Side, String), RetryEntry> = self
            .store
            .retries(sync)?
            .into_iter()
            .map(|r| ((r.entity, r.side, r.id.clone()), r))
            .collect();
        let kind = if obs
            .inputs
            .iter()
            .any(|e| e.obs.a.complete || e.obs.b.complete)
        {
            "full"
        } else {
            "incremental"
        };
        let exec = self.store.write(sync, |t| {
            t.purge_acked()?;
            for old in self
                .store
                .outbox(sync)?
                .into_iter()
                .filter(|e| e.status == OpStatus::Failed)
            {
                t.remove_op(&old.op.id)?;
            }
            let run = t.begin_run(kind, opts.now)?;
            let mut exec = Exec {
                run,
                seq: 0,
                joint: BTreeSet::new(),
                retries,
                failures: Vec::new(),
                queued: BTreeMap::new(),
            };
            for (ix, fp) in obs.fingerprints.iter().enumerate() {
                t.set_mapping(ix, fp)?;
            }
            for l in &plan.links {
                let names = self.entity_names(l.entity);
                let before = obs.baseline.links.get(&l.key);
                t.put_link(l, (names.a.as_str(), names.b.as_str()))?;
                if before.is_none() && l.ids.a.is_some() && l.ids.b.is_some() {
                    exec.count("both", |c| c.linked += 1);
                    let records = vec![
                        format!("a:{}", l.ids.a.as_deref().unwrap_or("")),
                        format!("b:{}", l.ids.b.as_deref().unwrap_or("")),
                    ];
                    exec.event(
                        t,
                        "both",
                        "linked",
                        &names.a,
                        records,
                        Some(&l.key),
                        format!("matched by e-mail {}", l.match_key.as_deref().unwrap_or("")),
                    )?;
                }
                if let LinkState::Deleted(s) = l.state
                    && before.map(|b| b.state) != Some(l.state)
                    && let Some(id) = before.and_then(|b| b.id(s))
                {
                    t.put_tombstone(
                        l.entity,
                        s,
                        id,
                        &self.tombstone(l.key.clone(), opts.now, "kept counterpart".into()),
                    )?;
                }
            }
            self.record_ambiguities(t, plan, obs, exec.run.id)?;
            for k in &plan.unlink {
                // Deleted on both sides: the link is kept until its tombstones
                // expire (§2.5), so a record restored meanwhile syncs again;
                // a tombstone already there keeps its expiry.
                if let Some(l) = obs.baseline.links.get(k) {
                    for s in Side::BOTH {
                        if let Some(id) = l.id(s)
                            && t.tombstone(l.entity, s, id)?.is_none()
                        {
                            let why =
                                "deleted on both sides: the link is dropped when this expires";
                            t.put_tombstone(
                                l.entity,
                                s,
                                id,
                                &self.tombstone(k.clone(), opts.now, why.into()),
                            )?;
                        }
                    }
                }
            }
            let mapper_failures = lock(&self.mapper_failures).clone();
            self.record_mapper_failures(t, &mapper_failures, obs, &mut exec, opts)?;
            for s in &plan.skips {
                // A record a mapper failed on is reported once, as failed.
                if mapper_failures
                    .iter()
                    .any(|f| f.entity == s.entity && f.side == s.side && f.id == s.id)
                {
                    continue;
                }
                let entity = self.policy.entities[s.entity].name(s.side).to_string();
                exec.count(direction_to(s.side.other()), |c| c.skipped += 1);
                exec.event(
                    t,
                    direction_to(s.side.other()),
                    "skipped",
                    &entity,
                    vec![format!("{}:{}", s.side.as_str(), s.id)],
                    None,
                    s.reason.clone(),
                )?;
            }
            for c in &plan.conflicts {
                exec.count("both", |x| x.conflicts += 1);
                let reason = format!("{}: A {} / B {}: {}", c.field, c.a, c.b, c.decision);
                exec.event(
                    t,
                    "both",
                    "conflict",
                    &self.policy.entities[c.entity].a,
                    vec![],
                    Some(&c.link),
                    reason,
                )?;
            }
            for a in &plan.ambiguous {
                let records =
                    a.a.iter()
                        .map(|i| format!("a:{i}"))
                        .chain(a.b.iter().map(|i| format!("b:{i}")))
                        .collect();
                let hint = resolve_hint(sync, &a.a, &a.b);
                exec.event(
                    t,
                    "both",
                    "ambiguous",
                    &self.policy.entities[a.entity].a,
                    records,
                    None,
                    format!("{}: {}; {hint}", a.email, a.reason),
                )?;
            }
            for n in &plan.notes {
                exec.event(
                    t,
                    "both",
                    "note",
                    &self.policy.entities[n.entity].a,
                    vec![],
                    Some(&n.link),
                    n.text.clone(),
                )?;
            }
            if let Some(h) = &plan.halted {
                exec.event(t, "both", "halted", "", vec![], None, h.message.clone())?;
            }
            let links: BTreeMap<&str, &Link> = obs
                .baseline
                .links
                .iter()
                .map(|(k, l)| (k.as_str(), l))
                .chain(plan.links.iter().map(|l| (l.key.as_str(), l)))
                .collect();
            for op in &plan.ops {
                let waiting = self.backoff(&exec.retries, op, &links, opts.now);
                if let Some(until) = waiting {
                    exec.count(direction_to(op.side), |c| c.skipped += 1);
                    exec.event(
                        t,
                        direction_to(op.side),
                        "skipped",
                        &op.entity_name,
                        vec![],
                        Some(&op.link),
                        format!("{}: waiting to retry (not before {until})", op.reason),
                    )?;
                    continue;
                }
                let attempts = t.op(&op.id)?.map_or(0, |e| e.attempts);
                exec.queued.insert(op.id.clone(), attempts);
                t.put_op(&exec.entry(op, OpStatus::Planned))?;
            }
            // A record re-read for a retry whose link needs no write any more (the
            // write landed although its answer was lost) waits for nothing.
            if plan.halted.is_none() {
                let planned: BTreeSet<&str> = plan.ops.iter().map(|o| o.link.as_str()).collect();
                let done: Vec<(usize, Side, String)> = exec
                    .retries
                    .iter()
                    .filter(|(_, r)| {
                        r.next_attempt_at <= opts.now
                            && r.link.as_deref().is_some_and(|l| !planned.contains(l))
                            && !obs
                                .inputs
                                .get(r.entity)
                                .is_some_and(|e| e.obs.get(r.side).failed.contains_key(&r.id))
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in done {
                    t.remove_retry(k.0, k.1, &k.2)?;
                    exec.retries.remove(&k);
                }
            }
            Ok(exec)
        })?;
        Ok(exec)
    }

    /// Keeps the list of unresolved ambiguities (`tandem sync status`): an
    /// earlier one stays until a run reads one of its records again (then
    /// this plan says whether it still is); operator links now made are done.
    fn record_ambiguities(
        &self,
        t: &Txn<'_>,
        plan: &Plan,
        obs: &Observed2,
        run: u64,
    ) -> Result<(), StateError> {
        for ((ix, a, b), d) in &obs.baseline.decisions {
            let made = plan.links.iter().any(|l| {
                l.entity == *ix
                    && l.id(Side::A) == Some(a.as_str())
                    && l.id(Side::B) == Some(b.as_str())
            });
            if *d == Decision::Link && made {
                t.remove_decision(*ix, a, b)?;
            }
        }
        let seen = |ix: usize, side: Side, ids: &[String]| {
            obs.inputs
                .get(ix)
                .is_some_and(|e| ids.iter().any(|i| e.obs.get(side).records.contains_key(i)))
        };
        let mut pending: Vec<PendingAmbiguity> = t
            .pending_ambiguities()?
            .into_iter()
            .filter(|p| !seen(p.entity, Side::A, &p.a) && !seen(p.entity, Side::B, &p.b))
            .collect();
        pending.extend(plan.ambiguous.iter().map(|a| PendingAmbiguity {
            entity: a.entity,
            email: a.email.clone(),
            a: a.a.clone(),
            b: a.b.clone(),
            reason: a.reason.clone(),
            run,
        }));
        t.set_pending_ambiguities(&pending)
    }

    /// Records the records a mapper failed on: a `failed` event each, counted as failed
    /// in the direction they would have flowed, and a retry entry without a link, so that
    /// a later run re-reads them although the cursor moves on (after `retry.max-attempts`
    /// they are parked: reported, no longer re-read until they change). Read retries of
    /// records that mapped cleanly this run are dropped.
    fn record_mapper_failures(
        &self,
        t: &Txn<'_>,
        failures: &[MapperFailure],
        obs: &Observed2,
        exec: &mut Exec,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        let healed: Vec<(usize, Side, String)> = exec
            .retries
            .values()
            .filter(|r| r.link.is_none())
            .filter(|r| {
                obs.inputs.get(r.entity).is_some_and(|e| {
                    let o = e.obs.get(r.side);
                    o.records.contains_key(&r.id) || o.deleted.contains(&r.id)
                })
            })
            .map(|r| (r.entity, r.side, r.id.clone()))
            .collect();
        for (entity, side, id) in healed {
            t.remove_retry(entity, side, &id)?;
            exec.retries.remove(&(entity, side, id));
        }
        for f in failures {
            let dir = direction_to(f.side.other());
            let key = (f.entity, f.side, f.id.clone());
            let attempts = exec.retries.get(&key).map_or(0, |r| r.attempts) + 1;
            let entity = self.policy.entities[f.entity].name(f.side).to_string();
            let records = vec![format!("{}:{}", f.side.as_str(), f.id)];
            if attempts < self.policy.retry.max_attempts {
                let r = RetryEntry {
                    entity: f.entity,
                    side: f.side,
                    id: f.id.clone(),
                    link: None,
                    attempts,
                    next_attempt_at: opts.now + self.policy.retry.backoff_seconds(attempts) as i64,
                    error: f.error.clone(),
                };
                t.put_retry(&r)?;
                exec.retries.insert(key, r);
                exec.count(dir, |c| c.failed += 1);
                let why = format!("{} (attempt {attempts}, read again later)", f.error);
                exec.event(t, dir, "failed", &entity, records, None, why)?;
            } else {
                t.remove_retry(f.entity, f.side, &f.id)?;
                exec.retries.remove(&key);
                exec.count(dir, |c| c.parked += 1);
                let why = format!(
                    "{} (after {attempts} attempt(s); read again when the record changes)",
                    f.error
                );
                exec.event(t, dir, "parked", &entity, records, None, why)?;
            }
            exec.failures
                .push((format!("{}:{}", f.side.as_str(), f.id), f.error.clone()));
        }
        if let Some(first) = failures.first() {
            exec.run.message = Some(format!(
                "{} record(s) failed in a mapper and were left out; first: {}:{}: {}",
                failures.len(),
                first.side.as_str(),
                first.id,
                first.error
            ));
        }
        Ok(())
    }

    /// When an op waits for its back-off to end: the latest retry time of its
    /// link's records, if in the future.
    fn backoff(
        &self,
        retries: &BTreeMap<(usize, Side, String), RetryEntry>,
        op: &PlannedOp,
        links: &BTreeMap<&str, &Link>,
        now: i64,
    ) -> Option<i64> {
        if retries.is_empty() {
            return None;
        }
        let link = links.get(op.link.as_str());
        let ids: Vec<(Side, String)> = match link {
            Some(l) => Side::BOTH
                .into_iter()
                .filter_map(|s| l.id(s).map(|i| (s, i.to_string())))
                .collect(),
            None => op_target_id(op)
                .map(|i| vec![(op.side, i)])
                .unwrap_or_default(),
        };
        ids.into_iter()
            .filter_map(|(s, id)| retries.get(&(op.entity, s, id)))
            .map(|r| r.next_attempt_at)
            .filter(|t| *t > now)
            .max()
    }

    // ----- 5. execution -----

    async fn execute(
        &self,
        plan: &Plan,
        obs: &Observed2,
        exec: &mut Exec,
        opts: &RunOptions,
    ) -> Result<(), EngineError> {
        let ops: Vec<&PlannedOp> = plan
            .ops
            .iter()
            .filter(|o| exec.queued.contains_key(&o.id))
            .collect();
        for group in ops.chunk_by(|x, y| x.side == y.side && x.entity == y.entity) {
            let (side, ix) = (group[0].side, group[0].entity);
            let size = obs.infos[ix].get(side).max_batch_size.max(1) as usize;
            for batch in group.chunks(size) {
                self.batch(batch, obs, exec, opts).await?;
            }
        }
        Ok(())
    }

    async fn batch(
        &self,
        batch: &[&PlannedOp],
        obs: &Observed2,
        exec: &mut Exec,
        opts: &RunOptions,
    ) -> Result<(), EngineError> {
        let sync = self.sync();
        let (side, ix) = (batch[0].side, batch[0].entity);
        let entity = batch[0].entity_name.clone();
        self.store.write_unflushed(sync, |t| {
            for op in batch {
                t.put_op(&exec.entry(op, OpStatus::Sent))?;
            }
            Ok(())
        })?;
        self.hook(Point::BeforeSend)?;
        let writes: Vec<Write> = batch
            .iter()
            .map(|op| Write {
                reference: op.id.clone(),
                op: write_op(&op.kind),
            })
            .collect();
        let answer = self.push(side, &entity, writes).await;
        self.hook(Point::AfterSend)?;
        let mut outcomes: Vec<Result<Option<Record>, SourceError>> = Vec::new();
        match answer {
            Ok(results) => {
                let mut by_ref: BTreeMap<String, Result<Option<Record>, SourceError>> = results
                    .into_iter()
                    .map(|r| (r.reference, r.outcome))
                    .collect();
                for op in batch {
                    outcomes.push(by_ref.remove(&op.id).unwrap_or_else(|| {
                        Err(SourceError::Transient(
                            "the connector returned no result for this write".into(),
                        ))
                    }));
                }
            }
            Err(e) => outcomes.extend(batch.iter().map(|_| Err(e.clone()))),
        }
        let mapping = &obs.inputs[ix].mapping;
        self.store.write_unflushed(sync, |t| {
            for (op, outcome) in batch.iter().zip(outcomes) {
                self.commit(t, op, outcome, mapping, exec, opts)?;
            }
            Ok(())
        })?;
        self.hook(Point::Committed)?;
        Ok(())
    }

    /// Commits one write's result with its new baseline.
    fn commit(
        &self,
        t: &Txn<'_>,
        op: &PlannedOp,
        outcome: Result<Option<Record>, SourceError>,
        mapping: &ResolvedMapping,
        exec: &mut Exec,
        opts: &RunOptions,
    ) -> Result<(), StateError> {
        let names = self.entity_names(op.entity);
        let entities = (names.a.as_str(), names.b.as_str());
        let dir = direction_to(op.side);
        let outcome = match outcome {
            // Deleting or un-listing something already gone is done.
            Err(SourceError::NotFound(_))
                if matches!(
                    op.kind,
                    OpKind::Delete { .. } | OpKind::RemoveFromContainer { .. }
                ) =>
            {
                Ok(None)
            }
            // The app answered a create with a record another link already holds
            // (an upsert matched it by a secondary e-mail): linking it twice would
            // corrupt the baseline, so the write is reported for a person to merge.
            Ok(Some(r)) if op.effect == LinkEffect::SetId => {
                let entity = if op.side == Side::A {
                    entities.0
                } else {
                    entities.1
                };
                match t.link_of(op.side, entity, &r.id)? {
                    Some(other) if other != op.link => Err(SourceError::Invalid(format!(
                        "the app matched the create to its existing record {}:{}, already linked by `{other}` (a shared e-mail address): merge the two records in the app",
                        op.side.as_str(),
                        r.id
                    ))),
                    _ => Ok(Some(r)),
                }
            }
            other => other,
        };
        let mut entry = exec.entry(op, OpStatus::Sent);
        exec.queued.remove(&op.id);
        let link_ids: Vec<(Side, String)> = t
            .link(&op.link)?
            .map(|l| {
                Side::BOTH
                    .into_iter()
                    .filter_map(|s| l.id(s).map(|i| (s, i.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        match outcome {
            Ok(readback) => {
                if let Some(mut link) = t.link(&op.link)? {
                    let joint_done = op.joint.is_empty()
                        || exec.joint.contains(&(op.link.clone(), op.side.other()));
                    if !op.joint.is_empty() {
                        exec.joint.insert((op.link.clone(), op.side));
                    }
                    if apply_ack(&mut link, op, readback.as_ref(), mapping, joint_done) {
                        t.put_link(&link, entities)?;
                    } else {
                        t.remove_link(&op.link, entities)?;
                        if let Some(id) = link.id(op.side) {
                            t.put_tombstone(
                                op.entity,
                                op.side,
                                id,
                                &self.tombstone(op.link.clone(), opts.now, op.reason.clone()),
                            )?;
                        }
                    }
                }
                for (s, id) in &link_ids {
                    t.remove_retry(op.entity, *s, id)?;
                    exec.retries.remove(&(op.entity, *s, id.clone()));
                }
                // Acknowledged: the outbox row goes; the event log keeps it.
                t.remove_op(&op.id)?;
                let (action, counter): (&str, fn(&mut Counters)) = match (&op.kind, op.effect) {
                    (OpKind::Create { .. }, _) => ("created", |c| c.created += 1),
                    (OpKind::Update { .. }, _) => ("updated", |c| c.updated += 1),
                    (OpKind::Delete { .. }, _) => ("deleted", |c| c.removed += 1),
                    (OpKind::RemoveFromContainer { .. }, _) => ("removed", |c| c.removed += 1),
                    (OpKind::AddToContainer { .. }, _) => ("updated", |c| c.updated += 1),
                };
                exec.count(dir, counter);
                let mut records: Vec<String> = link_ids
                    .iter()
                    .map(|(s, i)| format!("{}:{i}", s.as_str()))
                    .collect();
                if let (LinkEffect::SetId, Some(r)) = (op.effect, &readback) {
                    records.push(format!("{}:{}", op.side.as_str(), r.id));
                }
                exec.event(
                    t,
                    dir,
                    action,
                    &op.entity_name,
                    records,
                    Some(&op.link),
                    op.reason.clone(),
                )?;
            }
            Err(e) => {
                let before = link_ids
                    .iter()
                    .filter_map(|(s, i)| exec.retries.get(&(op.entity, *s, i.clone())))
                    .map(|r| r.attempts)
                    .max()
                    .unwrap_or(0)
                    .max(entry.attempts);
                let attempts = before + 1;
                let retryable = e.is_retryable() || matches!(e, SourceError::NotFound(_));
                let message = format!("{e}");
                entry.attempts = attempts;
                entry.error = Some(message.clone());
                let records: Vec<String> = link_ids
                    .iter()
                    .map(|(s, i)| format!("{}:{i}", s.as_str()))
                    .collect();
                if retryable && attempts < self.policy.retry.max_attempts {
                    let next = opts.now + self.policy.retry.backoff_seconds(attempts) as i64;
                    entry.status = OpStatus::Failed;
                    entry.next_attempt_at = Some(next);
                    for (s, id) in &link_ids {
                        let r = RetryEntry {
                            entity: op.entity,
                            side: *s,
                            id: id.clone(),
                            link: Some(op.link.clone()),
                            attempts,
                            next_attempt_at: next,
                            error: message.clone(),
                        };
                        t.put_retry(&r)?;
                        exec.retries.insert((op.entity, *s, id.clone()), r);
                    }
                    exec.count(dir, |c| c.failed += 1);
                    exec.event(
                        t,
                        dir,
                        "failed",
                        &op.entity_name,
                        records,
                        Some(&op.link),
                        format!(
                            "{}: {message} (attempt {attempts}, retried later)",
                            op.reason
                        ),
                    )?;
                } else {
                    entry.status = OpStatus::Parked;
                    entry.next_attempt_at = None;
                    for (s, id) in &link_ids {
                        t.remove_retry(op.entity, *s, id)?;
                        exec.retries.remove(&(op.entity, *s, id.clone()));
                    }
                    exec.count(dir, |c| c.parked += 1);
                    exec.event(t, dir, "parked", &op.entity_name, records, Some(&op.link), format!("{}: {message} (after {attempts} attempt(s); fix the record, it is retried when it changes)", op.reason))?;
                }
                exec.failures.push((op.id.clone(), message));
                t.put_op(&entry)?;
            }
        }
        Ok(())
    }

    // ----- 6. cursors -----

    fn finish(
        &self,
        plan: &Plan,
        obs: &Observed2,
        exec: &mut Exec,
        opts: &RunOptions,
    ) -> Result<RunOutcome, EngineError> {
        let sync = self.sync();
        let unsettled = !exec.queued.is_empty();
        let outcome = match &plan.halted {
            Some(h) => RunOutcome::Halted(h.message.clone()),
            None => RunOutcome::Completed,
        };
        self.store.write(sync, |t| {
            // A halted run withheld changes: the cursors stay, so that the run
            // after review (forced) plans them again.
            if !unsettled && plan.halted.is_none() {
                t.set_rescan(false)?;
                for (ix, c) in obs.cursors.iter().enumerate() {
                    for side in Side::BOTH {
                        if let Some(cur) = c.get(side) {
                            t.set_cursor(ix, side, Some(cur))?;
                        }
                    }
                }
            }
            exec.run.ended_at = Some(opts.now);
            // An operator's pause during the run outlives its end (the run's own
            // outcome is in its log).
            let paused = t.status()? == SyncStatus::Paused;
            match &outcome {
                RunOutcome::Halted(m) => {
                    exec.run.outcome = "halted".into();
                    exec.run.message = Some(m.clone());
                    if !paused {
                        t.set_status(&SyncStatus::Halted { reason: m.clone() })?;
                    }
                }
                _ => {
                    exec.run.outcome = "ok".into();
                    if !paused {
                        t.set_status(&SyncStatus::Active)?;
                    }
                }
            }
            t.put_run(&exec.run)
        })?;
        Ok(outcome)
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

#[cfg(test)]
mod tests;
