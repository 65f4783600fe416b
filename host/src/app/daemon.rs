//! `tandem run`: every sync polled on its interval, in its own task.
//!
//! - A sync's runs never overlap (one lock per sync); different syncs run concurrently
//!   and only meet in their accounts' shared budgets, where waiting is asynchronous.
//! - At most `[daemon] concurrent-runs` runs are in progress at once; the others wait
//!   their turn. Every run holds its plugins' instances and both sides' pages while it
//!   waits on the apps, so a thousand syncs falling due together would otherwise hold a
//!   thousand runs' memory at once.
//! - A webhook ([`Daemon::hint`], from [`super::webhook`]) is a hint, not data: every
//!   sync using the connection runs early, `[daemon.webhooks] debounce` after the first
//!   webhook of a burst; the rest of the burst joins that run, and webhooks arriving during
//!   a run make one more run after it. The run reads changes through the connector as
//!   usual, so echo suppression and the baselines apply as for a polled run.
//! - Every `full-every` (default a day) a scheduled run lists both sides in full
//!   instead of reading changes since the cursors: change feeds do not show list exits
//!   or permanent deletes. The time of the last full run comes from the run log, so a
//!   restart does not reset it.
//! - Pause takes effect at once: the sync's status is stored, and its requests — even
//!   those of a run in progress — wait until it is resumed.
//! - Disconnect cancels a run in progress (safe: the engine converges after any
//!   interruption), then wipes the sync's state and logs.
//! - Shutdown is graceful: no new runs start, runs in progress may finish within a grace
//!   period, then they are cancelled.
//! - With the state on PostgreSQL, every daemon has a worker per sync but runs only the
//!   syncs whose lease it holds ([`super::fleet`]); a trigger or webhook for a sync
//!   another daemon owns wakes that daemon through the database, and shutdown gives the
//!   leases back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::fleet::Fleet;
use super::report::{RunLog, SyncSummary};
use super::{Host, HostError, RunLease, unix_now};
use crate::sync::state::{RunKind, SyncStatus};
use crate::sync::{RunOptions, RunOutcome, RunReport};

#[derive(Debug, Default)]
struct WorkerState {
    running: bool,
    last_error: Option<String>,
    next_run_at: Option<i64>,
    current: Option<AbortHandle>,
    /// When the last full run started (unix seconds).
    last_full: Option<i64>,
}

#[derive(Debug)]
struct Worker {
    name: String,
    interval: Duration,
    /// Time between full listings.
    full_every: Duration,
    paused: watch::Sender<bool>,
    trigger: Notify,
    /// Webhooks: a run `debounce` from now, unless one is due sooner.
    hint: Notify,
    /// The connections of the sync (A, B).
    connections: (String, String),
    state: Mutex<WorkerState>,
    run_lock: tokio::sync::Mutex<()>,
}

impl Worker {
    fn state(&self) -> std::sync::MutexGuard<'_, WorkerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Inner {
    host: Arc<Host>,
    workers: BTreeMap<String, Arc<Worker>>,
    /// Stop scheduling.
    soft: watch::Sender<bool>,
    /// Cancel runs in progress.
    hard: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The fleet, when the state is on PostgreSQL.
    fleet: Option<Arc<Fleet>>,
    /// One permit per run in progress (`[daemon] concurrent-runs`).
    runs: Arc<Semaphore>,
    /// `[daemon] concurrent-runs`.
    max_runs: usize,
    /// The most runs that were in progress at once.
    peak_runs: AtomicUsize,
}

/// The running daemon. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Daemon {
    inner: Arc<Inner>,
}

/// A run the daemon could not make.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No such sync.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The run was cancelled (shutdown or disconnect).
    #[error("sync `{0}`: the run was cancelled")]
    Cancelled(String),
    /// Another daemon of the fleet owns the sync.
    #[error(
        "sync `{sync}` runs on daemon `{owner}`, which holds its lease: it was asked to run it now (see `tandem sync status` and `tandem sync logs`)"
    )]
    NotOwner {
        /// The sync.
        sync: String,
        /// Its owner, or "no daemon yet".
        owner: String,
    },
}

