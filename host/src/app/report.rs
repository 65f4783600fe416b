//! Status and logs of syncs as plain serialisable data: what `tandem sync status` and
//! `tandem sync logs` print (as tables or `--json`) and what the control API returns.

use serde::{Deserialize, Serialize};

use crate::config::SyncConfig;
use crate::sync::SyncStore;
use crate::sync::state::{Event, PendingAmbiguity, RunRecord, StateError, SyncStatus};

/// One sync at a glance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncSummary {
    /// The sync's name.
    pub name: String,
    /// Connection on side A.
    pub a: String,
    /// Connection on side B.
    pub b: String,
    /// `two-way`, `a-to-b`, `b-to-a`.
    pub direction: crate::sync::policy::Direction,
    /// Poll interval in seconds.
    pub interval_secs: u64,
    /// `active`, `paused` or `halted`.
    pub status: String,
    /// Why it is halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRecord>,
    /// Linked record pairs.
    pub links: usize,
    /// Records waiting for a retry.
    pub retrying: usize,
    /// Writes given up on (they need a person).
    pub parked: usize,
    /// Ambiguous matches waiting for an operator decision (`tandem sync resolve`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ambiguous: Vec<PendingAmbiguity>,
    /// Links waiting for the operator: open `manual` conflicts and quarantines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<Attention>,
    /// The daemon's view: a run is in progress.
    #[serde(default)]
    pub running: bool,
    /// The daemon's view: the last run's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The daemon's view: the next scheduled run (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<i64>,
    /// A fleet (state on PostgreSQL): the daemon that owns the sync's lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A fleet: seconds since the owner claimed the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_age_secs: Option<u64>,
    /// A fleet: the owner stopped renewing the lease; another daemon takes the sync
    /// over at its next heartbeat.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lease_expired: bool,
}

/// A link waiting for the operator, with the command that settles it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attention {
    /// The link's id (what `tandem sync resolve` takes).
    pub link: String,
    /// Its records (`a:ID`, `b:ID`).
    pub records: Vec<String>,
    /// What waits: `conflict` (a `manual` field) or `quarantined`.
    pub kind: String,
    /// The field (pair key) of a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What happened, in words (both values, or the loop detector's reason).
    pub detail: String,
    /// The command that settles it.
    pub hint: String,
}

/// The links of a sync that wait for the operator (a scan of its links).
pub fn attention(store: &SyncStore, sync: &str) -> Result<Vec<Attention>, StateError> {
    use crate::sync::baseline::LinkState;
    use crate::sync::model::Side;
    let mut out = Vec::new();
    for l in store.links(sync)? {
        if l.review.open.is_empty() && l.state != LinkState::Quarantined {
            continue;
        }
        let records: Vec<String> = Side::BOTH
            .into_iter()
            .filter_map(|s| l.id(s).map(|id| format!("{}:{id}", s.as_str())))
            .collect();
        let id = records.first().cloned().unwrap_or_default();
        for (field, c) in &l.review.open {
            out.push(Attention {
                link: l.key.clone(),
                records: records.clone(),
                kind: "conflict".into(),
                field: Some(field.clone()),
                detail: format!(
                    "A {} / B {} (was {})",
                    c.a,
                    c.b,
                    c.base.as_ref().map_or("unset".into(), |v| v.to_string())
                ),
                hint: format!("tandem sync resolve {sync} --field {field} --take a|b {id}"),
            });
        }
        if l.state == LinkState::Quarantined {
            out.push(Attention {
                link: l.key.clone(),
                records,
                kind: "quarantined".into(),
                field: None,
                detail: l.review.quarantine.clone().unwrap_or_default(),
                hint: format!("tandem sync resolve {sync} --release {id}"),
            });
        }
    }
    Ok(out)
}

/// One run and its per-record events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunLog {
    /// The run, with counters per direction.
    pub run: RunRecord,
    /// Its events, in order.
    pub events: Vec<Event>,
}

/// `active`, `paused` or `halted` and the halt reason.
pub fn status_label(s: &SyncStatus) -> (String, Option<String>) {
    match s {
        SyncStatus::Active => ("active".into(), None),
        SyncStatus::Paused => ("paused".into(), None),
        SyncStatus::Halted { reason } => ("halted".into(), Some(reason.clone())),
    }
}

