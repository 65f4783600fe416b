//! Fleet benchmark (issue 13): three `tandem run` processes on one PostgreSQL database
//! (a throwaway server started here) carry `TANDEM_BENCH_SYNCS` (default 3,000) idle syncs
//! between empty simulated Freshsales and Freshmarketer accounts (in this process).
//!
//! Once every sync has run, it measures `TANDEM_BENCH_CYCLES` (default 2) poll cycles of
//! `TANDEM_BENCH_INTERVAL` seconds (default 60): per daemon its resident memory and CPU
//! per cycle (from `/proc`), and per idle sync per cycle the database's transactions
//! (`pg_stat_database.xact_commit`, each statement outside an explicit transaction is one)
//! and rows written (inserted + updated + deleted). Then it kills one daemon with SIGKILL
//! and measures how long until none of its syncs is still held by it, against the lease
//! time (`[daemon.fleet] lease-ttl`, `TANDEM_BENCH_TTL`, default 30 s).
//!
//! Run: `cargo bench -p tandem --bench fleet` (several minutes on 2 cores), or smaller:
//! `TANDEM_BENCH_SYNCS=300 TANDEM_BENCH_INTERVAL=20 cargo bench -p tandem --bench fleet`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use comfy_table::{ContentArrangement, Table, presets};
use tandem_pgserver::PgServer;
use tandem_sandbox::{AccountKind, Credentials, Sandbox, SandboxOptions, Sizes};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A daemon process and the `/proc` readings of it.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    fn rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn api_key(c: &Credentials) -> String {
    match c {
        Credentials::ApiKey { api_key, .. } => api_key.clone(),
        other => panic!("not an API key account: {other:?}"),
    }
}