impl Daemon {
    /// Starts one worker per sync of the host's config. The first runs start at once.
    pub fn start(host: Arc<Host>) -> Result<Daemon, HostError> {
        let mut workers = BTreeMap::new();
        for (name, cfg) in &host.config().syncs {
            let paused = host.store().status(name)? == SyncStatus::Paused;
            let last_full = host
                .store()
                .runs(name)?
                .iter()
                .filter(|r| r.kind == RunKind::Full && r.outcome == "ok")
                .map(|r| r.started_at)
                .max();
            workers.insert(
                name.clone(),
                Arc::new(Worker {
                    name: name.clone(),
                    interval: cfg.interval,
                    full_every: cfg.full_every,
                    paused: watch::channel(paused).0,
                    trigger: Notify::new(),
                    hint: Notify::new(),
                    connections: (cfg.a.clone(), cfg.b.clone()),
                    state: Mutex::new(WorkerState {
                        last_full,
                        ..WorkerState::default()
                    }),
                    run_lock: tokio::sync::Mutex::new(()),
                }),
            );
        }
        let fleet = match host.store().db().postgres() {
            Some(pg) => Some(Arc::new(Fleet::join(
                pg.clone(),
                host.fleet_id().unwrap_or("unnamed").to_string(),
                &host.config().daemon.fleet,
                workers.keys().cloned().collect(),
            )?)),
            None => None,
        };
        let max_runs = host.config().daemon.concurrent_runs as usize;
        let daemon = Daemon {
            inner: Arc::new(Inner {
                runs: Arc::new(Semaphore::new(max_runs)),
                max_runs,
                peak_runs: AtomicUsize::new(0),
                host,
                workers,
                soft: watch::channel(false).0,
                hard: watch::channel(false).0,
                tasks: Mutex::new(Vec::new()),
                fleet,
            }),
        };
        let mut tasks = Vec::new();
        for w in daemon.inner.workers.values() {
            tasks.push(tokio::spawn(schedule(daemon.clone(), w.clone())));
        }
        *daemon.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        if let Some(f) = &daemon.inner.fleet {
            tokio::spawn(heartbeat(daemon.clone(), f.clone()));
            tracing::info!(syncs = daemon.inner.workers.len(), daemon = f.id(), lease_ttl = ?f.ttl(), "daemon started in a fleet");
        } else {
            tracing::info!(syncs = daemon.inner.workers.len(), "daemon started");
        }
        Ok(daemon)
    }

    /// The most runs that were in progress at once since the daemon started (at most
    /// `[daemon] concurrent-runs`).
    pub fn peak_concurrent_runs(&self) -> usize {
        self.inner.peak_runs.load(Ordering::Relaxed)
    }

    /// The host the daemon's workers run syncs on.
    pub fn host(&self) -> &Arc<Host> {
        &self.inner.host
    }