/// The summary of one sync from the store.
pub fn summary(store: &SyncStore, cfg: &SyncConfig) -> Result<SyncSummary, StateError> {
    let (status, reason) = status_label(&store.status(&cfg.name)?);
    let last_run = store.runs(&cfg.name)?.into_iter().max_by_key(|r| r.id);
    let links = store.link_counts(&cfg.name)?.values().sum();
    // Not `outbox` filtered by status: a parked write whose record was written since
    // no longer needs a person.
    let parked = store.parked(&cfg.name)?.len();
    Ok(SyncSummary {
        name: cfg.name.clone(),
        a: cfg.a.clone(),
        b: cfg.b.clone(),
        direction: cfg.policy.direction,
        interval_secs: cfg.interval.as_secs(),
        status,
        reason,
        last_run,
        links,
        retrying: store.retries(&cfg.name)?.len(),
        parked,
        ambiguous: store.pending_ambiguities(&cfg.name)?,
        attention: attention(store, &cfg.name)?,
        running: false,
        last_error: None,
        next_run_at: None,
        owner: None,
        lease_age_secs: None,
        lease_expired: false,
    })
}

/// Run `run`, or the last `runs` runs (newest last), with their events.
pub fn logs(
    store: &SyncStore,
    cfg: &SyncConfig,
    run: Option<u64>,
    runs: usize,
) -> Result<Vec<RunLog>, StateError> {
    let mut all = store.runs(&cfg.name)?;
    all.sort_by_key(|r| r.id);
    let chosen: Vec<RunRecord> = match run {
        Some(id) => all.into_iter().filter(|r| r.id == id).collect(),
        None => {
            let skip = all.len().saturating_sub(runs.max(1));
            all.into_iter().skip(skip).collect()
        }
    };
    chosen
        .into_iter()
        .map(|r| {
            let events = store.events(&cfg.name, r.id)?;
            Ok(RunLog { run: r, events })
        })
        .collect()
}

/// What a run did, without its plan: the control API's answer to a run, what
/// `tandem sync run` prints (`--json` as is), whether run here or by the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The sync's name (`[syncs.NAME]`).
    pub sync: String,
    /// The run's id in the log.
    pub run: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Counters per direction.
    pub counters:
        std::collections::BTreeMap<crate::sync::state::Flow, crate::sync::state::Counters>,
    /// Writes that failed or were parked: (op id, error).
    pub failures: Vec<(String, String)>,
    /// The API requests the run made on each side, with each account's quota as it
    /// ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::sync::model::SidePair<crate::sync::state::Requests>>,
}

/// How a run ended, on the wire one string: `completed`, `dry-run`, `paused`, or
/// `halted: <reason>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Outcome {
    /// Every planned write was made or handed to the retries.
    Completed,
    /// A plan only.
    DryRun,
    /// The sync is paused: nothing was read or written.
    Paused,
    /// The breaker stopped the run before it wrote; why.
    Halted(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Completed => f.write_str("completed"),
            Outcome::DryRun => f.write_str("dry-run"),
            Outcome::Paused => f.write_str("paused"),
            Outcome::Halted(m) => write!(f, "halted: {m}"),
        }
    }
}

impl From<Outcome> for String {
    fn from(o: Outcome) -> String {
        o.to_string()
    }
}

impl TryFrom<String> for Outcome {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.as_str() {
            "completed" => Outcome::Completed,
            "dry-run" => Outcome::DryRun,
            "paused" => Outcome::Paused,
            _ => match s.strip_prefix("halted: ") {
                Some(m) => Outcome::Halted(m.into()),
                None => {
                    return Err(format!(
                        "unknown run outcome `{s}`: expected completed, dry-run, paused or halted: <reason>"
                    ));
                }
            },
        })
    }
}

impl From<&crate::sync::RunOutcome> for Outcome {
    fn from(o: &crate::sync::RunOutcome) -> Self {
        use crate::sync::RunOutcome;
        match o {
            RunOutcome::Completed => Outcome::Completed,
            RunOutcome::DryRun => Outcome::DryRun,
            RunOutcome::Paused => Outcome::Paused,
            RunOutcome::Halted(m) => Outcome::Halted(m.clone()),
        }
    }
}

impl From<&crate::sync::RunReport> for RunSummary {
    fn from(r: &crate::sync::RunReport) -> Self {
        RunSummary {
            sync: r.sync.clone(),
            run: r.run,
            outcome: Outcome::from(&r.outcome),
            counters: r.counters.clone(),
            failures: r.failures.clone(),
            requests: r.requests.clone(),
        }
    }
}
