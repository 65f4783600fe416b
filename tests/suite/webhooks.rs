//! Webhooks (docs/control-api.md, "Webhooks"): a Freshworks workflow webhook from the
//! simulated Freshsales account makes the daemon run the syncs of that connection at
//! once, long before their poll interval; a wrong secret changes nothing; unknown
//! connections, missing secrets and oversized bodies are refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tandem::app::daemon::Daemon;
use tandem::app::{Host, webhook};
use tandem_sandbox::AccountKind::{Freshmarketer, FreshsalesSuite};
use tandem_tests::e2e::{self, App, World};

const SECRET: &str = "whsec-test-5f0c2a9e71";

/// One two-way sync polled hourly; the Freshsales connection takes webhooks.
const SYNCS: &str = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }
interval = "1h"

[connections.freshsales.webhook]
secret = { env = "FS_HOOK_SECRET" }

[daemon.webhooks]
listen = "127.0.0.1:0"
max-body = "4KiB"
"#;

struct Setup {
    w: World,
    daemon: Daemon,
    hooks: SocketAddr,
}

/// The accounts and a daemon with its webhook receiver, after the first run of `s`.
async fn start() -> Setup {
    start_debounced("200ms").await
}

/// [`start`] with another `[daemon.webhooks] debounce`.
async fn start_debounced(debounce: &str) -> Setup {
    let mut opts = e2e::options(e2e::small());
    opts.kinds = vec![FreshsalesSuite, Freshmarketer];
    let syncs = format!("{SYNCS}debounce = \"{debounce}\"\n");
    let mut w = World::start_with_env(opts, &syncs, &[("FS_HOOK_SECRET", SECRET)]).await;
    w.close();
    let config =
        tandem::config::load(&w.config_path, &w.env, &tandem::config::Catalog::builtin()).unwrap();
    let host = Arc::new(Host::open(config, e2e::host_options(&w.env)).unwrap());
    let daemon = Daemon::start(host).unwrap();
    let hooks = webhook::serve(&daemon)
        .await
        .unwrap()
        .expect("a connection takes webhooks");
    assert!(hooks.ip().is_loopback());
    // The daemon runs every sync once at start.
    wait_for_run(&daemon, 1).await;
    Setup { w, daemon, hooks }
}

/// The id of the last run of `s` and whether one is running.
fn last_run(daemon: &Daemon) -> (u64, bool) {
    let s = daemon.summaries(Some("s")).unwrap().remove(0);
    let v = serde_json::to_value(&s).unwrap();
    (v["last_run"]["id"].as_u64().unwrap_or(0), s.running)
}

/// Waits (bounded) until run `id` of `s` is over.
async fn wait_for_run(daemon: &Daemon, id: u64) {
    for _ in 0..600 {
        let (last, running) = last_run(daemon);
        if last >= id && !running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} of sync s did not finish");
}

/// An e-mail linked by the sync, its Freshsales id and its Freshmarketer id.
async fn linked_contact(w: &World) -> (String, u64, u64) {
    let fs = w.by_email(App::Fs, "contacts").await;
    let fm = w.by_email(App::Fm, "contacts").await;
    fs.iter()
        .find_map(|(e, r)| {
            let m = fm.get(e).filter(|m| m.len() == 1)?;
            (r.len() == 1 && r[0]["do_not_disturb"] != json!(true)).then(|| {
                (
                    e.clone(),
                    r[0]["id"].as_u64().unwrap(),
                    m[0]["id"].as_u64().unwrap(),
                )
            })
        })
        .expect("a contact in both apps")
}

/// Adds the workflow "on create/update → POST to the daemon" to Freshsales, with the
/// condition "Updated by is not the integration user".
async fn add_workflow(w: &World, hooks: SocketAddr, secret: &str) -> Value {
    add_workflow_with(w, hooks, secret, true).await
}