    /// A receiver that turns true when the daemon stops scheduling.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.soft.subscribe()
    }

    fn worker(&self, name: &str) -> Result<&Arc<Worker>, HostError> {
        self.inner.host.sync_config(name)?;
        Ok(&self.inner.workers[name])
    }

    /// Every sync with the daemon's view (running, last error, next run).
    pub fn summaries(&self, only: Option<&str>) -> Result<Vec<SyncSummary>, HostError> {
        // A run that ends between reading the run log and reading its worker would show
        // as not running while its record still says running: read the log again until
        // no worker started or stopped meanwhile (a few tries; runs are long).
        let running = || -> Vec<bool> {
            self.inner
                .workers
                .values()
                .map(|w| w.state().running)
                .collect()
        };
        let mut before = running();
        let mut list = self.inner.host.status(only)?;
        for _ in 0..3 {
            let after = running();
            if after == before {
                break;
            }
            before = after;
            list = self.inner.host.status(only)?;
        }
        let mine = self.inner.fleet.as_ref().map(|f| f.holding());
        for s in &mut list {
            // Another daemon's sync: its run record and lease say what it does.
            if mine.as_ref().is_some_and(|m| !m.contains(&s.name)) {
                s.running =
                    !s.lease_expired && s.last_run.as_ref().is_some_and(|r| r.outcome == "running");
                continue;
            }
            if let Some(w) = self.inner.workers.get(&s.name) {
                let st = w.state();
                s.running = st.running;
                s.last_error = st.last_error.clone();
                s.next_run_at = st.next_run_at;
            }
        }
        Ok(list)
    }

    /// The logs of a sync.
    pub fn logs(
        &self,
        name: &str,
        run: Option<u64>,
        runs: usize,
    ) -> Result<Vec<RunLog>, HostError> {
        self.inner.host.logs(name, run, runs)
    }

    /// Pauses a sync: its requests, even those of a run in progress, wait until resumed.
    pub fn pause(&self, name: &str) -> Result<(), HostError> {
        let w = self.worker(name)?;
        self.inner.host.pause(name)?;
        w.paused.send_replace(true);
        tracing::info!(sync = name, "paused");
        Ok(())
    }

    /// Resumes a sync and runs it soon.
    pub fn resume(&self, name: &str) -> Result<(), HostError> {
        let w = self.worker(name)?;
        self.inner.host.resume(name)?;
        w.paused.send_replace(false);
        w.trigger.notify_one();
        tracing::info!(sync = name, "resumed");
        Ok(())
    }

    /// Asks for a run now (returns at once; the run is scheduled, by the owner of the
    /// sync's lease in a fleet).
    pub fn trigger(&self, name: &str) -> Result<(), HostError> {
        let w = self.worker(name)?;
        self.wake(w)
    }

    /// Wakes a worker here, or the sync's owner through the database.
    fn wake(&self, w: &Worker) -> Result<(), HostError> {
        match &self.inner.fleet {
            Some(f) if f.fence(&w.name).is_none() => {
                let pg = self
                    .inner
                    .host
                    .store()
                    .db()
                    .postgres()
                    .expect("a fleet is on postgres");
                super::fleet::wake(pg, &w.name)?;
            }
            _ => w.trigger.notify_one(),
        }
        Ok(())
    }

    /// Runs `f` on the host once no run of `name` is in progress (a run that starts
    /// meanwhile waits), so that an operator's resolution is not overwritten by the
    /// commit of a run that read the links before it.
    pub async fn between_runs<T>(
        &self,
        name: &str,
        f: impl FnOnce(&Host) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let w = self.worker(name)?.clone();
        let _one_at_a_time = w.run_lock.lock().await;
        f(&self.inner.host)
    }

    /// A webhook for `connection` came in: every sync using it runs soon (debounced; see
    /// the module documentation). Returns the names of those syncs.
    pub fn hint(&self, connection: &str) -> Result<Vec<String>, HostError> {
        let cfg = self.inner.host.config();
        if !cfg.connections.contains_key(connection) {
            return Err(HostError::Unknown {
                kind: "connection",
                name: connection.into(),
                file: cfg.file.display().to_string(),
                defined: cfg
                    .connections
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut syncs = Vec::new();
        for w in self.inner.workers.values() {
            if w.connections.0 == connection || w.connections.1 == connection {
                match &self.inner.fleet {
                    // Another daemon's sync: its owner's next heartbeat sees the wake-up.
                    Some(f) if f.fence(&w.name).is_none() => self.wake(w)?,
                    _ => w.hint.notify_one(),
                }
                syncs.push(w.name.clone());
            }
        }
        // Debug: a bulk import fires one webhook per record.
        tracing::debug!(connection, syncs = ?syncs, "webhook: runs scheduled");
        Ok(syncs)
    }

    /// Runs a sync now and waits for its report (after any run in progress).
    pub async fn run_now(&self, name: &str, opts: RunOptions) -> Result<RunReport, DaemonError> {
        let w = self.worker(name)?.clone();
        if let Some(f) = &self.inner.fleet
            && f.fence(name).is_none()
        {
            self.wake(&w)?;
            let owner = self
                .inner
                .host
                .status(Some(name))?
                .first()
                .and_then(|s| s.owner.clone())
                .unwrap_or_else(|| "no daemon yet".into());
            return Err(DaemonError::NotOwner {
                sync: name.into(),
                owner,
            });
        }
        run_once(self, &w, opts).await
    }

    /// The plan of the next run of `name` (a dry run: read both sides, write nothing),
    /// for the console's preview. It waits for a run in progress to end, so that it plans
    /// from the state that run leaves, but holds nothing while it reads: a scheduled run
    /// starts meanwhile as usual, and it takes no turn of `concurrent-runs`. It leaves the
    /// sync's status, health and last error alone (a failure is the caller's answer only).
    /// A pause, a disconnect or a shutdown ends it at once (a dry run writes nothing, so
    /// stopping it anywhere is safe). In a fleet any daemon may preview any sync: the state
    /// and the budgets are shared.
    pub async fn preview(&self, name: &str, full: bool) -> Result<RunReport, DaemonError> {
        let w = self.worker(name)?.clone();
        let host = &self.inner.host;
        let mut paused = w.paused.subscribe();
        let mut hard = self.inner.hard.subscribe();
        let stopped = |host: &Host| match host.paused_report(name) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(DaemonError::Cancelled(name.into())),
            Err(e) => Err(e.into()),
        };
        tokio::select! {
            // Taken and let go at once: only a run in progress is waited for.
            _idle = w.run_lock.lock() => {}
            () = flag(&mut paused) => return stopped(host),
            () = flag(&mut hard) => return Err(DaemonError::Cancelled(name.into())),
        }
        let opts = RunOptions {
            dry_run: true,
            full,
            ..RunOptions::default()
        };
        let dry_run = async {
            let store = host.run_store(name, None)?;
            if let Some(r) = host.paused_in(&store, name)? {
                return Ok(r);
            }
            let p = host.prepare(name, w.paused.subscribe()).await?;
            host.run_in(&store, &p, opts, None).await
        };
        tokio::select! {
            r = dry_run => Ok(r?),
            () = flag(&mut paused) => stopped(host),
            () = flag(&mut hard) => Err(DaemonError::Cancelled(name.into())),
        }
    }

    /// Cancels a run in progress, then wipes the sync's state and logs; the sync stays
    /// paused until resumed. Returns the rows wiped.
    pub async fn disconnect(&self, name: &str) -> Result<usize, HostError> {
        let w = self.worker(name)?.clone();
        w.paused.send_replace(true);
        if let Some(h) = w.state().current.take() {
            h.abort();
        }
        let _idle = w.run_lock.lock().await;
        let n = self.inner.host.disconnect(name)?;
        w.state().last_error = None;
        tracing::info!(sync = name, rows = n, "disconnected: state and logs wiped");
        Ok(n)
    }

    /// Stops scheduling, lets runs in progress finish within `grace`, then cancels them.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.soft.send_replace(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let all = futures::future::join_all(tasks);
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            tracing::warn!(
                "runs still in progress after {grace:?}: cancelling them (they resume from their checkpoints)"
            );
            self.inner.hard.send_replace(true);
            all.await;
        }
        if let Some(f) = self.inner.fleet.clone() {
            // Others take the syncs over at their next heartbeat, not after the TTL.
            match tokio::task::spawn_blocking(move || f.leave()).await {
                Ok(Ok(())) => tracing::info!("leases given back to the fleet"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot give the leases back; they expire after the TTL")
                }
                Err(_) => {}
            }
        }
        tracing::info!("daemon stopped");
    }

    /// Cancels everything now.
    pub async fn abort(&self) {
        self.inner.hard.send_replace(true);
        self.shutdown(Duration::ZERO).await;
    }
}

