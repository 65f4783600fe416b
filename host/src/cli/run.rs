//! `tandem run`: the daemon. Polls every sync of the config on its interval, serves the
//! control API (when `[daemon]` has a token) and the webhook receiver (when a connection
//! has a `webhook` table), and stops gracefully on Ctrl-C or SIGTERM:
//! runs in progress get a grace period, a second Ctrl-C cancels them at once (safe: every
//! sync resumes from its last checkpoint).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::app::daemon::Daemon;
use crate::app::{Host, HostOptions};
use crate::app::{control, webhook};

/// `tandem run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How long runs in progress may take to finish after Ctrl-C.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub grace: u64,
}

/// Runs the daemon until Ctrl-C or SIGTERM.
pub async fn run(args: RunArgs, file: &Path) -> anyhow::Result<()> {
    let config = super::sync::load_config(file)?;
    let syncs = config.syncs.len();
    if syncs == 0 {
        anyhow::bail!(
            "{} declares no [syncs]; add one (see examples/demo.toml)",
            file.display()
        );
    }
    let host = Arc::new(Host::open(
        config,
        HostOptions::new(crate::app::state_file::DAEMON_COMMAND),
    )?);
    let daemon = Daemon::start(host)?;
    let api = match control::serve(&daemon).await {
        Ok(a) => a,
        Err(e) => {
            daemon.abort().await;
            return Err(e.into());
        }
    };
    match webhook::serve(&daemon).await {
        Ok(Some(addr)) => eprintln!("tandem: webhooks on http://{addr}/v1/webhooks/<connection>"),
        Ok(None) => {}
        Err(e) => {
            daemon.abort().await;
            return Err(e.into());
        }
    }
    match api {
        Some(addr) => eprintln!(
            "tandem: running {syncs} sync(s); control API on http://{addr}, console on http://{addr}/console/; Ctrl-C to stop"
        ),
        None => eprintln!(
            "tandem: running {syncs} sync(s); control API off (set [daemon] token); Ctrl-C to stop"
        ),
    }
    stop_signal().await;
    eprintln!(
        "tandem: stopping; runs in progress may finish within {}s (Ctrl-C again to stop now)",
        args.grace
    );
    tokio::select! {
        () = daemon.shutdown(Duration::from_secs(args.grace)) => {}
        () = stop_signal() => {
            eprintln!("tandem: cancelling runs in progress; they resume from their checkpoints");
            daemon.abort().await;
        }
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
