//! Hostile plugins: exhaustion — the host's memory, CPU and logs, and other syncs' budgets.
//! Attacks that need `describe`, `check` or `pull` to misbehave use the `runaway` fixture
//! (`tests/fixtures/runaway`, driven by its connection's settings) inside a real host.

use super::*;

use std::path::Path;

use sha2::{Digest, Sha256};
use tandem::app::daemon::Daemon;
use tandem::app::{AccountBudget, Host, HostOptions, RequestGate, RetrySettings};
use tandem::config::{Catalog, Env};
use tandem::runtime::{LogLimits, RequestBudget};
use tandem::sync::RunOptions;
use tandem::sync::model::Side;
use tandem::sync::state::Flow;

const RUNAWAY: &str = "tandem-fixture-runaway";
const POISON_MAPPER: &str = "tandem-fixture-poison-mapper";

/// `[plugins.NAME]` for a fixture file, pinned by its digest.
fn pinned(name: &str, package: &str) -> String {
    let path = tandem_plugins::wasm_path(package).unwrap_or_else(|e| panic!("{e}"));
    let pin = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
    format!(
        "[plugins.{name}]\npath = {:?}\nsha256 = \"{pin}\"\n",
        path.display().to_string()
    )
}

/// A connection of the runaway fixture with these settings.
fn runaway(name: &str, settings: &[(&str, &str)]) -> String {
    let mut out =
        format!("[connections.{name}]\nplugin = \"runaway\"\n[connections.{name}.settings]\n");
    for (k, v) in settings {
        out.push_str(&format!("{k} = {v:?}\n"));
    }
    out
}

/// A two-way sync of contacts between connections `a` and `b`, plus `extra` lines.
fn sync(name: &str, a: &str, b: &str, extra: &str) -> String {
    format!(
        "[syncs.{name}]\na = \"{a}\"\nb = \"{b}\"\nentities = [{{ a = \"contacts\", b = \"contacts\" }}]\ndirection = \"two-way\"\ninterval = \"1s\"\n{extra}\n"
    )
}

/// A host on a config of the runaway fixture (`[plugins.runaway]`) and `rest`.
fn open_host(dir: &Path, rest: &str) -> Host {
    let text = format!(
        "[state]\npath = \"state/tandem.redb\"\n\n{}[plugins.runaway.grant]\nhttp = []\n[plugins.runaway.grant.limits]\ncpu = \"300ms\"\n\n{}\n{rest}",
        pinned("runaway", RUNAWAY),
        pinned("poison", POISON_MAPPER),
    );
    let file = dir.join("tandem.toml");
    std::fs::write(&file, text).unwrap();
    let config =
        tandem::config::load(&file, &Env::empty(), &Catalog::builtin()).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
    let mut options = HostOptions::new("tandem-tests");
    options.env = Env::empty();
    options.cache_dir = Some(dir.join("cache"));
    options.retry = RetrySettings {
        max_rate_wait: Duration::from_secs(1),
        transient_attempts: 3,
        transient_delay: Duration::from_millis(10),
    };
    Host::open(config, options).unwrap_or_else(|e| panic!("{e}"))
}

