//! Sync benchmarks for the release note (issue 5): the real `tandem` host with the real
//! first-party wasm connectors against simulated Freshsales and Freshmarketer accounts.
//!
//! * **initial**: the initial two-way sync Freshsales <-> Freshmarketer of about
//!   `TANDEM_BENCH_RECORDS` (default 100,000) records in all at the end (both sides
//!   together; the seed generator draws each side from one population, so about half of
//!   the people exist on both sides and are matched by email), then one incremental run
//!   with nothing changed. Reports wall time, records/s, CPU of this process (host, engine
//!   and wasm connectors) against CPU of the simulated accounts, by phase of the run
//!   (observe: both sides listed through the connectors; plan: the pure planner and the
//!   plan recorded in redb; execute: writes through the connectors, results committed),
//!   requests used against the lower bound, and peak memory of both processes.
//! * **idle**: `TANDEM_BENCH_SYNCS` (default 1,000) syncs declared on one host, each
//!   between its own tenant's pair of accounts (`TANDEM_BENCH_IDLE_RECORDS`, default 20,
//!   records per account), run by the daemon's scheduler (`Daemon`); after their initial
//!   runs, `TANDEM_BENCH_CYCLES` (default 3) poll cycles (every sync run once, nothing
//!   changed): resident memory after each cycle, CPU and requests per cycle.
//!   `TANDEM_BENCH_STATE_CACHE` sets redb's page cache (`[state] cache-size`, e.g. "1GiB").
//!
//! The simulated accounts run in a child process (this executable again, with
//! `TANDEM_BENCH_CHILD` set) so that their CPU and memory are measured apart: the child
//! answers `usage` on its stdin with its own `getrusage`. Rate limits are off on both
//! sides; the Freshworks bulk-upsert jobs complete one second after submission, as the
//! simulator's default (like the real API, each batch of 100 creates waits for its job;
//! the connector keeps up to `bulk-jobs-in-flight`, default 4, jobs in flight at once).
//! The initial scenario prints a goal-vs-measured table: wall time (≤ 120 s at
//! 100,000 records), the simulated accounts' CPU below the host's, one status poll per
//! bulk job.
//!
//! Run: `cargo bench -p tandem --bench sync` (both scenarios at full size: several
//! minutes), or smaller: `TANDEM_BENCH_RECORDS=5000 TANDEM_BENCH_SYNCS=50 cargo bench -p
//! tandem --bench sync -- initial` (filters: `initial`, `idle`). Prints tables.

/// The allocator of the `tandem` binary (host/src/main.rs), so that the host measured here
/// allocates as the daemon does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use comfy_table::{ContentArrangement, Table, presets};
use futures::StreamExt;
use serde_json::json;
use tandem::app::daemon::Daemon;
use tandem::app::{Host, HostOptions, unix_now};
use tandem::config::{self, Catalog, Config, Env};
use tandem::conformance::SandboxControl;
use tandem::sync::model::SidePair;
use tandem::sync::run::{Aborted, Hooks, Point};
use tandem::sync::state::Flow;
use tandem::sync::{Engine, RunOptions, RunOutcome, RunReport};
use tandem_sandbox::{AccountInfo, AccountKind, Credentials, Sandbox, SandboxOptions, Sizes};

/// Freshworks' largest listing page and bulk write (contacts).
const PAGE: u64 = 100;
const BATCH: u64 = 100;

/// A run of two accounts seeded with `n` records each ends with about this many records
/// in all (the union of both sides, on both sides), measured on seed 1 at 38k (2.63 at
/// 1k): used to pick `n` from the total asked for.
const FINAL_PER_SEEDED: f64 = 2.55;

fn main() {
    tandem::allocator::configure();
    if let Ok(spec) = std::env::var("TANDEM_BENCH_CHILD") {
        child_main(&spec);
        return;
    }
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.replace('_', "").parse().ok())
            .unwrap_or(default)
    };
    let records = var("TANDEM_BENCH_RECORDS", 100_000);
    let syncs = var("TANDEM_BENCH_SYNCS", 1_000);
    let idle_records = var("TANDEM_BENCH_IDLE_RECORDS", 20);
    let cycles = var("TANDEM_BENCH_CYCLES", 3).max(1);
    // Filters from the command line (`cargo bench ... -- idle`); cargo's own flags ignored.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("machine: {} cores, {}", cores(), loadavg());
    if wanted("initial") {
        rt.block_on(initial(records));
        println!("\nload average after the initial sync: {}", loadavg());
    }
    if wanted("idle") {
        rt.block_on(idle(syncs as usize, idle_records as usize, cycles as usize));
        println!("\nload average after the idle syncs: {}", loadavg());
    }
}