async fn add_workflow_with(
    w: &World,
    hooks: SocketAddr,
    secret: &str,
    skip_api_user: bool,
) -> Value {
    w.control(
        App::Fs,
        reqwest::Method::POST,
        "/workflows",
        Some(json!({
            "name": "Tandem",
            "entity": "contacts",
            "url": format!("http://{hooks}/v1/webhooks/freshsales"),
            "headers": {"X-Tandem-Webhook-Secret": secret},
            "fields": ["id", "email", "job_title", "updated_at"],
            // "Updated by is not the integration user": the sync's own writes do not echo.
            "skip_api_user": skip_api_user
        })),
    )
    .await
}

/// The workflow calls Freshsales made so far.
async fn deliveries(w: &World) -> Vec<Value> {
    w.control(App::Fs, reqwest::Method::GET, "/workflows", None)
        .await["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (bounded) for a workflow call about `record` and returns it.
async fn delivery_for(w: &World, record: u64) -> Value {
    for _ in 0..300 {
        if let Some(d) = deliveries(w)
            .await
            .into_iter()
            .find(|d| d["record_id"] == json!(record) && !d["status"].is_null())
        {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Freshsales made no workflow call about {record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_webhook_brings_an_edit_across_before_the_poll_interval() {
    let Setup { w, daemon, hooks } = start().await;
    let (email, fs_id, _) = linked_contact(&w).await;
    add_workflow(&w, hooks, SECRET).await;
    let (before, _) = last_run(&daemon);
    w.advance(60).await;
    w.edit(App::Fs, "contacts", fs_id, json!({"job_title": "Hooked"}))
        .await;
    let call = delivery_for(&w, fs_id).await;
    assert_eq!(call["status"], json!(202), "{call}");
    assert_eq!(call["trigger"], json!("update"));
    assert_eq!(call["body"]["job_title"], json!("Hooked"), "{call}");
    // The sync polls hourly: only the webhook can have started the run that carries it.
    let mut carried = false;
    for _ in 0..300 {
        let fm = w.by_email(App::Fm, "contacts").await;
        if fm[&email][0]["job_title"] == json!("Hooked") {
            carried = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(carried, "the edit reached Freshmarketer");
    let (after, _) = last_run(&daemon);
    assert!(after > before, "a run followed the webhook");
    wait_for_run(&daemon, after).await;
    // The run wrote to Freshmarketer only: Freshsales fired nothing more, and the run's
    // log says why it copied the field.
    let logs = daemon.logs("s", Some(after), 1).unwrap();
    let events = serde_json::to_value(&logs).unwrap();
    assert!(
        events[0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == json!("updated") && e["direction"] == json!("a-to-b")),
        "{events}"
    );
    let calls = deliveries(&w).await;
    assert_eq!(
        calls.len(),
        1,
        "no echo from the sync's own writes: {calls:?}"
    );
    daemon.shutdown(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_changes_nothing_and_bad_calls_are_refused() {
    let Setup { w, daemon, hooks } = start().await;
    let (email, fs_id, _) = linked_contact(&w).await;
    let old_title = w.by_email(App::Fm, "contacts").await[&email][0]["job_title"].clone();
    add_workflow(&w, hooks, "not-the-secret").await;
    let (before, _) = last_run(&daemon);
    w.advance(60).await;
    w.edit(App::Fs, "contacts", fs_id, json!({"job_title": "Forged"}))
        .await;
    let call = delivery_for(&w, fs_id).await;
    assert_eq!(call["status"], json!(401), "{call}");

    let http = reqwest::Client::new();
    let url = |conn: &str| format!("http://{hooks}/v1/webhooks/{conn}");
    let post = |conn: &str, secret: Option<&str>, body: Vec<u8>| {
        let mut req = http.post(url(conn)).body(body);
        if let Some(s) = secret {
            req = req.header("X-Tandem-Webhook-Secret", s);
        }
        req.send()
    };
    let resp = post("freshsales", None, b"{}".to_vec()).await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(!msg.contains(SECRET) && !msg.contains('\n'), "{msg}");
    // A connection without a webhook table, and one that does not exist.
    for conn in ["freshmarketer", "nope"] {
        let resp = post(conn, Some(SECRET), b"{}".to_vec()).await.unwrap();
        assert_eq!(resp.status(), 404, "{conn}");
    }
    // The right secret with a body over max-body (4 KiB).
    let resp = post("freshsales", Some(SECRET), vec![b'x'; 5000])
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        http.get(url("freshsales")).send().await.unwrap().status(),
        405
    );

    // Nothing ran and nothing moved: the refused calls scheduled no run (the debounce is
    // 200 ms; give it ten times that).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(last_run(&daemon), (before, false), "no run was triggered");
    assert_eq!(
        w.by_email(App::Fm, "contacts").await[&email][0]["job_title"],
        old_title
    );
    // The right secret does trigger, which shows the edit was there to be carried.
    let resp = post("freshsales", Some(SECRET), b"{\"id\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"accepted": true, "syncs": 1}));
    wait_for_run(&daemon, before + 1).await;
    assert_eq!(
        w.by_email(App::Fm, "contacts").await[&email][0]["job_title"],
        json!("Forged")
    );
    daemon.shutdown(Duration::from_secs(30)).await;
}

/// Writes of a run, both directions.
fn writes_of_last_run(daemon: &Daemon) -> u64 {
    let s = serde_json::to_value(daemon.summaries(Some("s")).unwrap().remove(0)).unwrap();
    let c = &s["last_run"]["counters"];
    ["a-to-b", "b-to-a"]
        .iter()
        .flat_map(|d| {
            ["created", "updated", "removed", "deleted"].map(|k| c[d][k].as_u64().unwrap_or(0))
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_webhooks_makes_one_run() {
    // A long debounce, so that the whole burst surely lands before the run starts.
    let Setup {
        w: _w,
        daemon,
        hooks,
    } = start_debounced("2s").await;
    let (before, _) = last_run(&daemon);
    let http = reqwest::Client::new();
    for i in 0..10 {
        let resp = http
            .post(format!("http://{hooks}/v1/webhooks/freshsales"))
            .header("X-Tandem-Webhook-Secret", SECRET)
            .json(&json!({"id": i}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    wait_for_run(&daemon, before + 1).await;
    // Give a stray second run every chance to start (three debounces).
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (last, running) = last_run(&daemon);
        assert!(
            !running && last == before + 1,
            "one run for the burst, not {}",
            last - before
        );
    }
    daemon.shutdown(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_of_the_syncs_own_write_settles_in_one_quiet_run() {
    let Setup { w, daemon, hooks } = start().await;
    let (_, fs_id, fm_id) = linked_contact(&w).await;
    // No "Updated by" condition: the sync's own writes to Freshsales call back too.
    add_workflow_with(&w, hooks, SECRET, false).await;
    w.advance(60).await;
    w.edit(
        App::Fm,
        "contacts",
        fm_id,
        json!({"job_title": "From marketing"}),
    )
    .await;
    // A poll (run on demand) carries the edit into Freshsales...
    let report = daemon
        .run_now("s", tandem::sync::RunOptions::default())
        .await
        .unwrap();
    let echo_after = report.run.unwrap();
    assert_eq!(
        w.record(App::Fs, "contacts", fs_id).await["job_title"],
        json!("From marketing")
    );
    // ...which fires the workflow: the daemon runs again and that run writes nothing
    // (the baseline recognises its own write).
    let call = delivery_for(&w, fs_id).await;
    assert_eq!(
        (call["status"].clone(), call["trigger"].clone()),
        (json!(202), json!("update"))
    );
    wait_for_run(&daemon, echo_after + 1).await;
    assert_eq!(
        writes_of_last_run(&daemon),
        0,
        "the echo run writes nothing"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        last_run(&daemon),
        (echo_after + 1, false),
        "and nothing follows it"
    );
    assert_eq!(deliveries(&w).await.len(), 1, "a quiet run fires nothing");
    daemon.shutdown(Duration::from_secs(30)).await;
}
