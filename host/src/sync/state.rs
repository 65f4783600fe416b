//! The engine's state in redb (sync-rules §1.3): links (unique per side id), the baseline
//! of every mapped field, per-side cursors, the outbox, the retry index,
//! tombstones, runs and per-record events (the run log users read).
//!
//! The database ([`Db`]: a redb file, or PostgreSQL for a fleet) is shared with the
//! plugin runtime's storage: every table here is prefixed `tandem_sync_`, and every key
//! starts with the sync's name and a NUL, so that one sync's rows form one key range
//! (disconnect wipes it). On PostgreSQL the same tables are rows of `tandem_kv` with the
//! same keys and values, and a run's store is fenced by its lease (docs/fleet.md §3).
//! The layout is versioned; a database written by a newer layout is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::cell::{Cell, RefCell};

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::baseline::{Decision, Decisions, Link};
use super::model::{RecordKey, Side, SidePair};
use super::plan::PlannedOp;
use crate::db::pg::{Conn, params};
use crate::db::{Db, Pg, PgError};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// The SQLSTATE `tandem_fence` raises when the lease is no longer held (migration 4).
const FENCE_FAILED: &str = "TD001";

/// The layout version this build writes. v2 added link review data (manual
/// conflicts, quarantine, write marks), operator decisions, rechecks and
/// tombstone expiry; every v2 addition reads from a v1 row as its default, so
/// v1 files are upgraded in place, while a v1 build refuses a v2 file cleanly
/// instead of failing on a link state it does not know.
pub const SCHEMA_VERSION: u32 = 2;

type Table = TableDefinition<'static, &'static str, &'static [u8]>;
const META: Table = TableDefinition::new("tandem_sync_meta");
const LINKS: Table = TableDefinition::new("tandem_sync_links");
const LINK_IDS: Table = TableDefinition::new("tandem_sync_link_ids");
const CURSORS: Table = TableDefinition::new("tandem_sync_cursors");
const OUTBOX: Table = TableDefinition::new("tandem_sync_outbox");
const RETRY: Table = TableDefinition::new("tandem_sync_retry");
const TOMBSTONES: Table = TableDefinition::new("tandem_sync_tombstones");
const RUNS: Table = TableDefinition::new("tandem_sync_runs");
const EVENTS: Table = TableDefinition::new("tandem_sync_events");
const ALL: [Table; 9] = [
    META, LINKS, LINK_IDS, CURSORS, OUTBOX, RETRY, TOMBSTONES, RUNS, EVENTS,
];
/// The tables' names, in the order of `ALL` (the `tbl` column on PostgreSQL).
pub static TABLE_NAMES: [&str; 9] = [
    "tandem_sync_meta",
    "tandem_sync_links",
    "tandem_sync_link_ids",
    "tandem_sync_cursors",
    "tandem_sync_outbox",
    "tandem_sync_retry",
    "tandem_sync_tombstones",
    "tandem_sync_runs",
    "tandem_sync_events",
];

/// The tables a run reads once at its start ([`SyncStore::for_run`]): each sync's rows
/// there are few (its status, cursors, unfinished writes, retries, tombstones), unlike
/// its links, runs and events.
const VIEWED: [Table; 5] = [META, CURSORS, OUTBOX, RETRY, TOMBSTONES];

/// The position of `table` in `ALL`.
fn slot(table: Table) -> usize {
    ALL.iter()
        .position(|t| t.name() == table.name())
        .expect("a sync table")
}
const SCHEMA_KEY: &str = "\0schema";
/// `META` keys `sync NUL recheck NUL link`: links to re-plan on the next run.
const RECHECK: &str = "recheck";

/// A state store failure.
#[derive(Debug, Error)]
pub enum StateError {
    /// The database was written by a newer Tandem.
    #[error(
        "the state database uses sync layout v{found}, newer than this build's v{supported}: upgrade tandem (or restore a backup)"
    )]
    NewerSchema {
        /// The version found.
        found: u32,
        /// The version this build supports.
        supported: u32,
    },
    /// Two links claim the same record.
    #[error(
        "record {side}:{entity}/{id} is already linked by `{existing}`; refusing to link it twice"
    )]
    DuplicateLink {
        /// The side of the record.
        side: Side,
        /// The record's entity (`contacts`...).
        entity: String,
        /// The record id.
        id: String,
        /// The link that holds it.
        existing: String,
    },
    /// A stored row does not decode.
    #[error("corrupt sync state row `{key}`: {message}; disconnect the sync to rebuild it")]
    Corrupt {
        /// The table key of the row that does not decode.
        key: String,
        /// The decoder's message.
        message: String,
    },
    /// redb failed. (Not a `source`: redb's own text, such as "previous I/O error
    /// occurred", says nothing an operator can act on; [`store_message`] does.)
    #[error("sync state store: {}", store_message(.0))]
    Store(redb::Error),
    /// The PostgreSQL state database failed.
    #[error("{0}")]
    Postgres(#[from] PgError),
    /// Another daemon took the sync's lease over: this run's commit was refused.
    #[error(
        "sync `{sync}`: this daemon's lease (epoch {epoch}) was taken over by another daemon; its late commit was refused and nothing of it was written (the new owner runs the sync)"
    )]
    Fenced {
        /// The sync.
        sync: String,
        /// The epoch this daemon held.
        epoch: i64,
    },
}

impl From<redb::Error> for StateError {
    fn from(e: redb::Error) -> Self {
        db(e)
    }
}

fn db<E: Into<redb::Error>>(e: E) -> StateError {
    let e = e.into();
    remember_io(&e);
    StateError::Store(e)
}

/// The first I/O error the state file met in this process. redb answers every later
/// call with "previous I/O error" only, which does not say what went wrong.
static FIRST_IO: std::sync::Mutex<Option<std::io::ErrorKind>> = std::sync::Mutex::new(None);

/// Notes an I/O error of the state file (the first one explains the later ones).
pub fn remember_io(e: &redb::Error) {
    if let redb::Error::Io(io) = e {
        let mut first = FIRST_IO
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert(full_kind(io).unwrap_or(io.kind()));
    }
}

/// `StorageFull` for the errors a full disk (or a file size or quota limit) gives.
fn full_kind(io: &std::io::Error) -> Option<std::io::ErrorKind> {
    use std::io::ErrorKind;
    let full = matches!(io.kind(), ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded)
        // ENOSPC, EFBIG, EDQUOT
        || matches!(io.raw_os_error(), Some(28 | 27 | 122));
    full.then_some(ErrorKind::StorageFull)
}

const FULL: &str = "the disk holding the state file is full (or a file size limit was reached): free some space, then run again; the syncs resume from their last checkpoint";

/// One line about a failure of the state file, saying what to do.
pub fn store_message(e: &redb::Error) -> String {
    match e {
        redb::Error::Io(io) if full_kind(io).is_some() => FULL.into(),
        redb::Error::PreviousIo => {
            let first = *FIRST_IO
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match first {
                Some(std::io::ErrorKind::StorageFull) => FULL.into(),
                Some(kind) => format!(
                    "an earlier write to the state file failed ({kind}); nothing after it was saved: check the disk, then run again"
                ),
                None => "an earlier write to the state file failed; nothing after it was saved: check the disk, then run again".into(),
            }
        }
        redb::Error::Corrupted(m) => format!("{} ({m})", DAMAGED),
        other => other.to_string(),
    }
}

/// What to do about a damaged state file.
pub const DAMAGED: &str = "the state file is damaged: restore it from a backup, or move it aside to start afresh (each sync then links its records again by e-mail)";

/// Whether a sync runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncStatus {
    /// Runs on its schedule.
    #[default]
    Active,
    /// Paused by the operator: no reads, no writes.
    Paused,
    /// Halted by a breaker, until run with force or resumed.
    Halted {
        /// The breaker's message.
        reason: String,
    },
}

/// Where an outbox op stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpStatus {
    /// Recorded, not yet sent.
    Planned,
    /// Sent; no answer recorded yet.
    Sent,
    /// Acknowledged and committed.
    Acked,
    /// Failed; retried on a later run.
    Failed,
    /// Given up; needs a person.
    Parked,
}

/// One outbox row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The planned write, replayed as it is when a run is recovered.
    pub op: PlannedOp,
    /// Where it stands.
    pub status: OpStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before (unix seconds), for failed ops.
    pub next_attempt_at: Option<i64>,
    /// The last error.
    pub error: Option<String>,
    /// The run that last touched it.
    pub run: u64,
}

/// How many of the latest runs' events are read to find parked writes made since.
pub const SUPERSEDING_RUNS: usize = 2;

/// A write as its log event names it: (entity name, link, direction, action).
type Written = (String, String, Flow, String);

/// The event action an acknowledged write of `op` logs (`commit`'s table): a parked op
/// is superseded by a later event with the same action on the same record and side. A
/// list addition and an update both log `updated`, so one may stand for the other.
fn write_action(op: &PlannedOp) -> &'static str {
    use super::plan::OpKind;
    match op.kind {
        OpKind::Create { .. } => "created",
        OpKind::Update { .. } | OpKind::AddToContainer { .. } => "updated",
        OpKind::Delete { .. } => "deleted",
        OpKind::RemoveFromContainer { .. } => "removed",
    }
}

/// The writes logged by the last [`SUPERSEDING_RUNS`] runs (the ids below `next_run`, the
/// sync's run counter: no run record is read), with the latest run of each.
fn written_lately(
    sync: &str,
    next_run: u64,
    range: impl Fn(Table, &str, &str) -> Result<Vec<(String, Vec<u8>)>, StateError>,
) -> Result<BTreeMap<Written, u64>, StateError> {
    let mut out = BTreeMap::new();
    let first = next_run.saturating_sub(SUPERSEDING_RUNS as u64).max(1);
    for id in (first..next_run).rev() {
        let (lo, hi) = prefix_range(&key(&[sync, &format!("{id:016x}")]));
        for (k, v) in range(EVENTS, &lo, &hi)? {
            let e: Event = decode(&k, &v)?;
            let Some(link) = e.link else { continue };
            if matches!(
                e.action.as_str(),
                "created" | "updated" | "deleted" | "removed"
            ) {
                let run = out
                    .entry((e.entity, link, e.direction, e.action))
                    .or_default();
                *run = e.run.max(*run);
            }
        }
    }
    Ok(out)
}