// ---------------------------------------------------------------------------------------
// Scenario 1: the initial two-way sync.

async fn initial(records: u64) {
    let seeded = ((records as f64 / FINAL_PER_SEEDED).round() as usize).max(10);
    eprintln!("initial: seeding two accounts with {seeded} records each …");
    let mut child = SandboxChild::spawn(1, seeded);
    let dir = tempfile::tempdir().expect("temp dir");
    let host = open_host(dir.path(), &child.accounts, 1);
    let (fs, fm) = (&child.accounts[0], &child.accounts[1]);
    let (fs_ctl, fm_ctl) = (
        SandboxControl::for_account(&fs.info),
        SandboxControl::for_account(&fm.info),
    );
    // Plugins compiled (or read from the compile cache), connections checked: not timed.
    for c in ["fs0", "fm0"] {
        host.connection(c).await.expect("connection checked");
    }
    let before = (child.live_count(0), child.live_count(1));
    for c in [&fs_ctl, &fm_ctl] {
        c.clear_counters().await.expect("counters cleared");
    }

    let (_tx, paused) = tokio::sync::watch::channel(false);
    let p = host.prepare("s0", paused).await.expect("sync prepared");
    p.a.set_initial(true);
    p.b.set_initial(true);
    let child = Mutex::new(child);
    let phases = Phases::new(&child);
    phases.mark("start");
    let engine = Engine::new(
        &p.policy,
        host.store(),
        SidePair::new(&p.a, &p.b),
        &p.mappers,
    )
    .with_names(&p.names.0, &p.names.1)
    .with_hooks(&phases);
    let mut report = engine
        .run(RunOptions {
            now: unix_now(),
            ..RunOptions::default()
        })
        .await
        .expect("initial run");
    phases.mark("end");
    drop(engine);
    let marks = phases.marks.into_inner().expect("marks");
    let mut child = child.into_inner().expect("child lock");
    assert_eq!(
        report.outcome,
        RunOutcome::Completed,
        "{:?}",
        report.failures
    );
    let requests = (
        fs_ctl.api_requests().await.expect("counters"),
        fm_ctl.api_requests().await.expect("counters"),
    );
    let after = (child.live_count(0), child.live_count(1));

    // The report's plan (every op with its fields) is not printed: dropped here, as a
    // daemon drops a run's report once logged, so that it is not counted in the second
    // run's memory.
    drop(std::mem::take(&mut report.plan));
    // One more run with nothing changed: what a poll of a synced 100k pair costs.
    for c in [&fs_ctl, &fm_ctl] {
        c.clear_counters().await.expect("counters cleared");
    }
    let (s0, c0, t0) = (Usage::own(), child.usage(), Instant::now());
    let again = host
        .run_sync("s0", RunOptions::default())
        .await
        .expect("second run");
    let (wall2, s1, c1) = (t0.elapsed(), Usage::own(), child.usage());
    let requests2: u64 = fs_ctl
        .api_requests()
        .await
        .expect("counters")
        .values()
        .sum::<u64>()
        + fm_ctl
            .api_requests()
            .await
            .expect("counters")
            .values()
            .sum::<u64>();
    let own_peak = Usage::own().max_rss_kb;
    let (child_cpu, child_peak) = child.finish();
    drop(host);

    print_initial(&InitialRun {
        seeded,
        before,
        after,
        report: &report,
        marks: &marks,
        requests: &requests,
        own_peak,
        child_peak,
        child_total_cpu: child_cpu,
    });
    let writes2 = writes(&again);
    println!(
        "\nSecond run, nothing changed ({} records on each side): {:.2} s wall, CPU {:.2} s \
         here + {:.2} s simulated accounts, {requests2} requests, {writes2} writes, outcome {:?}",
        after.0.max(after.1),
        wall2.as_secs_f64(),
        (s1.cpu() - s0.cpu()).as_secs_f64(),
        (c1.cpu() - c0.cpu()).as_secs_f64(),
        again.outcome,
    );
}

/// Writes a run made, all directions.
fn writes(r: &RunReport) -> usize {
    r.counters
        .values()
        .map(|c| c.created + c.updated + c.removed)
        .sum()
}

