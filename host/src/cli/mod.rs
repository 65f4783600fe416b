//! The `tandem` command line (clap derive).
//!
//! One file per command group: add a variant to [`Command`] and a module beside this one
//! (`plugin.rs` is the pattern). Handlers return `anyhow::Result`; [`main`] prints any
//! error as one line and exits non-zero.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod plugin;

/// Keeps contacts in step between SaaS apps, through sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, inspect and check plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Parses the arguments, runs the command, and turns any error into one line + exit 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
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
            Command::Plugin(cmd) => plugin::run(cmd).await,
        }
    })
}

/// `RUST_LOG` controls logging (default: warnings), to stderr.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
    out.replace(['\n', '\r'], " ")
}