/// Whether a later run wrote a parked row's record the way the row would have.
fn superseded(e: &OutboxEntry, written: &BTreeMap<Written, u64>) -> bool {
    let op = &e.op;
    let key = (
        op.entity_name.clone(),
        op.link.clone(),
        Flow::to(op.side),
        write_action(op).to_owned(),
    );
    written.get(&key).is_some_and(|run| *run > e.run)
}

/// A record to fetch again and re-plan on a later run (its write failed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryEntry {
    /// Entity pair index.
    pub entity: usize,
    /// The side of the record to re-read.
    pub side: Side,
    /// The record id.
    pub id: String,
    /// The link, when there is one.
    pub link: Option<String>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before (unix seconds).
    pub next_attempt_at: i64,
    /// The last error.
    pub error: String,
}

impl RetryEntry {
    /// The record it re-reads.
    pub fn key(&self) -> RecordKey {
        RecordKey::new(self.entity, self.side, self.id.clone())
    }
}

/// A deletion seen on one side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The link the deleted record belonged to.
    pub link: String,
    /// When it was seen (unix seconds).
    pub detected_at: i64,
    /// What the engine did.
    pub decision: String,
    /// When it is purged (unix seconds, `deletes.tombstone-retention-days`
    /// after detection); `None` for rows written before expiry existed, which
    /// never expire.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// Per-direction counters of a run. "a-to-b" counts writes to B.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Records created.
    pub created: usize,
    /// Records updated.
    pub updated: usize,
    /// Records deleted or removed from a list.
    pub removed: usize,
    /// Records linked by e-mail.
    pub linked: usize,
    /// Records skipped.
    pub skipped: usize,
    /// Writes that failed (retried later).
    pub failed: usize,
    /// Writes parked.
    pub parked: usize,
    /// Conflicts decided.
    pub conflicts: usize,
}

/// One run of a sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Increasing per sync.
    pub id: u64,
    /// What it read.
    pub kind: RunKind,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds, when finished.
    pub ended_at: Option<i64>,
    /// `running`, `ok`, `halted`, `failed`, `interrupted`.
    pub outcome: String,
    /// One line.
    pub message: Option<String>,
    /// Counters per direction: `a-to-b` (writes to B), `b-to-a` and `both`.
    pub counters: BTreeMap<Flow, Counters>,
    /// In a fleet: the daemon that made the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<String>,
    /// The API requests the run made on each side, with the account's quota as the run
    /// ended; written by the run's last commit. `None` for runs that did not get that far,
    /// runs recorded before it was kept, and sources that do not count (tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<SidePair<Requests>>,
}

/// The API requests a run made through one side's connection, and that account's quota
/// as the run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// Requests the run's connector sent (retries included). The connection's check,
    /// made once per process before its first run, belongs to no run.
    pub sent: u64,
    /// The account's request windows as the run ended: each limit, and the requests
    /// within it by everything using the account (other syncs too), as this process
    /// counted them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<QuotaUse>,
    /// What the app's own `X-RateLimit-*` headers last said, if it sends them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppQuota>,
}

/// One request window of an account and its use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUse {
    /// Requests allowed per period.
    pub limit: u64,
    /// The period, in seconds.
    pub period_secs: u64,
    /// Requests within the last period.
    pub used: u64,
}

/// An app's own count of an account's requests (`X-RateLimit-Remaining` and `-Limit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppQuota {
    /// Requests left.
    pub remaining: u64,
    /// The limit, when the app says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// One per-record event of a run (the log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The run's number in the log.
    pub run: u64,
    /// Order within the run.
    pub seq: u64,
    /// The direction of the change (`a-to-b`, `b-to-a`), or `both`.
    pub direction: Flow,
    /// `created`, `updated`, `deleted`, `removed`, `linked`, `skipped`,
    /// `conflict`, `ambiguous`, `failed`, `parked`, `note`.
    pub action: String,
    /// The entity name on the side the event concerns.
    pub entity: String,
    /// The record ids concerned (`a:…`, `b:…`).
    pub records: Vec<String>,
    /// The link, if any.
    pub link: Option<String>,
    /// Why.
    pub reason: String,
}

/// Which way a change went: the key of a run's counters and the direction of a log
/// event. Stored and served as `a-to-b` (a write to B), `b-to-a` (a write to A) and
/// `both` (a link, a conflict: no one side's write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flow {
    /// From A to B: a write to B.
    AToB,
    /// From B to A: a write to A.
    BToA,
    /// Both sides at once.
    Both,
}

impl Flow {
    /// Every flow, in the order of their names.
    pub const ALL: [Flow; 3] = [Flow::AToB, Flow::BToA, Flow::Both];

    /// The flow of a write to `target`.
    pub fn to(target: Side) -> Flow {
        match target {
            Side::A => Flow::BToA,
            Side::B => Flow::AToB,
        }
    }

    /// The flow between connections `a` and `b`, as tables show it: `a → b`, `b → a`
    /// or `a ↔ b`.
    pub fn between(self, a: &str, b: &str) -> String {
        match self {
            Flow::AToB => format!("{a} → {b}"),
            Flow::BToA => format!("{b} → {a}"),
            Flow::Both => format!("{a} ↔ {b}"),
        }
    }

    /// `a-to-b`, `b-to-a` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::AToB => "a-to-b",
            Flow::BToA => "b-to-a",
            Flow::Both => "both",
        }
    }
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Flow {
    type Err = UnknownFlow;

    fn from_str(s: &str) -> Result<Self, UnknownFlow> {
        Flow::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFlow(s.into()))
    }
}

/// A direction label that is none of `a-to-b`, `b-to-a`, `both`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown direction `{0}`: expected a-to-b, b-to-a or both")]
pub struct UnknownFlow(pub String);

// Ordered and hashed as its name, so that maps keyed by `Flow` can be read with the
// stored text (`counters["a-to-b"]`), as `Borrow<str>` requires.
impl Ord for Flow {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Flow {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for Flow {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for Flow {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// What a run read: changes since the last run, or everything again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// Changes since the stored cursors.
    Incremental,
    /// Every record listed again and compared with the stored state.
    Full,
    /// A plan only (no run of this kind is stored by this build; kept readable).
    DryRun,
}

impl RunKind {
    /// `incremental`, `full` or `dry-run`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Incremental => "incremental",
            RunKind::Full => "full",
            RunKind::DryRun => "dry-run",
        }
    }
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn key(parts: &[&str]) -> String {
    parts.join("\0")
}

fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}\0"), format!("{prefix}\u{1}"))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("sync state types serialise")
}

fn decode<T: DeserializeOwned>(k: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        key: k.replace('\0', "/"),
        message: e.to_string(),
    })
}

/// A daemon's hold on one sync (docs/fleet.md §3): every write of a run made through a
/// store fenced by it checks, in the same transaction, that the lease still has this
/// owner and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The sync.
    pub sync: String,
    /// The daemon holding the lease.
    pub owner: String,
    /// The lease's epoch when it was claimed.
    pub epoch: i64,
}

/// The sync state of every sync on this host.
#[derive(Clone)]
pub struct SyncStore {
    db: Db,
    fence: Option<Arc<Fence>>,
    /// A run's copy of its sync's small tables ([`SyncStore::for_run`]).
    view: Option<Arc<RunView>>,
}

/// A run's copy of its sync's rows in the [`VIEWED`] tables, read in one statement at the
/// run's start and kept in step with the run's own commits, so that a run with nothing to
/// do costs one read and one write (docs/fleet.md §5).
///
/// Other writers of those rows are the operator's actions (pause, resolve, recheck); the
/// run sees them at its next start, as if they had come a moment later. Two rules keep
/// them from being lost: a transaction reads the sync's status from the database itself
/// (a pause during a run is kept), and a write that would store what the view already
/// holds is not sent (a run never writes back a row it did not change).
///
/// The outbox rows the run itself writes are kept as digests only ([`Row::Digest`]): each
/// carries a planned write with its fields and bases, a first sync writes one per record,
/// and the run never reads them back (a read that meets one asks the database).
#[derive(Debug)]
struct RunView {
    sync: String,
    lo: String,
    hi: String,
    rows: std::sync::Mutex<BTreeMap<(usize, String), Row>>,
}

/// A row of a [`RunView`].
#[derive(Debug, Clone, PartialEq)]
enum Row {
    /// The row's value.
    Bytes(Vec<u8>),
    /// The SHA-256 of a value the run wrote (enough to tell whether a write changes it).
    Digest([u8; 32]),
}

impl Row {
    /// What the view keeps of `v`, written by the run to table `slot_`.
    fn written(slot_: usize, v: Vec<u8>) -> Row {
        if slot_ == slot(OUTBOX) {
            Row::Digest(row_digest(&v))
        } else {
            Row::Bytes(v)
        }
    }

    /// Whether this row holds the value `v`.
    fn is(&self, v: &[u8]) -> bool {
        match self {
            Row::Bytes(b) => b == v,
            Row::Digest(d) => *d == row_digest(v),
        }
    }
}

fn row_digest(v: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(v).into()
}

/// What a transaction wrote to the viewed rows: (table slot, key) -> the row, or `None`
/// for a removal.
type ViewWrites = BTreeMap<(usize, String), Option<Row>>;

impl RunView {
    fn rows(&self) -> std::sync::MutexGuard<'_, BTreeMap<(usize, String), Row>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether key `k` of table `slot` is one the view holds.
    fn covers(&self, slot: usize, k: &str) -> bool {
        is_viewed(slot) && k >= self.lo.as_str() && k < self.hi.as_str()
    }

    /// Whether every key of `lo..hi` in table `slot` is one the view holds.
    fn covers_range(&self, slot: usize, lo: &str, hi: &str) -> bool {
        is_viewed(slot) && lo >= self.lo.as_str() && hi <= self.hi.as_str()
    }

    /// The value of key `k` (`Some(None)`: no such row), or `None` when the view keeps
    /// only its digest and the database must be asked.
    fn get(&self, slot: usize, k: &str) -> Option<Option<Vec<u8>>> {
        match self.rows().get(&(slot, k.to_string())) {
            None => Some(None),
            Some(Row::Bytes(b)) => Some(Some(b.clone())),
            Some(Row::Digest(_)) => None,
        }
    }

    /// Whether the row of key `k` holds `v` (`None`: there is no such row).
    fn holds(&self, slot: usize, k: &str, v: Option<&[u8]>) -> bool {
        match (self.rows().get(&(slot, k.to_string())), v) {
            (None, None) => true,
            (Some(row), Some(v)) => row.is(v),
            _ => false,
        }
    }

