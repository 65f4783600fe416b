//! [`Local`]: [`SyncControl`] over a [`Host`] this process opened, with progress bars on a
//! terminal while a plan or a run reads and writes.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::app::control::api::LogsQuery;
use crate::app::control::{DryRun, Route, SyncControl, SyncControlError, require_run};
use crate::app::report::{RunLog, RunSummary, SyncSummary};
use crate::app::{Host, PreparedSync, Resolution, RunProgress};
use crate::config::SyncConfig;
use crate::sync::RunOptions;
use crate::sync::model::Side;
use crate::sync::plan::Plan;

/// The local host: the command holds the state file.
pub struct Local {
    host: Host,
    /// Draw progress bars (on a terminal only).
    bars: bool,
}

impl Local {
    /// Over `host`; `bars`: draw progress bars while a plan or run is in progress, when
    /// stderr is a terminal (not with `--json`).
    pub fn new(host: Host, bars: bool) -> Self {
        Local { host, bars }
    }

    /// Runs sync `name` once with `opts`, with progress bars.
    async fn run_once(
        &self,
        name: &str,
        opts: RunOptions,
    ) -> Result<crate::sync::RunReport, SyncControlError> {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let p = self.host.prepare(name, rx).await?;
        let progress = Progress::start(&p, !self.bars);
        let report = self.host.run_prepared(&p, opts).await;
        progress.finish().await;
        Ok(report?)
    }

    /// Links the plan would make between records not linked yet.
    fn new_links(&self, name: &str, plan: &Plan) -> Result<usize, SyncControlError> {
        let mut n = 0;
        for l in &plan.links {
            if l.ids.a.is_some()
                && l.ids.b.is_some()
                && self.host.store().link(name, &l.key)?.is_none()
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

impl SyncControl for Local {
    fn route(&self) -> Route {
        Route::Local
    }

    fn sync_config(&self, name: &str) -> Result<&SyncConfig, SyncControlError> {
        Ok(self.host.sync_config(name)?)
    }

    async fn status(&self, only: Option<&str>) -> Result<Vec<SyncSummary>, SyncControlError> {
        Ok(self.host.status(only)?)
    }

    async fn logs(&self, name: &str, query: LogsQuery) -> Result<Vec<RunLog>, SyncControlError> {
        let logs = self.host.logs(name, query.run, query.latest())?;
        require_run(name, &query, logs)
    }

    async fn plan(&self, name: &str, full: bool) -> Result<DryRun, SyncControlError> {
        let opts = RunOptions {
            dry_run: true,
            full,
            ..RunOptions::default()
        };
        let report = self.run_once(name, opts).await?;
        let linked = self.new_links(name, &report.plan)?;
        Ok(DryRun {
            plan: report.plan,
            linked,
        })
    }

    async fn run(
        &self,
        name: &str,
        full: bool,
        force: bool,
    ) -> Result<RunSummary, SyncControlError> {
        if self.host.paused_report(name)?.is_some() {
            return Err(SyncControlError::Paused { name: name.into() });
        }
        let opts = RunOptions {
            full,
            force,
            ..RunOptions::default()
        };
        Ok(RunSummary::from(&self.run_once(name, opts).await?))
    }

    async fn pause(&self, name: &str) -> Result<(), SyncControlError> {
        Ok(self.host.pause(name)?)
    }

    async fn resume(&self, name: &str) -> Result<(), SyncControlError> {
        Ok(self.host.resume(name)?)
    }

    async fn disconnect(&self, name: &str) -> Result<usize, SyncControlError> {
        Ok(self.host.disconnect(name)?)
    }

    async fn resolve(
        &self,
        name: &str,
        resolution: &Resolution,
    ) -> Result<String, SyncControlError> {
        Ok(self.host.apply_resolution(name, resolution)?)
    }
}

/// Progress bars on a terminal (stderr), nothing otherwise.
struct Progress {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(p: &PreparedSync, quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress {
                stop: None,
                task: None,
            };
        }
        let progress: Arc<RunProgress> = p.progress.clone();
        let (a, b) = p.names.clone();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let reading = multi.add(ProgressBar::new_spinner());
            reading.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("template"));
            let writing = multi.add(ProgressBar::hidden());
            writing.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} writes {msg} ({eta} left)")
                    .expect("template"),
            );
            loop {
                reading.set_message(format!(
                    "read {} from {a}, {} from {b}",
                    progress.read(Side::A),
                    progress.read(Side::B)
                ));
                reading.tick();
                if progress.writing() {
                    if writing.is_hidden() {
                        writing.set_draw_target(ProgressDrawTarget::stderr());
                        writing.set_length(progress.planned());
                    }
                    writing.set_position(progress.written().min(progress.planned()));
                }
                tokio::select! {
                    _ = &mut rx => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            writing.finish_and_clear();
            reading.finish_and_clear();
        });
        Progress {
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // The draw task ends at once; wait so that the bars are cleared before output.
            let _ = task.await;
        }
    }
}