struct InitialRun<'a> {
    seeded: usize,
    before: (usize, usize),
    after: (usize, usize),
    report: &'a RunReport,
    marks: &'a [Mark],
    requests: &'a (BTreeMap<String, u64>, BTreeMap<String, u64>),
    own_peak: u64,
    child_peak: u64,
    child_total_cpu: Duration,
}

fn print_initial(r: &InitialRun) {
    let total_after = r.after.0 + r.after.1;
    let first = &r.marks[0];
    let last = &r.marks[r.marks.len() - 1];
    let wall = last.at - first.at;
    let own = last.own.cpu() - first.own.cpu();
    let sim = last.child.cpu() - first.child.cpu();
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let share = |part: Duration, whole: Duration| {
        format!(
            "{:.0}%",
            100.0 * part.as_secs_f64() / whole.as_secs_f64().max(1e-9)
        )
    };

    println!(
        "\n## Initial two-way sync Freshsales <-> Freshmarketer ({} records in all at the end)\n",
        total_after
    );
    let mut t = table(&["", "value"]);
    let c = |dir: Flow| r.report.counters.get(&dir).cloned().unwrap_or_default();
    let (to_b, to_a) = (c(Flow::AToB), c(Flow::BToA));
    let linked: usize = r.report.counters.values().map(|c| c.linked).sum();
    let rows: Vec<(String, String)> = vec![
        (
            "records before (Freshsales + Freshmarketer)".into(),
            format!(
                "{} + {} = {} (seeded {} each)",
                r.before.0,
                r.before.1,
                r.before.0 + r.before.1,
                r.seeded
            ),
        ),
        (
            "records after".into(),
            format!("{} + {} = {total_after}", r.after.0, r.after.1),
        ),
        ("linked (matched by email)".into(), linked.to_string()),
        (
            "created in Freshmarketer / in Freshsales".into(),
            format!("{} / {}", to_b.created, to_a.created),
        ),
        (
            "updated in Freshmarketer / in Freshsales".into(),
            format!("{} / {}", to_b.updated, to_a.updated),
        ),
        (
            "skipped, failed, parked".into(),
            format!(
                "{}, {}, {}",
                r.report.counters.values().map(|c| c.skipped).sum::<usize>(),
                r.report.counters.values().map(|c| c.failed).sum::<usize>(),
                r.report.counters.values().map(|c| c.parked).sum::<usize>()
            ),
        ),
        ("wall time".into(), secs(wall)),
        (
            "records/s (records in all at the end / wall)".into(),
            format!("{:.0}", total_after as f64 / wall.as_secs_f64()),
        ),
        (
            "CPU of the bench process (host, engine, wasm connectors)".into(),
            format!("{} ({} of one core)", secs(own), share(own, wall)),
        ),
        (
            "CPU of the simulated accounts (child process)".into(),
            format!("{} ({} of one core)", secs(sim), share(sim, wall)),
        ),
        ("host's share of the CPU used".into(), share(own, own + sim)),
        (
            "peak RSS, bench process (host)".into(),
            format!("{:.0} MiB", r.own_peak as f64 / 1024.0),
        ),
        (
            "peak RSS, simulated accounts (child, seeding included)".into(),
            format!("{:.0} MiB", r.child_peak as f64 / 1024.0),
        ),
        (
            "CPU of the child in all (seeding included)".into(),
            secs(r.child_total_cpu),
        ),
    ];
    for (k, v) in rows {
        t.add_row(vec![k, v]);
    }
    println!("{t}");

    print_initial_goals(r, wall, own, sim, total_after);

    println!("\n### By phase of the run\n");
    let mut t = table(&[
        "phase",
        "wall",
        "CPU here (user+sys)",
        "CPU simulated accounts",
        "CPU here / wall",
        "host RSS at the end (peak so far)",
    ]);
    for w in r.marks.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let wall = b.at - a.at;
        let own = b.own.cpu() - a.own.cpu();
        t.add_row(vec![
            format!("{} → {}", a.label, b.label),
            secs(wall),
            format!(
                "{} (user {:.1}, sys {:.1})",
                secs(own),
                (b.own.user - a.own.user).as_secs_f64(),
                (b.own.system - a.own.system).as_secs_f64()
            ),
            secs(b.child.cpu() - a.child.cpu()),
            share(own, wall),
            format!(
                "{:.0} MiB ({:.0} MiB)",
                b.rss as f64 / 1024.0,
                b.own.max_rss_kb as f64 / 1024.0
            ),
        ]);
    }
    println!("{t}");

    println!("\n### API requests\n");
    let (fs_req, fm_req) = r.requests;
    let mut t = table(&[
        "account",
        "requests",
        "lower bound",
        "over bound",
        "API bound",
        "over API bound",
        "requests by endpoint",
    ]);
    for (name, req, listed, writes) in [
        ("Freshsales", fs_req, r.before.0, &to_a),
        ("Freshmarketer", fm_req, r.before.1, &to_b),
    ] {
        let per = |n: usize, size: u64| (n as u64).div_ceil(size);
        let pages = per(listed, PAGE).max(1);
        let lower = pages
            + per(writes.created, BATCH)
            + per(writes.updated, BATCH)
            + per(writes.removed, BATCH);
        // The API at best: no bulk update by id (one PUT per update); a bulk upsert is
        // an asynchronous job (submit, status, read-back per 100).
        let api = pages + 3 * per(writes.created, BATCH) + writes.updated as u64;
        let used: u64 = req.values().sum();
        let over = |b: u64| format!("{:+.0}%", (used as f64 / b.max(1) as f64 - 1.0) * 100.0);
        let endpoints: Vec<String> = req.iter().map(|(e, c)| format!("{e} ×{c}")).collect();
        t.add_row(vec![
            name.to_owned(),
            used.to_string(),
            lower.to_string(),
            over(lower),
            api.to_string(),
            over(api),
            endpoints.join(", "),
        ]);
    }
    println!("{t}");
    println!(
        "\nlower bound: listing pages of {PAGE} + writes in batches of {BATCH} (creates, updates, \
         deletes). API bound: listing pages + 3 requests per {BATCH} creates (bulk_upsert, job \
         status, read-back) + one PUT per update (Freshworks has no bulk update by id)."
    );
}

