//! `tandem sync plan | run | status | logs | resolve | pause | resume | disconnect`.
//!
//! Every command goes through one [`SyncControl`], chosen once: the local host
//! (`local::Local`) when the command can open the state file, else, when the daemon
//! (`tandem run`) holds it and `[daemon]` has a token, the daemon's control API
//! ([`DaemonClient`]). A plan needs the state file itself.

mod local;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::bail;
use clap::Subcommand;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;

use crate::app::control::api::LogsQuery;
use crate::app::control::{DaemonClient, Route, SyncControl, SyncControlError};
use crate::app::report::{Outcome, RunLog, RunSummary, SyncSummary};
use crate::app::{Host, HostError, HostOptions, StateFileError};
use crate::config::{self, Catalog, Config, Env};
use crate::sync::model::{Side, SidePair, Value};
use crate::sync::plan::OpKind;
use crate::sync::state::{Counters, Flow, Requests};

/// Sync commands.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Dry run: read both sides and show what a run would create, update, delete, link
    /// and skip, per direction, and the conflicts with their decisions. Writes nothing.
    #[command(
        after_help = "Examples:\n  tandem sync plan sales-marketing\n  tandem sync plan sales-marketing --json | jq .summary"
    )]
    Plan {
        /// The sync (a [syncs.NAME] of the config).
        name: String,
        /// List everything again instead of reading changes since the last run.
        #[arg(long)]
        full: bool,
        /// Rows shown per detail table.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON (the whole plan) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Run a sync once now, with progress bars on a terminal, and print what it did.
    #[command(
        after_help = "Examples:\n  tandem sync run sales-marketing\n  tandem sync run sales-marketing --force   # after reviewing a halted run's plan"
    )]
    Run {
        /// The sync (a [syncs.NAME] of the config).
        name: String,
        /// List everything again and compare it with the stored state.
        #[arg(long)]
        full: bool,
        /// Run although the breaker halted the sync (review `tandem sync plan` first).
        #[arg(long)]
        force: bool,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Show every sync (or one): status, last run and its counts, links, retries.
    Status {
        /// Only this sync.
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a sync's run logs: per run and direction, created / updated / skipped /
    /// failed, and each record's reason.
    #[command(
        after_help = "Examples:\n  tandem sync logs sales-marketing\n  tandem sync logs sales-marketing --runs 5 --limit 100\n  tandem sync logs sales-marketing --run 3 --json"
    )]
    Logs {
        /// The sync (a [syncs.NAME] of the config).
        name: String,
        /// Only this run (by its number).
        #[arg(long)]
        run: Option<u64>,
        /// How many of the latest runs.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Events shown per run (0: all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Settle what waits for a person (shown by `status` and `logs`): an ambiguous match
    /// (link two records as the same person, or keep them apart for good), a `manual`
    /// conflict (take one side's value), a quarantined link (release it). The next run
    /// applies it.
    #[command(
        after_help = "Examples:\n  tandem sync resolve sales-marketing --link 1701 880123     # A record 1701 is B record 880123\n  tandem sync resolve sales-marketing --keep-apart 1701 880124   # never match these two\n  tandem sync resolve sales-marketing --field job_title --take b 1701   # B's job title wins\n  tandem sync resolve sales-marketing --release 1701   # sync a quarantined pair again"
    )]
    Resolve {
        /// The sync (a [syncs.NAME] of the config).
        name: String,
        /// Link these two records (A id, then B id); the next run merges their fields.
        #[arg(long, num_args = 2, value_names = ["A-ID", "B-ID"], conflicts_with_all = ["keep_apart", "take", "release"], required_unless_present_any = ["keep_apart", "take", "release"])]
        link: Option<Vec<String>>,
        /// Never match these two records (A id, then B id); they are not reported again.
        #[arg(long, num_args = 2, value_names = ["A-ID", "B-ID"], conflicts_with_all = ["take", "release"])]
        keep_apart: Option<Vec<String>>,
        /// With --take: the field of an open `manual` conflict (either app's field name,
        /// or the pair `a-field~b-field` as `status` shows it).
        #[arg(long, value_name = "FIELD", requires = "take")]
        field: Option<String>,
        /// Settle the `manual` conflict on --field of RECORD with side a's or side b's
        /// value; the next run writes it to the other side.
        #[arg(long, value_parser = ["a", "b"], requires_all = ["field", "record"], conflicts_with = "release")]
        take: Option<String>,
        /// Release the quarantined link of RECORD (the loop detector's): it is synced
        /// again from the next run.
        #[arg(long, requires = "record")]
        release: bool,
        /// The record, by its id on either side (`a:ID` or `b:ID` when both sides use
        /// the same ids), for --take and --release.
        record: Option<String>,
    },
    /// Pause a sync: nothing is read or written until it is resumed.
    Pause {
        /// The sync (a [syncs.NAME] of the config).
        name: String,
    },
    /// Resume a paused (or halted) sync.
    Resume {
        /// The sync (a [syncs.NAME] of the config).
        name: String,
    },
    /// Disconnect a sync: wipe its links, baselines, cursors and logs. It stays paused;
    /// `resume` starts again from a fresh initial sync. The apps' data is not touched.
    Disconnect {
        /// The sync (a [syncs.NAME] of the config).
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a sync command against the config file `file`.
pub async fn run(cmd: SyncCommand, file: &Path) -> anyhow::Result<()> {
    let config = load_config(file)?;
    let command = command_label(&cmd);
    match Host::open(config.clone(), HostOptions::new(&command)) {
        Ok(host) => {
            let bars = !matches!(
                cmd,
                SyncCommand::Plan { json: true, .. } | SyncCommand::Run { json: true, .. }
            );
            execute(&local::Local::new(host, bars), cmd).await
        }
        Err(HostError::StateFile(e @ StateFileError::Locked { .. })) => {
            let daemon = DaemonClient::for_locked(&config, &Env::process(), &e)?;
            execute(&daemon, cmd).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Carries out `cmd` through `ctl` and prints the answer.
async fn execute(ctl: &impl SyncControl, cmd: SyncCommand) -> anyhow::Result<()> {
    let daemon = ctl.route() == Route::Daemon;
    match cmd {
        SyncCommand::Plan {
            name,
            full,
            limit,
            json,
        } => plan(ctl, &name, full, limit, json).await,
        SyncCommand::Run {
            name,
            full,
            force,
            json,
        } => run_once(ctl, &name, full, force, json).await,
        SyncCommand::Status { name, json } => {
            print_status(&ctl.status(name.as_deref()).await?, json);
            Ok(())
        }
        SyncCommand::Logs {
            name,
            run,
            runs,
            limit,
            json,
        } => {
            let cfg = ctl.sync_config(&name)?.clone();
            let logs = ctl.logs(&name, LogsQuery::new(run, runs)).await?;
            print_logs(&cfg, &logs, limit, json);
            Ok(())
        }
        SyncCommand::Resolve { .. } => {
            let (name, r) = resolution(cmd)?;
            let message = ctl.resolve(&name, &r).await?;
            if daemon {
                println!("{message} (through the daemon)");
            } else {
                println!("{message}");
            }
            Ok(())
        }
        SyncCommand::Pause { name } => {
            ctl.pause(&name).await?;
            if daemon {
                println!("sync `{name}` paused (through the daemon)");
            } else {
                println!(
                    "sync `{name}` paused: nothing is read or written until `tandem sync resume {name}`"
                );
            }
            Ok(())
        }
        SyncCommand::Resume { name } => {
            ctl.resume(&name).await?;
            if daemon {
                println!("sync `{name}` resumed (through the daemon)");
            } else {
                println!(
                    "sync `{name}` resumed: it runs on its schedule (or now with `tandem sync run {name}`)"
                );
            }
            Ok(())
        }
        SyncCommand::Disconnect { name, yes } => {
            ctl.sync_config(&name)?;
            confirm_disconnect(&name, yes)?;
            let n = ctl.disconnect(&name).await?;
            if daemon {
                println!(
                    "sync `{name}` disconnected through the daemon: {n} rows wiped; it stays paused"
                );
            } else {
                println!(
                    "sync `{name}` disconnected: {n} state and log rows wiped; it stays paused (resume starts a fresh initial sync)"
                );
            }
            Ok(())
        }
    }
}

fn command_label(cmd: &SyncCommand) -> String {
    let (verb, name) = match cmd {
        SyncCommand::Plan { name, .. } => ("plan", Some(name)),
        SyncCommand::Run { name, .. } => ("run", Some(name)),
        SyncCommand::Status { name, .. } => ("status", name.as_ref()),
        SyncCommand::Logs { name, .. } => ("logs", Some(name)),
        SyncCommand::Resolve { name, .. } => ("resolve", Some(name)),
        SyncCommand::Pause { name } => ("pause", Some(name)),
        SyncCommand::Resume { name } => ("resume", Some(name)),
        SyncCommand::Disconnect { name, .. } => ("disconnect", Some(name)),
    };
    match name {
        Some(n) => format!("tandem sync {verb} {n}"),
        None => format!("tandem sync {verb}"),
    }
}

/// Loads and checks the config; every problem is printed, then one summary error.
pub fn load_config(file: &Path) -> anyhow::Result<Config> {
    match config::load(file, &Env::process(), &Catalog::builtin()) {
        Ok(c) => Ok(c),
        Err(errors) => {
            if errors.len() == 1 {
                bail!("{}", errors[0]);
            }
            for e in &errors {
                eprintln!("{e}");
            }
            bail!(
                "{} has {} problems (above); fix them and run `tandem config validate --config {}`",
                file.display(),
                errors.len(),
                file.display()
            )
        }
    }
}

fn confirm_disconnect(name: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("disconnecting `{name}` wipes its state and logs; add --yes to confirm");
    }
    eprint!(
        "Disconnect `{name}`? Its links, baselines, cursors and logs are wiped. Type the sync's name to confirm: "
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != name {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

fn table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    t
}

fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s
    }
}

// ----- plan -----

async fn plan(
    ctl: &impl SyncControl,
    name: &str,
    full: bool,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let dry = ctl.plan(name, full).await?;
    let (plan, linked) = (&dry.plan, dry.linked);
    let cfg = ctl.sync_config(name)?;
    let (a, b) = (&cfg.a, &cfg.b);
    let summary = plan.summary();
    let mut skipped: BTreeMap<Flow, usize> = BTreeMap::new();
    for s in &plan.skips {
        *skipped.entry(Flow::to(s.side.other())).or_default() += 1;
    }
    if json {
        let out = json!({
            "sync": name,
            "a": a,
            "b": b,
            "summary": {
                Flow::AToB.as_str(): summary.b,
                Flow::BToA.as_str(): summary.a,
                "linked": linked,
                "skipped": skipped,
                "conflicts": plan.conflicts.len(),
                "ambiguous": plan.ambiguous.len(),
                "halted": plan.halted.as_ref().map(|h| &h.message),
            },
            "plan": plan,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("Dry run of `{name}` ({a} ↔ {b}): nothing was written.\n");
    let mut t = table(vec![
        "Direction",
        "Create",
        "Update",
        "Delete",
        "Add to list",
        "Remove from list",
        "Skip",
    ]);
    for (dir, s) in [(Flow::AToB, &summary.b), (Flow::BToA, &summary.a)] {
        t.add_row(vec![
            dir.between(a, b),
            s.create.to_string(),
            s.update.to_string(),
            s.delete.to_string(),
            s.add.to_string(),
            s.remove.to_string(),
            skipped.get(&dir).copied().unwrap_or(0).to_string(),
        ]);
    }
    println!("{t}");
    println!(
        "Linked by e-mail: {linked}   Conflicts: {}   Ambiguous duplicates (left alone): {}",
        plan.conflicts.len(),
        plan.ambiguous.len()
    );
    if let Some(h) = &plan.halted {
        println!(
            "\nThe breaker would HALT this run: {} ({} writes withheld). Review the plan, then `tandem sync run {name} --force`.",
            h.message, plan.withheld
        );
    }
    if !plan.conflicts.is_empty() {
        println!("\nConflicts (decided per field):");
        let mut t = table(vec!["Field", a.as_str(), b.as_str(), "Decision"]);
        for c in plan.conflicts.iter().take(limit) {
            t.add_row(vec![
                c.field.clone(),
                short(&c.a),
                short(&c.b),
                c.decision.clone(),
            ]);
        }
        println!("{t}");
        more(plan.conflicts.len(), limit);
    }
    // The loop detector's decisions: the pair is not written until released.
    let quarantined: Vec<_> = plan
        .notes
        .iter()
        .filter(|n| n.text.starts_with("quarantined:"))
        .collect();
    if !quarantined.is_empty() {
        println!("\nQuarantined by the loop detector (not written):");
        for n in quarantined.iter().take(limit) {
            println!("  {}: {}", n.link, n.text);
        }
        more(quarantined.len(), limit);
    }
    if !plan.ops.is_empty() {
        println!("\nWrites (consent first):");
        let mut t = table(vec!["Direction", "Action", "Record", "Reason"]);
        for op in plan.ops.iter().take(limit) {
            let record = match &op.kind {
                OpKind::Create { fields, .. } => fields
                    .iter()
                    .find(|(n, _)| n.contains("email"))
                    .map(|(_, v)| short(v))
                    .unwrap_or_else(|| "(new)".into()),
                OpKind::Update { id, fields, .. } => format!(
                    "{id}: {}",
                    fields
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                OpKind::Delete { id } => id.clone(),
                OpKind::AddToContainer { id, container }
                | OpKind::RemoveFromContainer { id, container } => {
                    format!("{id} (list {container})")
                }
            };
            let dir = Flow::to(op.side);
            t.add_row(vec![
                dir.between(a, b),
                op.kind.label().into(),
                record,
                op.reason.clone(),
            ]);
        }
        println!("{t}");
        more(plan.ops.len(), limit);
    }
    if !plan.skips.is_empty() {
        println!("\nSkipped records, by reason:");
        let mut reasons: BTreeMap<(String, &str), usize> = BTreeMap::new();
        for s in &plan.skips {
            let dir = Flow::to(s.side.other());
            *reasons
                .entry((dir.between(a, b), s.reason.as_str()))
                .or_default() += 1;
        }
        let mut t = table(vec!["Direction", "Reason", "Records"]);
        let total = reasons.len();
        for ((d, r), n) in reasons.into_iter().take(limit) {
            t.add_row(vec![d, r.to_string(), n.to_string()]);
        }
        println!("{t}");
        more(total, limit);
    }
    if !plan.ambiguous.is_empty() {
        println!("\nAmbiguous duplicates (reported, never guessed):");
        let mut t = table(vec!["E-mail", a.as_str(), b.as_str(), "Why"]);
        for x in plan.ambiguous.iter().take(limit) {
            t.add_row(vec![
                x.email.clone(),
                x.a.join(", "),
                x.b.join(", "),
                x.reason.clone(),
            ]);
        }
        println!("{t}");
        more(plan.ambiguous.len(), limit);
    }
    Ok(())
}

fn more(total: usize, limit: usize) {
    if total > limit {
        println!(
            "… and {} more (raise --limit, or use --json)",
            total - limit
        );
    }
}

async fn run_once(
    ctl: &impl SyncControl,
    name: &str,
    full: bool,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let cfg = ctl.sync_config(name)?.clone();
    let summary = ctl.run(name, full, force).await?;
    let daemon = ctl.route() == Route::Daemon;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if daemon {
        println!(
            "Sync `{name}` run {} through the daemon: {}",
            summary.run.map(|i| format!("#{i}")).unwrap_or_default(),
            summary.outcome
        );
        println!("{}", counters_table(&summary.counters, &cfg.a, &cfg.b));
    } else {
        print_run(&summary, &cfg.a, &cfg.b);
    }
    // A run that did not complete fails the command, on either route.
    match &summary.outcome {
        Outcome::Halted(m) => bail!(
            "sync `{name}` halted: {m}; review `tandem sync plan {name}`, then `tandem sync run {name} --force`"
        ),
        Outcome::Paused => Err(SyncControlError::Paused { name: name.into() }.into()),
        _ => Ok(()),
    }
}

fn counters_table(counters: &BTreeMap<Flow, Counters>, a: &str, b: &str) -> Table {
    let mut t = table(vec![
        "Direction",
        "Created",
        "Updated",
        "Removed",
        "Linked",
        "Skipped",
        "Failed",
        "Parked",
        "Conflicts",
    ]);
    for (dir, c) in counters {
        t.add_row(vec![
            dir.between(a, b),
            c.created.to_string(),
            c.updated.to_string(),
            c.removed.to_string(),
            c.linked.to_string(),
            c.skipped.to_string(),
            c.failed.to_string(),
            c.parked.to_string(),
            c.conflicts.to_string(),
        ]);
    }
    t
}

fn print_run(r: &RunSummary, a: &str, b: &str) {
    let outcome = match &r.outcome {
        Outcome::Completed => "completed".to_string(),
        Outcome::DryRun => "dry run".into(),
        Outcome::Paused => "paused: nothing read or written".into(),
        Outcome::Halted(m) => format!("HALTED: {m}"),
    };
    match r.run {
        Some(id) => println!("Sync `{}` run #{id}: {outcome}", r.sync),
        None => println!("Sync `{}`: {outcome}", r.sync),
    }
    if let Some(req) = &r.requests {
        println!("{}", requests_line(req, a, b));
    }
    if r.counters.is_empty() {
        println!("Nothing to do: both sides are in step.");
    } else {
        println!("{}", counters_table(&r.counters, a, b));
    }
    if !r.failures.is_empty() {
        println!(
            "{} write(s) or record(s) failed; they are retried on later runs, or parked after repeated failures:",
            r.failures.len()
        );
        for (op, e) in r.failures.iter().take(10) {
            println!("  {op}: {e}");
        }
        if let Some(id) = r.run {
            println!("Details: tandem sync logs {} --run {id}", r.sync);
        }
    }
}

// ----- status and logs -----

fn print_status(list: &[SyncSummary], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(list).expect("status serialises")
        );
        return;
    }
    // A fleet (state on PostgreSQL): which daemon owns each sync, since when.
    let fleet = list
        .iter()
        .any(|s| s.owner.is_some() || s.lease_age_secs.is_some());
    let mut head = vec![
        "Sync",
        "Apps",
        "Direction",
        "Status",
        "Every",
        "Last run",
        "Outcome",
        "Created",
        "Updated",
        "Failed",
        "Links",
        "Retrying",
        "Parked",
    ];
    if fleet {
        head.push("Owner (lease age)");
    }
    let mut t = table(head);
    for s in list {
        let (last, outcome, created, updated, failed) = match &s.last_run {
            Some(r) => {
                let sum = |f: fn(&Counters) -> usize| {
                    r.counters.values().map(f).sum::<usize>().to_string()
                };
                (
                    format!("#{} {}", r.id, when(r.started_at)),
                    // A failed run says why (a read bound, a broken cursor...).
                    match (&*r.outcome, &r.message) {
                        ("failed", Some(m)) => format!("failed: {m}"),
                        (o, _) => o.to_owned(),
                    },
                    sum(|c| c.created),
                    sum(|c| c.updated),
                    sum(|c| c.failed + c.parked),
                )
            }
            None => (
                "never".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ),
        };
        let mut status = s.status.clone();
        if s.running {
            status.push_str(" (running)");
        }
        if let Some(r) = &s.reason {
            status = format!("{status}: {r}");
        }
        if let Some(e) = &s.last_error {
            status = format!("{status}; last error: {e}");
        }
        let mut row = vec![
            s.name.clone(),
            format!("{} ↔ {}", s.a, s.b),
            s.direction.to_string(),
            status,
            format!("{}s", s.interval_secs),
            last,
            outcome,
            created,
            updated,
            failed,
            s.links.to_string(),
            s.retrying.to_string(),
            s.parked.to_string(),
        ];
        if fleet {
            row.push(match (&s.owner, s.lease_age_secs) {
                (Some(o), Some(age)) if s.lease_expired => format!("{o} ({age}s, expired)"),
                (Some(o), Some(age)) => format!("{o} ({age}s)"),
                (Some(o), None) => o.clone(),
                (None, _) => "none yet".into(),
            });
        }
        t.add_row(row);
    }
    println!("{t}");
    for s in list.iter().filter(|s| !s.attention.is_empty()) {
        println!(
            "\nSync `{}`: {} link(s) wait for the operator:",
            s.name,
            s.attention.len()
        );
        for a in &s.attention {
            let what = match &a.field {
                Some(f) => format!("{} conflict on {f}", a.records.join(" / ")),
                None => format!("{} {}", a.records.join(" / "), a.kind),
            };
            println!("  {what}: {}\n    settle: {}", a.detail, a.hint);
        }
    }
    for s in list.iter().filter(|s| !s.ambiguous.is_empty()) {
        println!(
            "\nSync `{}`: {} ambiguous match(es) wait for a decision:",
            s.name,
            s.ambiguous.len()
        );
        for p in &s.ambiguous {
            println!(
                "  A: {} / B: {} ({}: {}): {}",
                if p.a.is_empty() {
                    "-".into()
                } else {
                    p.a.join(", ")
                },
                if p.b.is_empty() {
                    "-".into()
                } else {
                    p.b.join(", ")
                },
                p.email,
                p.reason,
                crate::sync::run::resolve_hint(&s.name, &p.a, &p.b)
            );
        }
    }
}

fn print_logs(cfg: &crate::config::SyncConfig, logs: &[RunLog], limit: usize, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "sync": cfg.name, "runs": logs }))
                .expect("logs serialise")
        );
        return;
    }
    if logs.is_empty() {
        println!(
            "Sync `{}` has not run yet: `tandem sync run {}`",
            cfg.name, cfg.name
        );
        return;
    }
    let (a, b) = (cfg.a.as_str(), cfg.b.as_str());
    for l in logs {
        let r = &l.run;
        let took = r
            .ended_at
            .map(|e| format!(", {} s", e - r.started_at))
            .unwrap_or_default();
        println!(
            "Run #{} ({}, {}) started {}{took}{}",
            r.id,
            r.kind,
            r.outcome,
            when(r.started_at),
            r.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        if let Some(req) = &r.requests {
            println!("{}", requests_line(req, a, b));
        }
        if !r.counters.is_empty() {
            println!("{}", counters_table(&r.counters, a, b));
        }
        if l.events.is_empty() {
            println!("No record events.\n");
            continue;
        }
        let mut t = table(vec!["Direction", "Action", "Entity", "Records", "Reason"]);
        let shown = if limit == 0 { l.events.len() } else { limit };
        for e in l.events.iter().take(shown) {
            t.add_row(vec![
                e.direction.between(a, b),
                e.action.clone(),
                e.entity.clone(),
                e.records.join(" "),
                e.reason.clone(),
            ]);
        }
        println!("{t}");
        if l.events.len() > shown {
            println!(
                "… and {} more events (--limit 0 shows all)",
                l.events.len() - shown
            );
        }
        println!();
    }
}

/// A run's API requests per side, each with its account's fullest quota window as the
/// run ended: `API requests: 12 to crm (A; quota: 40 of 1000 per 3600 s), 3 to mail (B)`.
fn requests_line(r: &SidePair<Requests>, a: &str, b: &str) -> String {
    let side = |req: &Requests, name: &str, letter: &str| {
        let fullest = req
            .windows
            .iter()
            .filter(|w| w.limit > 0)
            .max_by(|x, y| (x.used * y.limit).cmp(&(y.used * x.limit)))
            .map(|w| format!("{} of {} per {} s", w.used, w.limit, w.period_secs));
        let app = req.app.as_ref().map(|q| match q.limit {
            Some(l) => format!("the app says {} of {l} left", q.remaining),
            None => format!("the app says {} left", q.remaining),
        });
        let quota: Vec<String> = fullest.into_iter().chain(app).collect();
        if quota.is_empty() {
            format!("{} to {name} ({letter})", req.sent)
        } else {
            format!(
                "{} to {name} ({letter}; quota: {})",
                req.sent,
                quota.join(", ")
            )
        }
    };
    format!(
        "API requests: {}, {}",
        side(&r.a, a, "A"),
        side(&r.b, b, "B")
    )
}

/// The sync and the resolution a `resolve` command asks for (clap has checked that
/// exactly one of --link, --keep-apart, --take (with --field) and --release is given).
fn resolution(cmd: SyncCommand) -> anyhow::Result<(String, crate::app::Resolution)> {
    use crate::app::Resolution;
    let SyncCommand::Resolve {
        name,
        link,
        keep_apart,
        field,
        take,
        release,
        record,
    } = cmd
    else {
        bail!("not a resolve command");
    };
    let pair = |ids: Vec<String>| (ids[0].clone(), ids[1].clone());
    let r = match (link, keep_apart, take, field, release, record) {
        (Some(ids), ..) => {
            let (a, b) = pair(ids);
            Resolution::Link { a, b }
        }
        (None, Some(ids), ..) => {
            let (a, b) = pair(ids);
            Resolution::KeepApart { a, b }
        }
        (None, None, Some(side), Some(field), _, Some(record)) => Resolution::Take {
            record,
            field,
            side: if side == "a" { Side::A } else { Side::B },
        },
        (None, None, None, _, true, Some(record)) => Resolution::Release { record },
        _ => bail!(
            "say one of --link A-ID B-ID, --keep-apart A-ID B-ID, --field F --take a|b RECORD, --release RECORD"
        ),
    };
    Ok((name, r))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn resolve(args: &[&str]) -> Result<SyncCommand, clap::Error> {
        let mut argv = vec!["tandem", "sync", "resolve", "s"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| match c.command {
            Command::Sync(cmd) => cmd,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn resolve_takes_one_of_link_keep_apart_take_or_release() {
        assert!(matches!(
            resolve(&["--field", "job_title", "--take", "b", "a:17"]).unwrap(),
            SyncCommand::Resolve { take: Some(t), field: Some(f), record: Some(r), .. }
                if t == "b" && f == "job_title" && r == "a:17"
        ));
        assert!(matches!(
            resolve(&["--release", "17"]).unwrap(),
            SyncCommand::Resolve { release: true, record: Some(r), .. } if r == "17"
        ));
        assert!(matches!(
            resolve(&["--link", "1", "2"]).unwrap(),
            SyncCommand::Resolve { link: Some(_), .. }
        ));
        // Something to do, and only one thing.
        assert!(resolve(&[]).is_err());
        assert!(
            resolve(&["--take", "a", "17"]).is_err(),
            "--take needs --field"
        );
        assert!(resolve(&["--field", "x", "--take", "c", "17"]).is_err());
        assert!(
            resolve(&["--field", "x", "--take", "a"]).is_err(),
            "needs a record"
        );
        assert!(resolve(&["--release"]).is_err(), "needs a record");
        assert!(resolve(&["--release", "17", "--link", "1", "2"]).is_err());
    }

    /// `sync logs` names each side's requests and the fullest quota window, or the
    /// app's own count when it sent one.
    #[test]
    fn a_runs_requests_are_one_line_per_run() {
        use crate::sync::state::{AppQuota, QuotaUse};
        let a = Requests {
            sent: 12,
            windows: vec![
                QuotaUse {
                    limit: 1000,
                    period_secs: 3600,
                    used: 40,
                },
                QuotaUse {
                    limit: 50,
                    period_secs: 60,
                    used: 10,
                },
            ],
            app: Some(AppQuota {
                remaining: 7,
                limit: Some(9),
            }),
        };
        let b = Requests {
            sent: 3,
            ..Requests::default()
        };
        assert_eq!(
            requests_line(&SidePair::new(a, b), "crm", "mail"),
            "API requests: 12 to crm (A; quota: 10 of 50 per 60 s, the app says 7 of 9 left), 3 to mail (B)"
        );
    }
}
