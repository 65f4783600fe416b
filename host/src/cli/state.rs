//! `tandem state`: the state database. `copy` moves an install from its redb file to
//! PostgreSQL (docs/fleet.md, "Moving an install"); the work and its checks are
//! [`crate::db::copy`], this module only reads the arguments and prints.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{ArgGroup, Args, Subcommand};

use crate::db::copy::{self, CopyReport};
use crate::db::{PgOptions, TlsMode};

/// `tandem state ...`
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy a redb state file into an empty PostgreSQL database, then check every table.
    #[command(after_help = "Example (the password stays off the command line):\n  \
        export TANDEM_DATABASE_URL='postgres://tandem:PASSWORD@db.internal:5432/tandem'\n  \
        tandem state copy --from state/state.redb --to-env TANDEM_DATABASE_URL\n\n\
        Stop the daemon first: a file in use is refused. The target must hold no tandem\n\
        rows; everything is written in one transaction, then read back and compared\n\
        (rows and sha256 per table). There is no copy back: back PostgreSQL up with pg_dump.")]
    Copy(CopyArgs),
}

/// `tandem state copy`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to", "to_env"])))]
pub struct CopyArgs {
    /// The redb state file to copy (the install's `[state] path`). Left as it was.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The environment variable holding the target database's URL
    /// (postgres://user:password@host:port/database), e.g. TANDEM_DATABASE_URL.
    #[arg(long, value_name = "VAR")]
    pub to_env: Option<String>,
    /// The target database's URL. Visible to other users in the process list: prefer --to-env.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Encryption of the connection: disable, prefer or require.
    #[arg(long, value_name = "MODE", default_value = "prefer")]
    pub tls: TlsMode,
    /// Extra root certificates (PEM) for the server's certificate, for a private CA.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Runs a `tandem state` command.
pub async fn run(cmd: StateCommand) -> anyhow::Result<()> {
    match cmd {
        StateCommand::Copy(args) => copy_cmd(args).await,
    }
}

async fn copy_cmd(args: CopyArgs) -> anyhow::Result<()> {
    let url = match (args.to, &args.to_env) {
        (Some(url), _) => url,
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            anyhow!(
                "--to-env {var}: the environment variable {var} is not set; export the target database's URL (postgres://user:password@host:port/database) in it"
            )
        })?,
        (None, None) => unreachable!("clap requires --to or --to-env"),
    };
    let secret = password_of(&url);
    let mut opts = PgOptions::new(url);
    opts.tls = args.tls;
    opts.ca_file = args.ca_file;
    opts.pool_size = 2;
    let from = args.from;
    // The copy blocks on redb and on the database's own runtime.
    let result = tokio::task::spawn_blocking(move || copy::copy(&from, &opts))
        .await
        .context("the copy task ended")?;
    let report = result.map_err(|e| anyhow!(scrub(&e.to_string(), secret.as_deref())))?;
    print!("{}", table(&report));
    report
        .check()
        .map_err(|e| anyhow!(scrub(&e.to_string(), secret.as_deref())))?;
    let rows: u64 = report.tables.iter().map(|t| t.copied.rows).sum();
    println!(
        "copied {rows} rows into {}; every table checks out. Point [state] at it (backend = \"postgres\", url = {{ env = \"TANDEM_DATABASE_URL\" }}) and start the daemons; keep the redb file as it is until you are satisfied.",
        report.target
    );
    Ok(())
}

/// The report: one line per table.
fn table(report: &CopyReport) -> String {
    let mut out = format!("{:<28} {:>9}  {:<64}  check\n", "table", "rows", "sha256");
    for t in &report.tables {
        let check = if t.ok() {
            "ok".to_string()
        } else {
            format!(
                "DIFFERS (file: {} rows, {})",
                t.file.rows,
                &t.file.hex()[..16]
            )
        };
        out.push_str(&format!(
            "{:<28} {:>9}  {}  {check}\n",
            t.table,
            t.copied.rows,
            t.copied.hex()
        ));
    }
    out
}

/// The password of `postgres://user:password@host/...`, to keep it out of any message.
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_string())
}

/// `text` without `secret`.
fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) => text.replace(s, "***"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_found_and_scrubbed() {
        let url = "postgres://tandem:s3cr%40t@db:5432/x?sslmode=require";
        let pw = password_of(url);
        assert_eq!(pw.as_deref(), Some("s3cr%40t"));
        assert_eq!(
            scrub(&format!("bad {url}"), pw.as_deref()),
            "bad postgres://tandem:***@db:5432/x?sslmode=require"
        );
        assert_eq!(password_of("postgres://tandem@db/x"), None);
        assert_eq!(password_of("host=db user=x"), None);
    }
}
