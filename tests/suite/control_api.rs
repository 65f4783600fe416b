//! The daemon's HTTP control API (docs/control-api.md): bearer token, list syncs with
//! status and last run counts, pause/resume (a pause holds even a run in progress),
//! trigger a run, read logs, disconnect, budgets, and errors as one-line JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tandem::app::Host;
use tandem::app::control;
use tandem::app::daemon::Daemon;
use tandem_sandbox::AccountKind::{Freshmarketer, FreshsalesSuite};
use tandem_tests::e2e::{self, App, CONTROL_TOKEN, World};

const SYNCS: &str = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }
interval = "1h"

[syncs.t]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "a-to-b"
scope = { b = "Customers" }
interval = "1h"
"#;

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("control API answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .call(reqwest::Method::GET, path, Some(CONTROL_TOKEN))
            .await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(CONTROL_TOKEN))
            .await
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(CONTROL_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("control API answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }
}

/// The accounts, a daemon over [`SYNCS`] and its API. The world's own host is closed so
/// that the daemon's host owns the state file.
async fn start() -> (World, Daemon, Api) {
    start_with(&[FreshsalesSuite, Freshmarketer], SYNCS).await
}

async fn start_with(kinds: &[tandem_sandbox::AccountKind], syncs: &str) -> (World, Daemon, Api) {
    let mut w = World::start(kinds, e2e::small(), syncs).await;
    w.close();
    let config =
        tandem::config::load(&w.config_path, &w.env, &tandem::config::Catalog::builtin()).unwrap();
    let host = Arc::new(Host::open(config, e2e::host_options(&w.env)).unwrap());
    let daemon = Daemon::start(host).unwrap();
    let addr: SocketAddr = control::serve(&daemon)
        .await
        .unwrap()
        .expect("a token is configured");
    assert!(addr.ip().is_loopback());
    let api = Api {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    };
    (w, daemon, api)
}

/// Waits (30 s at most) until every fault set on `app` has fired: a request reached it.
async fn faults_fired(w: &World, app: App, what: &str) {
    let fired = async {
        loop {
            let f = w.control(app, reqwest::Method::GET, "/faults", None).await;
            if f["faults"].as_array().is_some_and(Vec::is_empty) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fired)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 30 s"));
}

/// Starts a run of sync `s` with a change to send (a Freshmarketer contact edited) and
/// waits until it is inside its next Freshsales listing, slowed by `ms`.
async fn run_caught_at_a_slowed_listing(w: &World, api: &Api, ms: u64, what: &str) {
    wait_idle(api, "s").await;
    wait_idle(api, "t").await;
    let fm_id = {
        let fm = w.by_email(App::Fm, "contacts").await;
        let (_, r) = fm.iter().find(|(_, r)| r.len() == 1).unwrap();
        r[0]["id"].as_u64().unwrap()
    };
    w.advance(60).await;
    w.edit(App::Fm, "contacts", fm_id, json!({"city": "Held"}))
        .await;
    w.fault(
        App::Fs,
        json!({"method": "GET", "path_prefix": "/crm/sales/api/contacts", "count": 1,
        "fault": {"kind": "latency", "ms": ms}}),
    )
    .await;
    let (status, _) = api.post("/v1/syncs/s/run").await;
    assert_eq!(status, 202);
    faults_fired(w, App::Fs, what).await;
}

async fn wait_idle(api: &Api, sync: &str) -> Value {
    for _ in 0..600 {
        let s = api.get(&format!("/v1/syncs/{sync}")).await;
        if s["running"] == json!(false) && s.get("last_run").is_some() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sync {sync} did not finish a run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_and_errors_are_one_line_json() {
    let (_w, daemon, api) = start().await;
    let (status, body) = api.call(reqwest::Method::GET, "/v1/syncs", None).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("bearer token"),
        "{body}"
    );
    let (status, _) = api
        .call(reqwest::Method::GET, "/v1/syncs", Some("wrong"))
        .await;
    assert_eq!(status, 401);
    let resp = api
        .http
        .get(format!("{}/v1/syncs", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (status, body) = api.post("/v1/syncs/nope/pause").await;
    assert_eq!(status, 404);
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("no sync `nope`") && msg.contains("s, t") && !msg.contains('\n'),
        "{msg}"
    );
    let (status, body) = api
        .call(reqwest::Method::GET, "/v1/nothing", Some(CONTROL_TOKEN))
        .await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("control-api.md"));
    daemon.shutdown(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_trigger_logs_pause_resume_and_disconnect() {
    let (w, daemon, api) = start().await;
    // The daemon runs every sync once at start.
    let s = wait_idle(&api, "s").await;
    wait_idle(&api, "t").await;
    let list = api.get("/v1/syncs").await;
    let names: Vec<&str> = list["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s", "t"]);
    assert_eq!(s["status"], json!("active"));
    assert_eq!(s["last_run"]["outcome"], json!("ok"), "{s}");
    // Written to B: created, or, when `t` ran first and created them in its own list,
    // linked by e-mail and added to this sync's list (an update). The daemon starts both
    // syncs at once, so either may run first.
    let to_b = &s["last_run"]["counters"]["a-to-b"];
    assert!(
        to_b["created"].as_u64().unwrap() + to_b["updated"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert!(s["links"].as_u64().unwrap() > 0);
    assert!(s["next_run_at"].as_i64().is_some());

    // A run on demand, waiting for its report. Nothing else runs meanwhile (both syncs
    // poll hourly), so the requests it records are what the accounts saw in between.
    let before = (w.requests(App::Fs).await, w.requests(App::Fm).await);
    let (status, run) = api.post("/v1/syncs/s/run?wait=true").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["outcome"], json!("completed"));
    let seen = (
        w.requests(App::Fs).await - before.0,
        w.requests(App::Fm).await - before.1,
    );
    assert!(seen.0 > 0 && seen.1 > 0, "{seen:?}");
    let logs = api.get("/v1/syncs/s/logs?runs=5").await;
    let runs = logs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let requests = &runs[1]["run"]["requests"];
    assert_eq!(
        (
            requests["a"]["sent"].as_u64(),
            requests["b"]["sent"].as_u64()
        ),
        (Some(seen.0), Some(seen.1)),
        "the run's record counts what each account saw: {requests}"
    );
    assert_eq!(&run["requests"], requests, "the run's answer says the same");
    // The account's quota as the run ended: Freshsales declares its request windows.
    let window = &requests["a"]["windows"][0];
    assert!(
        window["limit"].as_u64().is_some_and(|l| l > 0)
            && window["used"].as_u64().is_some_and(|u| u >= seen.0),
        "{requests}"
    );
    assert!(
        runs[0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == json!("created"))
    );
    let one = api
        .get(&format!("/v1/syncs/s/logs?run={}", runs[0]["run"]["id"]))
        .await;
    assert_eq!(one["runs"].as_array().unwrap().len(), 1);

    // Paused: a run reads and writes nothing.
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    let (email, fs_id) = fs
        .iter()
        .find(|(e, r)| {
            r.len() == 1
                && fm.get(*e).is_some_and(|m| m.len() == 1)
                && r[0]["do_not_disturb"] != json!(true)
        })
        .map(|(e, r)| (e.clone(), r[0]["id"].as_u64().unwrap()))
        .unwrap();
    let (status, body) = api.post("/v1/syncs/s/pause").await;
    assert_eq!((status, &body["status"]), (200, &json!("paused")));
    w.advance(60).await;
    w.edit(
        App::Fs,
        "contacts",
        fs_id,
        json!({"job_title": "Controlled"}),
    )
    .await;
    let before = (w.requests(App::Fs).await, w.requests(App::Fm).await);
    let (_, run) = api.post("/v1/syncs/s/run?wait=true").await;
    assert_eq!(run["outcome"], json!("paused"));
    assert_eq!(
        (w.requests(App::Fs).await, w.requests(App::Fm).await),
        before
    );
    assert_eq!(api.get("/v1/syncs/s").await["status"], json!("paused"));
    let (status, _) = api.post("/v1/syncs/s/resume").await;
    assert_eq!(status, 200);
    let (_, run) = api.post("/v1/syncs/s/run?wait=true").await;
    assert_eq!(run["outcome"], json!("completed"), "{run}");
    assert_eq!(
        w.by_email(App::Fm, "contacts").await[&email][0]["job_title"],
        json!("Controlled")
    );

    // Triggered runs are scheduled, not awaited.
    let (status, body) = api.post("/v1/syncs/t/run").await;
    assert_eq!((status, &body["triggered"]), (202, &json!(true)));

    let budgets = api.get("/v1/budgets").await;
    let accounts: Vec<&str> = budgets["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["account"].as_str().unwrap())
        .collect();
    assert_eq!(
        accounts.len(),
        2,
        "one budget per app account, shared by both syncs: {budgets}"
    );
    assert!(
        budgets["budgets"][0]["windows"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{budgets}"
    );

    let (status, body) = api.post("/v1/syncs/s/disconnect").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["wiped"].as_u64().unwrap() > 0);
    let s = api.get("/v1/syncs/s").await;
    assert_eq!(
        (s["status"].clone(), s["links"].clone()),
        (json!("paused"), json!(0))
    );
    assert!(s.get("last_run").is_none(), "logs are wiped: {s}");
    daemon.shutdown(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_holds_the_requests_of_a_run_in_progress() {
    let (w, daemon, api) = start().await;
    run_caught_at_a_slowed_listing(&w, &api, 1000, "the slowed request started").await;
    api.post("/v1/syncs/s/pause").await;
    // The slowed request was already let through; nothing after it is.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let held = (w.requests(App::Fs).await, w.requests(App::Fm).await);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        (w.requests(App::Fs).await, w.requests(App::Fm).await),
        held,
        "no request while paused"
    );
    assert_eq!(
        api.get("/v1/syncs/s").await["running"],
        json!(true),
        "the run waits, paused"
    );
    api.post("/v1/syncs/s/resume").await;
    let s = wait_idle(&api, "s").await;
    assert!(s.get("last_error").is_none(), "{s}");
    assert!(w.requests(App::Fs).await + w.requests(App::Fm).await > held.0 + held.1);
    daemon.shutdown(Duration::from_secs(30)).await;
}

/// A run paused part-way holds its sync's run lock until resumed: `run now` and the
/// preview answer "paused" at once instead of waiting behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_and_preview_of_a_sync_paused_part_way_answer_at_once() {
    let (w, daemon, api) = start().await;
    // A write to Freshsales follows the reads: the run has requests left after the
    // slowed one, and they wait while the sync is paused.
    run_caught_at_a_slowed_listing(&w, &api, 1500, "the run reached the slowed listing").await;
    api.post("/v1/syncs/s/pause").await;
    let soon = Duration::from_secs(5);
    let (status, run) = tokio::time::timeout(soon, api.post("/v1/syncs/s/run?wait=true"))
        .await
        .expect("run now answers at once, not after the paused run");
    assert_eq!((status, &run["outcome"]), (200, &json!("paused")), "{run}");
    let (status, plan) = tokio::time::timeout(soon, api.post("/v1/syncs/s/plan"))
        .await
        .expect("the preview answers at once");
    assert_eq!(
        (status, &plan["outcome"]),
        (200, &json!("paused")),
        "{plan}"
    );
    let s = api.get("/v1/syncs/s").await;
    assert_eq!(
        (&s["running"], &s["status"]),
        (&json!(true), &json!("paused")),
        "the run paused part-way is still in progress: {s}"
    );
    api.post("/v1/syncs/s/resume").await;
    let s = wait_idle(&api, "s").await;
    assert!(s.get("last_error").is_none(), "{s}");
    assert_eq!(s["last_run"]["outcome"], json!("ok"), "{s}");
    daemon.shutdown(Duration::from_secs(30)).await;
}

/// The console's preview is a dry run outside the schedule: it does not hold back a run
/// that starts while it reads, does not show as a run in progress, and its failure is
/// its own answer only: the sync's status, health and run log stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_holds_no_run_back_and_its_failure_changes_no_status() {
    let (w, daemon, api) = start().await;
    wait_idle(&api, "s").await;
    wait_idle(&api, "t").await;
    // The preview's first Freshsales read is slowed: it is reading while a run is asked for.
    w.fault(
        App::Fs,
        json!({"method": "GET", "count": 1, "fault": {"kind": "latency", "ms": 8000}}),
    )
    .await;
    let preview = tokio::spawn({
        let api = Api {
            base: api.base.clone(),
            http: api.http.clone(),
        };
        async move { api.post("/v1/syncs/s/plan").await }
    });
    faults_fired(&w, App::Fs, "the preview reached the slowed read").await;
    assert_eq!(
        api.get("/v1/syncs/s").await["running"],
        json!(false),
        "a preview is not a run"
    );
    let (status, run) = api.post("/v1/syncs/s/run?wait=true").await;
    assert_eq!(
        (status, &run["outcome"]),
        (200, &json!("completed")),
        "{run}"
    );
    assert!(
        !preview.is_finished(),
        "the run completed while the preview was still reading"
    );
    let (status, plan) = preview.await.unwrap();
    assert_eq!(
        (status, &plan["outcome"]),
        (200, &json!("dry-run")),
        "{plan}"
    );

    // A preview that fails: every Freshmarketer request is refused.
    let before = api.get("/v1/syncs/s").await;
    let runs = daemon.host().store().runs("s").unwrap();
    w.fault(
        App::Fm,
        json!({"count": null, "fault": {"kind": "status", "status": 401,
        "body": "{\"message\": \"Invalid API key\"}", "content_type": "application/json"}}),
    )
    .await;
    let (status, body) = api.post("/v1/syncs/s/plan").await;
    assert!(status >= 400, "{status}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let after = api.get("/v1/syncs/s").await;
    for key in ["status", "running", "last_error", "last_run"] {
        assert_eq!(after.get(key), before.get(key), "{key}: {after}");
    }
    assert_eq!(
        daemon.host().store().runs("s").unwrap(),
        runs,
        "no run recorded"
    );
    daemon.shutdown(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_account_does_not_hold_up_syncs_of_other_accounts() {
    let syncs = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }
interval = "1h"

[syncs.g]
a = "classic"
b = "google"
entities = "contacts"
direction = "two-way"
interval = "1h"

[syncs.g.breaker]
max-overwrite-ratio = 1.0
"#;
    use tandem_sandbox::AccountKind::{FreshsalesClassic, GooglePeople};
    let w = World::start(
        &[
            FreshsalesSuite,
            Freshmarketer,
            FreshsalesClassic,
            GooglePeople,
        ],
        e2e::small(),
        syncs,
    )
    .await;
    // Freshmarketer answers every list listing with a 429 until told otherwise.
    w.fault(
        App::Fm,
        json!({"method": "GET", "path_prefix": "/crm/sales/api/contacts/lists", "count": null,
        "fault": {"kind": "status", "status": 429, "headers": {"Retry-After": "2"},
                  "body": "{\"errors\":{\"code\":429,\"message\":[\"Too many requests\"]}}"}}),
    )
    .await;
    let mut w = w;
    w.close();
    let config =
        tandem::config::load(&w.config_path, &w.env, &tandem::config::Catalog::builtin()).unwrap();
    // However long the other sync takes, this one keeps waiting for the account.
    let mut options = e2e::host_options(&w.env);
    options.retry.max_rate_wait = Duration::from_secs(3600);
    let host = Arc::new(Host::open(config, options).unwrap());
    let daemon = Daemon::start(host).unwrap();
    let addr = control::serve(&daemon).await.unwrap().unwrap();
    let api = Api {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    };
    // The other accounts' sync finishes while the rate-limited one waits.
    let g = wait_idle(&api, "g").await;
    assert_eq!(g["last_run"]["outcome"], json!("ok"), "{g}");
    // Sync s reaches Freshmarketer in its own time (after its Freshsales reads): wait,
    // bounded, until the account has met the 429, then s must still be waiting.
    let limited = |b: &Value| -> u64 {
        b["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["rate_limited"].as_u64().unwrap())
            .sum()
    };
    let mut budgets = api.get("/v1/budgets").await;
    for _ in 0..300 {
        if limited(&budgets) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        budgets = api.get("/v1/budgets").await;
    }
    assert!(limited(&budgets) >= 1, "{budgets}");
    let s = api.get("/v1/syncs/s").await;
    assert_eq!(
        s["running"],
        json!(true),
        "sync s is still backing off: {s}"
    );
    // The account recovers: the waiting sync carries on and completes.
    w.control(App::Fm, reqwest::Method::DELETE, "/faults", None)
        .await;
    let s = wait_idle(&api, "s").await;
    assert_eq!(s["last_run"]["outcome"], json!("ok"), "{s}");
    assert!(s.get("last_error").is_none(), "{s}");
    daemon.shutdown(Duration::from_secs(30)).await;
}

/// `[daemon] concurrent-runs` bounds the runs in progress at once: with one, the two syncs'
/// first runs (both due at start-up) and the runs asked for at the same moment take turns,
/// and every one of them completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_beyond_concurrent_runs_wait_their_turn() {
    let mut w = World::start(&[FreshsalesSuite, Freshmarketer], e2e::small(), SYNCS).await;
    w.close();
    let text = std::fs::read_to_string(&w.config_path).unwrap();
    std::fs::write(
        &w.config_path,
        text.replacen("[daemon]\n", "[daemon]\nconcurrent-runs = 1\n", 1),
    )
    .unwrap();
    let config =
        tandem::config::load(&w.config_path, &w.env, &tandem::config::Catalog::builtin()).unwrap();
    assert_eq!(config.daemon.concurrent_runs, 1);
    let host = Arc::new(Host::open(config, e2e::host_options(&w.env)).unwrap());
    let daemon = Daemon::start(host).unwrap();
    let (s, t) = tokio::join!(
        daemon.run_now("s", tandem::sync::RunOptions::default()),
        daemon.run_now("t", tandem::sync::RunOptions::default())
    );
    for r in [s, t] {
        let r = r.unwrap();
        assert_eq!(r.outcome, tandem::sync::RunOutcome::Completed, "{r:?}");
    }
    assert_eq!(daemon.peak_concurrent_runs(), 1);
    daemon.shutdown(Duration::from_secs(30)).await;
}

/// `tandem sync resolve` while the daemon holds the state file goes through
/// `POST /v1/syncs/{name}/resolve`: an ambiguity the daemon's run reported is settled,
/// and the next run links the pair; bad resolutions are refused with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resolves_an_ambiguity_through_the_daemon() {
    let (w, daemon, api) = start().await;
    wait_idle(&api, "s").await;
    let (kim, kim_fm, lee_fm) = w.kim_and_lee_apart().await;
    let (status, body) = api.post("/v1/syncs/s/run?wait=true").await;
    assert_eq!(status, 200, "{body}");
    let s = api.get("/v1/syncs/s").await;
    assert!(
        s["ambiguous"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["email"] == json!("kim@apart.example")),
        "the run reported Kim's ambiguity: {s}"
    );
    let kim_link = |d: &Daemon| {
        d.host()
            .store()
            .links("s")
            .unwrap()
            .iter()
            .any(|l| l.ids.a.as_deref() == Some(kim.to_string().as_str()))
    };
    assert!(!kim_link(&daemon), "nothing linked while ambiguous");

    let (status, body) = api
        .post_json("/v1/syncs/s/resolve", json!({"merge": {"a": "1"}}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("bad resolution"),
        "{body}"
    );
    let (status, body) = api
        .post_json(
            "/v1/syncs/s/resolve",
            json!({"link": {"a": kim.to_string(), "b": kim_fm.to_string()}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("will be linked"),
        "{body}"
    );
    let (status, body) = api.post("/v1/syncs/s/run?wait=true").await;
    assert_eq!(status, 200, "{body}");
    let links = daemon.host().store().links("s").unwrap();
    assert!(
        links
            .iter()
            .any(|l| l.ids.a.as_deref() == Some(kim.to_string().as_str())
                && l.ids.b.as_deref() == Some(kim_fm.to_string().as_str())),
        "Kim is linked to Kim"
    );
    // A record already linked cannot be linked by hand again.
    let (status, body) = api
        .post_json(
            "/v1/syncs/s/resolve",
            json!({"link": {"a": kim.to_string(), "b": lee_fm.to_string()}}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("already linked"),
        "{body}"
    );
    daemon.shutdown(Duration::from_secs(30)).await;
}

/// The CLI's typed client (`tandem sync …` while the daemon holds the state file) reads
/// what the server serves, with the server's own types: status, logs, pause, resume, runs
/// on demand, disconnect, and the daemon's refusals as one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_reads_what_the_server_serves() {
    use tandem::app::StateFileError;
    use tandem::app::control::api::LogsQuery;
    use tandem::app::control::{DaemonClient, Route, SyncControl};
    use tandem::app::report::Outcome;

    let (w, daemon, api) = start().await;
    wait_idle(&api, "s").await;
    wait_idle(&api, "t").await;
    let mut config =
        tandem::config::load(&w.config_path, &w.env, &tandem::config::Catalog::builtin()).unwrap();
    config.daemon.listen = api.base.trim_start_matches("http://").parse().unwrap();
    let locked = StateFileError::Locked {
        path: config.state.path.clone(),
        owner: "another tandem process, pid 1 (tandem run)".into(),
        command: Some("tandem run".into()),
    };
    let client = DaemonClient::for_locked(&config, &w.env, &locked).unwrap();
    assert_eq!(client.route(), Route::Daemon);

    let names: Vec<String> = client
        .status(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["s", "t"]);
    let t = client.status(Some("t")).await.unwrap();
    assert_eq!(
        (t.len(), t[0].direction),
        (1, tandem::sync::policy::Direction::AToB)
    );
    let e = client.status(Some("nope")).await.unwrap_err().to_string();
    assert!(e.contains("there is no sync `nope`"), "{e}");

    client.pause("s").await.unwrap();
    assert_eq!(client.status(Some("s")).await.unwrap()[0].status, "paused");
    let run = client.run("s", false, false).await.unwrap();
    assert_eq!((run.outcome, run.run), (Outcome::Paused, None));
    client.resume("s").await.unwrap();
    let run = client.run("s", false, false).await.unwrap();
    assert_eq!(run.outcome, Outcome::Completed, "{run:?}");
    let id = run.run.expect("a run has an id");

    // The start-up run, the one on demand, and perhaps the one a resume schedules.
    let logs = client.logs("s", LogsQuery::new(None, 5)).await.unwrap();
    assert!(logs.len() >= 2, "{logs:?}");
    assert!(logs.iter().any(|l| l.run.id == id), "{logs:?}");
    assert!(logs.windows(2).all(|w| w[0].run.id < w[1].run.id));
    let one = client.logs("s", LogsQuery::new(Some(id), 1)).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].run.id, id);

    // The daemon's refusals come back as its one line.
    let e = client.pause("nope").await.unwrap_err().to_string();
    assert!(
        e.starts_with("the daemon refused: ") && e.contains("no sync `nope`"),
        "{e}"
    );
    let release = tandem::app::Resolution::Release {
        record: "no-such-record".into(),
    };
    let e = client.resolve("s", &release).await.unwrap_err().to_string();
    assert!(
        e.starts_with("the daemon refused: ") && e.contains("no link holding"),
        "{e}"
    );
    // A plan needs the state file itself: the lock's own message.
    let e = client.plan("s", false).await.unwrap_err().to_string();
    assert_eq!(e, locked.to_string());

    assert!(client.disconnect("t").await.unwrap() > 0);
    let t = client.status(Some("t")).await.unwrap();
    assert_eq!((t[0].status.as_str(), t[0].links), ("paused", 0));
    daemon.shutdown(Duration::from_secs(30)).await;
}

/// The endpoints the console reads (docs/control-api.md): a plan of the next run that
/// records no run, a person by record id or e-mail with the link's history, and the
/// connections with their plugins and grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_person_and_connections_answer_as_documented() {
    let (_w, daemon, api) = start().await;
    wait_idle(&api, "s").await;
    let runs = daemon.host().store().runs("s").unwrap().len();
    let (status, preview) = api.post("/v1/syncs/s/plan").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["outcome"], "dry-run", "{preview}");
    assert!(
        preview["ops"].is_array() && preview["links"].is_u64(),
        "{preview}"
    );
    assert_eq!(
        daemon.host().store().runs("s").unwrap().len(),
        runs,
        "a plan records no run"
    );
    let link = daemon
        .host()
        .store()
        .links("s")
        .unwrap()
        .into_iter()
        .find(|l| l.ids.a.is_some() && l.ids.b.is_some() && l.match_key.is_some())
        .expect("a linked pair matched on e-mail");
    let a = link.ids.a.clone().unwrap();
    for q in [
        format!("a:{a}"),
        a.clone(),
        link.match_key.clone().unwrap().to_uppercase(),
    ] {
        let p = api
            .get(&format!("/v1/syncs/s/person?q={}", urlencode(&q)))
            .await;
        let found = p["links"].as_array().unwrap();
        assert!(
            found.iter().any(|l| l["link"] == json!(link.key)),
            "{q}: {p}"
        );
        let mine = found.iter().find(|l| l["link"] == json!(link.key)).unwrap();
        assert!(
            mine["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["link"] == json!(link.key)),
            "{mine}"
        );
    }
    let none = api.get("/v1/syncs/s/person?q=b%3Anobody").await;
    assert_eq!(none["links"], json!([]));
    let c = api.get("/v1/connections").await;
    let fs = c["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "freshsales")
        .unwrap_or_else(|| panic!("{c}"));
    assert_eq!(fs["sha256"].as_str().unwrap().len(), 64, "{fs}");
    assert_eq!(fs["loopback"], true, "{fs}");
    assert!(c["budgets"].is_array());
    // Without credentials: refused like the rest of the API.
    let (status, _) = api
        .call(reqwest::Method::GET, "/v1/connections", None)
        .await;
    assert_eq!(status, 401);
    daemon.shutdown(Duration::from_secs(30)).await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
