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
debounce = "200ms"
max-body = "4KiB"
"#;

struct Setup {
    w: World,
    daemon: Daemon,
    hooks: SocketAddr,
}

/// The accounts and a daemon with its webhook receiver, after the first run of `s`.
async fn start() -> Setup {
    let mut opts = e2e::options(e2e::small());
    opts.kinds = vec![FreshsalesSuite, Freshmarketer];
    let mut w = World::start_with_env(opts, SYNCS, &[("FS_HOOK_SECRET", SECRET)]).await;
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

/// Adds the workflow "on create/update → POST to the daemon" to Freshsales.
async fn add_workflow(w: &World, hooks: SocketAddr, secret: &str) -> Value {
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
            "skip_api_user": true
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
