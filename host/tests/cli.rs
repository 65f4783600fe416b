//! The `tandem` binary as operators meet it, against simulated accounts: crash safety of
//! `tandem sync run` killed at many points (nothing lost, nothing duplicated), the errors
//! a user meets (one line, non-zero exit, what to do), the state file locked by a running
//! daemon (and `sync status` reaching it through its control API), and JSON output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tandem_sandbox::{AccountKind, Sandbox, SandboxOptions, Sizes};

const BIN: &str = env!("CARGO_BIN_EXE_tandem");
const TOKEN: &str = "cli-test-token-0123456789abcdef";

const CONFIG: &str = r#"
[state]
path = "state/tandem.redb"

[daemon]
listen = "127.0.0.1:0"
token = { env = "CONTROL_TOKEN" }

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

[connections.freshsales]
plugin = "freshsales"
[connections.freshsales.settings]
base-url = { env = "FS_URL" }
[connections.freshsales.credentials]
api-key = { env = "FS_KEY" }

[connections.freshmarketer]
plugin = "freshmarketer"
[connections.freshmarketer.settings]
base-url = { env = "FM_URL" }
# One request per create (no bulk job): many points to crash between writes.
bulk-upsert = { env = "FM_BULK", default = "true" }
[connections.freshmarketer.credentials]
api-key = { env = "FM_KEY" }

[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }

# A fixed winner; the crash tests run under `most-recent` too (`with_winner`).
[syncs.s.conflict]
winner = "a-wins"
"#;

/// The config with another conflict winner.
fn with_winner(config: &str, winner: &str) -> String {
    config.replace("winner = \"a-wins\"", &format!("winner = \"{winner}\""))
}

struct World {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    http: reqwest::Client,
}

fn key(a: &tandem_sandbox::AccountInfo) -> String {
    match &a.credentials {
        tandem_sandbox::Credentials::ApiKey { api_key, .. } => api_key.clone(),
        other => panic!("{other:?}"),
    }
}

impl World {
    async fn start(seed: u64, fs: usize, fm: usize) -> World {
        Self::start_with(seed, fs, fm, CONFIG).await
    }