    /// The rows with `lo <= key < hi`, or `None` when the view keeps only the digest of
    /// one of them and the database must be asked.
    fn range(&self, slot: usize, lo: &str, hi: &str) -> Option<Vec<(String, Vec<u8>)>> {
        self.rows()
            .range((slot, lo.to_string())..(slot, hi.to_string()))
            .map(|((_, k), v)| match v {
                Row::Bytes(b) => Some((k.clone(), b.clone())),
                Row::Digest(_) => None,
            })
            .collect()
    }

    /// Takes in what a committed transaction wrote.
    fn apply(&self, written: ViewWrites) {
        let mut rows = self.rows();
        for (k, v) in written {
            match v {
                Some(v) => rows.insert(k, v),
                None => rows.remove(&k),
            };
        }
    }
}

fn is_viewed(slot_: usize) -> bool {
    VIEWED.iter().any(|t| slot(*t) == slot_)
}

impl std::fmt::Debug for SyncStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncStore")
    }
}

impl SyncStore {
    /// Opens the sync tables in a shared database, creating them or checking
    /// their layout version.
    pub fn open(database: impl Into<Db>) -> Result<Self, StateError> {
        let backend = database.into();
        if let Db::Redb(database) = &backend {
            let tx = database.begin_write().map_err(db_err)?;
            for t in ALL {
                tx.open_table(t).map_err(db)?;
            }
            tx.commit().map_err(db)?;
        }
        let store = SyncStore {
            db: backend,
            fence: None,
            view: None,
        };
        store.write("", |t| {
            let found: Option<u32> = t.get(META, SCHEMA_KEY)?;
            match found {
                Some(v) if v > SCHEMA_VERSION => Err(StateError::NewerSchema {
                    found: v,
                    supported: SCHEMA_VERSION,
                }),
                Some(v) if v == SCHEMA_VERSION => Ok(()),
                Some(_) | None => t.put(META, SCHEMA_KEY, &SCHEMA_VERSION),
            }
        })?;
        Ok(store)
    }

    /// The shared database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// This store, with every write of `fence.sync` checked against the lease (a run's
    /// store in a fleet). redb has one process per file and ignores it.
    pub fn fenced(&self, fence: Fence) -> SyncStore {
        SyncStore {
            db: self.db.clone(),
            fence: Some(Arc::new(fence)),
            view: self.view.clone(),
        }
    }

    /// This store for one run of `sync`: the sync's rows in the small tables (status,
    /// cursors, mapping, outbox, retries, tombstones, decisions) are read now, in one
    /// statement, and later reads of them are answered from that copy, which the run's
    /// own commits keep up to date (`RunView`).
    pub fn for_run(&self, sync: &str) -> Result<SyncStore, StateError> {
        let (lo, hi) = prefix_range(sync);
        let mut rows = BTreeMap::new();
        match &self.db {
            Db::Redb(database) => {
                let tx = database.begin_read().map_err(db_err)?;
                for table in VIEWED {
                    let t = tx.open_table(table).map_err(db)?;
                    for row in t.range(lo.as_str()..hi.as_str()).map_err(db)? {
                        let (k, v) = row.map_err(db)?;
                        rows.insert(
                            (slot(table), k.value().to_string()),
                            Row::Bytes(v.value().to_vec()),
                        );
                    }
                }
            }
            Db::Postgres(pg) => {
                let names: Vec<&'static str> =
                    VIEWED.iter().map(|t| TABLE_NAMES[slot(*t)]).collect();
                for (tbl, k, v) in pg.kv_range_tables(&names, &lo, &hi)? {
                    let s = TABLE_NAMES
                        .iter()
                        .position(|n| *n == tbl)
                        .expect("asked for these tables");
                    rows.insert((s, k), Row::Bytes(v));
                }
            }
        }
        Ok(SyncStore {
            db: self.db.clone(),
            fence: self.fence.clone(),
            view: Some(Arc::new(RunView {
                sync: sync.to_string(),
                lo,
                hi,
                rows: std::sync::Mutex::new(rows),
            })),
        })
    }

    /// Whether this store holds a run's view of `sync` ([`SyncStore::for_run`]).
    pub fn has_view(&self, sync: &str) -> bool {
        self.view.as_deref().is_some_and(|v| v.sync == sync)
    }

    /// The run view, if it holds key `k` of `table`.
    fn view_of(&self, table: Table, k: &str) -> Option<&RunView> {
        self.view.as_deref().filter(|v| v.covers(slot(table), k))
    }