/// The goals of issue 14 for the initial sync (items 5 and 6) against what this run
/// measured. The wall-time goal is set at 100,000 records; at other sizes it is scaled
/// in proportion (a quick look, not the goal itself).
fn print_initial_goals(r: &InitialRun, wall: Duration, own: Duration, sim: Duration, total: usize) {
    const GOAL_RECORDS: f64 = 100_000.0;
    const GOAL_WALL_SECS: f64 = 120.0;
    let scale = total as f64 / GOAL_RECORDS;
    let goal_wall = GOAL_WALL_SECS * scale;
    let mark = |met: bool| if met { "met" } else { "MISSED" }.to_owned();
    let (fs_req, fm_req) = r.requests;
    let by = |part: &str| -> u64 {
        fs_req
            .iter()
            .chain(fm_req.iter())
            .filter(|(e, _)| e.contains(part))
            .map(|(_, n)| n)
            .sum()
    };
    let (jobs, polls) = (by("bulk_upsert"), by("job_statuses"));
    println!("\n### Goal vs measured\n");
    let mut t = table(&["", "goal", "measured", ""]);
    t.add_row(vec![
        "wall time".to_owned(),
        if (scale - 1.0).abs() < 0.05 {
            format!("≤ {GOAL_WALL_SECS:.0} s")
        } else {
            format!(
                "≤ {goal_wall:.1} s ({GOAL_WALL_SECS:.0} s at {GOAL_RECORDS:.0} records, scaled to {total})"
            )
        },
        format!("{:.1} s", wall.as_secs_f64()),
        mark(wall.as_secs_f64() <= goal_wall),
    ]);
    t.add_row(vec![
        "CPU of the simulated accounts".to_owned(),
        format!("< CPU of the host ({:.1} s)", own.as_secs_f64()),
        format!("{:.1} s", sim.as_secs_f64()),
        mark(sim < own),
    ]);
    // Jobs in flight together must not cost more requests than one at a time: each job
    // finishes within its first wait, so one status poll per job.
    t.add_row(vec![
        "bulk-upsert status polls".to_owned(),
        format!("= bulk-upsert jobs ({jobs})"),
        polls.to_string(),
        mark(polls == jobs),
    ]);
    println!("{t}");
}

// ---------------------------------------------------------------------------------------
// Scenario 2: many idle syncs on one host.