    async fn start_with(seed: u64, fs: usize, fm: usize, config: &str) -> World {
        let mut o = SandboxOptions {
            seed,
            sizes: Sizes {
                freshsales: fs,
                freshmarketer: fm,
                ..Sizes::default()
            },
            kinds: vec![AccountKind::FreshsalesSuite, AccountKind::Freshmarketer],
            rate_limits_enabled: false,
            start_time: Some(time::macros::datetime!(2024-05-01 12:00 UTC)),
            ..SandboxOptions::default()
        };
        o.freshworks.bulk_job_delay_secs = 0;
        let sandbox = Sandbox::start(o).await.expect("sandbox");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tandem.toml"), config).unwrap();
        let fs = sandbox.account(AccountKind::FreshsalesSuite).unwrap();
        let fm = sandbox.account(AccountKind::Freshmarketer).unwrap();
        let env = vec![
            ("FS_URL".into(), fs.api_base.clone()),
            ("FS_KEY".into(), key(fs)),
            ("FM_URL".into(), fm.api_base.clone()),
            ("FM_KEY".into(), key(fm)),
            ("CONTROL_TOKEN".into(), TOKEN.into()),
        ];
        World {
            sandbox,
            dir,
            env,
            http: reqwest::Client::new(),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("tandem.toml")
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_with(&self.config(), args)
    }

    fn command_with(&self, config: &std::path::Path, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(config).args(args);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "error");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs the binary to completion off the async runtime.
    async fn tandem(&self, args: &[&str]) -> Output {
        let mut c = self.command(args);
        tokio::task::spawn_blocking(move || c.output().expect("tandem runs"))
            .await
            .unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tandem starts")
    }

    async fn control(
        &self,
        kind: AccountKind,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let url = format!("{}{path}", self.sandbox.account(kind).unwrap().control_url);
        let mut r = self.http.request(method, &url);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        resp.json().await.unwrap_or(Value::Null)
    }

    /// Per lower-cased e-mail: every field of the live records and the names of the lists
    /// they are in — what the apps hold, without ids, change times and links.
    async fn snapshot(&self, kind: AccountKind) -> BTreeMap<String, Vec<String>> {
        let v = self
            .control(kind, reqwest::Method::GET, "/records/contacts", None)
            .await;
        let fm_lists = if kind == AccountKind::Freshmarketer {
            self.lists().await
        } else {
            BTreeMap::new()
        };
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in v["contacts"].as_array().unwrap() {
            if r["is_deleted"] == json!(true) {
                continue;
            }
            let Some(e) = r["email"].as_str() else {
                continue;
            };
            let mut fields = r.as_object().unwrap().clone();
            for k in [
                "id",
                "links",
                "created_at",
                "updated_at",
                "last_seen",
                "last_contacted",
            ] {
                fields.remove(k);
            }
            let emails: BTreeSet<String> = r["emails"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["value"].as_str().map(str::to_lowercase))
                .collect();
            fields.insert("emails".into(), json!(emails));
            let lists: BTreeSet<String> = r["list_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| fm_lists.get(&l.as_u64().unwrap_or(0)).cloned())
                .collect();
            fields.insert("list_ids".into(), json!(lists));
            out.entry(e.to_lowercase())
                .or_default()
                .push(Value::Object(fields).to_string());
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }

    async fn lists(&self) -> BTreeMap<u64, String> {
        let s = self
            .control(
                AccountKind::Freshmarketer,
                reqwest::Method::GET,
                "/state",
                None,
            )
            .await;
        s["lists"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["id"].as_u64().unwrap(),
                    l["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Arms a fault rule for one request; returns its app and id.
    async fn arm(&self, (kind, skip, method, path): At, fault: Value) -> (AccountKind, u64) {
        let r = json!({"method": method, "path_prefix": path, "skip": skip, "count": 1,
            "fault": fault});
        let id = self
            .control(kind, reqwest::Method::POST, "/faults", Some(r))
            .await;
        (kind, id["id"].as_u64().unwrap())
    }

    /// Whether the fault rule `id` is still armed (has not fired yet).
    async fn armed(&self, kind: AccountKind, id: u64) -> bool {
        let f = self
            .control(kind, reqwest::Method::GET, "/faults", None)
            .await;
        f["faults"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["id"].as_u64() == Some(id)))
    }

    async fn fault_pending(&self, kind: AccountKind) -> bool {
        let f = self
            .control(kind, reqwest::Method::GET, "/faults", None)
            .await;
        f["faults"].as_array().is_some_and(|a| !a.is_empty())
    }
}

/// The e-mails whose records differ: `email: got / want`.
fn diff(got: &BTreeMap<String, Vec<String>>, want: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let keys: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    keys.into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| match (got.get(k), want.get(k)) {
            (Some(g), Some(w)) if g.len() == 1 && w.len() == 1 => {
                format!("{k}: {}", field_diff(&g[0], &w[0]))
            }
            (g, w) => format!("{k}: {g:?} / {w:?}"),
        })
        .collect()
}

/// The fields in which two snapshot records differ: `field: got / want`.
fn field_diff(got: &str, want: &str) -> String {
    let (g, w): (Value, Value) = (
        serde_json::from_str(got).unwrap(),
        serde_json::from_str(want).unwrap(),
    );
    let (g, w) = (g.as_object().unwrap(), w.as_object().unwrap());
    let keys: BTreeSet<&String> = g.keys().chain(w.keys()).collect();
    keys.into_iter()
        .filter(|k| g.get(*k) != w.get(*k))
        .map(|k| {
            format!(
                "{k}: {} / {}",
                g.get(k).unwrap_or(&Value::Null),
                w.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn stderr_line(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stderr).trim().to_owned();
    let errors: Vec<&str> = s.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line, got: {s}");
    errors[0].to_owned()
}

async fn run_to_completion(w: &World) {
    let o = w.tandem(&["sync", "run", "s"]).await;
    assert!(
        o.status.success(),
        "sync run: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A request of one app, selected as the sandbox's fault rules do: the one after `skip`
/// requests with this method and path prefix.
type At = (AccountKind, u32, &'static str, &'static str);

/// One run of `tandem sync run` in [`crash_and_restart`].
#[derive(Clone, Copy, Debug)]
struct Cut {
    /// The app commits this request, then the connection drops before its answer: the
    /// run goes on and records the write as failed.
    lose: Option<At>,
    /// Stall this request and kill the process while it is in flight: the writes before
    /// it committed, none of their answers is recorded, or nothing went out. `None`:
    /// the run ends by itself.
    kill: Option<At>,
}

/// Where [`crash_and_restart`] interrupts runs that create one record per request.
fn one_by_one_cuts() -> Vec<Cut> {
    let (fs_, fm_) = (AccountKind::FreshsalesSuite, AccountKind::Freshmarketer);
    // Each restart reads both sides again, then writes what is left (creates are one
    // request each here: POST .../contacts; updates and list adds are PUTs).
    let create = |skip| (fm_, skip, "POST", "/crm/sales/api/contacts");
    let put = |kind, skip| (kind, skip, "PUT", "/crm");
    let kill = |at| Cut {
        lose: None,
        kill: Some(at),
    };
    vec![
        Cut {
            lose: Some(create(1)),
            kill: Some(create(3)),
        },
        kill(create(0)),
        kill(create(2)),
        kill(create(4)),
        Cut {
            lose: Some(create(0)),
            kill: Some(create(7)),
        },
        kill(create(11)),
        kill(put(fs_, 0)),
        kill(put(fm_, 0)),
        Cut {
            lose: Some(put(fm_, 1)),
            kill: Some(put(fm_, 3)),
        },
        Cut {
            lose: Some(put(fs_, 0)),
            kill: Some(put(fs_, 1)),
        },
        Cut {
            lose: Some(put(fm_, 0)),
            kill: None,
        },
    ]
}

/// Where [`crash_and_restart`] interrupts runs that create with bulk jobs: a kill after
/// a job committed, before the connector added its records to the list; a kill while
/// recovery adds them; a lost answer to recovery's list add.
fn bulk_cuts() -> Vec<Cut> {
    let add = (AccountKind::Freshmarketer, 0, "PUT", "/crm/sales/api/lists");
    vec![
        Cut {
            lose: None,
            kill: Some(add),
        },
        Cut {
            lose: None,
            kill: Some(add),
        },
        Cut {
            lose: Some(add),
            kill: None,
        },
    ]
}

/// Kills `tandem sync run` at many points of its work — while a write is in flight to
/// either app, after a write committed but before its answer arrived, between batches —
/// and loses the answers of committed writes, restarts it each time, and finally runs it
/// to completion. The apps must end exactly as a run that was never interrupted leaves
/// them (every field, list membership), and a further run writes nothing.
///
/// Failed writes are retried on the next run here (`base-delay = "0s"`): the test does
/// not wait out the back-off, and a retry is how a lost answer converges.
async fn crash_and_restart(config: &str, bulk: bool, cuts: &[Cut]) {
    let config = format!("{config}\n[syncs.s.retry]\nbase-delay = \"0s\"\n");
    let config = config.as_str();
    let bulk = ("FM_BULK".to_string(), bulk.to_string());
    let (seed, fs, fm) = (7, 120, 120);
    let mut reference = World::start_with(seed, fs, fm, config).await;
    reference.env.push(bulk.clone());
    run_to_completion(&reference).await;
    run_to_completion(&reference).await;
    let want = (
        reference.snapshot(AccountKind::FreshsalesSuite).await,
        reference.snapshot(AccountKind::Freshmarketer).await,
    );

    let mut w = World::start_with(seed, fs, fm, config).await;
    w.env.push(bulk);
    let (fs_, fm_) = (AccountKind::FreshsalesSuite, AccountKind::Freshmarketer);
    let mut kills = 0;
    let mut lost = 0;
    for &cut in cuts {
        let lose = match cut.lose {
            Some(at) => Some(w.arm(at, json!({"kind": "after_commit"})).await),
            None => None,
        };
        let Some(at) = cut.kill else {
            // A lost answer during recovery stops the run (the next one resumes).
            let o = w.tandem(&["sync", "run", "s"]).await;
            if !o.status.success() {
                let line = stderr_line(&o);
                assert!(line.contains("the next run resumes"), "{line}");
            }
            let (kind, id) = lose.unwrap();
            let fired = !w.armed(kind, id).await;
            lost += usize::from(fired);
            eprintln!("{cut:?}: answer lost: {fired}");
            w.control(kind, reqwest::Method::DELETE, "/faults", None)
                .await;
            continue;
        };
        let (kind, stall) = w.arm(at, json!({"kind": "latency", "ms": 60_000})).await;
        let mut child = w.spawn(&["sync", "run", "s"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if !w.armed(kind, stall).await {
                // The stalled request is in flight: kill the process there.
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                if let Some((kind, id)) = lose {
                    lost += usize::from(!w.armed(kind, id).await);
                }
                eprintln!("{cut:?}: killed");
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let mut out = String::new();
                if let Some(mut e) = child.stdout.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut out);
                }
                if let Some((kind, id)) = lose {
                    lost += usize::from(!w.armed(kind, id).await);
                }
                eprintln!("{cut:?}: the run finished first: {out}");
                // The run finished before reaching this point.
                assert!(status.success(), "an uninterrupted run succeeds");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the run neither stalled nor finished"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for kind in [fs_, fm_] {
            w.control(kind, reqwest::Method::DELETE, "/faults", None)
                .await;
        }
    }
    let want_kills = cuts.iter().filter(|c| c.kill.is_some()).count().div_ceil(2);
    assert!(
        kills >= want_kills,
        "the process was killed mid-run {kills} times"
    );
    let want_lost = cuts.iter().filter(|c| c.lose.is_some()).count().div_ceil(2);
    assert!(lost >= want_lost, "{lost} answers were lost");
    for _ in 0..3 {
        run_to_completion(&w).await;
    }
    let got = (
        w.snapshot(AccountKind::FreshsalesSuite).await,
        w.snapshot(AccountKind::Freshmarketer).await,
    );
    assert_eq!(
        diff(&got.0, &want.0),
        Vec::<String>::new(),
        "Freshsales ends as after an uninterrupted run"
    );
    assert_eq!(
        diff(&got.1, &want.1),
        Vec::<String>::new(),
        "Freshmarketer ends as after an uninterrupted run"
    );
    let o = w.tandem(&["sync", "run", "s", "--json"]).await;
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    let writes: u64 = summary["counters"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| {
            c["created"].as_u64().unwrap()
                + c["updated"].as_u64().unwrap()
                + c["removed"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(writes, 0, "a settled sync writes nothing: {summary}");
    let o = w.tandem(&["sync", "status", "s", "--json"]).await;
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status[0]["retrying"], json!(0), "{status}");
    assert_eq!(status[0]["parked"], json!(0), "{status}");
}

/// Both apps' whole contact bases kept in step (no list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sync_run_converges_with_nothing_lost_or_duplicated() {
    crash_and_restart(
        &CONFIG.replace("scope = { b = \"Newsletter\" }\n", ""),
        false,
        &one_by_one_cuts(),
    )
    .await;
}

/// Freshsales and one Freshmarketer list: records matched outside the list are added to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_list_sync_run_converges_with_nothing_lost_or_duplicated() {
    crash_and_restart(CONFIG, false, &one_by_one_cuts()).await;
}

/// The same under the default `most-recent`: the sync's own writes before a kill (list
/// adds, field writes to one app) move the records' change times, and must not be taken
/// for users' edits when the restarted run decides the conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_list_sync_run_under_most_recent_decides_as_if_uninterrupted() {
    crash_and_restart(
        &with_winner(CONFIG, "most-recent"),
        false,
        &one_by_one_cuts(),
    )
    .await;
}

/// Creates in bulk jobs under `most-recent`: a kill after a job committed, before the
/// connector added its records to the list, and lost answers to jobs that committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bulk_create_run_still_brings_every_record_into_the_list() {
    crash_and_restart(&with_winner(CONFIG, "most-recent"), true, &bulk_cuts()).await;
}

/// A bulk create into the list commits, but its answer is lost (a 500 after the write):
/// the next run finds the records by their markers and adds them to the list, as an
/// uninterrupted run does, and nothing is left "retrying".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_a_bulk_create_still_brings_the_records_into_the_list() {
    let config = with_winner(CONFIG, "most-recent");
    let (seed, fs, fm) = (11, 40, 40);
    let reference = World::start_with(seed, fs, fm, &config).await;
    run_to_completion(&reference).await;
    run_to_completion(&reference).await;
    let want = reference.snapshot(AccountKind::Freshmarketer).await;

    let w = World::start_with(seed, fs, fm, &config).await;
    let bulk = json!({"method": "POST", "path_prefix": "/crm/sales/api/contacts/bulk_upsert",
        "count": 1, "fault": {"kind": "after_commit", "status": 500}});
    w.control(
        AccountKind::Freshmarketer,
        reqwest::Method::POST,
        "/faults",
        Some(bulk),
    )
    .await;
    let o = w.tandem(&["sync", "run", "s", "--json"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !w.fault_pending(AccountKind::Freshmarketer).await,
        "the bulk create's answer was lost"
    );
    let first: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        first["counters"]["a-to-b"]["failed"].as_u64().unwrap() >= 4,
        "{first}"
    );
    for _ in 0..2 {
        run_to_completion(&w).await;
    }
    let got = w.snapshot(AccountKind::Freshmarketer).await;
    assert_eq!(diff(&got, &want), Vec::<String>::new());
    let o = w.tandem(&["sync", "status", "s", "--json"]).await;
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["retrying"], json!(0), "{list}");
    assert_eq!(list[0]["parked"], json!(0), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_with_what_to_do() {
    let w = World::start(3, 10, 10).await;
    // Unknown sync.
    let o = w.tandem(&["sync", "plan", "nope"]).await;
    assert!(!o.status.success());
    let line = stderr_line(&o);
    assert!(
        line.contains("no sync `nope`") && line.contains("defined: s"),
        "{line}"
    );
    // Bad config: every problem with line and column, then one summary line.
    let bad = w.dir.path().join("bad.toml");
    std::fs::write(&bad, "[syncs.x]\na = \"nowhere\"\nb = 3\n").unwrap();
    let mut c = w.command_with(&bad, &["sync", "status"]);
    let o = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(!o.status.success());
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("bad.toml:3:"), "{text}");
    assert!(
        text.lines().last().unwrap().contains("config validate"),
        "{text}"
    );
    // A missing secret.
    let mut c = w.command(&["sync", "run", "s"]);
    c.env_remove("FM_KEY");
    let o = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let line = stderr_line(&o);
    assert!(line.contains("FM_KEY"), "{line}");
    // A wrong API key.
    let mut c = w.command(&["sync", "run", "s"]);
    c.env("FS_KEY", "wrong-key-wrong-key-12");
    let o = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let line = stderr_line(&o);
    assert!(
        line.contains("connection `freshsales`")
            && line.contains("unauthorized")
            && line.contains("API key"),
        "{line}"
    );
    assert!(
        !line.contains("wrong-key-wrong-key-12"),
        "the key is never printed: {line}"
    );
    // An unreachable account.
    let mut c = w.command(&["sync", "run", "s"]);
    c.env("FM_URL", "http://127.0.0.1:9/crm/sales/api");
    let o = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let line = stderr_line(&o);
    assert!(
        line.contains("connection `freshmarketer`") && line.contains("base-url"),
        "{line}"
    );
}

/// A second `sync run` while another holds the state file names that process (pid and
/// command), although the config has a `[daemon] token`; a damaged state file is one line
/// saying so and what to do, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_file_trouble_is_one_line_naming_the_cause() {
    let w = World::start(13, 12, 12).await;
    let stall =
        json!({"path_prefix": "/crm", "count": 1, "fault": {"kind": "latency", "ms": 60_000}});
    w.control(
        AccountKind::Freshmarketer,
        reqwest::Method::POST,
        "/faults",
        Some(stall),
    )
    .await;
    let mut first = w.spawn(&["sync", "run", "s"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.fault_pending(AccountKind::Freshmarketer).await {
        assert!(first.try_wait().unwrap().is_none(), "the first run ended");
        assert!(
            Instant::now() < deadline,
            "the first run never reached the app"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let o = w.tandem(&["sync", "run", "s"]).await;
    let line = stderr_line(&o);
    assert!(
        line.contains("in use by")
            && line.contains(&format!("pid {}", first.id()))
            && line.contains("`tandem sync run s`")
            && !line.contains("does not answer"),
        "{line}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    w.control(
        AccountKind::Freshmarketer,
        reqwest::Method::DELETE,
        "/faults",
        None,
    )
    .await;
    run_to_completion(&w).await;

    // Damage the file: its header and first pages overwritten.
    let path = w.dir.path().join("state/tandem.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().take(8192) {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    for args in [&["sync", "status"][..], &["sync", "run", "s"][..]] {
        let o = w.tandem(args).await;
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let line = stderr_line(&o);
        assert!(
            line.contains("damaged") && line.contains("backup") && line.contains("tandem.redb"),
            "{line}"
        );
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_daemon_holds_the_state_file_and_answers_for_it() {
    let w = World::start(5, 12, 12).await;
    run_to_completion(&w).await;
    // Bind the control API on a known free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = std::fs::read_to_string(w.config())
        .unwrap()
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(w.config(), config).unwrap();
    let mut daemon = w.spawn(&["run"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        assert!(Instant::now() < deadline, "the control API never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A plan needs the state file itself: one line naming the holder.
    let o = w.tandem(&["sync", "plan", "s"]).await;
    let line = stderr_line(&o);
    assert!(
        line.contains("in use by")
            && line.contains("tandem run")
            && line.contains(&format!("pid {}", daemon.id())),
        "{line}"
    );
    // Status, pause and logs go through the daemon.
    let o = w.tandem(&["sync", "status", "--json"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["name"], json!("s"));
    let o = w.tandem(&["sync", "pause", "s"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = w.tandem(&["sync", "status", "s", "--json"]).await;
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["status"], json!("paused"));
    let o = w.tandem(&["sync", "logs", "s", "--json"]).await;
    let logs: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!logs["runs"].as_array().unwrap().is_empty());
    // Through the daemon, refusals read as they do locally and fail the command.
    let o = w.tandem(&["sync", "run", "s"]).await;
    assert!(!o.status.success(), "a paused run succeeded");
    let line = stderr_line(&o);
    assert!(
        line.contains("sync `s` is paused") && line.contains("tandem sync resume s"),
        "{line}"
    );
    let o = w.tandem(&["sync", "logs", "s", "--run", "999"]).await;
    assert!(!o.status.success(), "logs of a missing run succeeded");
    assert!(
        stderr_line(&o).contains("has no run 999"),
        "{}",
        stderr_line(&o)
    );
    let o = w.tandem(&["sync", "status", "nope"]).await;
    assert!(!o.status.success());
    assert!(
        stderr_line(&o).contains("defined: s"),
        "{}",
        stderr_line(&o)
    );
    // Ctrl-C (SIGTERM here) stops it gracefully and frees the file.
    let pid = daemon.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "graceful stop: {status:?}");
    let o = w.tandem(&["sync", "status", "s", "--json"]).await;
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["status"], json!("paused"), "the pause was stored");
    let o = w.tandem(&["sync", "resume", "s"]).await;
    assert!(o.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_status_and_logs_print_tables_and_json() {
    let w = World::start(9, 14, 14).await;
    let o = w.tandem(&["sync", "plan", "s", "--json"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        plan["summary"]["a-to-b"]["create"].as_u64().unwrap() > 0,
        "{}",
        plan["summary"]
    );
    assert!(plan["summary"]["b-to-a"]["create"].as_u64().is_some());
    let o = w.tandem(&["sync", "plan", "s"]).await;
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Dry run")
            && text.contains("freshsales → freshmarketer")
            && text.contains("Create"),
        "{text}"
    );
    let o = w.tandem(&["sync", "status"]).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("never"),
        "not run yet"
    );
    let o = w.tandem(&["sync", "run", "s"]).await;
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("run #1") && text.contains("Created"),
        "{text}"
    );
    // The run's API requests per side, as `sync run` printed them, are in its log.
    let requests = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("API requests: "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no requests line in:\n{text}"))
    };
    let ran = requests(&text);
    assert!(
        ran.contains(" to freshsales (A; quota: ") && ran.contains(" to freshmarketer (B"),
        "{ran}"
    );
    let o = w.tandem(&["sync", "logs", "s"]).await;
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Run #1") && text.contains("created") && text.contains("Reason"),
        "{text}"
    );
    assert_eq!(requests(&text), ran);
    let o = w.tandem(&["sync", "logs", "s", "--json"]).await;
    let logs: Value = serde_json::from_slice(&o.stdout).unwrap();
    let sent = logs["runs"][0]["run"]["requests"]["a"]["sent"].as_u64();
    assert!(
        sent.is_some_and(|n| n > 0 && ran.starts_with(&format!("API requests: {n} to"))),
        "{sent:?} / {ran}"
    );
    let o = w.tandem(&["sync", "disconnect", "s"]).await;
    assert!(!o.status.success());
    assert!(stderr_line(&o).contains("--yes"));
    let o = w.tandem(&["sync", "disconnect", "s", "--yes"]).await;
    assert!(o.status.success());
    let o = w.tandem(&["sync", "logs", "s", "--json"]).await;
    let logs: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        logs["runs"].as_array().unwrap().is_empty(),
        "disconnect wiped the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_records_a_decision_and_says_what_happens_next() {
    let w = World::start(3, 10, 10).await;
    let o = w
        .tandem(&["sync", "resolve", "s", "--keep-apart", "101", "202"])
        .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("A:101 and B:202 are kept apart") && out.contains("next run"),
        "{out}"
    );
    // The decision is applied by the next run, which lists both apps in full.
    run_to_completion(&w).await;
    // Without a decision, clap says what is missing.
    let o = w.tandem(&["sync", "resolve", "s"]).await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--link") || err.contains("--keep-apart"),
        "{err}"
    );
    // An unknown sync is one line naming the defined ones.
    let o = w
        .tandem(&["sync", "resolve", "nope", "--link", "1", "2"])
        .await;
    let line = stderr_line(&o);
    assert!(line.contains("no sync `nope`"), "{line}");
}