/// The last run of `sync` in its log: (outcome, message).
fn last_run(host: &Host, sync: &str) -> (String, String) {
    let logs = host.logs(sync, None, 1).unwrap();
    let run = &logs.last().expect("a run in the log").run;
    (run.outcome.clone(), run.message.clone().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_pagination_fails_that_sync_alone_at_the_listing_bound() {
    let dir = tempfile::tempdir().unwrap();
    let host = open_host(
        dir.path(),
        &[
            runaway("endless", &[("pull", "endless"), ("account-id", "x1")]),
            runaway("quiet-a", &[("account-id", "x2")]),
            runaway("quiet-b", &[("account-id", "x3")]),
            sync(
                "flood",
                "endless",
                "quiet-b",
                "[syncs.flood.limits]\nlisting-records = 5000",
            ),
            sync("healthy", "quiet-a", "quiet-b", ""),
        ]
        .concat(),
    );
    let err = host
        .run_sync("flood", RunOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sync `flood`: side A (endless)")
            && err.contains("more than 5000 records (limits.listing-records)")
            && !err.contains('\n'),
        "{err}"
    );
    // The run log and the status say why; nothing was linked, no cursor stored.
    let (outcome, message) = last_run(&host, "flood");
    assert_eq!(
        (outcome.as_str(), message.as_str()),
        ("failed", err.as_str())
    );
    let status = &host.status(Some("flood")).unwrap()[0];
    assert_eq!(status.last_run.as_ref().unwrap().outcome, "failed");
    assert_eq!(status.links, 0);
    assert_eq!(host.store().cursor("flood", 0, Side::A).unwrap(), None);
    // The other sync of the host goes on.
    let report = host
        .run_sync("healthy", RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.outcome, tandem::sync::RunOutcome::Completed);
    assert_eq!(host.status(Some("healthy")).unwrap()[0].links, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_bounds_hold_across_listings_and_are_read_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let host = open_host(
        dir.path(),
        &[
            runaway("endless", &[("pull", "endless")]),
            runaway("quiet", &[]),
            sync(
                "by-size",
                "endless",
                "quiet",
                "[syncs.by-size.limits]\nlisting-size = \"1MiB\"",
            ),
            sync(
                "by-run",
                "endless",
                "quiet",
                "[syncs.by-run.limits]\nrun-records = 700\nrun-size = \"1GiB\"",
            ),
        ]
        .concat(),
    );
    let err = host
        .run_sync("by-size", RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("more than 1048576 bytes (limits.listing-size)"),
        "{err}"
    );
    let err = host
        .run_sync("by-run", RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the run read more than 700 records (limits.run-records)"),
        "{err}"
    );
    // A bad bound is one config error with its key, line and column.
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[syncs.s]\na = \"x\"\nb = \"y\"\nentities = \"contacts\"\ndirection = \"two-way\"\n[syncs.s.limits]\nlisting-records = 0\nread-time = \"0s\"\ncursor-size = \"big\"\n",
    )
    .unwrap();
    let errors: Vec<String> = tandem::config::load(&file, &Env::empty(), &Catalog::builtin())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let expect = [
        ":7:19: syncs.s.limits.listing-records: a whole number from 1 up",
        ":8:13: syncs.s.limits.read-time: must be at least \"1s\"",
        ":9:15: syncs.s.limits.cursor-size: cannot read \"big\" as a size",
    ];
    for e in expect {
        assert!(
            errors.iter().any(|x| x.contains(e)),
            "{e} not in {errors:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_does_not_advance_fails_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let host = open_host(
        dir.path(),
        &[
            runaway("stuck", &[("pull", "stuck")]),
            runaway("cycle", &[("pull", "cycle")]),
            runaway("quiet", &[]),
            sync("stuck", "quiet", "stuck", ""),
            sync("cycle", "cycle", "quiet", ""),
        ]
        .concat(),
    );
    for (name, side) in [("stuck", "side B (stuck)"), ("cycle", "side A (cycle)")] {
        let err = host
            .run_sync(name, RunOptions::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(side) && err.contains("did not advance"),
            "{name}: {err}"
        );
        assert_eq!(last_run(&host, name).0, "failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_cursor_is_refused_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let host = open_host(
        dir.path(),
        &[
            runaway("big", &[("pull", "big-cursor"), ("cursor-size", "70000")]),
            runaway("quiet", &[]),
            sync("big", "big", "quiet", ""),
            sync(
                "fits",
                "big",
                "quiet",
                "[syncs.fits.limits]\ncursor-size = \"100KiB\"",
            ),
        ]
        .concat(),
    );
    let err = host
        .run_sync("big", RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "a cursor of 70000 bytes for `contacts`, more than 65536 (limits.cursor-size)"
        ),
        "{err}"
    );
    assert_eq!(host.store().cursor("big", 0, Side::A).unwrap(), None);
    // Where the operator allows it, the same cursor is kept.
    host.run_sync("fits", RunOptions::default()).await.unwrap();
    assert_eq!(
        host.store()
            .cursor("fits", 0, Side::A)
            .unwrap()
            .map(|c| c.len()),
        Some(70000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_claiming_another_connections_account_cannot_freeze_it() {
    let dir = tempfile::tempdir().unwrap();
    // Both report account `shared`; the victim runs the first-party-like healthy plugin
    // under another [plugins] name, the attacker asks for an hour-long wait (and more),
    // and declares one request a day.
    let host = open_host(
        dir.path(),
        &[
            pinned("trusted", RUNAWAY),
            "[plugins.trusted.grant]\nhttp = []\n".into(),
            "[connections.victim]\nplugin = \"trusted\"\n[connections.victim.settings]\naccount-id = \"shared\"\n".into(),
            runaway(
                "attacker",
                &[
                    ("account-id", "shared"),
                    ("pull", "rate-limited"),
                    ("retry-after-ms", "31536000000"),
                    ("rate-limit", "1/86400"),
                ],
            ),
            runaway("sink", &[("account-id", "sink")]),
            sync("evil", "attacker", "sink", ""),
            sync("good", "victim", "sink", ""),
        ]
        .concat(),
    );
    let victim = host.connection("victim").await.unwrap();
    let attacker = host.connection("attacker").await.unwrap();
    assert!(
        !Arc::ptr_eq(&victim.budget, &attacker.budget),
        "the attacker got the victim's budget"
    );
    assert_eq!(victim.budget.account(), "trusted/shared");
    // The declared one-a-day limit is raised to the floor (60 an hour, pro rata).
    let windows: Vec<(u32, u64)> = attacker
        .budget
        .snapshot()
        .windows
        .iter()
        .map(|w| (w.window.requests, w.window.period.as_secs()))
        .collect();
    assert_eq!(windows, vec![(1440, 86400)]);

    let err = host
        .run_sync("evil", RunOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rate limited"), "{err}");
    // The attacker's own account waits an hour at most...
    let blocked = attacker.budget.snapshot().blocked_ms;
    assert!(blocked > 0 && blocked <= 3_600_000, "{blocked}");
    // ...and the victim's is untouched: its sync runs.
    assert_eq!(victim.budget.snapshot().blocked_ms, 0);
    let report = host.run_sync("good", RunOptions::default()).await.unwrap();
    assert_eq!(report.outcome, tandem::sync::RunOutcome::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_headers_count_only_from_the_apps_own_origins() {
    let router = Router::new().fallback(|| async {
        (
            [
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-limit", "1000"),
                ("x-ratelimit-reset", "86400"),
            ],
            "counted",
        )
    });
    let app = TestServer::start(router.clone()).await;
    let other = TestServer::start(router).await;
    let budget = Arc::new(AccountBudget::new("acct", vec![]));
    let gate = Arc::new(RequestGate::unpaused());
    gate.bind(budget.clone());
    // Both origins granted; the auth profile (the app) is base-url only.
    let mut conn = connection(
        "rate-relay",
        &[("base-url", &app.origin()), ("other-url", &other.origin())],
        loopback_grant(&["*"]),
    );
    conn.budget = Some(gate as Arc<dyn RequestBudget>);
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();

    let fields = attack(&client, "http", &other.url("/")).await.unwrap();
    assert_eq!(fields["status"], "200");
    assert!(
        budget.snapshot().app.is_none(),
        "a header from another origin paused the account: {:?}",
        budget.snapshot().app
    );
    attack(&client, "http", &app.url("/")).await.unwrap();
    assert!(budget.snapshot().app.is_some_and(|a| a.paused));
}

/// Log lines captured from the current thread (tests on a current-thread runtime).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (out, tracing::subscriber::set_default(subscriber))
    }

    fn lines(&self, containing: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(containing))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn a_log_flood_is_capped_across_calls_with_a_summary_of_what_was_dropped() {
    let (logs, _guard) = Captured::start();
    let line = "f".repeat(1000);
    let limits = ConnectorLimits {
        log: LogLimits {
            run_lines: 50,
            run_bytes: 1 << 20,
            hour_lines: 70,
            hour_bytes: 1 << 20,
        },
        ..ConnectorLimits::default()
    };
    let client = hostile_client("log-flood", "http://127.0.0.1:1", limits.clone()).await;
    // Two calls of 40 lines: within the per-call cap each, 50 kept in all.
    for _ in 0..2 {
        assert_eq!(
            attack(&client, "log-flood", "40").await.unwrap()["logged"],
            "40"
        );
    }
    assert_eq!(logs.lines(&line).len(), 50);
    drop(client);
    let summary = logs.lines("plugin log lines dropped");
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert!(
        summary[0].contains("dropped_lines=30") && summary[0].contains("per run (50 lines"),
        "{}",
        summary[0]
    );
    // The next run of the same connection starts a new run budget, within the
    // connection's hourly one: 20 more lines, then nothing until the hour is over.
    let client = hostile_client("log-flood", "http://127.0.0.1:1", limits.clone()).await;
    attack(&client, "log-flood", "40").await.unwrap();
    assert_eq!(logs.lines(&line).len(), 70);
    // Bytes count too: 10 lines of 1000 bytes fill a 10 kB run budget.
    let by_size = ConnectorLimits {
        log: LogLimits {
            run_bytes: 10_000,
            ..LogLimits::default()
        },
        ..ConnectorLimits::default()
    };
    let client = hostile_client("log-size", "http://127.0.0.1:1", by_size).await;
    attack(&client, "log-flood", "25").await.unwrap();
    assert_eq!(logs.lines(&line).len(), 80);
}

#[tokio::test]
async fn cpu_interrupts_are_not_retried_within_a_run() {
    let (logs, _guard) = Captured::start();
    let dir = tempfile::tempdir().unwrap();
    let host = open_host(
        dir.path(),
        &[
            runaway("spinner", &[("pull", "spin")]),
            runaway("quiet", &[]),
            sync("spin", "spinner", "quiet", ""),
        ]
        .concat(),
    );
    let err = host
        .run_sync("spin", RunOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CPU deadline"), "{err}");
    assert_eq!(
        logs.lines("transient failure; trying again"),
        Vec::<String>::new(),
        "an interrupted call was tried again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_mapper_fails_its_record_and_lets_the_others_through() {
    let dir = tempfile::tempdir().unwrap();
    let host = open_host(
        dir.path(),
        &[
            runaway("four", &[("records", "4")]),
            runaway("none", &[("records", "0")]),
            sync("mapped", "four", "none", "mappers = [\"poison\"]"),
        ]
        .concat(),
    );
    let report = host
        .run_sync("mapped", RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        report
            .failures
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        vec!["a:r1"]
    );
    assert!(
        report.failures[0].1.contains("mapper `poison` failed")
            && report.failures[0].1.contains("poison record r1"),
        "{:?}",
        report.failures
    );
    let a_to_b = &report.counters[&Flow::AToB];
    assert_eq!((a_to_b.created, a_to_b.failed), (3, 1));
    // The run log and the status show it; the record is read again on a later run.
    let logs = host.logs("mapped", None, 1).unwrap();
    let run = &logs[0].run;
    assert!(
        run.message
            .as_deref()
            .is_some_and(|m| m.contains("1 record(s) failed in a mapper")),
        "{run:?}"
    );
    assert!(
        logs[0]
            .events
            .iter()
            .any(|e| e.action == "failed" && e.records == vec!["a:r1".to_string()]),
        "{:?}",
        logs[0].events
    );
    let status = &host.status(Some("mapped")).unwrap()[0];
    assert_eq!(status.retrying, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_call_only_loops_are_stopped_by_the_cpu_limit() {
    let limits = ConnectorLimits {
        cpu: Duration::from_millis(300),
        timeout: Duration::from_secs(20),
        ..ConnectorLimits::default()
    };
    let client = hostile_client("host-loops", "http://127.0.0.1:1", limits).await;
    for command in ["config-loop", "log-loop"] {
        let err = attack(&client, command, "").await.unwrap_err();
        assert_eq!(trap(&err).0, TrapKind::Interrupt, "{command}: {err}");
    }
    assert_eq!(attack(&client, "ok", "").await.unwrap()["ok"], "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_sync_next_to_a_healthy_one_in_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(open_host(
        dir.path(),
        &[
            runaway("spinner", &[("pull", "spin"), ("account-id", "s1")]),
            runaway("quiet-a", &[("account-id", "q1")]),
            runaway("quiet-b", &[("account-id", "q2")]),
            sync("spinning", "spinner", "quiet-b", ""),
            sync("healthy", "quiet-a", "quiet-b", ""),
        ]
        .concat(),
    ));
    let daemon = Daemon::start(host.clone()).unwrap();
    // Wait (bounded) until the healthy sync has completed two runs.
    let mut healthy_runs = 0;
    for _ in 0..600 {
        healthy_runs = host
            .logs("healthy", None, 10)
            .unwrap()
            .iter()
            .filter(|l| l.run.outcome == "ok")
            .count();
        let spun = daemon.summaries(Some("spinning")).unwrap()[0]
            .last_error
            .is_some();
        if healthy_runs >= 2 && spun {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        healthy_runs >= 2,
        "the healthy sync ran {healthy_runs} time(s)"
    );
    let spinning = &daemon.summaries(Some("spinning")).unwrap()[0];
    assert!(
        spinning
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("CPU deadline")),
        "{spinning:?}"
    );
    assert_eq!(host.status(Some("healthy")).unwrap()[0].links, 3);
    daemon.shutdown(Duration::from_secs(5)).await;
}