async fn idle(syncs: usize, records: usize, cycles: usize) {
    eprintln!("idle: starting {syncs} pairs of accounts with {records} records each …");
    let mut child = SandboxChild::spawn(syncs, records);
    let dir = tempfile::tempdir().expect("temp dir");
    let rss_before = rss_kb();
    let (s0, c0, t0) = (Usage::own(), child.usage(), Instant::now());
    let host = Arc::new(open_host(dir.path(), &child.accounts, syncs));
    let daemon = Daemon::start(host.clone()).expect("daemon started");
    let names: Vec<String> = (0..syncs).map(|i| format!("s{i}")).collect();
    // The daemon starts every sync's first run at once; `run_now` waits for it, then
    // runs once more: after this every sync is synced and has polled once.
    let first = poll_all(&daemon, &names).await;
    let (startup, s1, c1) = (t0.elapsed(), Usage::own(), child.usage());
    let rss_synced = rss_kb();
    // One client for every account's control API: a client per account would put
    // 2,000 clients' TLS roots and pools into the RSS measured as the host's.
    let http = reqwest::Client::new();
    let controls: Vec<SandboxControl> = child
        .accounts
        .iter()
        .map(|a| SandboxControl::for_account_with(&a.info, http.clone()))
        .collect();
    each(&controls, |c| async move {
        c.clear_counters().await.expect("counters cleared");
    })
    .await;

    let mut rows = Vec::new();
    for _ in 0..cycles {
        let (s, c, t) = (Usage::own(), child.usage(), Instant::now());
        let cycle = poll_all(&daemon, &names).await;
        rows.push((
            t.elapsed(),
            Usage::own().cpu() - s.cpu(),
            child.usage().cpu() - c.cpu(),
            cycle,
            rss_kb(),
        ));
    }
    let rss_after = rss_kb();
    let requests: Vec<BTreeMap<String, u64>> = each(&controls, |c| async move {
        c.api_requests().await.expect("counters")
    })
    .await;
    let mut endpoints: BTreeMap<String, u64> = BTreeMap::new();
    for r in &requests {
        for (e, n) in r {
            *endpoints.entry(e.clone()).or_default() += n;
        }
    }
    let own_peak = Usage::own().max_rss_kb;
    daemon.shutdown(Duration::from_secs(5)).await;
    drop(daemon);
    drop(host);
    let (_, child_peak) = child.finish();

    println!(
        "\n## {syncs} idle syncs on one host (Freshsales <-> Freshmarketer, one pair of accounts \
         per sync, {records} records per account)\n"
    );
    let mib = |kb: u64| format!("{:.0} MiB", kb as f64 / 1024.0);
    let mut t = table(&["", "value"]);
    let rows_kv: Vec<(String, String)> = vec![
        (
            "start-up: first runs of every sync + one poll".into(),
            format!(
                "{:.1} s wall, CPU {:.1} s here + {:.1} s simulated accounts; {} ok, {} errors, {} writes",
                startup.as_secs_f64(),
                (s1.cpu() - s0.cpu()).as_secs_f64(),
                (c1.cpu() - c0.cpu()).as_secs_f64(),
                first.ok,
                first.errors,
                first.writes
            ),
        ),
        ("RSS before the host opened".into(), mib(rss_before)),
        ("RSS with every sync synced".into(), mib(rss_synced)),
        (
            format!("RSS after {cycles} poll cycles"),
            format!(
                "{} ({:.1} KiB per sync over the RSS before)",
                mib(rss_after),
                (rss_after.saturating_sub(rss_before)) as f64 / syncs as f64
            ),
        ),
        ("peak RSS of the bench process".into(), mib(own_peak)),
        ("peak RSS of the simulated accounts".into(), mib(child_peak)),
    ];
    for (k, v) in rows_kv {
        t.add_row(vec![k, v]);
    }
    println!("{t}\n");
    let mut t = table(&[
        "poll cycle",
        "wall",
        "CPU here",
        "CPU here per sync",
        "CPU simulated accounts",
        "runs ok / errors",
        "writes",
        "RSS after",
    ]);
    for (i, (wall, own, sim, cycle, rss)) in rows.iter().enumerate() {
        t.add_row(vec![
            (i + 1).to_string(),
            format!("{:.2} s", wall.as_secs_f64()),
            format!("{:.2} s", own.as_secs_f64()),
            format!("{:.2} ms", own.as_secs_f64() * 1000.0 / syncs as f64),
            format!("{:.2} s", sim.as_secs_f64()),
            format!("{} / {}", cycle.ok, cycle.errors),
            cycle.writes.to_string(),
            mib(*rss),
        ]);
    }
    println!("{t}");
    let total: u64 = endpoints.values().sum();
    let per_cycle: Vec<String> = endpoints
        .iter()
        .map(|(e, n)| format!("{e} ×{:.1}", *n as f64 / (cycles * syncs) as f64))
        .collect();
    println!(
        "\nrequests per cycle: {:.0} ({:.2} per sync: {})",
        total as f64 / cycles as f64,
        total as f64 / (cycles * syncs) as f64,
        per_cycle.join(", ")
    );
    if let Some(e) = &first.first_error {
        println!("first error: {e}");
    }
}

