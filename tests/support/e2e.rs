//! A world for end-to-end sync tests: simulated accounts, a config file pointing at them,
//! the assembled [`Host`], and helpers that act "as a user in the app" through the
//! accounts' control API (`docs/sandbox.md`) and read what the apps hold afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tandem::app::{Host, HostError, HostOptions, RetrySettings};
use tandem::config::{self, Catalog, Config, Env};
use tandem::sync::{RunOptions, RunOutcome, RunReport};
use tandem_sandbox::{AccountInfo, AccountKind, Sandbox, SandboxOptions, Sizes};

/// The config shared by every test: the three connectors and the example mapper, and one
/// connection per simulated account. Tests append their `[syncs.*]`.
pub const BASE_CONFIG: &str = r#"
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

[plugins.google-contacts]
builtin = "google-contacts"
[plugins.google-contacts.grant]
http = ["setting:base-url"]
loopback = true
storage-quota = "1MiB"

[plugins.normalize]
builtin = "normalize"

[connections.freshsales]
plugin = "freshsales"
[connections.freshsales.settings]
base-url = { env = "FS_URL" }
[connections.freshsales.credentials]
api-key = { env = "FS_KEY" }

[connections.classic]
plugin = "freshsales"
[connections.classic.settings]
base-url = { env = "FSC_URL" }
edition = "classic"
[connections.classic.credentials]
api-key = { env = "FSC_KEY" }

[connections.freshmarketer]
plugin = "freshmarketer"
[connections.freshmarketer.settings]
base-url = { env = "FM_URL" }
[connections.freshmarketer.credentials]
api-key = { env = "FM_KEY" }

[connections.google]
plugin = "google-contacts"
[connections.google.settings]
base-url = { env = "G_URL" }
[connections.google.credentials.oauth2]
client-id = { env = "G_CLIENT_ID" }
client-secret = { env = "G_CLIENT_SECRET" }
refresh-token = { env = "G_REFRESH" }
token-url = { env = "G_TOKEN_URL" }
"#;

/// The token of the control API in [`BASE_CONFIG`].
pub const CONTROL_TOKEN: &str = "test-control-token-0123456789";

/// Sandbox options for sync tests: a manual clock (tests move it), no rate limits, bulk
/// jobs that complete at once.
pub fn options(sizes: Sizes) -> SandboxOptions {
    let mut o = SandboxOptions {
        seed: 42,
        sizes,
        rate_limits_enabled: false,
        start_time: Some(time::macros::datetime!(2024-05-01 12:00 UTC)),
        ..SandboxOptions::default()
    };
    o.freshworks.bulk_job_delay_secs = 0;
    o
}

/// Small accounts: enough overlap, lists and opt-outs to exercise every rule.
pub fn small() -> Sizes {
    Sizes {
        freshsales: 40,
        freshsales_classic: 24,
        freshmarketer: 40,
        google: 30,
    }
}

/// A compile cache shared by every world of this test binary (compiling the connectors
/// in a debug build takes seconds; the cache makes it once).
pub fn cache_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    // A subdirectory, so that the cache's key (`cache.key`, beside it) is cleaned up too.
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
        .join("cache")
}

/// The simulated accounts, a config and an open host.
pub struct World {
    /// The simulated accounts.
    pub sandbox: Sandbox,
    /// Holds the config and the state file.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub config_path: PathBuf,
    /// The variables the config references.
    pub env: Env,
    host: Option<Host>,
    http: reqwest::Client,
}

/// Which app a helper acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// Freshsales Suite.
    Fs,
    /// Freshsales Classic.
    Classic,
    /// Freshmarketer.
    Fm,
    /// Google Contacts.
    Google,
}

impl App {
    fn kind(self) -> AccountKind {
        match self {
            App::Fs => AccountKind::FreshsalesSuite,
            App::Classic => AccountKind::FreshsalesClassic,
            App::Fm => AccountKind::Freshmarketer,
            App::Google => AccountKind::GooglePeople,
        }
    }
}

fn api_key(a: &AccountInfo) -> String {
    match &a.credentials {
        tandem_sandbox::Credentials::ApiKey { api_key, .. } => api_key.clone(),
        other => panic!("not an API key account: {other:?}"),
    }
}

