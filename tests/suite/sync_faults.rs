//! Fault injection through the simulated accounts' control API: 429 with and without
//! Retry-After, 5xx on reads and writes, truncated JSON, an expired Google sync token and
//! a stale etag. Every run either completes or leaves the failure to a later run, and the
//! apps end in step with nothing lost and nothing duplicated.

use serde_json::json;
use tandem::sync::RunOptions;
use tandem_sandbox::AccountKind::{Freshmarketer, FreshsalesSuite, GooglePeople};
use tandem_tests::e2e::{App, World, completed, no_duplicates, reference, small, totals};

const SYNC: &str = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }
# A fixed winner: under `most-recent` the outcome of a first-sync conflict follows the
# apps' record-level change times, which the sync's own successful writes (a list
# membership added while a field write failed) move; a faulted run may then rightly
# settle a conflict differently from an unfaulted one. See README "Conflicts".
conflict = { winner = "a-wins" }
"#;

const GOOGLE: &str = r#"
[syncs.g]
a = "freshsales"
b = "google"
entities = "contacts"
direction = "two-way"
"#;

/// Both apps hold what a run without faults leaves (same seed), once the sync settled.
async fn as_without_faults(w: &World) {
    let r = w.try_run("s", later(5)).await.unwrap();
    completed(&r);
    let (fs, fm) = reference(small(), SYNC, "s").await;
    assert_eq!(
        w.snapshot(App::Fs).await,
        fs,
        "Freshsales as without faults"
    );
    assert_eq!(
        w.snapshot(App::Fm).await,
        fm,
        "Freshmarketer as without faults"
    );
}