/// One number from `psql`.
fn num(pg: &PgServer, db: &str, sql: &str) -> i64 {
    pg.psql(db, sql)
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .parse()
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let syncs = env_num("TANDEM_BENCH_SYNCS", 3000) as usize;
    let interval = env_num("TANDEM_BENCH_INTERVAL", 60);
    let cycles = env_num("TANDEM_BENCH_CYCLES", 2);
    let ttl = env_num("TANDEM_BENCH_TTL", 30);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sandbox = rt.block_on(async {
        Sandbox::start(SandboxOptions {
            sizes: Sizes {
                freshsales: 0,
                freshsales_classic: 0,
                freshmarketer: 0,
                google: 0,
            },
            rate_limits_enabled: false,
            kinds: vec![AccountKind::FreshsalesSuite, AccountKind::Freshmarketer],
            ..SandboxOptions::default()
        })
        .await
        .expect("sandbox starts")
    });
    let fs = sandbox.account(AccountKind::FreshsalesSuite).unwrap();
    let fm = sandbox.account(AccountKind::Freshmarketer).unwrap();
    let server = PgServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.create_database();
    let db = url.rsplit('/').next().unwrap().to_string();

    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        r#"[state]
path = "state/unused.redb"
backend = "postgres"
url = {{ env = "TANDEM_DATABASE_URL" }}
tls = "disable"
pool-size = 4

[daemon]
listen = "127.0.0.1:0"

[daemon.fleet]
lease-ttl = "{ttl}s"
capacity = {syncs}

[plugins.freshsales]
builtin = "freshsales"
grant = {{ http = ["setting:base-url"], loopback = true, storage-quota = "1MiB" }}
[plugins.freshmarketer]
builtin = "freshmarketer"
grant = {{ http = ["setting:base-url"], loopback = true, storage-quota = "1MiB" }}

[connections.fs]
plugin = "freshsales"
settings = {{ base-url = {{ env = "FS_URL" }} }}
credentials = {{ api-key = {{ env = "FS_KEY" }} }}
[connections.fm]
plugin = "freshmarketer"
settings = {{ base-url = {{ env = "FM_URL" }} }}
credentials = {{ api-key = {{ env = "FM_KEY" }} }}

# Every sync here shares one pair of simulated accounts (in production, each tenant has
# its own): lift the plan's 1,000 requests an hour, which the fleet would otherwise share.
[connections.fs.rate-limit]
limits = ["10000000/1h"]
[connections.fm.rate-limit]
limits = ["10000000/1h"]
"#
    );
    for i in 0..syncs {
        config.push_str(&format!(
            "\n[syncs.s{i:05}]\na = \"fs\"\nb = \"fm\"\nentities = \"contacts\"\ndirection = \"two-way\"\ninterval = \"{interval}s\"\n"
        ));
    }
    let config_path = dir.path().join("tandem.toml");
    std::fs::write(&config_path, config).unwrap();
    let start = |n: usize| {
        let log = std::fs::File::create(dir.path().join(format!("daemon-{n}.log"))).unwrap();
        Daemon {
            child: Command::new(env!("CARGO_BIN_EXE_tandem"))
                .current_dir(dir.path())
                .arg("--config")
                .arg(&config_path)
                .args(["run", "--grace", "1"])
                .env("RUST_LOG", "warn")
                .env("TANDEM_DATABASE_URL", &url)
                .env("FS_URL", &fs.api_base)
                .env("FS_KEY", api_key(&fs.credentials))
                .env("FM_URL", &fm.api_base)
                .env("FM_KEY", api_key(&fm.credentials))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("tandem run starts"),
        }
    };
    let daemons: Vec<Daemon> = (0..3).map(start).collect();
    let started = Instant::now();
    let runs = || {
        num(
            &server,
            &db,
            "SELECT count(*) FROM tandem_kv WHERE tbl = 'tandem_sync_runs'",
        )
    };
    // NUL is not allowed in text: count distinct syncs by the key up to its first byte 0.
    let synced = || {
        num(
            &server,
            &db,
            "SELECT count(DISTINCT substring(k FROM 1 FOR position('\\x00'::bytea IN k) - 1)) \
             FROM tandem_kv WHERE tbl = 'tandem_sync_runs' \
             AND position('\"outcome\":\"ok\"'::bytea IN v) > 0",
        )
    };
    // The first daemon to connect creates the schema.
    while server
        .psql(&db, "SELECT to_regclass('tandem_kv') IS NOT NULL")
        .map(|t| t.trim() != "t")
        .unwrap_or(true)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    loop {
        let n = synced();
        if n as usize >= syncs {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "only {n} of {syncs} syncs ran within an hour"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let initial = started.elapsed();

    // The idle cycles.
    let stats = || {
        let row = server
            .psql(
                &db,
                "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = current_database()",
            )
            .unwrap();
        let mut p = row.trim().split('|').map(|x| x.parse::<i64>().unwrap_or(0));
        (p.next().unwrap_or(0), p.next().unwrap_or(0))
    };
    let cpu0: Vec<Duration> = daemons.iter().map(Daemon::cpu).collect();
    let (x0, w0) = stats();
    let r0 = runs();
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(interval * cycles));
    let elapsed = window.elapsed();
    let (x1, w1) = stats();
    let r1 = runs();
    let cpu1: Vec<Duration> = daemons.iter().map(Daemon::cpu).collect();
    let rss: Vec<f64> = daemons.iter().map(Daemon::rss_mib).collect();
    let idle_runs = (r1 - r0).max(1) as f64;
    let cycles_seen = elapsed.as_secs_f64() / interval as f64;

    // Takeover: kill one daemon; time until it holds nothing.
    let mut daemons = daemons;
    let victim = daemons.remove(0);
    let victim_pid = victim.pid();
    let victim_id: String = server
        .psql(
            &db,
            &format!("SELECT id FROM tandem_daemons WHERE pid = {victim_pid} LIMIT 1"),
        )
        .unwrap()
        .trim()
        .to_string();
    let held = |id: &str| {
        num(
            &server,
            &db,
            &format!("SELECT count(*) FROM tandem_leases WHERE owner = '{id}'"),
        )
    };
    let had = held(&victim_id);
    drop(victim); // SIGKILL
    let killed = Instant::now();
    while held(&victim_id) > 0 {
        assert!(
            killed.elapsed() < Duration::from_secs(ttl * 10),
            "no takeover"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let takeover = killed.elapsed();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec!["measure", "goal", "measured"]);
    t.add_row(vec![
        "syncs / daemons".into(),
        "3,000 / 3".to_string(),
        format!(
            "{syncs} / 3 (initial runs done in {:.0} s)",
            initial.as_secs_f64()
        ),
    ]);
    for (i, d) in cpu0.iter().zip(&cpu1).enumerate() {
        let per_cycle = (*d.1 - *d.0).as_secs_f64() / cycles_seen;
        t.add_row(vec![
            format!("daemon {i}: RSS; CPU per poll cycle"),
            "-".into(),
            format!(
                "{:.0} MiB; {:.2} s ({:.1} ms per idle sync)",
                rss[i],
                per_cycle,
                per_cycle * 1000.0 / (syncs as f64 / 3.0)
            ),
        ]);
    }
    t.add_row(vec![
        "database transactions per idle sync run".into(),
        "≤ 2 round trips".into(),
        format!(
            "{:.1} ({} runs measured)",
            (x1 - x0) as f64 / idle_runs,
            r1 - r0
        ),
    ]);
    t.add_row(vec![
        "rows written per idle sync run".into(),
        "-".into(),
        format!("{:.1}", (w1 - w0) as f64 / idle_runs),
    ]);
    t.add_row(vec![
        "takeover of a killed daemon's syncs".into(),
        format!("≤ lease-ttl ({ttl} s)"),
        format!("{:.1} s for {had} syncs", takeover.as_secs_f64()),
    ]);
    println!("{t}");
    println!("load average: {}", load.trim());
    drop(daemons);
}