/// The variables [`BASE_CONFIG`] references, for the accounts of `sandbox`.
pub fn env_for(sandbox: &Sandbox) -> Env {
    let mut env = Env::empty().with("CONTROL_TOKEN", CONTROL_TOKEN);
    for (kind, url, key) in [
        (AccountKind::FreshsalesSuite, "FS_URL", "FS_KEY"),
        (AccountKind::FreshsalesClassic, "FSC_URL", "FSC_KEY"),
        (AccountKind::Freshmarketer, "FM_URL", "FM_KEY"),
    ] {
        match sandbox.account(kind) {
            Some(a) => env = env.with(url, a.api_base.clone()).with(key, api_key(a)),
            // The connection is declared but unused: any value passes validation.
            None => env = env.with(url, "http://127.0.0.1:9/").with(key, "unused"),
        }
    }
    match sandbox.account(AccountKind::GooglePeople) {
        Some(a) => {
            let tandem_sandbox::Credentials::OAuth2 {
                token_url,
                client_id,
                client_secret,
                refresh_token,
            } = &a.credentials
            else {
                panic!("google uses OAuth2");
            };
            env = env
                .with("G_URL", a.base_url.clone())
                .with("G_CLIENT_ID", client_id.clone())
                .with("G_CLIENT_SECRET", client_secret.clone())
                .with("G_REFRESH", refresh_token.clone())
                .with("G_TOKEN_URL", token_url.clone());
        }
        None => {
            for v in ["G_CLIENT_ID", "G_CLIENT_SECRET", "G_REFRESH"] {
                env = env.with(v, "unused");
            }
            env = env
                .with("G_URL", "http://127.0.0.1:9/")
                .with("G_TOKEN_URL", "http://127.0.0.1:9/token");
        }
    }
    env
}

