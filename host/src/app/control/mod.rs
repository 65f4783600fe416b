//! Steering syncs: the operations `tandem sync` performs, behind one trait, and the
//! daemon's HTTP control API that serves them.
//!
//! [`SyncControl`] is what an operator can do to a sync: read its status and logs, plan,
//! run, pause, resume, disconnect, resolve. It has two implementations, chosen once per
//! command: the local host (`cli::sync::Local`, when the command can open the state file
//! itself) and [`DaemonClient`] (when `tandem run` holds the state file and serves its
//! control API). The daemon's side is `server.rs`; both ends speak the paths and bodies of
//! [`api`], so that the client and the server cannot drift. The wire format is documented
//! in `docs/control-api.md`.

pub mod api;
pub mod client;
mod console;
mod server;

use std::future::Future;

pub use client::{ClientError, DaemonClient};
pub(crate) use server::spawn_until_stopping;
pub use server::{ServeError, serve};

use crate::app::report::{RunLog, RunSummary, SyncSummary};
use crate::app::{HostError, Resolution};
use crate::config::SyncConfig;
use crate::sync::plan::Plan;
use crate::sync::state::StateError;
use api::LogsQuery;

/// Who answers a [`SyncControl`]: what the command prints says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// This process, with the state file open.
    Local,
    /// The daemon, through its control API.
    Daemon,
}

/// A dry run: the plan and how many new links it would make.
#[derive(Clone, Debug)]
pub struct DryRun {
    /// What a run would do.
    pub plan: Plan,
    /// Links the plan would make between records not linked yet.
    pub linked: usize,
}

/// Why a [`SyncControl`] operation failed. One line each, saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum SyncControlError {
    /// The local host refused or failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The daemon could not be asked, or refused.
    #[error(transparent)]
    Daemon(#[from] ClientError),
    /// A local run of a paused sync (the daemon instead answers with a `paused` run).
    #[error(
        "sync `{name}` is paused: nothing was read or written; `tandem sync resume {name}` first"
    )]
    Paused {
        /// The sync.
        name: String,
    },
    /// Logs of a run that does not exist.
    #[error("sync `{name}` has no run {run}; `tandem sync logs {name} --runs 10` lists the latest")]
    NoSuchRun {
        /// The sync.
        name: String,
        /// The run asked for.
        run: u64,
    },
}

/// The logs of `query`, or [`SyncControlError::NoSuchRun`] when it asked for one
/// run that does not exist (the store and the daemon answer that with no run).
pub fn require_run(
    name: &str,
    query: &LogsQuery,
    logs: Vec<RunLog>,
) -> Result<Vec<RunLog>, SyncControlError> {
    match query.run {
        Some(run) if logs.is_empty() => Err(SyncControlError::NoSuchRun {
            name: name.into(),
            run,
        }),
        _ => Ok(logs),
    }
}

impl From<StateError> for SyncControlError {
    fn from(e: StateError) -> Self {
        SyncControlError::Host(HostError::State(e))
    }
}

/// What `tandem sync` does to a sync, locally or through the daemon. See the module
/// documentation.
pub trait SyncControl {
    /// Who answers.
    fn route(&self) -> Route;

    /// The config of sync `name` (an unknown name is an error naming the defined ones
    /// where the answerer knows them).
    fn sync_config(&self, name: &str) -> Result<&SyncConfig, SyncControlError>;

    /// Every sync, or only `only`.
    fn status(
        &self,
        only: Option<&str>,
    ) -> impl Future<Output = Result<Vec<SyncSummary>, SyncControlError>> + Send;

    /// Sync `name`'s run logs, as `query` selects them.
    fn logs(
        &self,
        name: &str,
        query: LogsQuery,
    ) -> impl Future<Output = Result<Vec<RunLog>, SyncControlError>> + Send;

    /// Reads both sides and plans, writing nothing (`full`: list everything again).
    fn plan(
        &self,
        name: &str,
        full: bool,
    ) -> impl Future<Output = Result<DryRun, SyncControlError>> + Send;

    /// Runs sync `name` once now and says what it did (`force`: past a breaker halt).
    fn run(
        &self,
        name: &str,
        full: bool,
        force: bool,
    ) -> impl Future<Output = Result<RunSummary, SyncControlError>> + Send;

    /// Pauses sync `name`.
    fn pause(&self, name: &str) -> impl Future<Output = Result<(), SyncControlError>> + Send;

    /// Resumes sync `name` (also clears a breaker halt).
    fn resume(&self, name: &str) -> impl Future<Output = Result<(), SyncControlError>> + Send;

    /// Wipes sync `name`'s state and logs and leaves it paused; returns the rows wiped.
    fn disconnect(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<usize, SyncControlError>> + Send;

    /// Records an operator's decision; says what the next run does, in one line.
    fn resolve(
        &self,
        name: &str,
        resolution: &Resolution,
    ) -> impl Future<Output = Result<String, SyncControlError>> + Send;
}
