//! The sync engine's [`Source`] over a connector plugin, and [`Mappers`] over mapper
//! plugins. Types are converted in [`super::convert`]; this module adds what only the
//! host knows: the account's request budget (each call is made at a priority — consent
//! first, then incremental changes, retries, initial loads), waiting out 429s and
//! retrying idempotent reads on passing failures, and progress counts. Field
//! definitions are kept per connection for [`SCHEMA_TTL`] ([`SchemaCache`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_well_known as wk;

use super::budget::{Priority, RequestGate};
use super::convert;
use crate::runtime::{ConnectorClient, MapperClient};
use crate::sync::model::{Record, Side};
use crate::sync::source::{
    Container, EntityInfo, FieldDef, Lookup, MapContext, Mappers, Page, PullRequest, Source,
    SourceError, Write, WriteOp, WriteResult,
};
use crate::sync::state::{AppQuota, QuotaUse, Requests};

/// How a source retries on its own before giving an error to the engine.
#[derive(Clone, Copy, Debug)]
pub struct RetrySettings {
    /// The longest total 429 back-off one call may wait before giving up (the engine
    /// then retries on a later run).
    pub max_rate_wait: Duration,
    /// Extra attempts of an idempotent read after a transient failure.
    pub transient_attempts: u32,
    /// The first pause before such an attempt (doubled each time).
    pub transient_delay: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_rate_wait: Duration::from_secs(15 * 60),
            transient_attempts: 3,
            transient_delay: Duration::from_millis(500),
        }
    }
}

/// Counts of one run, read by progress displays.
#[derive(Debug, Default)]
pub struct RunProgress {
    read: [AtomicU64; 2],
    written: AtomicU64,
    planned: AtomicU64,
    writing: AtomicBool,
}

impl RunProgress {
    /// Records read from `side` so far.
    pub fn read(&self, side: Side) -> u64 {
        self.read[side as usize].load(Ordering::Relaxed)
    }
    /// Writes answered so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    /// Writes planned (known once the plan is recorded).
    pub fn planned(&self) -> u64 {
        self.planned.load(Ordering::Relaxed)
    }
    /// Whether the run is past reading and planning.
    pub fn writing(&self) -> bool {
        self.writing.load(Ordering::Relaxed)
    }
    pub(crate) fn set_planned(&self, n: u64) {
        self.planned.store(n, Ordering::Relaxed);
        self.writing.store(true, Ordering::Relaxed);
    }
    fn add_read(&self, side: Side, n: usize) {
        self.read[side as usize].fetch_add(n as u64, Ordering::Relaxed);
    }
    fn add_written(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// How long a connection's field definitions are reused before `schema` is called
/// again. Re-reading them every run cost a third of an idle poll's requests (2 of 6,
/// measured over 1,000 idle syncs); a field added in the app is seen within this time,
/// at once after a restart, and fields are only synced once the config names them.
pub const SCHEMA_TTL: Duration = Duration::from_secs(3600);

/// Field definitions per entity of one connection, with the time they were read.
#[derive(Debug, Default)]
pub struct SchemaCache(Mutex<BTreeMap<String, (std::time::Instant, Vec<FieldDef>)>>);

impl SchemaCache {
    fn get(&self, entity: &str) -> Option<Vec<FieldDef>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(entity)
            .filter(|(at, _)| at.elapsed() < SCHEMA_TTL)
            .map(|(_, defs)| defs.clone())
    }

    fn put(&self, entity: &str, defs: &[FieldDef]) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(
            entity.to_owned(),
            (std::time::Instant::now(), defs.to_vec()),
        );
    }
}

/// One side of a sync: a connector client for one connection.
#[derive(Debug)]
pub struct ConnectorSource {
    client: ConnectorClient,
    side: Side,
    entities: Vec<EntityInfo>,
    gate: Arc<RequestGate>,
    retry: RetrySettings,
    /// The phase of the run: initial loads spend the budget last.
    initial: AtomicBool,
    /// Per entity, the fields whose writes are consent changes (well-known `consent`, `dnd`).
    consent_fields: Mutex<BTreeMap<String, BTreeSet<String>>>,
    progress: Arc<RunProgress>,
    schemas: Arc<SchemaCache>,
    /// Per entity, the most requests per write a push call has cost (see
    /// [`writes_per_call`]).
    push_cost: Mutex<BTreeMap<String, f64>>,
}