#[derive(Default)]
struct Cycle {
    ok: usize,
    errors: usize,
    writes: usize,
    first_error: Option<String>,
}

/// Every sync run once through the daemon, all at once (as when their intervals fall
/// together).
async fn poll_all(daemon: &Daemon, names: &[String]) -> Cycle {
    let runs = futures::future::join_all(
        names
            .iter()
            .map(|n| daemon.run_now(n, RunOptions::default())),
    )
    .await;
    let mut cycle = Cycle::default();
    for r in runs {
        match r {
            Ok(report) if report.outcome == RunOutcome::Completed => {
                cycle.ok += 1;
                cycle.writes += writes(&report);
            }
            Ok(report) => {
                cycle.errors += 1;
                cycle
                    .first_error
                    .get_or_insert_with(|| format!("{:?}", report.outcome));
            }
            Err(e) => {
                cycle.errors += 1;
                cycle.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    cycle
}

/// `f` on every control, 32 at a time.
async fn each<'a, T, F, Fut>(controls: &'a [SandboxControl], f: F) -> Vec<T>
where
    F: Fn(&'a SandboxControl) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures::stream::iter(controls.iter().map(f))
        .buffered(32)
        .collect()
        .await
}

// ---------------------------------------------------------------------------------------
// The host.

/// A host over `pairs` syncs `s{i}`: Freshsales `fs{i}` <-> Freshmarketer `fm{i}`, two-way,
/// every contact, default field mapping (the demo's pairing without its list scope and
/// mapper), rate limits off.
fn open_host(dir: &Path, accounts: &[ChildAccount], pairs: usize) -> Host {
    // `TANDEM_BENCH_STATE_CACHE`: redb's page cache (`[state] cache-size`), e.g. "1GiB".
    let cache = std::env::var("TANDEM_BENCH_STATE_CACHE")
        .map(|c| format!("cache-size = \"{c}\"\n"))
        .unwrap_or_default();
    let mut toml = format!("[state]\npath = \"state.redb\"\n{cache}");
    toml.push_str(
        r#"

[plugins.freshsales]
builtin = "freshsales"
[plugins.freshsales.grant]
http = ["setting:base-url"]
loopback = true
storage-quota = "1MiB"

[plugins.freshmarketer]
builtin = "freshmarketer"
[plugins.freshmarketer.grant]
http = ["setting:base-url"]
loopback = true
storage-quota = "1MiB"
"#,
    );
    let mut env = Env::process();
    for a in accounts {
        let (prefix, plugin, extra) = match a.info.kind {
            AccountKind::FreshsalesSuite => ("fs", "freshsales", "edition = \"suite\"\n"),
            _ => ("fm", "freshmarketer", ""),
        };
        let name = format!("{prefix}{}", a.pair);
        let upper = name.to_uppercase();
        toml.push_str(&format!(
            "\n[connections.{name}]\nplugin = \"{plugin}\"\n[connections.{name}.settings]\n\
             domain = \"{name}.myfreshworks.com\"\nbase-url = {{ env = \"BENCH_{upper}_URL\" }}\n\
             {extra}[connections.{name}.credentials]\napi-key = {{ env = \"BENCH_{upper}_KEY\" }}\n"
        ));
        let Credentials::ApiKey { api_key, .. } = &a.info.credentials else {
            unreachable!("Freshworks accounts have API keys")
        };
        env = env
            .with(format!("BENCH_{upper}_URL"), a.info.api_base.clone())
            .with(format!("BENCH_{upper}_KEY"), api_key.clone());
    }
    for i in 0..pairs {
        toml.push_str(&format!(
            "\n[syncs.s{i}]\na = \"fs{i}\"\nb = \"fm{i}\"\nentities = \"contacts\"\n\
             direction = \"two-way\"\ninterval = \"1h\"\n"
        ));
    }
    let file = dir.join("bench.toml");
    std::fs::write(&file, &toml).expect("config written");
    let config: Config = config::parse_str(&file, &toml, &env).expect("config parses");
    let problems = config::check(&config, &env, &Catalog::builtin());
    assert!(problems.is_empty(), "config: {}", problems[0]);
    let mut opts = HostOptions::new("tandem bench");
    opts.env = env;
    opts.rate_limits = false;
    // Compiled plugins are kept between bench runs (compiling is not what is measured).
    opts.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-compile-cache"));
    Host::open(config, opts).expect("host opens")
}

// ---------------------------------------------------------------------------------------
// Phases of a run, with both processes' CPU at each point.

struct Mark {
    label: &'static str,
    at: Instant,
    own: Usage,
    child: Usage,
    /// The host's resident memory at the mark (KiB).
    rss: u64,
}

struct Phases<'a> {
    child: &'a Mutex<SandboxChild>,
    marks: Mutex<Vec<Mark>>,
}

impl<'a> Phases<'a> {
    fn new(child: &'a Mutex<SandboxChild>) -> Self {
        Phases {
            child,
            marks: Mutex::new(Vec::new()),
        }
    }

    fn mark(&self, label: &'static str) {
        let child = self.child.lock().expect("child lock").usage();
        let mut marks = self.marks.lock().expect("marks");
        // A point reached again (one per batch) moves its mark to the latest time.
        if marks.last().is_some_and(|m| m.label == label) {
            marks.pop();
        }
        marks.push(Mark {
            label,
            at: Instant::now(),
            own: Usage::own(),
            child,
            rss: rss_kb(),
        });
    }
}

impl Hooks for Phases<'_> {
    fn at(&self, point: Point) -> Result<(), Aborted> {
        let label = match point {
            Point::Observed => "observed",
            Point::Recorded => "planned",
            Point::BeforeCursors => "executed",
            _ => return Ok(()),
        };
        self.mark(label);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Resource usage.

#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    user: Duration,
    system: Duration,
    max_rss_kb: u64,
}

impl Usage {
    /// `getrusage(RUSAGE_SELF)`.
    fn own() -> Usage {
        // SAFETY: getrusage writes into the zeroed struct we own and reads nothing else.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut ru);
            ru
        };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Usage {
            user: tv(ru.ru_utime),
            system: tv(ru.ru_stime),
            max_rss_kb: ru.ru_maxrss as u64,
        }
    }

    fn cpu(&self) -> Duration {
        self.user + self.system
    }

    fn to_json(self) -> serde_json::Value {
        json!({"user_us": self.user.as_micros() as u64, "system_us": self.system.as_micros() as u64,
               "max_rss_kb": self.max_rss_kb})
    }

    fn from_json(v: &serde_json::Value) -> Usage {
        let n = |k: &str| v[k].as_u64().expect("usage field");
        Usage {
            user: Duration::from_micros(n("user_us")),
            system: Duration::from_micros(n("system_us")),
            max_rss_kb: n("max_rss_kb"),
        }
    }
}