/// A run as of `hours` from now: failed writes' back-off has ended.
fn later(hours: i64) -> RunOptions {
    RunOptions {
        now: tandem::app::unix_now() + hours * 3600,
        ..RunOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_reads_back_off_and_the_run_goes_on() {
    let w = World::start(&[FreshsalesSuite, Freshmarketer], small(), SYNC).await;
    // Two 429s with Retry-After, then one without (the connector falls back to the
    // host's exponential back-off).
    let body = r#"{"errors":{"code":429,"message":["Too many requests"]}}"#;
    w.fault(
        App::Fs,
        json!({"method": "GET", "path_prefix": "/crm/sales/api/contacts/view", "count": 2,
        "fault": {"kind": "status", "status": 429, "body": body, "headers": {"Retry-After": "1"}}}),
    )
    .await;
    w.fault(
        App::Fm,
        json!({"method": "GET", "path_prefix": "/crm/sales/api/", "skip": 3, "count": 1,
        "fault": {"kind": "status", "status": 429, "body": body}}),
    )
    .await;
    let r = w.run("s").await;
    completed(&r);
    assert!(
        !r.failures.iter().any(|(_, e)| e.contains("rate")),
        "no write failed for the 429s: {:?}",
        r.failures
    );
    assert_eq!(w.statuses(App::Fs).await.get("429").copied(), Some(2));
    assert_eq!(w.statuses(App::Fm).await.get("429").copied(), Some(1));
    let snapshots = w.host().budgets().snapshots();
    assert_eq!(
        snapshots.iter().map(|s| s.rate_limited).sum::<u64>(),
        3,
        "{snapshots:?}"
    );
    as_without_faults(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_on_reads_are_retried_and_on_writes_retried_on_a_later_run() {
    let w = World::start(&[FreshsalesSuite, Freshmarketer], small(), SYNC).await;
    w.fault(
        App::Fm,
        json!({"method": "GET", "path_prefix": "/crm/sales/api/", "skip": 1, "count": 2,
        "fault": {"kind": "status", "status": 503}}),
    )
    .await;
    // Every write to Freshmarketer fails with a 500 until the faults are cleared. Writes
    // only: the lookups before creates are searches, POSTs too (`filtered_search`), and a
    // lookup that cannot be answered fails the run rather than risk a duplicate.
    w.fault(App::Fm, json!({"method": "POST", "path_prefix": "/crm/sales/api/contacts", "count": null,
        "fault": {"kind": "status", "status": 500, "body": "{\"errors\":{\"code\":500,\"message\":[\"Internal error\"]}}"}})).await;
    let first = w.run("s").await;
    completed(&first);
    assert!(
        totals(&first).3 > 0,
        "writes to Freshmarketer failed: {:?}",
        first.counters
    );
    let retrying = w.host().status(Some("s")).unwrap()[0].retrying;
    assert!(retrying > 0, "failed records wait in the retry index");
    w.control(App::Fm, reqwest::Method::DELETE, "/faults", None)
        .await;
    // Before the back-off ends the records wait; after it they are written.
    let waiting = w.run("s").await;
    completed(&waiting);
    let r = w.try_run("s", later(2)).await.unwrap();
    completed(&r);
    let injected = |r: &tandem::sync::RunReport| {
        r.failures
            .iter()
            .filter(|(_, e)| e.contains("HTTP 500") || e.contains("Internal error"))
            .count()
    };
    assert_eq!(
        injected(&r),
        0,
        "the writes that met a 500 went through on retry: {:?}",
        r.failures
    );
    let r = w.try_run("s", later(3)).await.unwrap();
    assert_eq!(totals(&r).0, 0, "nothing left to create: {:?}", r.counters);
    as_without_faults(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json_is_a_passing_failure() {
    let w = World::start(&[FreshsalesSuite, Freshmarketer], small(), SYNC).await;
    w.fault(
        App::Fs,
        json!({"method": "GET", "path_prefix": "/crm/sales/api/contacts/view", "count": 1,
        "fault": {"kind": "truncate", "keep_bytes": 200}}),
    )
    .await;
    w.fault(
        App::Fm,
        json!({"method": "GET", "path_prefix": "/crm/sales/api/contacts/lists", "count": 1,
        "fault": {"kind": "truncate", "declare_full_length": true}}),
    )
    .await;
    let r = w.run("s").await;
    completed(&r);
    as_without_faults(&w).await;
    let faults = w
        .control(App::Fs, reqwest::Method::GET, "/faults", None)
        .await;
    assert_eq!(
        faults["faults"].as_array().map(Vec::len),
        Some(0),
        "the truncation fired: {faults}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_google_sync_token_falls_back_to_a_full_listing_compared_with_the_baseline() {
    let w = World::start(&[FreshsalesSuite, GooglePeople], small(), GOOGLE).await;
    w.settle("g", 3).await;
    let fs_before = w.by_email(App::Fs, "contacts").await;
    let google_before = w.google_people().await;
    let (email, person) = google_before
        .iter()
        .find(|(e, ps)| ps.len() == 1 && fs_before.get(*e).is_some_and(|f| f.len() == 1))
        .map(|(e, ps)| {
            (
                e.clone(),
                ps[0]["resourceName"].as_str().unwrap().to_owned(),
            )
        })
        .expect("a linked person");
    w.advance(30).await;
    let id = person.trim_start_matches("people/");
    w.control(
        App::Google,
        reqwest::Method::PATCH,
        &format!("/people/{id}"),
        Some(json!({"organizations": [{"name": "Expired Token Inc", "title": "Token Keeper"}]})),
    )
    .await;
    w.control(
        App::Google,
        reqwest::Method::POST,
        "/sync-tokens/expire",
        None,
    )
    .await;
    w.advance(30).await;
    let r = w.run("g").await;
    completed(&r);
    let fs = w.by_email(App::Fs, "contacts").await;
    assert_eq!(
        fs[&email][0]["job_title"],
        json!("Token Keeper"),
        "the edit made while the token expired arrives"
    );
    let (created, ..) = totals(&r);
    assert_eq!(
        created, 0,
        "a full listing compared with the baseline creates nothing again: {:?}",
        r.counters
    );
    no_duplicates(&fs_before, &fs, "freshsales");
    no_duplicates(&google_before, &w.google_people().await, "google");
    let again = w.run("g").await;
    assert!(again.plan.ops.is_empty(), "{:?}", again.plan.ops);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_etag_is_a_conflict_retried_with_fresh_data() {
    let w = World::start(&[FreshsalesSuite, GooglePeople], small(), GOOGLE).await;
    w.settle("g", 3).await;
    let fs = w.by_email(App::Fs, "contacts").await;
    let google = w.google_people().await;
    let (email, fs_id, person) = google
        .iter()
        .find_map(|(e, ps)| {
            let f = fs.get(e).filter(|f| f.len() == 1 && ps.len() == 1)?;
            Some((
                e.clone(),
                f[0]["id"].as_u64()?,
                ps[0]["resourceName"].as_str()?.to_owned(),
            ))
        })
        .expect("a linked person");
    w.advance(30).await;
    w.edit(
        App::Fs,
        "contacts",
        fs_id,
        json!({"job_title": "Etag Tester"}),
    )
    .await;
    // The update waits 1.5 s on its way in; meanwhile the user edits the person in Google.
    for (method, prefix) in [
        ("PATCH", "/v1/people/"),
        ("POST", "/v1/people:batchUpdateContacts"),
    ] {
        w.fault(
            App::Google,
            json!({"method": method, "path_prefix": prefix, "count": 1,
            "fault": {"kind": "latency", "ms": 1500}}),
        )
        .await;
    }
    let id = person.trim_start_matches("people/").to_owned();
    let run = w.host().run_sync("g", RunOptions::default());
    let edit = async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        w.control(
            App::Google,
            reqwest::Method::PATCH,
            &format!("/people/{id}"),
            Some(json!({"names": [{"givenName": "Edited", "familyName": "Meanwhile"}]})),
        )
        .await;
    };
    let (first, ()) = tokio::join!(run, edit);
    let first = first.unwrap();
    completed(&first);
    assert!(
        first
            .failures
            .iter()
            .any(|(_, e)| e.contains("conflict") || e.contains("etag")),
        "the stale etag is reported as a conflict: {:?}",
        first.failures
    );
    w.advance(30).await;
    let r = w.try_run("g", later(2)).await.unwrap();
    completed(&r);
    let r = w.try_run("g", later(3)).await.unwrap();
    assert!(r.plan.ops.is_empty(), "settled: {:?}", r.plan.ops);
    let person = &w.google_people().await[&email][0]["person"];
    assert_eq!(
        person["organizations"][0]["title"],
        json!("Etag Tester"),
        "the write went through on fresh data"
    );
    assert_eq!(
        person["names"][0]["familyName"],
        json!("Meanwhile"),
        "the user's edit survived"
    );
    let fs = w.by_email(App::Fs, "contacts").await;
    assert_eq!(fs[&email][0]["last_name"], json!("Meanwhile"));
}