/// One sync's schedule: a run at start, then every interval, or when triggered, or soon
/// after a webhook.
async fn schedule(d: Daemon, w: Arc<Worker>) {
    let mut soft = d.inner.soft.subscribe();
    let debounce = d.inner.host.config().daemon.webhooks.debounce;
    let mut next = Instant::now();
    loop {
        w.state().next_run_at =
            Some(unix_now() + next.saturating_duration_since(Instant::now()).as_secs() as i64);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = w.trigger.notified() => {}
            () = w.hint.notified() => {
                // Webhooks of a burst (one per record) join the run due first.
                next = next.min(Instant::now() + debounce);
                continue;
            }
            () = flag(&mut soft) => break,
        }
        if *soft.borrow() {
            break;
        }
        next = Instant::now() + w.interval;
        // Ownership is known in memory; whether the sync is paused is read with the rest
        // of its state by the run itself (one read per idle poll, and none for the syncs
        // of other daemons).
        let lease = match &d.inner.fleet {
            None => None,
            Some(f) => match f.fence(&w.name) {
                Some(fence) => Some(RunLease {
                    fence,
                    fleet: f.clone(),
                }),
                // Not ours: its owner runs it; a claim triggers this worker.
                None => continue,
            },
        };
        let started = unix_now();
        let full = w
            .state()
            .last_full
            .is_none_or(|t| started - t >= w.full_every.as_secs() as i64);
        let opts = RunOptions {
            full,
            ..RunOptions::default()
        };
        // Errors are logged and kept for status; the schedule goes on.
        if let Ok(r) = run_leased(&d, &w, opts, lease).await
            && full
            && r.outcome == RunOutcome::Completed
        {
            w.state().last_full = Some(started);
        }
        next = Instant::now() + w.interval;
    }
    w.state().next_run_at = None;
}

