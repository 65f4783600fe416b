//! The `tandem` command line (clap derive).
//!
//! One file per command group: add a variant to [`Command`] and a module beside this one
//! (`plugin.rs` is the pattern). Handlers return `anyhow::Result`; [`main`] prints any
//! error as one line and exits non-zero.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub mod config;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod plugin;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod state;
pub mod sync;

/// Keeps contacts in step between SaaS apps, through sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, propagate_version = true)]
pub struct Cli {
    /// The config file.
    #[arg(long, short, global = true, value_name = "FILE", default_value = crate::config::DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,
    /// How log lines are written to stderr (`RUST_LOG` sets the level).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the operator's config file.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// List, inspect and check plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Plan, run, inspect, pause, resume and disconnect syncs.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Move the state: copy a redb state file into PostgreSQL, for a fleet.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Run the daemon: poll every sync on its interval and serve the control API.
    #[command(after_help = "Example:\n  tandem run --config examples/demo.toml")]
    Run(run::RunArgs),
    /// Show Tandem at work: simulated accounts, two syncs, edits, explained decisions.
    #[cfg(feature = "sandbox")]
    Demo(demo::DemoArgs),
    /// Start the simulated Freshsales, Freshmarketer and Google accounts until Ctrl-C.
    #[cfg(feature = "sandbox")]
    Sandbox(sandbox::SandboxArgs),
}

impl Command {
    /// Whether the command serves until stopped (the daemon, the simulated accounts).
    fn serves(&self) -> bool {
        match self {
            Command::Run(_) => true,
            #[cfg(feature = "sandbox")]
            Command::Sandbox(_) => true,
            _ => false,
        }
    }
}

/// Parses the arguments, runs the command, and turns any error into one line + exit 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.command.serves() {
        end_quietly_on_closed_pipe();
    }
    // The daemon reports each run at `info`; one-shot commands print their own output.
    let level = if matches!(cli.command, Command::Run(_)) {
        "warn,tandem=info"
    } else {
        "warn"
    };
    init_tracing(cli.log_format, level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Config(cmd) => config::run(cmd, &cli.config),
            Command::Plugin(cmd) => plugin::run(cmd).await,
            Command::Sync(cmd) => sync::run(cmd, &cli.config).await,
            Command::State(cmd) => state::run(cmd).await,
            Command::Run(args) => run::run(args, &cli.config).await,
            #[cfg(feature = "sandbox")]
            Command::Demo(args) => demo::run(args).await,
            #[cfg(feature = "sandbox")]
            Command::Sandbox(args) => sandbox::run(args).await,
        }
    })
}

/// `tandem plugin inspect … | head`: once the reader is gone, end the way `cat` does (the
/// default SIGPIPE action) instead of panicking in `println!`. Rust ignores SIGPIPE so that
/// a write returns `EPIPE`; the print macros turn that into a panic. Not for the daemon or
/// the simulated accounts, which must outlive whatever reads their output (their sockets
/// are written with `MSG_NOSIGNAL` either way). A sync run ended so converges on the
/// next run, like after any interruption.
fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `RUST_LOG` controls logging (default: `default_level`), to stderr, as readable lines
/// or JSON.
fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The error chain joined on one line, without repeating causes already in the message.
fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    // Plugin text is cleaned where it enters the host; this also covers every other
    // source (app error bodies, file names) before it reaches the terminal.
    crate::runtime::text::clean_line(&out)
}