    /// Like [`SyncStore::write`], but the commit is not flushed to disk until
    /// the next durable commit (redb `Durability::None`; PostgreSQL
    /// `synchronous_commit = off`). The engine uses it
    /// for per-batch commits inside a run; the run's final commit, which moves
    /// the cursors, is durable and persists them all at once. A crash loses at
    /// most those unflushed commits of the current run, which recovery
    /// re-derives (marker and e-mail lookups, sync-rules F4).
    pub fn write_unflushed<R>(
        &self,
        sync: &str,
        f: impl FnOnce(&Txn<'_>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        self.write_with(sync, false, f)
    }

    /// Runs `f` in one write transaction, committed (durably) when it returns `Ok`.
    pub fn write<R>(
        &self,
        sync: &str,
        f: impl FnOnce(&Txn<'_>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        self.write_with(sync, true, f)
    }

    fn write_with<R>(
        &self,
        sync: &str,
        durable: bool,
        f: impl FnOnce(&Txn<'_>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let view = self.view.as_deref().filter(|v| v.sync == sync);
        match &self.db {
            Db::Redb(database) => {
                let mut tx = database.begin_write().map_err(db_err)?;
                if !durable {
                    tx.set_durability(redb::Durability::None).map_err(db)?;
                }
                let (out, written) = {
                    let txn = Txn::redb(&tx, sync, self.fence.as_deref(), view);
                    let out = f(&txn)?;
                    (out, txn.written.take())
                };
                tx.commit().map_err(db)?;
                if let Some(v) = view {
                    v.apply(written);
                }
                Ok(out)
            }
            Db::Postgres(pg) => {
                let fence = self.fence.as_deref().filter(|f| f.sync == sync);
                let txn = Txn::pg(pg, sync, fence, durable, view)?;
                match f(&txn) {
                    Ok(out) => {
                        let written = txn.written.take();
                        txn.commit_pg()?;
                        if let Some(v) = view {
                            v.apply(written);
                        }
                        Ok(out)
                    }
                    Err(e) => {
                        txn.rollback_pg();
                        Err(e)
                    }
                }
            }
        }
    }

    fn raw_get(&self, table: Table, k: &str) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(v) = self.view_of(table, k).and_then(|v| v.get(slot(table), k)) {
            return Ok(v);
        }
        match &self.db {
            Db::Redb(database) => {
                let tx = database.begin_read().map_err(db_err)?;
                let t = tx.open_table(table).map_err(db)?;
                Ok(t.get(k).map_err(db)?.map(|v| v.value().to_vec()))
            }
            Db::Postgres(pg) => Ok(pg.kv_get(TABLE_NAMES[slot(table)], k)?),
        }
    }

    /// Rows with `lo <= key < hi`, in key order.
    fn raw_range(
        &self,
        table: Table,
        lo: &str,
        hi: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        if let Some(rows) = self
            .view
            .as_deref()
            .filter(|v| v.covers_range(slot(table), lo, hi))
            .and_then(|v| v.range(slot(table), lo, hi))
        {
            return Ok(rows);
        }
        match &self.db {
            Db::Redb(database) => {
                let tx = database.begin_read().map_err(db_err)?;
                let t = tx.open_table(table).map_err(db)?;
                let mut out = Vec::new();
                for row in t.range(lo..hi).map_err(db)? {
                    let (k, v) = row.map_err(db)?;
                    out.push((k.value().to_string(), v.value().to_vec()));
                }
                Ok(out)
            }
            Db::Postgres(pg) => Ok(pg.kv_range(TABLE_NAMES[slot(table)], lo, hi)?),
        }
    }

    fn get<T: DeserializeOwned>(&self, table: Table, k: &str) -> Result<Option<T>, StateError> {
        match self.raw_get(table, k)? {
            Some(v) => Ok(Some(decode(k, &v)?)),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StateError> {
        let (lo, hi) = prefix_range(prefix);
        self.raw_range(table, &lo, &hi)?
            .into_iter()
            .map(|(k, v)| {
                let v = decode(&k, &v)?;
                Ok((k, v))
            })
            .collect()
    }

    /// The sync's status.
    pub fn status(&self, sync: &str) -> Result<SyncStatus, StateError> {
        Ok(self.get(META, &key(&[sync, "status"]))?.unwrap_or_default())
    }

    /// Sets the sync's status (pause, resume, halt).
    pub fn set_status(&self, sync: &str, status: &SyncStatus) -> Result<(), StateError> {
        self.write(sync, |t| t.put(META, &key(&[sync, "status"]), status))
    }

    /// The mapping fingerprint last used for an entity pair.
    pub fn mapping(&self, sync: &str, entity: usize) -> Result<Option<String>, StateError> {
        self.get(META, &key(&[sync, "mapping", &entity.to_string()]))
    }

    /// Every link of a sync.
    pub fn links(&self, sync: &str) -> Result<Vec<Link>, StateError> {
        Ok(self
            .scan::<Link>(LINKS, sync)?
            .into_iter()
            .map(|(_, l)| l)
            .collect())
    }

    /// One link by key.
    pub fn link(&self, sync: &str, link: &str) -> Result<Option<Link>, StateError> {
        self.get(LINKS, &key(&[sync, link]))
    }

    /// The links holding any of these records (side, entity name, id).
    pub fn links_for<'a>(
        &self,
        sync: &str,
        ids: impl IntoIterator<Item = (Side, &'a str, &'a str)>,
    ) -> Result<Vec<Link>, StateError> {
        let id_keys: Vec<String> = ids
            .into_iter()
            .map(|(side, entity, id)| key(&[sync, side.as_str(), entity, id]))
            .collect();
        let mut out: BTreeMap<String, Link> = BTreeMap::new();
        match &self.db {
            // One read transaction: the index and the links it points at agree.
            Db::Redb(database) => {
                let tx = database.begin_read().map_err(db_err)?;
                let idx = tx.open_table(LINK_IDS).map_err(db)?;
                let links = tx.open_table(LINKS).map_err(db)?;
                for k in &id_keys {
                    let Some(lk) = idx.get(k.as_str()).map_err(db)? else {
                        continue;
                    };
                    let lk: String = decode(k, lk.value())?;
                    if out.contains_key(&lk) {
                        continue;
                    }
                    let full = key(&[sync, &lk]);
                    if let Some(v) = links.get(full.as_str()).map_err(db)? {
                        out.insert(lk, decode(&full, v.value())?);
                    }
                }
            }
            // Two queries whatever the number of ids; a link removed between them is
            // simply not returned (as if read a moment later).
            Db::Postgres(pg) => {
                let mut link_keys = Vec::new();
                for (k, v) in pg.kv_get_many(TABLE_NAMES[slot(LINK_IDS)], &id_keys)? {
                    let lk: String = decode(&k, &v)?;
                    link_keys.push(key(&[sync, &lk]));
                }
                link_keys.sort();
                link_keys.dedup();
                let prefix = format!("{sync}\0");
                for (k, v) in pg.kv_get_many(TABLE_NAMES[slot(LINKS)], &link_keys)? {
                    let lk = k.strip_prefix(&prefix).unwrap_or(&k).to_string();
                    out.insert(lk, decode(&k, &v)?);
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// The number the next run of a sync will get.
    pub fn next_run(&self, sync: &str) -> Result<u64, StateError> {
        Ok(self.get(META, &key(&[sync, "next-run"]))?.unwrap_or(1))
    }

    /// The links the operator asked to re-plan (`Review::recheck`), read on
    /// the next run whether or not their records changed.
    pub fn rechecks(&self, sync: &str) -> Result<Vec<Link>, StateError> {
        let prefix = key(&[sync, RECHECK]);
        let (lo, hi) = prefix_range(&prefix);
        let keys: Vec<String> = self
            .raw_range(META, &lo, &hi)?
            .into_iter()
            .map(|(k, _)| k[lo.len()..].to_string())
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(l) = self.link(sync, &k)? {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// Number of links per entity pair.
    pub fn link_counts(&self, sync: &str) -> Result<BTreeMap<usize, usize>, StateError> {
        let (lo, hi) = prefix_range(sync);
        let mut counts = BTreeMap::new();
        let mut count = |k: &str| {
            let entity = k[lo.len()..]
                .split('/')
                .next()
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(0);
            *counts.entry(entity).or_insert(0) += 1;
        };
        match &self.db {
            // Keys only: the links' values are never read.
            Db::Redb(database) => {
                let tx = database.begin_read().map_err(db_err)?;
                let t = tx.open_table(LINKS).map_err(db)?;
                for row in t.range(lo.as_str()..hi.as_str()).map_err(db)? {
                    let (k, _) = row.map_err(db)?;
                    count(k.value());
                }
            }
            Db::Postgres(pg) => {
                let c = pg.client_blocking()?;
                let rows = pg.query(
                    &c,
                    "SELECT k FROM tandem_kv WHERE tbl = $1 AND k >= $2 AND k < $3",
                    params![
                        TABLE_NAMES[slot(LINKS)],
                        lo.as_bytes().to_vec(),
                        hi.as_bytes().to_vec()
                    ],
                )?;
                for r in rows {
                    let k: Vec<u8> = r.get(0);
                    count(&String::from_utf8_lossy(&k));
                }
            }
        }
        Ok(counts)
    }

    /// The saved cursor of one side of an entity pair.
    pub fn cursor(
        &self,
        sync: &str,
        entity: usize,
        side: Side,
    ) -> Result<Option<String>, StateError> {
        self.get(CURSORS, &key(&[sync, &entity.to_string(), side.as_str()]))
    }

    /// Outbox rows not acknowledged (planned, sent, failed, parked).
    pub fn outbox(&self, sync: &str) -> Result<Vec<OutboxEntry>, StateError> {
        Ok(self
            .scan::<OutboxEntry>(OUTBOX, sync)?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.status != OpStatus::Acked)
            .collect())
    }

    /// Parked outbox rows that still need a person: a row is left out once a later run
    /// wrote the same record the same way (the record was fixed, re-planned and written),
    /// until the next run's [`Txn::purge_acked`] drops it. Only the last
    /// [`SUPERSEDING_RUNS`] runs' events are read, so that `status` stays cheap; every
    /// run's purge reads them too, so no run's writes are missed.
    pub fn parked(&self, sync: &str) -> Result<Vec<OutboxEntry>, StateError> {
        let parked: Vec<OutboxEntry> = self
            .outbox(sync)?
            .into_iter()
            .filter(|e| e.status == OpStatus::Parked)
            .collect();
        if parked.is_empty() {
            return Ok(parked);
        }
        let written = written_lately(sync, self.next_run(sync)?, |table, lo, hi| {
            self.raw_range(table, lo, hi)
        })?;
        Ok(parked
            .into_iter()
            .filter(|e| !superseded(e, &written))
            .collect())
    }

    /// The retry index.
    pub fn retries(&self, sync: &str) -> Result<Vec<RetryEntry>, StateError> {
        Ok(self
            .scan::<RetryEntry>(RETRY, sync)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// Every stored tombstone of `sync`, expired or not.
    pub fn tombstones(&self, sync: &str) -> Result<Vec<Tombstone>, StateError> {
        Ok(self
            .scan::<Tombstone>(TOMBSTONES, sync)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// Runs, oldest first.
    pub fn runs(&self, sync: &str) -> Result<Vec<RunRecord>, StateError> {
        Ok(self
            .scan::<RunRecord>(RUNS, sync)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Events of one run, in order.
    pub fn events(&self, sync: &str, run: u64) -> Result<Vec<Event>, StateError> {
        Ok(self
            .scan::<Event>(EVENTS, &key(&[sync, &format!("{run:016x}")]))?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// Disconnect: wipes every row of one sync (links, baseline, cursors,
    /// outbox, retries, tombstones, runs, logs, status). Other syncs and the
    /// plugins' storage are untouched.
    pub fn disconnect(&self, sync: &str) -> Result<usize, StateError> {
        let (lo, hi) = prefix_range(sync);
        self.write(sync, |t| {
            let mut n = 0;
            for table in ALL {
                n += t.remove_range(table, &lo, &hi)?;
            }
            Ok(n)
        })
    }
}

fn db_err<E: Into<redb::Error>>(e: E) -> StateError {
    db(e)
}

/// Ends a failed transaction. A connection that cannot even roll back is not returned to
/// the pool.
fn rollback(pg: &Pg, client: Conn) {
    if pg.batch(&client, "ROLLBACK").is_err()
        && let Ok(client) = Arc::try_unwrap(client)
    {
        let _ = deadpool_postgres::Object::take(client);
    }
}

type OpenTable<'a> = redb::Table<'a, &'static str, &'static [u8]>;

/// A write transaction scoped to one sync.
pub struct Txn<'a> {
    sync: &'a str,
    /// The lease a fleet run writes under (its commit checks it).
    fence: Option<&'a Fence>,
    /// The run's view of this sync, if any: reads of its rows are answered from it on
    /// PostgreSQL, and writes that would not change it are not sent.
    view: Option<&'a RunView>,
    /// What this transaction wrote to the viewed rows (kept with a view only), for the
    /// view once the commit succeeded.
    written: RefCell<ViewWrites>,
    inner: TxnInner<'a>,
}

enum TxnInner<'a> {
    /// Tables are opened once per transaction and kept open until it ends.
    Redb {
        tx: &'a WriteTransaction,
        /// Open tables, by position in `ALL`.
        open: RefCell<Vec<Option<OpenTable<'a>>>>,
    },
    Pg(PgTxn<'a>),
}

/// Writes of a PostgreSQL transaction not sent yet: (table slot, key) -> value, or
/// `None` for a removal.
type Overlay = BTreeMap<(usize, String), Option<Vec<u8>>>;

/// A transaction on PostgreSQL. Writes are kept in `overlay` (reads see them) and sent
/// at commit in one statement per table and kind, pipelined on the connection: a batch of
/// a thousand links costs a few round trips, not thousands.
struct PgTxn<'a> {
    pg: &'a Pg,
    client: Option<Conn>,
    /// (table slot, key) -> new value, or `None` for a removal.
    overlay: RefCell<Overlay>,
    /// `BEGIN`, sent with the transaction's first statement: a transaction that reads
    /// nothing from the database sends it with its writes and `COMMIT`, in one round trip.
    begin: &'static str,
    begun: Cell<bool>,
}

impl PgTxn<'_> {
    /// The connection, inside the transaction (begun now if it was not yet).
    fn client(&self) -> Result<&Conn, StateError> {
        let client = self.client.as_ref().expect("held until the end");
        if !self.begun.get() {
            self.pg.batch(client, self.begin)?;
            self.begun.set(true);
        }
        Ok(client)
    }
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Txn({})", self.sync)
    }
}

impl<'a> Txn<'a> {
    fn redb(
        tx: &'a WriteTransaction,
        sync: &'a str,
        fence: Option<&'a Fence>,
        view: Option<&'a RunView>,
    ) -> Self {
        Txn {
            sync,
            fence: fence.filter(|f| f.sync == sync),
            view,
            written: RefCell::new(BTreeMap::new()),
            inner: TxnInner::Redb {
                tx,
                open: RefCell::new((0..ALL.len()).map(|_| None).collect()),
            },
        }
    }

    fn pg(
        pg: &'a Pg,
        sync: &'a str,
        fence: Option<&'a Fence>,
        durable: bool,
        view: Option<&'a RunView>,
    ) -> Result<Self, StateError> {
        let client = pg.client_blocking()?;
        // An unflushed commit may be lost in a server crash, never half-applied.
        let begin = if durable {
            "BEGIN"
        } else {
            "BEGIN; SET LOCAL synchronous_commit = off"
        };
        Ok(Txn {
            sync,
            fence,
            view,
            written: RefCell::new(BTreeMap::new()),
            inner: TxnInner::Pg(PgTxn {
                pg,
                client: Some(client),
                overlay: RefCell::new(BTreeMap::new()),
                begin,
                begun: Cell::new(false),
            }),
        })
    }

    fn pg_txn(&self) -> Option<&PgTxn<'a>> {
        match &self.inner {
            TxnInner::Pg(p) => Some(p),
            TxnInner::Redb { .. } => None,
        }
    }

    /// The run view, if it holds key `k` of `table`.
    fn view_of(&self, table: Table, k: &str) -> Option<&'a RunView> {
        self.view.filter(|v| v.covers(slot(table), k))
    }

    /// Whether a write of `v` (`None`: a removal) to a viewed row would change nothing the
    /// run saw; otherwise notes it for the view.
    fn unchanged(&self, table: Table, k: &str, v: Option<&[u8]>) -> bool {
        let Some(view) = self.view_of(table, k) else {
            return false;
        };
        let mut written = self.written.borrow_mut();
        let at = (slot(table), k.to_string());
        if !written.contains_key(&at) && view.holds(at.0, k, v) {
            return true;
        }
        let row = v.map(|v| Row::written(at.0, v.to_vec()));
        written.insert(at, row);
        false
    }

    /// Sends `BEGIN` (if no statement did yet), the fence check, the buffered writes and
    /// `COMMIT` together: one round trip. A failed check raises in the database, which
    /// aborts the transaction, so its `COMMIT` rolls back (docs/fleet.md §3).
    fn commit_pg(mut self) -> Result<(), StateError> {
        let held = self.fence;
        let fence = held.cloned();
        let TxnInner::Pg(p) = &mut self.inner else {
            return Ok(());
        };
        let pg = p.pg;
        let client = p.client.take().expect("held until the end");
        let begin = (!p.begun.get()).then_some(p.begin);
        let overlay = std::mem::take(&mut *p.overlay.borrow_mut());
        let result = (|| {
            // Per table: the keys and values to upsert, the keys to delete.
            type Column = Vec<Vec<u8>>;
            let mut puts: BTreeMap<usize, (Column, Column)> = BTreeMap::new();
            let mut dels: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
            for ((slot, k), v) in overlay {
                match v {
                    Some(v) => {
                        let e = puts.entry(slot).or_default();
                        e.0.push(k.into_bytes());
                        e.1.push(v);
                    }
                    None => dels.entry(slot).or_default().push(k.into_bytes()),
                }
            }
            if begin.is_none() && fence.is_none() && puts.is_empty() && dels.is_empty() {
                // Begun for reads only: nothing to check or write.
                pg.batch(&client, "COMMIT")?;
                return Ok(());
            }
            let statements = (puts.len() + dels.len()) as u64
                + u64::from(begin.is_some())
                + u64::from(fence.is_some())
                + 1;
            let c = client.clone();
            let (rows, fenced) = pg
                .wait(async move {
                    let del = c
                        .prepare_cached("DELETE FROM tandem_kv WHERE tbl = $1 AND k = ANY($2)")
                        .await?;
                    let put = c
                        .prepare_cached(
                            "INSERT INTO tandem_kv (tbl, k, v) SELECT $1, * FROM unnest($2::bytea[], $3::bytea[]) \
                             ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v",
                        )
                        .await?;
                    let check = match &fence {
                        Some(_) => Some(c.prepare_cached("SELECT tandem_fence($1, $2, $3)").await?),
                        None => None,
                    };
                    type Step<'s> = std::pin::Pin<
                        Box<dyn std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 's>,
                    >;
                    // Sent in this order, together: the connection pipelines them.
                    let mut steps: Vec<Step<'_>> = Vec::new();
                    if let Some(b) = begin {
                        steps.push(Box::pin(async { c.batch_execute(b).await.map(|()| 0) }));
                    }
                    let fence_at = steps.len();
                    if let (Some(f), Some(check)) = (&fence, &check) {
                        steps.push(Box::pin(async {
                            let params: [&(dyn ToSql + Sync); 3] = [&f.sync, &f.owner, &f.epoch];
                            c.query(check, &params).await.map(|_| 0)
                        }));
                    }
                    for (slot, keys) in &dels {
                        let params: Vec<&(dyn ToSql + Sync)> = vec![&TABLE_NAMES[*slot], keys];
                        steps.push(Box::pin(c.execute_raw(&del, params)));
                    }
                    for (slot, (keys, values)) in &puts {
                        let params: Vec<&(dyn ToSql + Sync)> =
                            vec![&TABLE_NAMES[*slot], keys, values];
                        steps.push(Box::pin(c.execute_raw(&put, params)));
                    }
                    steps.push(Box::pin(async { c.batch_execute("COMMIT").await.map(|()| 0) }));
                    let results = futures::future::join_all(steps).await;
                    if fence.is_some()
                        && let Err(e) = &results[fence_at]
                        && e.code().map(SqlState::code) == Some(FENCE_FAILED)
                    {
                        return Ok((0, true));
                    }
                    let mut rows = 0u64;
                    for r in results {
                        rows += r?;
                    }
                    Ok::<_, tokio_postgres::Error>((rows, false))
                })
                .map_err(|e| pg.error(e))?;
            pg.count_pipelined(statements, rows);
            if fenced {
                let f = held.expect("checked a fence");
                return Err(StateError::Fenced {
                    sync: f.sync.clone(),
                    epoch: f.epoch,
                });
            }
            Ok(())
        })();
        if result.is_err() {
            rollback(pg, client);
        }
        result
    }

    fn rollback_pg(mut self) {
        if let TxnInner::Pg(p) = &mut self.inner
            && let Some(client) = p.client.take()
        {
            rollback(p.pg, client);
        }
    }

    /// Runs `f` on an open redb table (opened on first use). `f` must not call
    /// back into the transaction.
    fn with<R>(
        &self,
        table: Table,
        f: impl FnOnce(&mut OpenTable<'a>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let TxnInner::Redb { tx, open } = &self.inner else {
            unreachable!("redb tables only in a redb transaction")
        };
        let slot = slot(table);
        let mut open = open.borrow_mut();
        if open[slot].is_none() {
            open[slot] = Some(tx.open_table(table).map_err(db)?);
        }
        f(open[slot].as_mut().expect("opened above"))
    }

    fn put<T: Serialize>(&self, table: Table, k: &str, v: &T) -> Result<(), StateError> {
        let bytes = encode(v);
        if self.unchanged(table, k, Some(&bytes)) {
            return Ok(());
        }
        if let Some(p) = self.pg_txn() {
            p.overlay
                .borrow_mut()
                .insert((slot(table), k.to_string()), Some(bytes));
            return Ok(());
        }
        self.with(table, |t| {
            t.insert(k, bytes.as_slice()).map_err(db)?;
            Ok(())
        })
    }

    fn get<T: DeserializeOwned>(&self, table: Table, k: &str) -> Result<Option<T>, StateError> {
        if let Some(p) = self.pg_txn() {
            let buffered = p
                .overlay
                .borrow()
                .get(&(slot(table), k.to_string()))
                .cloned();
            // The status is read from the database: a pause made during the run is kept.
            let viewed = self
                .view_of(table, k)
                .filter(|_| k != key(&[self.sync, "status"]));
            let bytes = match (buffered, viewed.and_then(|v| v.get(slot(table), k))) {
                (Some(v), _) => v,
                (None, Some(viewed)) => viewed,
                (None, None) => {
                    p.pg.query(
                        p.client()?,
                        "SELECT v FROM tandem_kv WHERE tbl = $1 AND k = $2",
                        params![TABLE_NAMES[slot(table)], k.as_bytes().to_vec()],
                    )?
                    .first()
                    .map(|r| r.get::<_, Vec<u8>>(0))
                }
            };
            return bytes.map(|b| decode(k, &b)).transpose();
        }
        self.with(table, |t| match t.get(k).map_err(db)? {
            Some(v) => Ok(Some(decode(k, v.value())?)),
            None => Ok(None),
        })
    }

    fn remove(&self, table: Table, k: &str) -> Result<(), StateError> {
        if self.unchanged(table, k, None) {
            return Ok(());
        }
        if let Some(p) = self.pg_txn() {
            p.overlay
                .borrow_mut()
                .insert((slot(table), k.to_string()), None);
            return Ok(());
        }
        self.with(table, |t| {
            t.remove(k).map_err(db)?;
            Ok(())
        })
    }

    /// Rows with `lo <= key < hi` as of this transaction, in key order.
    fn range(
        &self,
        table: Table,
        lo: &str,
        hi: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        if let Some(p) = self.pg_txn() {
            let slot = slot(table);
            let mut rows: BTreeMap<String, Vec<u8>> = match self
                .view
                .filter(|v| v.covers_range(slot, lo, hi))
                .and_then(|v| v.range(slot, lo, hi))
            {
                Some(viewed) => viewed.into_iter().collect(),
                None => crate::db::pg::kv_range_on(p.pg, p.client()?, TABLE_NAMES[slot], lo, hi)?
                    .into_iter()
                    .collect(),
            };
            for ((s, k), v) in p.overlay.borrow().iter() {
                if *s == slot && k.as_str() >= lo && k.as_str() < hi {
                    match v {
                        Some(v) => rows.insert(k.clone(), v.clone()),
                        None => rows.remove(k),
                    };
                }
            }
            return Ok(rows.into_iter().collect());
        }
        self.with(table, |t| {
            let mut out = Vec::new();
            for row in t.range(lo..hi).map_err(db)? {
                let (k, v) = row.map_err(db)?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Removes every row with `lo <= key < hi`; returns how many there were.
    fn remove_range(&self, table: Table, lo: &str, hi: &str) -> Result<usize, StateError> {
        let slot_ = slot(table);
        if self.view.is_some_and(|v| v.covers_range(slot_, lo, hi)) {
            // Row by row, so that the view learns of each removal.
            let rows = self.range(table, lo, hi)?;
            for (k, _) in &rows {
                self.remove(table, k)?;
            }
            return Ok(rows.len());
        }
        if let Some(p) = self.pg_txn() {
            let slot = slot_;
            let n = self.range(table, lo, hi)?.len();
            p.pg.execute(
                p.client()?,
                "DELETE FROM tandem_kv WHERE tbl = $1 AND k >= $2 AND k < $3",
                params![
                    TABLE_NAMES[slot],
                    lo.as_bytes().to_vec(),
                    hi.as_bytes().to_vec()
                ],
            )?;
            p.overlay
                .borrow_mut()
                .retain(|(s, k), _| !(*s == slot && k.as_str() >= lo && k.as_str() < hi));
            return Ok(n);
        }
        self.with(table, |tb| {
            let keys: Vec<String> = tb
                .range(lo..hi)
                .map_err(db)?
                .map(|r| r.map(|(k, _)| k.value().to_string()))
                .collect::<Result<_, _>>()
                .map_err(db)?;
            for k in &keys {
                tb.remove(k.as_str()).map_err(db)?;
            }
            Ok(keys.len())
        })
    }

    /// A link by key, as of this transaction.
    pub fn link(&self, link: &str) -> Result<Option<Link>, StateError> {
        self.get(LINKS, &key(&[self.sync, link]))
    }

    /// The key of the link holding record `id` of `entity` on `side`, as of this
    /// transaction.
    pub fn link_of(
        &self,
        side: Side,
        entity: &str,
        id: &str,
    ) -> Result<Option<String>, StateError> {
        self.get(LINK_IDS, &key(&[self.sync, side.as_str(), entity, id]))
    }

    /// Stores a link and its id index. `entities` gives each side's entity
    /// name of the link's entity pair. A record already held by another link
    /// is refused (links are unique per side id).
    pub fn put_link(&self, link: &Link, entities: (&str, &str)) -> Result<(), StateError> {
        let old: Option<Link> = self.link(&link.key)?;
        for side in Side::BOTH {
            let entity = if side == Side::A {
                entities.0
            } else {
                entities.1
            };
            let old_id = old.as_ref().and_then(|l| l.id(side).map(str::to_string));
            let new_id = link.id(side);
            if old_id.as_deref() == new_id {
                continue;
            }
            if let Some(id) = &old_id {
                self.remove(LINK_IDS, &key(&[self.sync, side.as_str(), entity, id]))?;
            }
            if let Some(id) = new_id {
                let k = key(&[self.sync, side.as_str(), entity, id]);
                if let Some(existing) = self.get::<String>(LINK_IDS, &k)?
                    && existing != link.key
                {
                    return Err(StateError::DuplicateLink {
                        side,
                        entity: entity.into(),
                        id: id.into(),
                        existing,
                    });
                }
                self.put(LINK_IDS, &k, &link.key)?;
            }
        }
        let recheck = key(&[self.sync, RECHECK, &link.key]);
        if link.review.recheck {
            self.put(META, &recheck, &true)?;
        } else if old.is_some_and(|o| o.review.recheck) {
            self.remove(META, &recheck)?;
        }
        self.put(LINKS, &key(&[self.sync, &link.key]), link)
    }

    /// Drops a link and its id index.
    pub fn remove_link(&self, link: &str, entities: (&str, &str)) -> Result<(), StateError> {
        if let Some(old) = self.link(link)? {
            for side in Side::BOTH {
                let entity = if side == Side::A {
                    entities.0
                } else {
                    entities.1
                };
                if let Some(id) = old.id(side) {
                    let k = key(&[self.sync, side.as_str(), entity, id]);
                    if self.get::<String>(LINK_IDS, &k)?.as_deref() == Some(link) {
                        self.remove(LINK_IDS, &k)?;
                    }
                }
            }
        }
        self.remove(META, &key(&[self.sync, RECHECK, link]))?;
        self.remove(LINKS, &key(&[self.sync, link]))
    }

    /// Saves a cursor.
    pub fn set_cursor(
        &self,
        entity: usize,
        side: Side,
        cursor: Option<&str>,
    ) -> Result<(), StateError> {
        let k = key(&[self.sync, &entity.to_string(), side.as_str()]);
        match cursor {
            Some(c) => self.put(CURSORS, &k, &c),
            None => self.remove(CURSORS, &k),
        }
    }

    /// Saves the mapping fingerprint of an entity pair.
    pub fn set_mapping(&self, entity: usize, fingerprint: &str) -> Result<(), StateError> {
        self.put(
            META,
            &key(&[self.sync, "mapping", &entity.to_string()]),
            &fingerprint,
        )
    }

    /// An outbox row.
    pub fn op(&self, id: &str) -> Result<Option<OutboxEntry>, StateError> {
        self.get(OUTBOX, &key(&[self.sync, id]))
    }

    /// Stores an outbox row.
    pub fn put_op(&self, e: &OutboxEntry) -> Result<(), StateError> {
        self.put(OUTBOX, &key(&[self.sync, &e.op.id]), e)
    }

    /// Drops an outbox row.
    pub fn remove_op(&self, id: &str) -> Result<(), StateError> {
        self.remove(OUTBOX, &key(&[self.sync, id]))
    }

    /// Drops acknowledged outbox rows (their events stay in the log), and parked rows a
    /// later run's write to the same record superseded ([`SyncStore::parked`]).
    pub fn purge_acked(&self) -> Result<usize, StateError> {
        let (lo, hi) = prefix_range(self.sync);
        let mut rows = Vec::new();
        for (k, v) in self.range(OUTBOX, &lo, &hi)? {
            let e: OutboxEntry = decode(&k, &v)?;
            rows.push((k, e));
        }
        let written = if rows.iter().any(|(_, e)| e.status == OpStatus::Parked) {
            let next_run = self.get(META, &key(&[self.sync, "next-run"]))?.unwrap_or(1);
            written_lately(self.sync, next_run, |table, lo, hi| {
                self.range(table, lo, hi)
            })?
        } else {
            BTreeMap::new()
        };
        let mut acked = 0;
        for (k, e) in &rows {
            if e.status == OpStatus::Acked {
                self.remove(OUTBOX, k)?;
                acked += 1;
            } else if e.status == OpStatus::Parked && superseded(e, &written) {
                self.remove(OUTBOX, k)?;
            }
        }
        Ok(acked)
    }

    /// Stores a retry entry.
    pub fn put_retry(&self, e: &RetryEntry) -> Result<(), StateError> {
        self.put(
            RETRY,
            &key(&[self.sync, &e.entity.to_string(), e.side.as_str(), &e.id]),
            e,
        )
    }

    /// A retry entry.
    pub fn retry(
        &self,
        entity: usize,
        side: Side,
        id: &str,
    ) -> Result<Option<RetryEntry>, StateError> {
        self.get(
            RETRY,
            &key(&[self.sync, &entity.to_string(), side.as_str(), id]),
        )
    }

    /// Drops a retry entry.
    pub fn remove_retry(&self, entity: usize, side: Side, id: &str) -> Result<(), StateError> {
        self.remove(
            RETRY,
            &key(&[self.sync, &entity.to_string(), side.as_str(), id]),
        )
    }

    /// Records a deletion.
    pub fn put_tombstone(
        &self,
        entity: usize,
        side: Side,
        id: &str,
        t: &Tombstone,
    ) -> Result<(), StateError> {
        self.put(
            TOMBSTONES,
            &key(&[self.sync, &entity.to_string(), side.as_str(), id]),
            t,
        )
    }

    /// Starts a run: allocates its id.
    pub fn begin_run(&self, kind: RunKind, now: i64) -> Result<RunRecord, StateError> {
        let k = key(&[self.sync, "next-run"]);
        let id: u64 = self.get(META, &k)?.unwrap_or(1);
        self.put(META, &k, &(id + 1))?;
        let run = RunRecord {
            id,
            kind,
            started_at: now,
            ended_at: None,
            outcome: "running".into(),
            message: None,
            counters: BTreeMap::new(),
            daemon: self.fence.map(|f| f.owner.clone()),
            requests: None,
        };
        self.put_run(&run)?;
        Ok(run)
    }

    /// Stores a run row.
    pub fn put_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.put(RUNS, &key(&[self.sync, &format!("{:016x}", run.id)]), run)
    }

    /// Appends an event to the run log.
    pub fn put_event(&self, e: &Event) -> Result<(), StateError> {
        self.put(
            EVENTS,
            &key(&[
                self.sync,
                &format!("{:016x}", e.run),
                &format!("{:012x}", e.seq),
            ]),
            e,
        )
    }

    /// Sets the sync's status.
    pub fn set_status(&self, status: &SyncStatus) -> Result<(), StateError> {
        self.put(META, &key(&[self.sync, "status"]), status)
    }

    /// The sync's status as of this transaction (a pause made during a run is seen).
    pub fn status(&self) -> Result<SyncStatus, StateError> {
        Ok(self
            .get(META, &key(&[self.sync, "status"]))?
            .unwrap_or_default())
    }
}

/// What a tombstone is about.
pub type TombstoneKey = RecordKey;

/// `META` keys `sync NUL decision NUL entity NUL a-id NUL b-id`: the operator's
/// decisions about ambiguous matches.
const DECISION: &str = "decision";

/// An ambiguous match reported by a run and not resolved yet (`tandem sync status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAmbiguity {
    /// Entity pair index.
    pub entity: usize,
    /// The e-mail the candidates share.
    pub email: String,
    /// Candidates on A.
    pub a: Vec<String>,
    /// Candidates on B.
    pub b: Vec<String>,
    /// Why it is ambiguous.
    pub reason: String,
    /// The run that last reported it.
    pub run: u64,
}

impl SyncStore {
    /// The operator's decisions about ambiguous matches (`tandem sync resolve`).
    pub fn decisions(&self, sync: &str) -> Result<Decisions, StateError> {
        let prefix = key(&[sync, DECISION]);
        let (lo, _) = prefix_range(&prefix);
        let mut out = Decisions::new();
        for (k, d) in self.scan::<Decision>(META, &prefix)? {
            let mut parts = k[lo.len()..].splitn(3, '\0');
            let (Some(ix), Some(a), Some(b)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(ix) = ix.parse::<usize>() else {
                continue;
            };
            out.insert((ix, a.to_string(), b.to_string()), d);
        }
        Ok(out)
    }

    /// Ambiguous matches reported by runs and not resolved since.
    pub fn pending_ambiguities(&self, sync: &str) -> Result<Vec<PendingAmbiguity>, StateError> {
        Ok(self
            .get(META, &key(&[sync, "ambiguous"]))?
            .unwrap_or_default())
    }

    /// The tombstones with what they are about: (entity pair, side, record id).
    pub fn tombstone_rows(&self, sync: &str) -> Result<Vec<(TombstoneKey, Tombstone)>, StateError> {
        let (lo, _) = prefix_range(sync);
        let mut out = Vec::new();
        for (k, t) in self.scan::<Tombstone>(TOMBSTONES, sync)? {
            let mut parts = k[lo.len()..].splitn(3, '\0');
            let (Some(ix), Some(side), Some(id)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let side = if side == Side::A.as_str() {
                Side::A
            } else {
                Side::B
            };
            let Ok(ix) = ix.parse::<usize>() else {
                continue;
            };
            out.push((RecordKey::new(ix, side, id), t));
        }
        Ok(out)
    }

    /// Whether the next run lists everything again (set by a new decision, so
    /// that the records it names are read although they did not change).
    pub fn rescan(&self, sync: &str) -> Result<bool, StateError> {
        Ok(self.get(META, &key(&[sync, "rescan"]))?.unwrap_or(false))
    }
}

impl Txn<'_> {
    /// Stores an operator decision about records `a` and `b` of entity pair `entity`.
    pub fn put_decision(
        &self,
        entity: usize,
        a: &str,
        b: &str,
        d: Decision,
    ) -> Result<(), StateError> {
        self.put(
            META,
            &key(&[self.sync, DECISION, &entity.to_string(), a, b]),
            &d,
        )
    }

    /// Drops an operator decision (a `link` decision once the link exists).
    pub fn remove_decision(&self, entity: usize, a: &str, b: &str) -> Result<(), StateError> {
        self.remove(
            META,
            &key(&[self.sync, DECISION, &entity.to_string(), a, b]),
        )
    }

    /// Replaces the pending ambiguities.
    pub fn set_pending_ambiguities(&self, list: &[PendingAmbiguity]) -> Result<(), StateError> {
        self.put(META, &key(&[self.sync, "ambiguous"]), &list)
    }

    /// The pending ambiguities, as of this transaction.
    pub fn pending_ambiguities(&self) -> Result<Vec<PendingAmbiguity>, StateError> {
        Ok(self
            .get(META, &key(&[self.sync, "ambiguous"]))?
            .unwrap_or_default())
    }

    /// A tombstone, as of this transaction.
    pub fn tombstone(
        &self,
        entity: usize,
        side: Side,
        id: &str,
    ) -> Result<Option<Tombstone>, StateError> {
        self.get(
            TOMBSTONES,
            &key(&[self.sync, &entity.to_string(), side.as_str(), id]),
        )
    }

    /// Drops a tombstone.
    pub fn remove_tombstone(&self, entity: usize, side: Side, id: &str) -> Result<(), StateError> {
        self.remove(
            TOMBSTONES,
            &key(&[self.sync, &entity.to_string(), side.as_str(), id]),
        )
    }

    /// Asks the next run to list everything again (or clears the request).
    pub fn set_rescan(&self, on: bool) -> Result<(), StateError> {
        let k = key(&[self.sync, "rescan"]);
        if on {
            self.put(META, &k, &true)
        } else {
            self.remove(META, &k)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{fresh, link, on_both_backends};
    use redb::backends::InMemoryBackend;
    use redb::{Database, StorageBackend};

    /// Runs and events written by builds that stored directions and kinds as text read
    /// as before and are written back byte for byte.
    #[test]
    fn runs_and_events_stored_with_text_directions_still_load() {
        let counters = |n: usize| {
            format!(
                r#"{{"created":{n},"updated":0,"removed":0,"linked":0,"skipped":0,"failed":0,"parked":0,"conflicts":0}}"#
            )
        };
        let run = format!(
            r#"{{"id":7,"kind":"incremental","started_at":10,"ended_at":12,"outcome":"ok","message":null,"counters":{{"a-to-b":{},"b-to-a":{},"both":{}}}}}"#,
            counters(2),
            counters(1),
            counters(0)
        );
        let r: RunRecord = decode("run", run.as_bytes()).unwrap();
        assert_eq!(r.kind, RunKind::Incremental);
        assert_eq!(r.counters[&Flow::AToB].created, 2);
        assert_eq!(r.counters[&Flow::BToA].created, 1);
        assert_eq!(String::from_utf8(encode(&r)).unwrap(), run);
        let full = run.replace(r#""kind":"incremental""#, r#""kind":"full""#);
        let r: RunRecord = decode("run", full.as_bytes()).unwrap();
        assert_eq!(r.kind, RunKind::Full);
        let event = r#"{"run":7,"seq":1,"direction":"b-to-a","action":"updated","entity":"contacts","records":["a:1","b:2"],"link":"0/a/1","reason":"changed in B"}"#;
        let e: Event = decode("event", event.as_bytes()).unwrap();
        assert_eq!(e.direction, Flow::BToA);
        assert_eq!(String::from_utf8(encode(&e)).unwrap(), event);
        // Through the store, as a file written by an older build is read.
        let s = SyncStore::open(fresh()).unwrap();
        s.write("s", |t| {
            t.put_run(&r)?;
            t.put_event(&e)
        })
        .unwrap();
        assert_eq!(s.runs("s").unwrap(), vec![r]);
        assert_eq!(s.events("s", 7).unwrap(), vec![e]);
    }

    /// Stored counters, events and the control API spell a flow as they always did,
    /// and maps keyed by it are read with that text.
    #[test]
    fn a_flow_reads_and_writes_as_stored_before() {
        for (f, text) in [
            (Flow::AToB, "a-to-b"),
            (Flow::BToA, "b-to-a"),
            (Flow::Both, "both"),
        ] {
            assert_eq!(f.to_string(), text);
            assert_eq!(text.parse::<Flow>(), Ok(f));
            assert_eq!(serde_json::to_value(f).unwrap(), serde_json::json!(text));
            assert_eq!(serde_json::from_value::<Flow>(text.into()).unwrap(), f);
        }
        assert_eq!(Flow::BToA.between("fs", "fm"), "fm → fs");
        assert_eq!(Flow::Both.between("fs", "fm"), "fs ↔ fm");
        assert_eq!(Flow::to(Side::B), Flow::AToB);
        assert_eq!(Flow::to(Side::A), Flow::BToA);
        assert!("two-way".parse::<Flow>().is_err());
        let counters: BTreeMap<Flow, usize> = [(Flow::Both, 3), (Flow::BToA, 2), (Flow::AToB, 1)]
            .into_iter()
            .collect();
        assert_eq!((counters["a-to-b"], counters["both"]), (1, 3));
        assert_eq!(
            serde_json::to_string(&counters).unwrap(),
            r#"{"a-to-b":1,"b-to-a":2,"both":3}"#
        );
    }

    /// A run recorded before runs kept their requests reads as one without them; one
    /// with them reads back as written.
    #[test]
    fn runs_without_requests_still_read() {
        let old = r#"{"id":3,"kind":"incremental","started_at":10,"ended_at":11,"outcome":"ok","message":null,"counters":{}}"#;
        let r: RunRecord = serde_json::from_str(old).unwrap();
        assert_eq!((r.id, &r.requests), (3, &None));
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("requests"), "{text}");
        let q = Requests {
            sent: 4,
            windows: vec![QuotaUse {
                limit: 100,
                period_secs: 60,
                used: 25,
            }],
            app: Some(AppQuota {
                remaining: 10,
                limit: Some(20),
            }),
        };
        let r = RunRecord {
            requests: Some(SidePair::new(q, Requests::default())),
            ..r
        };
        let back: RunRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    /// A disk that fills up on demand: writes then fail as the kernel fails them (ENOSPC).
    #[derive(Debug)]
    struct FillingDisk {
        inner: InMemoryBackend,
        full: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FillingDisk {
        fn check(&self) -> Result<(), std::io::Error> {
            if self.full.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            Ok(())
        }
    }

    impl StorageBackend for FillingDisk {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.check()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.check()?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.check()?;
            self.inner.write(offset, data)
        }
    }

    /// A full disk is named as such, on the first failure and on redb's later
    /// "previous I/O error" answers alike.
    #[test]
    fn a_full_disk_says_the_disk_is_full() {
        let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let db = Database::builder()
            .create_with_backend(FillingDisk {
                inner: InMemoryBackend::new(),
                full: full.clone(),
            })
            .unwrap();
        let store = SyncStore::open(Arc::new(db)).unwrap();
        store.set_status("s", &SyncStatus::Paused).unwrap();
        full.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut messages = Vec::new();
        for _ in 0..3 {
            let big = "x".repeat(64 * 1024);
            let err = store
                .write("s", |t| t.put(META, &key(&["s", "filler"]), &big))
                .unwrap_err();
            messages.push(err.to_string());
        }
        for m in &messages {
            assert!(
                m.contains("disk holding the state file is full"),
                "{messages:#?}"
            );
            assert!(!m.contains("re-open"), "{m}");
        }
    }

    /// A row of another component (the plugins' storage) in the same database, under
    /// a key that starts like a sync's.
    struct OtherComponent;

    impl OtherComponent {
        fn new(d: &Db) -> Self {
            match d {
                Db::Redb(d) => {
                    let tx = d.begin_write().unwrap();
                    tx.open_table(TableDefinition::<&str, &str>::new("plugin_storage"))
                        .unwrap()
                        .insert("one\0k", "v")
                        .unwrap();
                    tx.commit().unwrap();
                }
                Db::Postgres(pg) => {
                    let c = pg.client_blocking().unwrap();
                    pg.execute(
                        &c,
                        "INSERT INTO tandem_plugin_store (owner, connection, k, v) VALUES ('one', 'c', 'k', 'v')",
                        vec![],
                    )
                    .unwrap();
                }
            }
            OtherComponent
        }

        fn still_there(&self, d: &Db) -> bool {
            match d {
                Db::Redb(d) => {
                    let tx = d.begin_read().unwrap();
                    let t = tx
                        .open_table(TableDefinition::<&str, &str>::new("plugin_storage"))
                        .unwrap();
                    t.get("one\0k").unwrap().is_some_and(|v| v.value() == "v")
                }
                Db::Postgres(pg) => {
                    let c = pg.client_blocking().unwrap();
                    pg.query(
                        &c,
                        "SELECT 1 FROM tandem_plugin_store WHERE owner = 'one' AND v = 'v'",
                        vec![],
                    )
                    .unwrap()
                    .len()
                        == 1
                }
            }
        }
    }

    /// An update of record 9 on side B of link `0/a/1`, planned in `run`.
    fn update_of_b(
        id: &str,
        fields: Vec<(String, crate::sync::model::Value)>,
        status: OpStatus,
        run: u64,
    ) -> OutboxEntry {
        use crate::sync::plan::{LinkEffect, OpKind};
        OutboxEntry {
            op: PlannedOp {
                id: id.into(),
                entity: 0,
                side: Side::B,
                entity_name: "contacts".into(),
                link: "0/a/1".into(),
                kind: OpKind::Update {
                    id: "9".into(),
                    if_version: None,
                    fields,
                },
                reason: "changed in A".into(),
                consent: false,
                base: BTreeMap::new(),
                joint: Default::default(),
                effect: LinkEffect::None,
                run,
                kept: Default::default(),
            },
            status,
            attempts: 0,
            next_attempt_at: None,
            error: None,
            run,
        }
    }

    on_both_backends! {
    /// A write parked in one run and made by a later one no longer counts as parked
    /// (status said "Parked 1" forever), and the next purge drops the parked row; a write
    /// of another kind, or to the other side, does not fix it.
    fn a_parked_write_later_made_is_no_longer_parked() {
        let parked = |id: &str, run: u64| OutboxEntry {
            attempts: 1,
            error: Some("invalid: bad phone".into()),
            ..update_of_b(id, Vec::new(), OpStatus::Parked, run)
        };
        let event = |run: u64, direction: Flow, action: &str| Event {
            run,
            seq: 1,
            direction,
            action: action.into(),
            entity: "contacts".into(),
            records: vec!["a:1".into(), "b:9".into()],
            link: Some("0/a/1".into()),
            reason: "changed in A".into(),
        };
        let s = SyncStore::open(fresh()).unwrap();
        s.write("s", |t| {
            assert_eq!(t.begin_run(RunKind::Incremental, 10)?.id, 1);
            t.put_op(&parked("p1", 1))?;
            t.put_event(&event(1, Flow::AToB, "parked"))
        })
        .unwrap();
        assert_eq!(s.parked("s").unwrap().len(), 1);
        // Run 2 creates nothing on B and updates A: neither is the parked write.
        s.write("s", |t| {
            assert_eq!(t.begin_run(RunKind::Incremental, 10)?.id, 2);
            t.put_event(&event(2, Flow::AToB, "created"))?;
            t.put_event(&event(2, Flow::BToA, "updated"))
        })
        .unwrap();
        assert_eq!(s.parked("s").unwrap().len(), 1, "another write fixes nothing");
        // Run 3 updates the record on B: the parked write is made.
        s.write("s", |t| {
            assert_eq!(t.begin_run(RunKind::Incremental, 10)?.id, 3);
            t.put_event(&event(3, Flow::AToB, "updated"))
        })
        .unwrap();
        assert!(s.parked("s").unwrap().is_empty());
        assert_eq!(s.outbox("s").unwrap().len(), 1, "kept until the next purge");
        s.write("s", |t| {
            assert_eq!(t.begin_run(RunKind::Incremental, 10)?.id, 4);
            t.purge_acked().map(|_| ())
        })
        .unwrap();
        assert!(s.outbox("s").unwrap().is_empty(), "the superseded row is dropped");
        // A write parked after the last update stays parked, and is kept by the purge.
        s.write("s", |t| {
            t.put_op(&parked("p5", 5))?;
            assert_eq!(t.begin_run(RunKind::Incremental, 10)?.id, 5);
            t.purge_acked().map(|_| ())
        })
        .unwrap();
        assert_eq!(s.parked("s").unwrap().len(), 1);
        assert_eq!(s.outbox("s").unwrap().len(), 1);
    }
    }

    on_both_backends! {
    /// A run's view keeps only a digest of the outbox rows the run writes
    /// (docs/performance.md §3): reading one back asks the database, and a changed row or
    /// a removal is written.
    fn a_runs_view_keeps_digests_of_its_outbox_rows_and_reads_them_from_the_database() {
        let entry = |id: &str, status: OpStatus| {
            let ada = crate::sync::model::Value::Text("Ada".into());
            update_of_b(id, vec![("first_name".into(), ada)], status, 1)
        };
        let s = SyncStore::open(fresh()).unwrap();
        s.write("s", |t| t.put_op(&entry("old", OpStatus::Failed))).unwrap();
        let run = s.for_run("s").unwrap();
        run.write("s", |t| t.put_op(&entry("o1", OpStatus::Planned))).unwrap();
        {
            let view = run.view.as_deref().unwrap();
            let rows = view.rows();
            let digests = rows
                .iter()
                .filter(|((slot_, _), r)| *slot_ == slot(OUTBOX) && matches!(r, Row::Digest(_)))
                .count();
            assert_eq!(digests, 1, "the row this run wrote is a digest: {rows:?}");
        }
        // Read back through the view: from the database, with the row read at the start.
        let ids = |st: &SyncStore| -> Vec<(String, OpStatus)> {
            st.outbox("s").unwrap().into_iter().map(|e| (e.op.id, e.status)).collect()
        };
        assert_eq!(
            ids(&run),
            vec![("o1".into(), OpStatus::Planned), ("old".into(), OpStatus::Failed)]
        );
        // The same row again, another status, a removal: the database has what was written.
        run.write("s", |t| t.put_op(&entry("o1", OpStatus::Planned))).unwrap();
        run.write("s", |t| t.put_op(&entry("o1", OpStatus::Sent))).unwrap();
        assert_eq!(ids(&s)[0], ("o1".into(), OpStatus::Sent));
        assert_eq!(ids(&run)[0], ("o1".into(), OpStatus::Sent));
        run.write("s", |t| t.remove_op("o1")).unwrap();
        assert_eq!(ids(&s), vec![("old".into(), OpStatus::Failed)]);
        assert_eq!(ids(&run), vec![("old".into(), OpStatus::Failed)]);
    }
    }

    on_both_backends! {
    fn links_are_unique_per_side_id() {
        let s = SyncStore::open(fresh()).unwrap();
        s.write("s", |t| {
            t.put_link(&link("0/a/1", Some("1"), Some("9")), ("leads", "contacts"))
        })
        .unwrap();
        let err = s
            .write("s", |t| {
                t.put_link(&link("0/a/2", Some("2"), Some("9")), ("leads", "contacts"))
            })
            .unwrap_err();
        assert!(
            matches!(err, StateError::DuplicateLink { side: Side::B, .. }),
            "{err}"
        );
        // The failed transaction left nothing behind.
        assert_eq!(s.links("s").unwrap().len(), 1);
        // Re-pointing a link frees its old id.
        s.write("s", |t| {
            t.put_link(&link("0/a/1", Some("1"), Some("8")), ("leads", "contacts"))
        })
        .unwrap();
        s.write("s", |t| {
            t.put_link(&link("0/a/2", Some("2"), Some("9")), ("leads", "contacts"))
        })
        .unwrap();
        let found = s
            .links_for("s", [(Side::B, "contacts", "9"), (Side::A, "leads", "1")])
            .unwrap();
        assert_eq!(
            found.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(),
            ["0/a/1", "0/a/2"]
        );
        assert_eq!(s.link_counts("s").unwrap()[&0], 2);
    }
    }

    on_both_backends! {
    fn newer_schema_is_refused_with_a_clear_error() {
        let d = fresh();
        let s = SyncStore::open(d.clone()).unwrap();
        s.write("", |t| t.put(META, SCHEMA_KEY, &(SCHEMA_VERSION + 1)))
            .unwrap();
        let err = SyncStore::open(d).unwrap_err().to_string();
        assert!(
            err.contains("newer than this build") && err.contains("upgrade tandem"),
            "{err}"
        );
    }

    }

    on_both_backends! {
    fn an_older_layout_is_upgraded_in_place_and_its_links_still_read() {
        let d = fresh();
        let s = SyncStore::open(d.clone()).unwrap();
        s.write("s", |t| {
            t.put_link(&link("0/a/1", Some("1"), Some("2")), ("c", "c"))?;
            t.put(META, SCHEMA_KEY, &1u32)
        })
        .unwrap();
        let s = SyncStore::open(d.clone()).unwrap();
        let stored: Option<u32> = s.get(META, SCHEMA_KEY).unwrap();
        assert_eq!(stored, Some(SCHEMA_VERSION));
        assert_eq!(s.link_counts("s").unwrap()[&0], 1);
    }

    }

    on_both_backends! {
    fn disconnect_wipes_one_sync_only() {
        let d = fresh();
        let s = SyncStore::open(d.clone()).unwrap();
        for sync in ["one", "one-more"] {
            s.write(sync, |t| {
                t.put_link(&link("0/a/1", Some("1"), Some("2")), ("c", "c"))?;
                t.set_cursor(0, Side::A, Some("cur"))?;
                let run = t.begin_run(RunKind::Full, 0)?;
                t.put_event(&Event {
                    run: run.id,
                    seq: 1,
                    direction: Flow::AToB,
                    action: "created".into(),
                    entity: "c".into(),
                    records: vec![],
                    link: None,
                    reason: "r".into(),
                })?;
                t.set_status(&SyncStatus::Paused)
            })
            .unwrap();
        }
        // Another component's row in the same database.
        let other = OtherComponent::new(&d);

        assert!(s.disconnect("one").unwrap() >= 6);
        assert!(s.links("one").unwrap().is_empty());
        assert_eq!(s.cursor("one", 0, Side::A).unwrap(), None);
        assert!(s.runs("one").unwrap().is_empty());
        assert!(s.events("one", 1).unwrap().is_empty());
        assert_eq!(s.status("one").unwrap(), SyncStatus::Active);
        assert_eq!(s.links("one-more").unwrap().len(), 1);
        assert_eq!(s.status("one-more").unwrap(), SyncStatus::Paused);
        assert_eq!(s.events("one-more", 1).unwrap().len(), 1);
        assert!(other.still_there(&d));
    }
    }

    on_both_backends! {
    fn runs_get_increasing_ids_and_retries_round_trip() {
        let s = SyncStore::open(fresh()).unwrap();
        let r1 = s.write("s", |t| t.begin_run(RunKind::Full, 1)).unwrap();
        let r2 = s
            .write("s", |t| t.begin_run(RunKind::Incremental, 2))
            .unwrap();
        assert_eq!((r1.id, r2.id), (1, 2));
        let e = RetryEntry {
            entity: 0,
            side: Side::B,
            id: "7".into(),
            link: None,
            attempts: 1,
            next_attempt_at: 10,
            error: "x".into(),
        };
        s.write("s", |t| t.put_retry(&e)).unwrap();
        assert_eq!(s.retries("s").unwrap(), vec![e]);
        s.write("s", |t| t.remove_retry(0, Side::B, "7")).unwrap();
        assert!(s.retries("s").unwrap().is_empty());
    }
    }
}