/// Heartbeats of a fleet member until the daemon stops scheduling.
async fn heartbeat(d: Daemon, fleet: Arc<Fleet>) {
    let mut soft = d.inner.soft.subscribe();
    let mut failing = false;
    loop {
        let busy = d
            .inner
            .workers
            .values()
            .filter(|w| w.state().running)
            .map(|w| w.name.clone())
            .collect();
        let f = fleet.clone();
        match tokio::task::spawn_blocking(move || f.beat(&busy)).await {
            Ok(Ok(beat)) => {
                if failing {
                    tracing::info!("state database reachable again: leases renewed");
                    failing = false;
                }
                for s in &beat.lost {
                    tracing::warn!(sync = %s, "lease lost: another daemon owns the sync now");
                }
                for s in &beat.released {
                    tracing::info!(sync = %s, "lease released to share the syncs with a new daemon");
                }
                for s in beat.claimed.iter().chain(&beat.woken) {
                    if beat.claimed.contains(s) {
                        tracing::info!(sync = %s, "lease claimed");
                    }
                    if let Some(w) = d.inner.workers.get(s) {
                        w.trigger.notify_one();
                    }
                }
            }
            Ok(Err(e)) => {
                // The runs check the lease's age themselves and stop once it may be lost.
                tracing::warn!(error = %e, "cannot renew the leases; retrying");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(fleet.period()) => {}
            () = flag(&mut soft) => break,
        }
    }
}

/// One run in its own task, so that disconnect and shutdown can cancel it.
async fn run_once(d: &Daemon, w: &Arc<Worker>, opts: RunOptions) -> Result<RunReport, DaemonError> {
    // A paused sync answers at once: a run paused part-way holds the run lock until the
    // sync is resumed, and waiting behind it would leave the caller hanging.
    if *w.paused.borrow()
        && let Some(r) = d.inner.host.paused_report(&w.name)?
    {
        return Ok(r);
    }
    let lease = d.inner.fleet.as_ref().and_then(|f| {
        f.fence(&w.name).map(|fence| RunLease {
            fence,
            fleet: f.clone(),
        })
    });
    run_leased(d, w, opts, lease).await
}

/// A run under the sync's lease, when there is a fleet.
async fn run_leased(
    d: &Daemon,
    w: &Arc<Worker>,
    opts: RunOptions,
    lease: Option<RunLease>,
) -> Result<RunReport, DaemonError> {
    let _one_at_a_time = w.run_lock.lock().await;
    let mut hard = d.inner.hard.subscribe();
    // Waiting for a turn is not running: the sync shows as running once it has one.
    let turn = tokio::select! {
        p = d.inner.runs.clone().acquire_owned() => p.map_err(|_| DaemonError::Cancelled(w.name.clone()))?,
        () = flag(&mut hard) => return Err(DaemonError::Cancelled(w.name.clone())),
    };
    let in_progress = d.inner.max_runs - d.inner.runs.available_permits();
    d.inner.peak_runs.fetch_max(in_progress, Ordering::Relaxed);
    let host = d.inner.host.clone();
    let name = w.name.clone();
    let paused = w.paused.subscribe();
    // Marked running before the task starts: the task writes the run's record at once,
    // and a status read in between must not show that record's run as not running.
    w.state().running = true;
    let mut handle = tokio::spawn(async move {
        // One read of the sync's state serves the pause check and the run.
        let store = host.run_store(&name, lease.as_ref())?;
        if let Some(r) = host.paused_in(&store, &name)? {
            return Ok(r);
        }
        let p = host.prepare(&name, paused).await?;
        host.run_in(&store, &p, opts, lease.as_ref()).await
    });
    w.state().current = Some(handle.abort_handle());
    let joined = tokio::select! {
        r = &mut handle => r,
        () = flag(&mut hard) => {
            handle.abort();
            handle.await
        }
    };
    drop(turn);
    if d.inner.runs.available_permits() == d.inner.max_runs {
        release_freed_memory().await;
    }
    let mut st = w.state();
    st.running = false;
    st.current = None;
    match joined {
        Ok(Ok(report)) => {
            st.last_error = None;
            log_report(&report);
            Ok(report)
        }
        Ok(Err(e)) => {
            tracing::error!(sync = %w.name, error = %e, "run failed; the next run resumes from the last checkpoint");
            // A connection whose check failed is checked again at its next use (a failed
            // check is not kept), so fixed credentials take effect then; the connections
            // that passed theirs stay checked.
            st.last_error = Some(e.to_string());
            Err(e.into())
        }
        Err(_) => {
            tracing::warn!(sync = %w.name, "run cancelled; it resumes from its checkpoint");
            st.last_error = Some("cancelled".into());
            Err(DaemonError::Cancelled(w.name.clone()))
        }
    }
}

/// Hands the allocator's free pages back to the operating system, when the last run in
/// progress has ended. Runs that fall due together hold their records and pages at once;
/// glibc keeps what they freed in its arenas (below their tops it never trims), so a
/// daemon's resident memory would stay at its busiest moment for good
/// (docs/performance.md §3). At most once a second; off the async threads, as it walks
/// every arena. For a host embedded with glibc's allocator: the `tandem` binary's
/// mimalloc returns freed pages itself (`crate::allocator`).
async fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
        {
            let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        // SAFETY: malloc_trim only returns free memory of the allocator's own arenas.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}

/// Resolves when a flag turns true (or its sender is gone).
async fn flag(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn log_report(r: &RunReport) {
    let mut parts = Vec::new();
    for (dir, c) in &r.counters {
        parts.push(format!(
            "{dir}: {} created, {} updated, {} removed, {} skipped, {} failed",
            c.created,
            c.updated,
            c.removed,
            c.skipped,
            c.failed + c.parked
        ));
    }
    match &r.outcome {
        RunOutcome::Halted(m) => tracing::warn!(sync = %r.sync, run = r.run, "halted: {m}"),
        // Every scheduled tick of a paused sync ends here: not worth a line each time.
        RunOutcome::Paused => tracing::debug!(sync = %r.sync, "paused: nothing read or written"),
        _ => {
            tracing::info!(sync = %r.sync, run = r.run, "run done: {}", if parts.is_empty() { "nothing to do".into() } else { parts.join("; ") })
        }
    }
}