/// Writes `BASE_CONFIG + syncs` into `dir` and loads it with `env`.
pub fn write_config(dir: &Path, syncs: &str, env: &Env) -> (PathBuf, Config) {
    let path = dir.join("tandem.toml");
    std::fs::write(&path, format!("{BASE_CONFIG}\n{syncs}")).expect("write config");
    let config = config::load(&path, env, &Catalog::builtin()).unwrap_or_else(|errors| {
        panic!(
            "test config is invalid:\n{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    (path, config)
}

/// Host options for tests: the shared compile cache, quick retries.
pub fn host_options(env: &Env) -> HostOptions {
    let mut o = HostOptions::new("tandem-tests");
    o.env = env.clone();
    o.cache_dir = Some(cache_dir());
    o.retry = RetrySettings {
        max_rate_wait: Duration::from_secs(30),
        transient_attempts: 3,
        transient_delay: Duration::from_millis(50),
    };
    o
}

impl World {
    /// Starts `kinds` of accounts with `sizes` and opens a host on `syncs`.
    pub async fn start(kinds: &[AccountKind], sizes: Sizes, syncs: &str) -> World {
        let mut opts = options(sizes);
        opts.kinds = kinds.to_vec();
        Self::start_with(opts, syncs).await
    }

    /// Like [`World::start`] with full sandbox options.
    pub async fn start_with(opts: SandboxOptions, syncs: &str) -> World {
        Self::start_with_env(opts, syncs, &[]).await
    }

    /// Like [`World::start_with`], with more variables for the config to reference.
    pub async fn start_with_env(
        opts: SandboxOptions,
        syncs: &str,
        extra_env: &[(&str, &str)],
    ) -> World {
        let sandbox = Sandbox::start(opts).await.expect("sandbox starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let env = extra_env
            .iter()
            .fold(env_for(&sandbox), |env, (k, v)| env.with(*k, *v));
        let (config_path, config) = write_config(dir.path(), syncs, &env);
        let host = Host::open(config, host_options(&env)).expect("host opens");
        World {
            sandbox,
            dir,
            config_path,
            env,
            host: Some(host),
            http: reqwest::Client::new(),
        }
    }

    /// The host under test (config, runtime, state).
    pub fn host(&self) -> &Host {
        self.host.as_ref().expect("host open")
    }

    /// Closes the host (its state file), as a stopped process would.
    pub fn close(&mut self) {
        self.host = None;
    }

    /// Opens the host again on the same config and state file.
    pub fn reopen(&mut self) {
        self.host = None;
        let config =
            config::load(&self.config_path, &self.env, &Catalog::builtin()).expect("config");
        self.host = Some(Host::open(config, host_options(&self.env)).expect("host reopens"));
    }

    /// Closes the world's host and starts a daemon (`tandem run`) on the same config and
    /// state file, as read from disk now.
    pub fn start_daemon(&mut self) -> tandem::app::daemon::Daemon {
        self.close();
        let config =
            config::load(&self.config_path, &self.env, &Catalog::builtin()).expect("config");
        let host = std::sync::Arc::new(Host::open(config, host_options(&self.env)).expect("host"));
        tandem::app::daemon::Daemon::start(host).expect("daemon starts")
    }

    /// Runs a sync once; panics with the error's one line if it fails.
    pub async fn run(&self, sync: &str) -> RunReport {
        self.try_run(sync, RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("sync {sync} failed: {e}"))
    }

    /// Runs a sync with options.
    pub async fn try_run(&self, sync: &str, opts: RunOptions) -> Result<RunReport, HostError> {
        self.host().run_sync(sync, opts).await
    }

    /// Runs until a run writes nothing (at most `max` runs); returns the reports.
    pub async fn settle(&self, sync: &str, max: usize) -> Vec<RunReport> {
        let mut reports = Vec::new();
        for _ in 0..max {
            let r = self.run(sync).await;
            let quiet = r.plan.ops.is_empty();
            reports.push(r);
            if quiet {
                return reports;
            }
        }
        panic!(
            "sync {sync} did not settle in {max} runs: last plan {:?}",
            reports.last().map(|r| &r.plan.ops)
        );
    }

    fn account(&self, app: App) -> &AccountInfo {
        self.sandbox.account(app.kind()).expect("account started")
    }

    /// A control API call on `app`.
    pub async fn control(
        &self,
        app: App,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let url = format!("{}{path}", self.account(app).control_url);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert!(
            status.is_success(),
            "{method} {url} {body:?}: {status} {text}"
        );
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("control JSON")
        }
    }

    /// Moves the accounts' shared clock forward.
    pub async fn advance(&self, secs: u64) {
        self.sandbox.clock().advance(Duration::from_secs(secs));
    }

    /// Arms a fault rule on `app` (see docs/sandbox.md).
    pub async fn fault(&self, app: App, rule: Value) {
        self.control(app, reqwest::Method::POST, "/faults", Some(rule))
            .await;
    }

    /// Counts of requests `app` answered, by status.
    pub async fn statuses(&self, app: App) -> BTreeMap<String, u64> {
        let c = self
            .control(app, reqwest::Method::GET, "/counters", None)
            .await;
        let mut out = BTreeMap::new();
        for e in c["endpoints"].as_array().into_iter().flatten() {
            for (status, n) in e["statuses"].as_object().into_iter().flatten() {
                *out.entry(status.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
        out
    }

    /// Every request `app` answered so far.
    pub async fn requests(&self, app: App) -> u64 {
        self.control(app, reqwest::Method::GET, "/counters", None)
            .await["total"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Linked record pairs of a sync (A id, B id), from the state store.
    pub fn links(&self, sync: &str) -> Vec<(u64, u64)> {
        self.host()
            .store()
            .links(sync)
            .expect("links")
            .into_iter()
            .filter_map(|l| {
                Some((
                    l.ids.a.as_deref()?.parse().ok()?,
                    l.ids.b.as_deref()?.parse().ok()?,
                ))
            })
            .collect()
    }

    /// Per lower-cased e-mail, what the live records of a Freshworks app hold (without
    /// ids): first name, job title, DND, subscription status and list names. Two runs of
    /// one sync over the same seed must leave equal snapshots, interrupted or not.
    pub async fn snapshot(&self, app: App) -> BTreeMap<String, Vec<String>> {
        let lists: BTreeMap<u64, String> = if app == App::Fm {
            let st = self
                .control(app, reqwest::Method::GET, "/state", None)
                .await;
            st["lists"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| Some((l["id"].as_u64()?, l["name"].as_str()?.to_owned())))
                .collect()
        } else {
            BTreeMap::new()
        };
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (e, rs) in self.by_email(app, "contacts").await {
            let mut v: Vec<String> = rs
                .iter()
                .map(|r| {
                    let names: BTreeSet<&String> = ids(&r["list_ids"])
                        .iter()
                        .filter_map(|l| lists.get(l))
                        .collect();
                    format!(
                        "{}|{}|{}|{}|{names:?}",
                        r["first_name"],
                        r["job_title"],
                        r["do_not_disturb"],
                        r["subscription_status"]
                    )
                })
                .collect();
            v.sort();
            out.insert(e, v);
        }
        out
    }

    // ----- Freshworks -----

    /// Live (not deleted) records of a Freshworks app.
    pub async fn records(&self, app: App, entity: &str) -> Vec<Value> {
        let v = self
            .control(
                app,
                reqwest::Method::GET,
                &format!("/records/{entity}"),
                None,
            )
            .await;
        let list = v[entity].as_array().cloned().unwrap_or_default();
        list.into_iter()
            .filter(|r| r["is_deleted"] != json!(true))
            .collect()
    }

    /// One record, deleted included.
    pub async fn record(&self, app: App, entity: &str, id: u64) -> Value {
        let v = self
            .control(
                app,
                reqwest::Method::GET,
                &format!("/records/{entity}/{id}"),
                None,
            )
            .await;
        v[singular(entity)].clone()
    }

    /// Live records by lower-cased primary e-mail (an account may hold duplicates).
    pub async fn by_email(&self, app: App, entity: &str) -> BTreeMap<String, Vec<Value>> {
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for r in self.records(app, entity).await {
            if let Some(e) = email(&r) {
                out.entry(e).or_default().push(r);
            }
        }
        out
    }

    /// The id of the Freshworks list named `name`.
    pub async fn list_id(&self, app: App, name: &str) -> u64 {
        let state = self
            .control(app, reqwest::Method::GET, "/state", None)
            .await;
        state["lists"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == json!(name))
            .and_then(|l| l["id"].as_u64())
            .unwrap_or_else(|| panic!("{app:?} has no list {name}"))
    }

    /// Live members of a list, by lower-cased e-mail.
    pub async fn list_members(&self, app: App, list: u64) -> BTreeMap<String, Vec<Value>> {
        self.by_email(app, "contacts")
            .await
            .into_iter()
            .filter_map(|(e, rs)| {
                let rs: Vec<Value> = rs
                    .into_iter()
                    .filter(|r| ids(&r["list_ids"]).contains(&list))
                    .collect();
                (!rs.is_empty()).then_some((e, rs))
            })
            .collect()
    }

    /// Creates a record as a user would; returns its id.
    pub async fn create(&self, app: App, entity: &str, fields: Value) -> u64 {
        let v = self
            .control(
                app,
                reqwest::Method::POST,
                &format!("/records/{entity}"),
                Some(fields),
            )
            .await;
        v[singular(entity)]["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("create answered {v}"))
    }

    /// Edits a record as a user would.
    pub async fn edit(&self, app: App, entity: &str, id: u64, fields: Value) {
        self.control(
            app,
            reqwest::Method::PATCH,
            &format!("/records/{entity}/{id}"),
            Some(fields),
        )
        .await;
    }

    /// Deletes a record as a user would (recycle bin).
    pub async fn delete(&self, app: App, entity: &str, id: u64) {
        self.control(
            app,
            reqwest::Method::DELETE,
            &format!("/records/{entity}/{id}"),
            None,
        )
        .await;
    }

    /// Sets DND / subscription as a user would.
    pub async fn consent(&self, app: App, entity: &str, id: u64, body: Value) {
        self.control(
            app,
            reqwest::Method::POST,
            &format!("/records/{entity}/{id}/consent"),
            Some(body),
        )
        .await;
    }

    /// Adds records to a list as a user would.
    pub async fn add_to_list(&self, app: App, list: u64, add: &[u64]) {
        self.control(
            app,
            reqwest::Method::PUT,
            &format!("/lists/{list}/members"),
            Some(json!({ "add": add })),
        )
        .await;
    }

    /// An ambiguous person for the resolve tests: Kim in Freshsales; in Freshmarketer's
    /// Newsletter list, Kim and Lee, who lists Kim's address second. Returns the ids
    /// (Kim in Freshsales, Kim in Freshmarketer, Lee in Freshmarketer).
    pub async fn kim_and_lee_apart(&self) -> (u64, u64, u64) {
        let list = self.list_id(App::Fm, "Newsletter").await;
        let kim = self
            .create(
                App::Fs,
                "contacts",
                json!({"first_name": "Kim", "last_name": "Apart", "emails": "kim@apart.example"}),
            )
            .await;
        let kim_fm = self
            .create(
                App::Fm,
                "contacts",
                json!({"first_name": "Kim", "last_name": "Apart", "subscription_status": 1,
                    "emails": [{"value": "kim@apart.example", "is_primary": true}]}),
            )
            .await;
        let lee_fm = self
            .create(
                App::Fm,
                "contacts",
                json!({"first_name": "Lee", "last_name": "Apart", "subscription_status": 1,
                    "emails": [{"value": "lee@apart.example", "is_primary": true},
                               {"value": "kim@apart.example", "is_primary": false}]}),
            )
            .await;
        self.add_to_list(App::Fm, list, &[kim_fm, lee_fm]).await;
        (kim, kim_fm, lee_fm)
    }

    // ----- Google -----

    /// Live people, by lower-cased primary e-mail (an account may hold duplicates).
    pub async fn google_people(&self) -> BTreeMap<String, Vec<Value>> {
        let state = self
            .control(App::Google, reqwest::Method::GET, "/state", None)
            .await;
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for p in state["people"].as_array().into_iter().flatten() {
            if p["deleted"] == json!(true) {
                continue;
            }
            if let Some(e) = p["person"]["emailAddresses"][0]["value"].as_str() {
                out.entry(e.trim().to_lowercase())
                    .or_default()
                    .push(p.clone());
            }
        }
        out
    }

    /// The resource name of a Google contact group by name.
    pub async fn google_group(&self, name: &str) -> String {
        let state = self
            .control(App::Google, reqwest::Method::GET, "/state", None)
            .await;
        state["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["name"] == json!(name))
            .and_then(|g| g["resourceName"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("google has no group {name}"))
    }
}

fn singular(entity: &str) -> &str {
    entity.strip_suffix('s').unwrap_or(entity)
}

/// What a Freshsales–Freshmarketer sync `sync` leaves in both apps when nothing goes
/// wrong: the oracle for runs with faults or crashes on the same seed.
pub async fn reference(
    sizes: Sizes,
    syncs: &str,
    sync: &str,
) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) {
    let w = World::start(
        &[AccountKind::FreshsalesSuite, AccountKind::Freshmarketer],
        sizes,
        syncs,
    )
    .await;
    w.settle(sync, 4).await;
    (w.snapshot(App::Fs).await, w.snapshot(App::Fm).await)
}

/// The lower-cased primary e-mail of a Freshworks record.
pub fn email(r: &Value) -> Option<String> {
    r["email"]
        .as_str()
        .or_else(|| r["emails"][0]["value"].as_str())
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
}

/// A JSON array of numbers (or numeric strings) as a set.
pub fn ids(v: &Value) -> BTreeSet<u64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
        .collect()
}

/// Whether a Freshworks record is opted out of e-mail (DND, unsubscribed, spam, bounced).
pub fn opted_out(r: &Value) -> bool {
    r["do_not_disturb"] == json!(true)
        || matches!(r["subscription_status"].as_u64(), Some(0 | 3 | 4))
        || matches!(r["subscription_status"].as_str(), Some("0" | "3" | "4"))
}

/// Whether a Freshworks record is unsubscribed (status 0).
pub fn unsubscribed(r: &Value) -> bool {
    r["subscription_status"].as_u64() == Some(0) || r["subscription_status"].as_str() == Some("0")
}

/// Asserts that no e-mail is held by more records `after` than `before` (at least one):
/// the sync created no duplicate.
pub fn no_duplicates(
    before: &BTreeMap<String, Vec<Value>>,
    after: &BTreeMap<String, Vec<Value>>,
    what: &str,
) {
    for (e, rs) in after {
        let was = before.get(e).map_or(0, Vec::len).max(1);
        assert!(
            rs.len() <= was,
            "{what}: {} records with e-mail {e} (there were {was})",
            rs.len()
        );
    }
}

/// The writes of a run, summed over directions: (created, updated, removed, failed+parked).
pub fn totals(r: &RunReport) -> (usize, usize, usize, usize) {
    r.counters.values().fold((0, 0, 0, 0), |t, c| {
        (
            t.0 + c.created,
            t.1 + c.updated,
            t.2 + c.removed,
            t.3 + c.failed + c.parked,
        )
    })
}

/// Panics unless the run completed.
pub fn completed(r: &RunReport) {
    assert_eq!(
        r.outcome,
        RunOutcome::Completed,
        "run did not complete: {:?}",
        r.outcome
    );
}