impl ConnectorSource {
    /// A source over `client`, whose requests go through `gate`. `entities` is what the
    /// connector's `describe` returned (it is not called again).
    pub fn new(
        client: ConnectorClient,
        side: Side,
        entities: &[crate::runtime::types::EntityInfo],
        gate: Arc<RequestGate>,
        retry: RetrySettings,
    ) -> Self {
        ConnectorSource {
            client,
            side,
            entities: entities.iter().map(convert::entity_from_wit).collect(),
            gate,
            retry,
            initial: AtomicBool::new(false),
            consent_fields: Mutex::new(BTreeMap::new()),
            progress: Arc::new(RunProgress::default()),
            schemas: Arc::default(),
            push_cost: Mutex::default(),
        }
    }

    /// Reuses (and fills) the connection's field definitions in `schemas`.
    pub fn with_schemas(mut self, schemas: Arc<SchemaCache>) -> Self {
        self.schemas = schemas;
        self
    }

    /// Counts into `progress` from now on.
    pub fn with_progress(mut self, progress: Arc<RunProgress>) -> Self {
        self.progress = progress;
        self
    }

    /// Marks the run as an initial load (lowest budget priority) or not.
    pub fn set_initial(&self, initial: bool) {
        self.initial.store(initial, Ordering::Relaxed);
    }

    /// The gate of this source's requests.
    pub fn gate(&self) -> &Arc<RequestGate> {
        &self.gate
    }

    fn phase(&self) -> Priority {
        if self.initial.load(Ordering::Relaxed) {
            Priority::Initial
        } else {
            Priority::Incremental
        }
    }

