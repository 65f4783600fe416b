//! `tandem sync plan | run | status | logs | resolve | pause | resume | disconnect`.
//!
//! Every command opens the state file itself. When the daemon holds it (`tandem run`),
//! `status`, `logs`, `pause`, `resume`, `disconnect`, `run` and `resolve` talk to the daemon's
//! control API instead, if `[daemon]` has a token.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use serde_json::json;

use crate::app::report::{RunLog, RunSummary, SyncSummary};
use crate::app::{Host, HostError, HostOptions, PreparedSync, RunProgress, StateFileError};
use crate::config::{self, Catalog, Config, Env};
use crate::sync::model::{Side, Value};
use crate::sync::plan::{OpKind, Plan};
use crate::sync::state::Counters;
use crate::sync::{RunOptions, RunOutcome, RunReport};

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
    let host = match Host::open(config.clone(), HostOptions::new(&command)) {
        Ok(h) => h,
        Err(HostError::StateFile(e @ StateFileError::Locked { .. })) => {
            return remote(cmd, &config, e).await;
        }
        Err(e) => return Err(e.into()),
    };
    match cmd {
        SyncCommand::Plan {
            name,
            full,
            limit,
            json,
        } => plan(&host, &name, full, limit, json).await,
        SyncCommand::Run {
            name,
            full,
            force,
            json,
        } => run_once(&host, &name, full, force, json).await,
        SyncCommand::Status { name, json } => {
            print_status(&host.status(name.as_deref())?, json);
            Ok(())
        }
        SyncCommand::Logs {
            name,
            run,
            runs,
            limit,
            json,
        } => {
            let logs = host.logs(&name, run, runs)?;
            if let Some(id) = run
                && logs.is_empty()
            {
                bail!(
                    "sync `{name}` has no run {id}; `tandem sync logs {name} --runs 10` lists the latest"
                );
            }
            print_logs(&host.sync_config(&name)?.clone(), &logs, limit, json);
            Ok(())
        }
        SyncCommand::Resolve { .. } => {
            let (name, r) = resolution(cmd)?;
            println!("{}", host.apply_resolution(&name, &r)?);
            Ok(())
        }
        SyncCommand::Pause { name } => {
            host.pause(&name)?;
            println!(
                "sync `{name}` paused: nothing is read or written until `tandem sync resume {name}`"
            );
            Ok(())
        }
        SyncCommand::Resume { name } => {
            host.resume(&name)?;
            println!(
                "sync `{name}` resumed: it runs on its schedule (or now with `tandem sync run {name}`)"
            );
            Ok(())
        }
        SyncCommand::Disconnect { name, yes } => {
            host.sync_config(&name)?;
            confirm_disconnect(&name, yes)?;
            let n = host.disconnect(&name)?;
            println!(
                "sync `{name}` disconnected: {n} state and log rows wiped; it stays paused (resume starts a fresh initial sync)"
            );
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

/// `a-to-b` -> `freshsales → freshmarketer`.
fn direction(dir: &str, a: &str, b: &str) -> String {
    match dir {
        "a-to-b" => format!("{a} → {b}"),
        "b-to-a" => format!("{b} → {a}"),
        "both" => format!("{a} ↔ {b}"),
        other => other.to_string(),
    }
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

async fn plan(host: &Host, name: &str, full: bool, limit: usize, json: bool) -> anyhow::Result<()> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let p = host.prepare(name, rx).await?;
    let progress = Progress::start(&p, json);
    let report = host
        .run_prepared(
            &p,
            RunOptions {
                dry_run: true,
                full,
                ..RunOptions::default()
            },
        )
        .await;
    progress.finish().await;
    let report = report?;
    let plan = &report.plan;
    let (a, b) = (&p.names.0, &p.names.1);
    let linked = new_links(host, name, plan)?;
    let summary = plan.summary();
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &plan.skips {
        *skipped
            .entry(crate::sync::state::direction_to(s.side.other()))
            .or_default() += 1;
    }
    if json {
        let out = json!({
            "sync": name,
            "a": a,
            "b": b,
            "summary": {
                "a-to-b": summary.b,
                "b-to-a": summary.a,
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
    for (dir, s) in [("a-to-b", &summary.b), ("b-to-a", &summary.a)] {
        t.add_row(vec![
            direction(dir, a, b),
            s.create.to_string(),
            s.update.to_string(),
            s.delete.to_string(),
            s.add.to_string(),
            s.remove.to_string(),
            skipped.get(dir).copied().unwrap_or(0).to_string(),
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
            let dir = crate::sync::state::direction_to(op.side);
            t.add_row(vec![
                direction(dir, a, b),
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
            let dir = crate::sync::state::direction_to(s.side.other());
            *reasons
                .entry((direction(dir, a, b), s.reason.as_str()))
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

/// Links the plan would make between records not linked yet.
fn new_links(host: &Host, name: &str, plan: &Plan) -> anyhow::Result<usize> {
    let mut n = 0;
    for l in &plan.links {
        if l.ids.a.is_some() && l.ids.b.is_some() && host.store().link(name, &l.key)?.is_none() {
            n += 1;
        }
    }
    Ok(n)
}

// ----- run -----

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

async fn run_once(
    host: &Host,
    name: &str,
    full: bool,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    if host.paused_report(name)?.is_some() {
        bail!(
            "sync `{name}` is paused: nothing was read or written; `tandem sync resume {name}` first"
        );
    }
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let p = host.prepare(name, rx).await?;
    let progress = Progress::start(&p, json);
    let report = host
        .run_prepared(
            &p,
            RunOptions {
                full,
                force,
                ..RunOptions::default()
            },
        )
        .await;
    progress.finish().await;
    let report = report?;
    let summary = RunSummary::from(&report);
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_run(&report, &p.names.0, &p.names.1);
    }
    match &report.outcome {
        RunOutcome::Halted(m) => bail!(
            "sync `{name}` halted: {m}; review `tandem sync plan {name}`, then `tandem sync run {name} --force`"
        ),
        RunOutcome::Paused => bail!("sync `{name}` is paused; `tandem sync resume {name}` first"),
        _ => Ok(()),
    }
}

fn counters_table(counters: &BTreeMap<String, Counters>, a: &str, b: &str) -> Table {
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
            direction(dir, a, b),
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

fn print_run(r: &RunReport, a: &str, b: &str) {
    let outcome = match &r.outcome {
        RunOutcome::Completed => "completed".to_string(),
        RunOutcome::DryRun => "dry run".into(),
        RunOutcome::Paused => "paused: nothing read or written".into(),
        RunOutcome::Halted(m) => format!("HALTED: {m}"),
    };
    match r.run {
        Some(id) => println!("Sync `{}` run #{id}: {outcome}", r.sync),
        None => println!("Sync `{}`: {outcome}", r.sync),
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
    let mut t = table(vec![
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
    ]);
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
        t.add_row(vec![
            s.name.clone(),
            format!("{} ↔ {}", s.a, s.b),
            s.direction.clone(),
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
        ]);
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
                direction(&e.direction, a, b),
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

// ----- through the daemon -----

/// The daemon's control API, used when the daemon holds the state file.
struct Remote {
    base: String,
    token: String,
    client: reqwest::Client,
    /// Why the file could not be opened (who holds it), for when nobody answers.
    locked: String,
}

impl Remote {
    fn new(config: &Config, locked: &StateFileError) -> anyhow::Result<Self> {
        // Another `tandem sync run` (not the daemon) holds the file: name it, as
        // without a token; no control API can answer for it.
        let (Some(token), false) = (&config.daemon.token, locked.held_by_other_than_daemon())
        else {
            bail!("{locked}");
        };
        let token = token
            .read(&Env::process())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Remote {
            base: format!("http://{}", config.daemon.listen),
            token,
            client: reqwest::Client::new(),
            locked: match locked {
                StateFileError::Locked { path, owner, .. } => {
                    format!("the state file {} is in use by {owner}", path.display())
                }
                other => other.to_string(),
            },
        })
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<T> {
        self.send(method, path, None).await
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "{}, and the daemon's control API at {} does not answer (check [daemon] listen, or stop that process first)",
                self.locked, self.base
            )
        })?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .context("the control API answered with something other than JSON")?;
        if !status.is_success() {
            let msg = body
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("unknown error");
            bail!("the daemon refused: {msg}");
        }
        Ok(serde_json::from_value(body)?)
    }
}

async fn remote(cmd: SyncCommand, config: &Config, locked: StateFileError) -> anyhow::Result<()> {
    use reqwest::Method;
    let r = Remote::new(config, &locked)?;
    #[derive(Deserialize)]
    struct Syncs {
        syncs: Vec<SyncSummary>,
    }
    #[derive(Deserialize)]
    struct Logs {
        runs: Vec<RunLog>,
    }
    let cfg = |name: &str| -> anyhow::Result<crate::config::SyncConfig> {
        config.syncs.get(name).cloned().ok_or_else(|| {
            anyhow::anyhow!("there is no sync `{name}` in {}", config.file.display())
        })
    };
    match cmd {
        SyncCommand::Status { name, json } => {
            let mut list = r.call::<Syncs>(Method::GET, "/v1/syncs").await?.syncs;
            if let Some(n) = &name {
                cfg(n)?;
                list.retain(|s| &s.name == n);
            }
            print_status(&list, json);
        }
        SyncCommand::Logs {
            name,
            run,
            runs,
            limit,
            json,
        } => {
            let c = cfg(&name)?;
            let q = match run {
                Some(id) => format!("?run={id}"),
                None => format!("?runs={runs}"),
            };
            let logs = r
                .call::<Logs>(Method::GET, &format!("/v1/syncs/{name}/logs{q}"))
                .await?
                .runs;
            print_logs(&c, &logs, limit, json);
        }
        SyncCommand::Pause { name } => {
            r.call::<serde_json::Value>(Method::POST, &format!("/v1/syncs/{name}/pause"))
                .await?;
            println!("sync `{name}` paused (through the daemon)");
        }
        SyncCommand::Resume { name } => {
            r.call::<serde_json::Value>(Method::POST, &format!("/v1/syncs/{name}/resume"))
                .await?;
            println!("sync `{name}` resumed (through the daemon)");
        }
        SyncCommand::Disconnect { name, yes } => {
            cfg(&name)?;
            confirm_disconnect(&name, yes)?;
            let v = r
                .call::<serde_json::Value>(Method::POST, &format!("/v1/syncs/{name}/disconnect"))
                .await?;
            println!(
                "sync `{name}` disconnected through the daemon: {} rows wiped; it stays paused",
                v["wiped"]
            );
        }
        SyncCommand::Run {
            name,
            full,
            force,
            json,
        } => {
            let c = cfg(&name)?;
            let s: RunSummary = r
                .call(
                    Method::POST,
                    &format!("/v1/syncs/{name}/run?wait=true&full={full}&force={force}"),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "Sync `{name}` run {} through the daemon: {}",
                    s.run.map(|i| format!("#{i}")).unwrap_or_default(),
                    s.outcome
                );
                println!("{}", counters_table(&s.counters, &c.a, &c.b));
            }
        }
        cmd @ SyncCommand::Resolve { .. } => {
            let (name, res) = resolution(cmd)?;
            cfg(&name)?;
            let v: serde_json::Value = r
                .send(
                    Method::POST,
                    &format!("/v1/syncs/{name}/resolve"),
                    Some(serde_json::to_value(&res)?),
                )
                .await?;
            println!(
                "{} (through the daemon)",
                v["message"].as_str().unwrap_or("")
            );
        }
        SyncCommand::Plan { .. } => bail!("{locked}"),
    }
    Ok(())
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
}
