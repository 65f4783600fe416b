//! A fleet of `tandem run` processes on one PostgreSQL database (docs/fleet.md), through
//! the real binary against a throwaway PostgreSQL server and the simulated accounts:
//! the syncs are spread over the daemons and none runs twice at once; a daemon killed
//! with SIGKILL has its syncs taken over; a daemon stopped with SIGSTOP past its lease
//! writes nothing once resumed; the database restarted under the daemons; two daemons
//! sharing a rate-limited account never make it answer 429.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::db::{Pg, PgOptions, TlsMode};
use tandem::sync::SyncStore;
use tandem::sync::state::RunRecord;
use tandem_pgserver::PgServer;
use tandem_sandbox::AccountKind::{Freshmarketer, FreshsalesSuite};
use tandem_sandbox::Sizes;
use tandem_tests::e2e::{self, App, BASE_CONFIG, World};

use crate::user_errors::tandem;

/// The lease time of the tests' fleets (the shortest the config accepts).
const TTL: Duration = Duration::from_secs(3);

/// `BASE_CONFIG` with the state on PostgreSQL and short leases.
fn fleet_config(syncs: &str) -> String {
    // The compile cache lives beside `path`: the test binary's shared one.
    let beside_cache = e2e::cache_dir().with_file_name("unused.redb");
    let base = BASE_CONFIG
        .replace(
            "[state]\npath = \"state/tandem.redb\"\n",
            &format!(
                "[state]\npath = {:?}\nbackend = \"postgres\"\nurl = {{ env = \"TANDEM_DATABASE_URL\" }}\ntls = \"disable\"\npool-size = 4\n",
                beside_cache.display().to_string()
            ),
        )
        .replace(
            "[daemon]\nlisten = \"127.0.0.1:0\"\ntoken = { env = \"CONTROL_TOKEN\" }\n",
            "[daemon]\nlisten = \"127.0.0.1:0\"\ntoken = { env = \"CONTROL_TOKEN\" }\n[daemon.fleet]\nlease-ttl = \"3s\"\n",
        );
    assert!(base.contains("backend = \"postgres\"") && base.contains("lease-ttl"));
    format!("{base}\n{syncs}")
}