    /// Runs an idempotent call: waits out 429s (blocking the whole account, not the
    /// other accounts), retries transient failures a few times.
    async fn call<T, F, Fut>(&self, what: &str, priority: Priority, f: F) -> Result<T, SourceError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, crate::runtime::CallError>>,
    {
        let mut waited = Duration::ZERO;
        let mut transient = 0;
        loop {
            self.gate.set_priority(priority);
            self.gate.ready().await;
            let result = f().await;
            // A CPU interrupt or a wall-time timeout would recur: trying again within the
            // run only multiplies what a spinning plugin costs (a later run tries again).
            let again = !matches!(&result, Err(e) if exhausted(e));
            match result.map_err(convert::call_error) {
                Ok(v) => {
                    if let Some(b) = self.gate.budget() {
                        b.succeeded();
                    }
                    return Ok(v);
                }
                Err(SourceError::RateLimited {
                    retry_after_ms,
                    message,
                }) => {
                    let wait = self.back_off(retry_after_ms);
                    waited += wait;
                    if waited > self.retry.max_rate_wait {
                        return Err(SourceError::RateLimited {
                            retry_after_ms,
                            message,
                        });
                    }
                    tracing::info!(side = %self.side, call = what, wait_ms = wait.as_millis() as u64, "rate limited; waiting, then trying again");
                }
                Err(SourceError::Transient(m))
                    if again && transient < self.retry.transient_attempts =>
                {
                    let delay = self.retry.transient_delay * 2u32.pow(transient);
                    transient += 1;
                    tracing::info!(side = %self.side, call = what, attempt = transient, error = %m, "transient failure; trying again");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records a 429 on the account (every sync of it waits) and returns the wait.
    fn back_off(&self, retry_after_ms: Option<u64>) -> Duration {
        let after = retry_after_ms.map(Duration::from_millis);
        match self.gate.budget() {
            Some(b) => b.rate_limited(after),
            None => after.unwrap_or(Duration::from_secs(1)),
        }
    }

    fn is_consent(&self, entity: &str, w: &Write) -> bool {
        let fields = match &w.op {
            WriteOp::Create { fields, .. } | WriteOp::Update { fields, .. } => fields,
            _ => return false,
        };
        let consent = self
            .consent_fields
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        consent
            .get(entity)
            .is_some_and(|names| fields.iter().any(|(n, _)| names.contains(n)))
    }

    /// Pushes `writes` once (the budget decides how many go per call).
    async fn push_once(
        &self,
        entity: &str,
        writes: Vec<Write>,
    ) -> Result<Vec<WriteResult>, SourceError> {
        let mut out = Vec::with_capacity(writes.len());
        let mut rest = writes.into_iter().peekable();
        // Requests per write: two (write + read-back) until a call has shown what a write
        // costs with this connector (batching connectors send one request for many).
        let mut per_write = 2.0;
        let mut measured = self
            .push_cost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(entity)
            .copied();
        while rest.peek().is_some() {
            // Consent changes first: a batch carrying one goes at consent priority.
            let room = self.gate.ready().await;
            // Never start a call the budget cannot finish, so no call waits for the budget
            // inside its time limit.
            let n = writes_within(room, per_write).min(writes_per_call(measured));
            let chunk: Vec<Write> = rest.by_ref().take(n).collect();
            let sent = chunk.len();
            let before = self.gate.budget().map(|b| b.snapshot().requests);
            let wit: Vec<_> = chunk.into_iter().map(convert::write_to_wit).collect();
            let results = self
                .client
                .push(entity, &wit)
                .await
                .map_err(convert::call_error)?;
            if let (Some(before), Some(budget)) = (before, self.gate.budget()) {
                // The account's count: other syncs' requests meanwhile only overestimate.
                let spent = budget.snapshot().requests.saturating_sub(before);
                per_write = spent as f64 / sent as f64;
                // The dearest writes seen decide: a call of cheap writes (bulk creates)
                // says nothing of what a call of one-request updates costs.
                let dearest = measured.map_or(per_write, |m| m.max(per_write));
                measured = Some(dearest);
                self.push_cost
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(entity.to_owned(), dearest);
            }
            out.extend(results.into_iter().map(convert::write_result_from_wit));
        }
        Ok(out)
    }
}

impl Source for ConnectorSource {
    async fn entities(&self) -> Result<Vec<EntityInfo>, SourceError> {
        Ok(self.entities.clone())
    }

    async fn schema(&self, entity: &str) -> Result<Vec<FieldDef>, SourceError> {
        let defs = match self.schemas.get(entity) {
            Some(defs) => defs,
            None => {
                let defs = self
                    .call("schema", self.phase(), || self.client.schema(entity))
                    .await?;
                let defs: Vec<FieldDef> =
                    defs.into_iter().map(convert::field_def_from_wit).collect();
                self.schemas.put(entity, &defs);
                defs
            }
        };
        let consent: BTreeSet<String> = defs
            .iter()
            .filter(|d| d.is(wk::CONSENT) || d.is(wk::DND))
            .map(|d| d.name.clone())
            .collect();
        self.consent_fields
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entity.to_string(), consent);
        Ok(defs)
    }

    async fn containers(&self, entity: &str) -> Result<Vec<Container>, SourceError> {
        let list = self
            .call("containers", self.phase(), || {
                self.client.containers(entity)
            })
            .await?;
        Ok(list.into_iter().map(convert::container_from_wit).collect())
    }

    async fn pull(&self, req: PullRequest) -> Result<Page, SourceError> {
        // Full listings (first loads, expired cursors) spend the budget last.
        let priority = if req.cursor.is_none() || req.full {
            Priority::Initial
        } else {
            self.phase()
        };
        let wit = convert::pull_to_wit(req);
        let page = self
            .call("pull", priority, || self.client.pull(&wit))
            .await?;
        let page = convert::page_from_wit(page);
        self.progress.add_read(self.side, page.records.len());
        Ok(page)
    }

    async fn find(&self, entity: &str, lookup: Lookup) -> Result<Vec<Record>, SourceError> {
        let priority = match lookup {
            // Re-reads of failed records and of records missing from a listing.
            Lookup::Ids(_) => Priority::Retry,
            _ => self.phase(),
        };
        let wit = convert::lookup_to_wit(lookup);
        let found = self
            .call("find", priority, || self.client.find(entity, &wit))
            .await?;
        Ok(found.into_iter().map(convert::record_from_wit).collect())
    }

    /// Many lookups: through the connector's `lookup-api` when it has one, in calls of
    /// at most [`MAX_KEYS_PER_CALL`] keys (fewer when the budget is low, by what a key
    /// has cost so far), else one `find` per lookup.
    async fn find_many(
        &self,
        entity: &str,
        lookups: Vec<Lookup>,
    ) -> Result<Vec<Vec<Record>>, SourceError> {
        if !self.client.has_batch_lookup() {
            let mut out = Vec::with_capacity(lookups.len());
            for lookup in lookups {
                out.push(self.find(entity, lookup).await?);
            }
            return Ok(out);
        }
        let priority = if lookups.iter().all(|l| matches!(l, Lookup::Ids(_))) {
            Priority::Retry
        } else {
            self.phase()
        };
        let mut out = Vec::with_capacity(lookups.len());
        let mut rest = lookups.into_iter().peekable();
        // Requests per key: one (a `find`) until a call has shown what a key costs.
        let mut per_key = 1.0;
        while rest.peek().is_some() {
            self.gate.set_priority(priority);
            let room = self.gate.ready().await;
            let n = writes_within(room, per_key).min(MAX_KEYS_PER_CALL);
            let keys: Vec<_> = rest.by_ref().take(n).map(convert::lookup_to_key).collect();
            let before = self.gate.budget().map(|b| b.snapshot().requests);
            let found = self
                .call("find-many", priority, || async {
                    match self.client.find_many(entity, &keys).await {
                        Some(r) => r,
                        None => Ok(Vec::new()),
                    }
                })
                .await?;
            if found.len() != keys.len() {
                return Err(SourceError::Fatal(format!(
                    "`find-many` answered {} of {} keys; the contract asks for one answer per key",
                    found.len(),
                    keys.len()
                )));
            }
            if let (Some(before), Some(budget)) = (before, self.gate.budget()) {
                let spent = budget.snapshot().requests.saturating_sub(before);
                per_key = spent as f64 / keys.len() as f64;
            }
            out.extend(
                found
                    .into_iter()
                    .map(|records| records.into_iter().map(convert::record_from_wit).collect()),
            );
        }
        Ok(out)
    }

    /// Pushes; writes refused with a 429 (the connector stops at the first one and
    /// reports the rest as not sent) are pushed again once the account's back-off ends.
    async fn push(
        &self,
        entity: &str,
        writes: Vec<Write>,
    ) -> Result<Vec<WriteResult>, SourceError> {
        let consent = writes.iter().any(|w| self.is_consent(entity, w));
        self.gate.set_priority(if consent {
            Priority::Consent
        } else {
            self.phase()
        });
        let mut by_ref: BTreeMap<String, WriteResult> = BTreeMap::new();
        let order: Vec<String> = writes.iter().map(|w| w.reference.clone()).collect();
        let mut pending = writes;
        let mut waited = Duration::ZERO;
        loop {
            let results = match self.push_once(entity, pending.clone()).await {
                Ok(r) => r,
                Err(SourceError::RateLimited {
                    retry_after_ms,
                    message,
                }) => {
                    // The whole call was refused: nothing of it was applied.
                    let wait = self.back_off(retry_after_ms);
                    waited += wait;
                    if waited > self.retry.max_rate_wait {
                        return Err(SourceError::RateLimited {
                            retry_after_ms,
                            message,
                        });
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut limited: Option<Option<u64>> = None;
            let mut again = Vec::new();
            let mut results: BTreeMap<String, WriteResult> = results
                .into_iter()
                .map(|r| (r.reference.clone(), r))
                .collect();
            let decided = by_ref.len();
            for w in pending {
                match results.remove(&w.reference) {
                    Some(WriteResult {
                        outcome: Err(SourceError::RateLimited { retry_after_ms, .. }),
                        ..
                    }) if waited <= self.retry.max_rate_wait => {
                        limited = Some(limited.flatten().max(retry_after_ms));
                        again.push(w);
                    }
                    Some(r) => {
                        by_ref.insert(r.reference.clone(), r);
                    }
                    None => {}
                }
            }
            self.progress.add_written(by_ref.len() - decided);
            match limited {
                Some(after) if !again.is_empty() => {
                    waited += self.back_off(after);
                    if waited > self.retry.max_rate_wait {
                        for w in again {
                            by_ref.insert(
                                w.reference.clone(),
                                WriteResult {
                                    reference: w.reference,
                                    outcome: Err(SourceError::RateLimited {
                                        retry_after_ms: after,
                                        message:
                                            "rate limited for too long; retried on a later run"
                                                .into(),
                                    }),
                                },
                            );
                        }
                        break;
                    }
                    pending = again;
                }
                _ => {
                    if let Some(b) = self.gate.budget() {
                        b.succeeded();
                    }
                    break;
                }
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|r| by_ref.remove(&r))
            .collect())
    }

    /// What went through this source's gate, and the account's budget now.
    fn requests(&self) -> Option<Requests> {
        let mut r = Requests {
            sent: self.gate.sent(),
            ..Requests::default()
        };
        if let Some(b) = self.gate.budget() {
            let now = b.snapshot();
            r.windows = now
                .windows
                .iter()
                .map(|w| QuotaUse {
                    limit: u64::from(w.window.requests),
                    period_secs: w.window.period.as_secs(),
                    used: w.used as u64,
                })
                .collect();
            r.app = now.app.map(|a| AppQuota {
                remaining: u64::from(a.remaining),
                limit: a.limit.map(u64::from),
            });
        }
        Some(r)
    }
}

/// Whether a call ran out of its CPU or wall time (not a passing failure: the same call
/// would run out again). A call that ran out waiting on a slow app is not exhausted: the
/// app may answer faster on the next try.
fn exhausted(e: &crate::runtime::CallError) -> bool {
    matches!(
        e,
        crate::runtime::CallError::Timeout {
            http_wait: None,
            ..
        }
    ) || e.trap_kind() == Some(crate::runtime::TrapKind::Interrupt)
}

/// The most calls of one mapped batch that may run out of fuel or memory while the batch
/// is halved to find what fits ([`PluginMappers`]).
const MAX_BUDGET_SPLITS: usize = 64;

/// The tenant's mapper plugins of one sync, by plugin name.
#[derive(Debug, Default)]
pub struct PluginMappers {
    clients: BTreeMap<String, MapperClient>,
}

impl PluginMappers {
    /// Mappers by the names the sync lists them under.
    pub fn new(clients: BTreeMap<String, MapperClient>) -> Self {
        PluginMappers { clients }
    }
}

impl Mappers for PluginMappers {
    async fn map(
        &self,
        mapper: &str,
        ctx: &MapContext,
        records: Vec<Record>,
    ) -> Vec<Result<Option<Record>, SourceError>> {
        let n = records.len();
        let Some(client) = self.clients.get(mapper) else {
            return (0..n)
                .map(|_| {
                    Err(SourceError::Fatal(format!(
                        "mapper `{mapper}` is not loaded: add it to [plugins] or remove it from the sync"
                    )))
                })
                .collect();
        };
        let wit: Vec<_> = records.into_iter().map(convert::record_to_wit).collect();
        let ctx = convert::map_context_to_wit(ctx);
        let results = |results: crate::runtime::MapResults, len: usize| {
            let mut out: Vec<_> = results
                .into_iter()
                .map(|r| {
                    r.map(|o| o.map(convert::record_from_wit))
                        .map_err(convert::error_from_wit)
                })
                .collect();
            // A mapper answering for fewer records fails the rest, never shifts them.
            out.resize_with(len, || {
                Err(SourceError::Fatal(format!(
                    "mapper `{mapper}` returned no result"
                )))
            });
            out.truncate(len);
            out
        };
        let first = match client.map(&ctx, &wit).await {
            Ok(r) => return results(r, n),
            Err(e) => e,
        };
        // The call failed as a whole (a trap): find the record(s) it fails on by halving
        // the batch, so that the others go through. A range whose two halves both fail is
        // not split further (the mapper fails on everything, or on many records): that
        // bounds the extra calls to two per halving. Fuel and memory are the exception:
        // a batch spends them by its size, so halves that both ran out are split again,
        // until they fit or [`MAX_BUDGET_SPLITS`] calls ran out too (a mapper that runs out
        // on every record alone would otherwise cost two calls per record).
        let mut out: Vec<Option<Result<Option<Record>, SourceError>>> = vec![None; n];
        let mut failing = vec![(0, n, first)];
        let mut budget_failures = 1;
        while let Some((lo, hi, err)) = failing.pop() {
            if hi - lo <= 1 {
                out[lo] = Some(Err(convert::mapper_call_error(err)));
                continue;
            }
            let mid = lo + (hi - lo) / 2;
            let mut halves = Vec::new();
            for (a, b) in [(lo, mid), (mid, hi)] {
                match client.map(&ctx, &wit[a..b]).await {
                    Ok(r) => {
                        for (slot, r) in out[a..b].iter_mut().zip(results(r, b - a)) {
                            *slot = Some(r);
                        }
                    }
                    Err(e) => halves.push((a, b, e)),
                }
            }
            let spent = |e: &crate::runtime::CallError| {
                matches!(
                    e.trap_kind(),
                    Some(crate::runtime::TrapKind::OutOfFuel | crate::runtime::TrapKind::Memory)
                )
            };
            let split_again = halves.len() < 2
                || (halves.iter().all(|(_, _, e)| spent(e)) && budget_failures < MAX_BUDGET_SPLITS);
            if split_again {
                budget_failures += halves.iter().filter(|(_, _, e)| spent(e)).count();
                failing.extend(halves);
            } else {
                for (a, b, e) in halves {
                    out[a..b].fill(Some(Err(convert::mapper_call_error(e))));
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SourceError::Fatal("not mapped".into()))))
            .collect()
    }
}

/// How many writes one push call may carry with `room` requests left in the budget at
/// `per_write` requests each (at least one; a write is never cheaper than
/// [`MIN_REQUESTS_PER_WRITE`]).
fn writes_within(room: usize, per_write: f64) -> usize {
    let per_write = per_write.max(MIN_REQUESTS_PER_WRITE);
    ((room as f64 / per_write) as usize).max(1)
}

/// The requests one push call may send once its connector's cost per write is known: what
/// a call of 100 one-request writes sent when no connector took more per call. A connector
/// may accept larger calls so that batches share waits (Freshworks keeps several bulk jobs
/// in flight within one call), but a call of slow one-request writes (one `PUT` per
/// update) must still end within the call's time limit.
pub const MAX_REQUESTS_PER_CALL: usize = 100;

/// The most writes one push call carries at `measured` requests per write (the most a
/// call of this source has cost), or no limit before any call was measured (the engine's batch, at most the
/// connector's `max-batch-size`, decides).
fn writes_per_call(measured: Option<f64>) -> usize {
    measured.map_or(usize::MAX, |per_write| {
        writes_within(MAX_REQUESTS_PER_CALL, per_write)
    })
}

/// The most keys one `find-many` call carries (the contract's promise to connectors).
pub const MAX_KEYS_PER_CALL: usize = 1000;

/// The least a write is taken to cost: one request per 1000 writes (the largest batch of
/// the first-party connectors).
const MIN_REQUESTS_PER_WRITE: f64 = 0.001;

#[cfg(test)]
mod tests {
    use super::*;

    /// Two requests per write until measured; a batching connector's measured cost lets the
    /// next call carry many more writes; at least one write, and never a free write.
    #[test]
    fn writes_per_call_follow_the_measured_cost() {
        assert_eq!(writes_within(60, 2.0), 30);
        assert_eq!(writes_within(60, 1.0 / 500.0), 30_000);
        assert_eq!(writes_within(60, 0.0), 60_000);
        assert_eq!(writes_within(1, 2.0), 1);
        assert_eq!(writes_within(0, 2.0), 1);
        assert!(writes_within(usize::MAX, 2.0) >= usize::MAX / 2);
    }

    /// Once measured, a call sends about [`MAX_REQUESTS_PER_CALL`] requests: 100 writes
    /// of one request each, many more of a batching connector's cheap writes.
    #[test]
    fn push_calls_are_bounded_by_their_requests_once_measured() {
        assert_eq!(writes_per_call(None), usize::MAX);
        assert_eq!(writes_per_call(Some(1.0)), 100);
        assert_eq!(writes_per_call(Some(2.0)), 50);
        assert_eq!(writes_per_call(Some(0.04)), 2500);
        assert_eq!(writes_per_call(Some(0.0)), 100_000);
    }
}
