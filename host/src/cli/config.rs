//! `tandem config validate`: check a config file and report every problem.

use std::path::Path;

use anyhow::bail;
use clap::Subcommand;

use crate::config;

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
    Validate,
}

/// Runs a config command on `file` (the global `--config`).
pub fn run(cmd: ConfigCommand, file: &Path) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Validate => validate(file),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_fails_with_a_count_and_passes_a_good_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[sate]\n[connections.x]\nplugin = \"nope\"\n").unwrap();
        let err = run(ConfigCommand::Validate, &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} has 2 problems; fix them and run `tandem config validate` again",
                bad.display()
            )
        );
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "[plugins.n]\nbuiltin = \"normalize\"\n").unwrap();
        run(ConfigCommand::Validate, &good).unwrap();
    }
}