/// A `tandem run` process whose log goes to a file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(w: &World, config: &Path, db_url: &str, n: usize) -> Daemon {
        let log = w.dir.path().join(format!("daemon-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Self::command(w, config, db_url);
        cmd.args(["run", "--grace", "2"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        Daemon {
            child: cmd.spawn().expect("tandem run starts"),
            log,
        }
    }

    /// `tandem --config CONFIG` with the accounts' variables and the database URL.
    fn command(w: &World, config: &Path, db_url: &str) -> Command {
        let mut cmd = Command::new(tandem());
        cmd.current_dir(w.dir.path())
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .env("TANDEM_DATABASE_URL", db_url);
        for var in [
            "CONTROL_TOKEN",
            "FS_URL",
            "FS_KEY",
            "FSC_URL",
            "FSC_KEY",
            "FM_URL",
            "FM_KEY",
            "G_URL",
            "G_CLIENT_ID",
            "G_CLIENT_SECRET",
            "G_REFRESH",
            "G_TOKEN_URL",
        ] {
            if let Some(v) = w.env.var(var) {
                cmd.env(var, v);
            }
        }
        cmd
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: a plain kill(2) of our own child.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill({}, {sig})", self.pid());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait (a graceful stop gives the leases back).
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return self.log();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("the daemon did not stop on SIGTERM:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The test's own view of the shared state.
fn store(url: &str) -> SyncStore {
    let mut opts = PgOptions::new(url);
    opts.tls = TlsMode::Disable;
    opts.pool_size = 2;
    let pg: Arc<Pg> = Pg::connect(&opts).expect("the test connects");
    SyncStore::open(pg).expect("the store opens")
}

/// Runs of every sync, by sync.
fn runs(store: &SyncStore, syncs: &[String]) -> BTreeMap<String, Vec<RunRecord>> {
    syncs
        .iter()
        .map(|s| (s.clone(), store.runs(s).unwrap()))
        .collect()
}

/// No two runs of one sync overlap in time (a run still `running` is open-ended).
fn assert_no_overlap(all: &BTreeMap<String, Vec<RunRecord>>) {
    for (sync, runs) in all {
        let mut spans: Vec<(i64, i64, &RunRecord)> = runs
            .iter()
            .filter(|r| r.outcome != "interrupted")
            .map(|r| (r.started_at, r.ended_at.unwrap_or(i64::MAX), r))
            .collect();
        spans.sort_by_key(|s| s.0);
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "sync {sync}: runs {} ({:?}) and {} ({:?}) overlap: {:?} / {:?}",
                pair[0].2.id,
                pair[0].2.daemon,
                pair[1].2.id,
                pair[1].2.daemon,
                pair[0].2,
                pair[1].2
            );
        }
    }
}

/// Polls `f` until it returns `Some` or `limit` passes (a bound, not a measurement).
async fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_a_hundred_and_fifty_syncs_and_none_runs_twice_at_once() {
    let sizes = Sizes {
        freshsales: 0,
        freshsales_classic: 0,
        freshmarketer: 0,
        google: 0,
    };
    let mut w = World::start(&[FreshsalesSuite, Freshmarketer], sizes, "").await;
    w.close();
    let names: Vec<String> = (0..150).map(|i| format!("s{i:03}")).collect();
    let syncs: String = names
        .iter()
        .map(|n| {
            format!(
                "[syncs.{n}]\na = \"freshsales\"\nb = \"freshmarketer\"\nentities = \"contacts\"\ndirection = \"two-way\"\ninterval = \"2s\"\n"
            )
        })
        .collect();
    // 150 syncs on one pair of simulated accounts: lift the plan's 1,000 requests an
    // hour, which the fleet shares (in production each tenant has its own accounts).
    let syncs = format!(
        "{syncs}[connections.freshsales.rate-limit]\nlimits = [\"10000000/1h\"]\n[connections.freshmarketer.rate-limit]\nlimits = [\"10000000/1h\"]\n"
    );
    let config = w.dir.path().join("fleet.toml");
    std::fs::write(&config, fleet_config(&syncs)).unwrap();
    let url = PgServer::shared().create_database();

    let daemons: Vec<Daemon> = (0..3)
        .map(|n| Daemon::start(&w, &config, &url, n))
        .collect();
    let state = store(&url);
    // Every sync ran at least twice (so that takeovers and releases happened around runs).
    let all = wait_for(Duration::from_secs(240), "every sync to run twice", || {
        let all = runs(&state, &names);
        all.values()
            .all(|r| r.iter().filter(|r| r.outcome == "ok").count() >= 2)
            .then_some(all)
    })
    .await;
    assert_no_overlap(&all);

    // The work was spread: every daemon ran syncs, and every sync has one owner.
    let mut by_daemon: BTreeMap<String, usize> = BTreeMap::new();
    for r in all.values().flatten() {
        *by_daemon
            .entry(r.daemon.clone().expect("a fleet run names its daemon"))
            .or_default() += 1;
    }
    assert_eq!(by_daemon.len(), 3, "runs per daemon: {by_daemon:?}");
    let status = tandem::app::fleet::leases(state.db().postgres().unwrap()).unwrap();
    assert_eq!(status.len(), 150);
    let mut owned: BTreeMap<String, usize> = BTreeMap::new();
    for l in status.values() {
        *owned
            .entry(l.owner.clone().expect("every sync is owned"))
            .or_default() += 1;
    }
    assert_eq!(owned.len(), 3, "owners: {owned:?}");
    assert!(
        owned.values().all(|n| *n == 50),
        "fair shares of 150 syncs over 3 daemons: {owned:?}"
    );

    // `tandem sync status`, on any machine with the config, shows each sync's owner.
    let out = Daemon::command(&w, &config, &url)
        .args(["sync", "status", "--json"])
        .output()
        .expect("tandem sync status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 150);
    for s in list {
        let owner = s["owner"].as_str().expect("an owner");
        assert!(owned.contains_key(owner), "{s}");
        assert!(s["lease_age_secs"].as_u64().is_some(), "{s}");
    }
    let table = Daemon::command(&w, &config, &url)
        .args(["sync", "status", "s000"])
        .output()
        .expect("tandem sync status runs");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("Owner (lease age)"), "{table}");

    // A graceful stop gives the leases back.
    let mut logs = String::new();
    for d in daemons {
        logs.push_str(&d.stop());
    }
    let after = tandem::app::fleet::leases(state.db().postgres().unwrap()).unwrap();
    assert!(
        after.values().all(|l| l.owner.is_none()),
        "leases left after a clean stop: {after:?}\n{logs}"
    );
    assert_no_overlap(&runs(&state, &names));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_frozen_daemon_loses_its_syncs_and_writes_nothing_late() {
    let mut w = World::start(&[FreshsalesSuite, Freshmarketer], e2e::small(), "").await;
    w.close();
    let names: Vec<String> = vec!["s".into()];
    let syncs = "[syncs.s]\na = \"freshsales\"\nb = \"freshmarketer\"\nentities = \"contacts\"\ndirection = \"two-way\"\nscope = { b = \"Newsletter\" }\ninterval = \"1s\"\n";
    let config = w.dir.path().join("fleet.toml");
    std::fs::write(&config, fleet_config(syncs)).unwrap();
    // A server of its own: this test restarts it, which must not cut the other tests'
    // connections to the shared one.
    let server = PgServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.create_database();
    let state = store(&url);
    let owner_of = |state: &SyncStore| {
        tandem::app::fleet::leases(state.db().postgres().unwrap())
            .unwrap()
            .get("s")
            .and_then(|l| l.owner.clone())
    };

    let seeded = w.by_email(App::Fm, "contacts").await;
    let mut daemons: Vec<Option<Daemon>> = (0..2)
        .map(|n| Some(Daemon::start(&w, &config, &url, n)))
        .collect();
    // The first run: the initial sync.
    wait_for(Duration::from_secs(120), "the initial sync", || {
        state
            .runs("s")
            .unwrap()
            .iter()
            .any(|r| r.outcome == "ok")
            .then_some(())
    })
    .await;
    let first = owner_of(&state).expect("an owner");
    // Which process is the owner: its log names its fleet id.
    let which = |daemons: &Vec<Option<Daemon>>, id: &str| {
        daemons
            .iter()
            .position(|d| d.as_ref().is_some_and(|d| d.log().contains(id)))
            .expect("the owner's log names it")
    };

    // SIGKILL the owner; the other takes the sync over (the fleet bench measures how fast).
    let k = which(&daemons, &first);
    daemons[k].as_ref().unwrap().signal(libc::SIGKILL);
    let second = wait_for(Duration::from_secs(60), "a takeover", || {
        owner_of(&state).filter(|o| *o != first)
    })
    .await;
    wait_for(Duration::from_secs(60), "a run by the new owner", || {
        state
            .runs("s")
            .unwrap()
            .iter()
            .any(|r| r.daemon.as_deref() == Some(&second) && r.outcome == "ok")
            .then_some(())
    })
    .await;
    daemons[k] = None;

    // New data, then freeze the owner mid-way through its runs; a new daemon takes over.
    w.advance(60).await;
    w.create(
        App::Fs,
        "contacts",
        serde_json::json!({"first_name": "Late", "emails": "late@example.com"}),
    )
    .await;
    let s = which(&daemons, &second);
    daemons[s].as_ref().unwrap().signal(libc::SIGSTOP);
    daemons.push(Some(Daemon::start(&w, &config, &url, 9)));
    let third = wait_for(
        Duration::from_secs(60),
        "a takeover from the frozen daemon",
        || owner_of(&state).filter(|o| *o != second),
    )
    .await;
    wait_for(Duration::from_secs(60), "a run by the third owner", || {
        state
            .runs("s")
            .unwrap()
            .iter()
            .any(|r| r.daemon.as_deref() == Some(&third) && r.outcome == "ok")
            .then_some(())
    })
    .await;
    daemons[s].as_ref().unwrap().signal(libc::SIGCONT);
    // The resumed daemon notices at its next heartbeat or step; give it a few.
    tokio::time::sleep(TTL * 2).await;
    let frozen_log = daemons[s].as_ref().unwrap().log();
    assert!(
        frozen_log.contains("lease lost") || frozen_log.contains("lost the sync's lease"),
        "the resumed daemon's log says it lost the lease:\n{frozen_log}"
    );
    assert_eq!(owner_of(&state).as_deref(), Some(third.as_str()));

    // The database restarted under the daemons: they reconnect and carry on.
    server.restart().expect("the server restarts");
    let before = state.runs("s").unwrap().len();
    w.advance(60).await;
    w.create(
        App::Fs,
        "contacts",
        serde_json::json!({"first_name": "After", "emails": "after-restart@example.com"}),
    )
    .await;
    wait_for(
        Duration::from_secs(90),
        "runs after the database restart",
        || {
            let runs = state.runs("s").ok()?;
            (runs.len() >= before + 2 && runs.last().is_some_and(|r| r.outcome == "ok"))
                .then_some(())
        },
    )
    .await;

    // Nothing lost, nothing duplicated, and never two runs at once.
    let fm = w.by_email(App::Fm, "contacts").await;
    for email in ["late@example.com", "after-restart@example.com"] {
        assert_eq!(
            fm.get(email).map(Vec::len),
            Some(1),
            "{email} in Freshmarketer once"
        );
    }
    // The seed holds some namesakes on purpose; the sync added none.
    let dups: Vec<_> = fm
        .iter()
        .filter(|(e, v)| v.len() > seeded.get(*e).map_or(1, |s| s.len().max(1)))
        .collect();
    assert!(
        dups.is_empty(),
        "duplicates the fleet created in Freshmarketer: {dups:?}"
    );
    assert_no_overlap(&runs(&state, &names));
    for d in daemons.into_iter().flatten() {
        d.stop();
    }
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_sharing_a_rate_limited_account_never_exceed_its_quota() {
    // The accounts' clock is the real one, so that their minute windows are real minutes.
    let mut opts = e2e::options(e2e::small());
    opts.kinds = vec![FreshsalesSuite, Freshmarketer];
    opts.start_time = None;
    opts.rate_limits_enabled = true;
    opts.freshworks.minute_limit = PER_MINUTE;
    opts.freshworks.hourly_limit = 100_000;
    let mut w = World::start_with(opts, "").await;
    w.close();
    // Six syncs copying Freshmarketer into the same Freshsales account every second: far
    // more work than its quota allows, which each daemon alone would spend in full.
    let mut syncs = String::new();
    let names: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    for n in &names {
        syncs.push_str(&format!(
            "[syncs.{n}]\na = \"freshsales\"\nb = \"freshmarketer\"\nentities = \"contacts\"\ndirection = \"b-to-a\"\ninterval = \"1s\"\n"
        ));
    }
    // Each daemon checks each connection once at start, before it knows the account and
    // so outside its budget (docs/fleet.md §3.2): the limits leave room for those two.
    let budgeted = PER_MINUTE - 2;
    syncs.push_str(&format!(
        "[connections.freshsales.rate-limit]\nlimits = [\"{budgeted}/1m\"]\n[connections.freshmarketer.rate-limit]\nlimits = [\"{budgeted}/1m\"]\n"
    ));
    let config = w.dir.path().join("fleet.toml");
    // Three syncs each: a daemon that starts first would otherwise claim all six, and,
    // its syncs never idle at a heartbeat, keep them.
    let config_text =
        fleet_config(&syncs).replace("lease-ttl = \"3s\"\n", "lease-ttl = \"3s\"\ncapacity = 3\n");
    assert!(config_text.contains("capacity = 3"));
    std::fs::write(&config, config_text).unwrap();
    let url = PgServer::shared().create_database();
    let state = store(&url);
    let daemons: Vec<Daemon> = (0..2)
        .map(|n| Daemon::start(&w, &config, &url, n))
        .collect();
    // Both daemons ran syncs, and the Freshsales account (which the syncs write to: the
    // busy one) answered more than a minute's quota, so across a turn of its minute.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let all = runs(&state, &names);
        let ran: std::collections::BTreeSet<_> = all
            .values()
            .flatten()
            .filter(|r| r.outcome == "ok")
            .filter_map(|r| r.daemon.clone())
            .collect();
        let spent = w.statuses(App::Fs).await.get("200").copied().unwrap_or(0);
        if ran.len() == 2 && spent > u64::from(PER_MINUTE) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: runs by {ran:?}, {spent} requests answered by Freshsales\n--- daemon 0:\n{}\n--- daemon 1:\n{}",
            daemons[0].log(),
            daemons[1].log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for app in [App::Fs, App::Fm] {
        let statuses = w.statuses(app).await;
        assert!(
            !statuses.contains_key("429"),
            "{app:?} answered 429: the fleet exceeded the quota: {statuses:?}\n{}\n--- daemon 0:\n{}\n--- daemon 1:\n{}",
            w.control(app, reqwest::Method::GET, "/counters", None)
                .await,
            daemons[0].log(),
            daemons[1].log()
        );
    }
    assert_no_overlap(&runs(&state, &names));
    for d in daemons {
        d.stop();
    }
}

/// The simulated accounts' quota per minute in the rate-limit test.
const PER_MINUTE: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sync_between_freshworks_accounts_costs_two_database_round_trips() {
    // The whole idle run on PostgreSQL, connectors included (docs/fleet.md §5): the
    // engine's read and commit. The Freshworks connectors make no storage call (their
    // listings carry the field types in the cursor) and return none of the records they
    // list again in the overlap unchanged, so the engine reads no link either.
    let mut w = World::start(&[FreshsalesSuite, Freshmarketer], e2e::small(), "").await;
    w.close();
    let syncs = "[syncs.pair]\na = \"freshsales\"\nb = \"freshmarketer\"\nentities = \"contacts\"\ndirection = \"two-way\"\n";
    let path = w.dir.path().join("fleet.toml");
    std::fs::write(&path, fleet_config(syncs)).unwrap();
    let env = w
        .env
        .clone()
        .with("TANDEM_DATABASE_URL", PgServer::shared().create_database());
    let config = tandem::config::load(&path, &env, &tandem::config::Catalog::builtin())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let host = tandem::app::Host::open(config, e2e::host_options(&env)).unwrap();
    let opts = tandem::sync::RunOptions::default();
    // The initial sync, then runs until one finds nothing to do.
    for _ in 0..4 {
        let r = host.run_sync("pair", opts.clone()).await.unwrap();
        if e2e::totals(&r) == (0, 0, 0, 0) && r.plan.ops.is_empty() {
            break;
        }
    }
    let pg = host.store().db().postgres().unwrap().clone();
    let counts = || {
        let s = pg.stats();
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        // Budget leases are per block of an account's requests, not per run: apart.
        (
            get(&s.round_trips) - get(&s.budget_leases),
            get(&s.rows_written) - get(&s.budget_rows_written),
        )
    };
    for run in 0..3 {
        let before = counts();
        let r = host.run_sync("pair", opts.clone()).await.unwrap();
        assert!(r.plan.ops.is_empty(), "an idle run: {:#?}", r.plan.ops);
        let after = counts();
        assert_eq!(
            after.0 - before.0,
            2,
            "database round trips of idle run {run}"
        );
        assert_eq!(
            after.1 - before.1,
            2,
            "rows written: the run and the run counter"
        );
    }
}