/// Resident set size now, from `/proc/self/status`.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<&str> = l.split_whitespace().take(3).collect();
    format!("load average {}", v.join(" "))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_MARKDOWN)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

// ---------------------------------------------------------------------------------------
// The simulated accounts in a child process.

/// One account the child serves.
struct ChildAccount {
    pair: usize,
    info: AccountInfo,
}

/// The child process: this executable with `TANDEM_BENCH_CHILD=PAIRS:RECORDS`.
struct SandboxChild {
    process: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    accounts: Vec<ChildAccount>,
}

impl SandboxChild {
    fn spawn(pairs: usize, records: usize) -> SandboxChild {
        let mut process = Command::new(std::env::current_exe().expect("own path"))
            .env("TANDEM_BENCH_CHILD", format!("{pairs}:{records}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("child started");
        let stdin = process.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(process.stdout.take().expect("stdout"));
        let mut accounts = Vec::new();
        loop {
            let mut line = String::new();
            let n = stdout.read_line(&mut line).expect("child output");
            assert!(
                n > 0,
                "the simulated accounts stopped before they were ready"
            );
            if line.trim() == "ready" {
                break;
            }
            let v: serde_json::Value = serde_json::from_str(&line).expect("account line");
            let s = |k: &str| v[k].as_str().expect("account field").to_owned();
            let kind = if s("name") == "freshsales" {
                AccountKind::FreshsalesSuite
            } else {
                AccountKind::Freshmarketer
            };
            accounts.push(ChildAccount {
                pair: v["pair"].as_u64().expect("pair") as usize,
                info: AccountInfo {
                    kind,
                    name: s("name"),
                    base_url: s("base_url"),
                    api_base: s("api_base"),
                    control_url: s("control_url"),
                    credentials: Credentials::ApiKey {
                        api_key: s("api_key"),
                        restricted_api_key: String::new(),
                    },
                },
            });
        }
        SandboxChild {
            process,
            stdin,
            stdout,
            accounts,
        }
    }

    /// The child's `getrusage(RUSAGE_SELF)`.
    fn usage(&mut self) -> Usage {
        writeln!(self.stdin, "usage").expect("ask the child");
        self.stdin.flush().expect("ask the child");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("child answer");
        Usage::from_json(&serde_json::from_str(&line).expect("usage JSON"))
    }

    /// The live contacts of account `ix` (in the order the child printed them), counted
    /// by the child: the list of every record's id is the child's memory, not the host's.
    fn live_count(&mut self, ix: usize) -> usize {
        writeln!(self.stdin, "count {ix}").expect("ask the child");
        self.stdin.flush().expect("ask the child");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("child answer");
        line.trim().parse().expect("a count")
    }

    /// Stops the child: (CPU in all, peak RSS in KiB).
    fn finish(mut self) -> (Duration, u64) {
        let last = self.usage();
        drop(self.stdin);
        self.process.wait().expect("child exits");
        (last.cpu(), last.max_rss_kb)
    }
}

/// The child: starts `PAIRS` pairs of simulated Freshsales and Freshmarketer accounts with
/// `RECORDS` records each, prints them, then answers `usage` until its stdin closes.
fn child_main(spec: &str) {
    let (pairs, records) = spec
        .split_once(':')
        .and_then(|(p, r)| Some((p.parse::<usize>().ok()?, r.parse::<usize>().ok()?)))
        .expect("TANDEM_BENCH_CHILD=PAIRS:RECORDS");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let sandboxes: Vec<Sandbox> = rt.block_on(async {
        let mut out = Vec::with_capacity(pairs);
        for i in 0..pairs {
            out.push(
                Sandbox::start(SandboxOptions {
                    seed: 1 + i as u64,
                    sizes: Sizes {
                        freshsales: records,
                        freshsales_classic: 0,
                        freshmarketer: records,
                        google: 0,
                    },
                    rate_limits_enabled: false,
                    kinds: vec![AccountKind::FreshsalesSuite, AccountKind::Freshmarketer],
                    ..SandboxOptions::default()
                })
                .await
                .expect("simulated accounts start"),
            );
        }
        out
    });
    let mut stdout = std::io::stdout().lock();
    let mut printed: Vec<AccountInfo> = Vec::new();
    for (pair, s) in sandboxes.iter().enumerate() {
        for a in s.accounts() {
            let Credentials::ApiKey { api_key, .. } = &a.credentials else {
                continue;
            };
            let line = json!({"pair": pair, "name": a.name, "base_url": a.base_url,
                "api_base": a.api_base, "control_url": a.control_url, "api_key": api_key});
            writeln!(stdout, "{line}").expect("stdout");
            printed.push(a.clone());
        }
    }
    writeln!(stdout, "ready").expect("stdout");
    stdout.flush().expect("stdout");
    // The servers run on the runtime's workers; this thread answers the parent.
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "usage" {
            writeln!(stdout, "{}", Usage::own().to_json()).expect("stdout");
            stdout.flush().expect("stdout");
        } else if let Some(ix) = line.trim().strip_prefix("count ") {
            let info = &printed[ix.parse::<usize>().expect("an account index")];
            let ids = rt
                .block_on(SandboxControl::for_account(info).live_ids("contacts"))
                .expect("live ids");
            writeln!(stdout, "{}", ids.len()).expect("stdout");
            stdout.flush().expect("stdout");
        }
    }
    rt.block_on(async {
        for s in sandboxes {
            s.shutdown().await;
        }
    });
}
