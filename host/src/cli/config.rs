//! `tandem config validate`: check a config file and report every problem.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Subcommand;

use crate::config::{self, DEFAULT_CONFIG_FILE};

/// Config commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file: syntax, unknown keys, values, references between plugins,
    /// connections and syncs, plugin files and their sha256 pins, and that every
    /// referenced environment variable and secret file exists (values are never printed).
    /// Prints every problem, one per line, as FILE:LINE:COLUMN: KEY: PROBLEM.
    #[command(after_help = "Examples:\n  \
        tandem config validate\n  \
        tandem config validate --config examples/production.toml")]
    Validate {
        /// The config file.
        #[arg(long, short, value_name = "FILE", default_value = DEFAULT_CONFIG_FILE)]
        config: PathBuf,
    },
}

/// Runs a config command.
pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Validate { config } => validate(&config),
    }
}

fn validate(file: &Path) -> anyhow::Result<()> {
    match config::validate_file(file) {
        Ok(c) => {
            println!(
                "{}: ok ({} plugins, {} connections, {} syncs)",
                file.display(),
                c.plugins.len(),
                c.connections.len(),
                c.syncs.len()
            );
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            let n = errors.len();
            bail!(
                "{} has {n} problem{}; fix {} and run `tandem config validate` again",
                file.display(),
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" }
            )
        }
    }
}
