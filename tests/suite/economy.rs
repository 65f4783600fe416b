//! Request economy (issue 11, item 7): the lookups before creates go in batches through
//! the contract's optional `lookup-api` (Freshworks: a search for 100 addresses at once;
//! Google: one listing of the account per batch instead of one per address), a connector
//! without it still syncs, and a run with nothing changed costs what `docs/request-economy.md`
//! says, per connector. Requests are counted by the simulated accounts: counts, never time.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use tandem::sync::RunOptions;
use tandem_sandbox::AccountKind::{
    self, Freshmarketer, FreshsalesClassic, FreshsalesSuite, GooglePeople,
};
use tandem_sandbox::Sizes;
use tandem_tests::e2e::{App, World, completed, no_duplicates, small};
use tandem_tests::template_api::FakeApi;

/// Requests `app` answered, by `METHOD route`.
async fn routes(w: &World, app: App) -> BTreeMap<String, u64> {
    w.control(app, reqwest::Method::GET, "/counters", None)
        .await["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let key = format!("{} {}", e["method"].as_str()?, e["route"].as_str()?);
            Some((key, e["count"].as_u64().unwrap_or(0)))
        })
        .collect()
}

/// Requests of `app` on routes whose `METHOD route` contains `part`.
fn count(routes: &BTreeMap<String, u64>, part: &str) -> u64 {
    routes
        .iter()
        .filter(|(k, _)| k.contains(part))
        .map(|(_, n)| n)
        .sum()
}

async fn clear(w: &World, app: App) {
    w.control(app, reqwest::Method::DELETE, "/counters", None)
        .await;
}

/// Every distinct address (lower-cased) of the records of `app`.
async fn all_addresses(w: &World, app: App) -> BTreeSet<String> {
    w.by_email(app, "contacts").await.into_keys().collect()
}

fn dry() -> RunOptions {
    RunOptions {
        dry_run: true,
        ..RunOptions::default()
    }
}

/// Larger than one search batch (100 addresses), so that batching shows.
fn sizes() -> Sizes {
    Sizes {
        freshsales: 150,
        freshmarketer: 150,
        ..small()
    }
}

const FS_FM: &[AccountKind] = &[FreshsalesSuite, Freshmarketer];

const FS_FM_SYNC: &str = r#"
[syncs.s]
a = "freshsales"
b = "freshmarketer"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }
"#;

/// The initial Freshsales <-> Freshmarketer sync looks every Freshsales address up in
/// Freshmarketer (a list listing can miss a record outside the list): through
/// `find-many`, one filtered search per 100 addresses and no single lookup (it was one
/// `GET lookup` per address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_freshworks_lookups_are_searches_of_a_hundred_addresses() {
    let w = World::start(FS_FM, sizes(), FS_FM_SYNC).await;
    let addresses = all_addresses(&w, App::Fs).await.len() as u64;
    assert!(addresses > 100, "more than one batch: {addresses}");
    clear(&w, App::Fm).await;
    let report = w.try_run("s", dry()).await.expect("dry run");
    assert!(!report.plan.ops.is_empty(), "the dry run plans the sync");
    let fm = routes(&w, App::Fm).await;
    assert_eq!(count(&fm, "/lookup"), 0, "no single lookup: {fm:?}");
    let searches = count(&fm, "POST /crm/sales/api/filtered_search");
    assert!(
        (1..=addresses.div_ceil(100)).contains(&searches),
        "{searches} searches for at most {addresses} addresses: {fm:?}"
    );

    // The real run matches and creates as before: nobody is duplicated.
    let fs_before = w.by_email(App::Fs, "contacts").await;
    let fm_before = w.by_email(App::Fm, "contacts").await;
    completed(&w.run("s").await);
    no_duplicates(
        &fs_before,
        &w.by_email(App::Fs, "contacts").await,
        "freshsales",
    );
    no_duplicates(
        &fm_before,
        &w.by_email(App::Fm, "contacts").await,
        "freshmarketer",
    );
    let fm = routes(&w, App::Fm).await;
    assert_eq!(count(&fm, "/lookup"), 0, "no single lookup: {fm:?}");
}

const FS_GOOGLE_GROUP: &str = r#"
[syncs.g]
a = "freshsales"
b = "google"
entities = "contacts"
direction = "two-way"
scope = { b = "Newsletter" }
"#;

/// Google has no search safe for de-duplication: every lookup was a scan of the whole
/// account. The initial sync with a group scope now scans once for all its addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_google_lookups_scan_the_account_once() {
    let w = World::start(&[FreshsalesSuite, GooglePeople], small(), FS_GOOGLE_GROUP).await;
    let addresses = all_addresses(&w, App::Fs).await.len();
    assert!(addresses > 20, "{addresses}");
    clear(&w, App::Google).await;
    w.try_run("g", dry()).await.expect("dry run");
    let google = routes(&w, App::Google).await;
    let listings = count(&google, "GET /v1/people/me/connections");
    // One page each (30 contacts): the group's listing, the custom-field scan of
    // `schema`, and the lookups' scan.
    assert_eq!(listings, 3, "{google:?}");
    assert_eq!(count(&google, "searchContacts"), 0, "{google:?}");
}

/// A connector built without `lookup-api` (the template) still loads and syncs: its
/// lookups go through `find`, one per address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_without_batch_lookups_still_syncs() {
    let api = FakeApi::start(true).await;
    let template = tandem_tests::host::plugin("tandem-plugin-template").await;
    assert!(
        !template.has_batch_lookup(),
        "the template has no lookup-api"
    );
    let freshsales = tandem_tests::host::plugin("tandem-plugin-freshsales").await;
    assert!(freshsales.has_batch_lookup());
    let path = tandem_plugins::wasm_path("tandem-plugin-template").expect("built");
    let w = api
        .world_from_freshsales("template", &path, &template.sha256_hex())
        .await;
    let first = w.run("t").await;
    completed(&first);
    let copied = api.live_emails();
    let unique: BTreeSet<&String> = copied.iter().collect();
    assert!(
        copied.len() > small().freshsales / 2,
        "Freshsales contacts reached the template's app: {copied:?}"
    );
    assert_eq!(unique.len(), copied.len(), "no duplicates: {copied:?}");
    // Later: a new Freshsales contact is looked up in the template's app (one `find`)
    // and created there once.
    w.advance(60).await;
    w.create(
        App::Fs,
        "contacts",
        json!({"first_name": "Ona", "last_name": "Old", "emails": "ona.old@shape.example"}),
    )
    .await;
    let queries = api.email_queries();
    completed(&w.run("t").await);
    assert!(api.email_queries() > queries, "looked up with `find`");
    let emails = api.live_emails();
    assert_eq!(
        emails
            .iter()
            .filter(|e| *e == "ona.old@shape.example")
            .count(),
        1,
        "{emails:?}"
    );
    let again = w.run("t").await;
    completed(&again);
    assert!(again.plan.ops.is_empty(), "{:?}", again.plan.ops);
}

/// The requests of one run of `sync`, per app, by `METHOD route`.
async fn one_run(w: &World, sync: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    runs_on(w, sync, &[App::Fs, App::Fm, App::Google]).await
}

/// [`one_run`] of a world with only `apps`.
async fn runs_on(w: &World, sync: &str, apps: &[App]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let apps = apps.to_vec();
    for &app in &apps {
        clear(w, app).await;
    }
    completed(&w.run(sync).await);
    let mut out = BTreeMap::new();
    for app in apps {
        let r = routes(w, app).await;
        if !r.is_empty() {
            out.insert(format!("{app:?}"), r);
        }
    }
    out
}

/// What one run with nothing changed asks of each app, by `METHOD route`: after the
/// first runs have settled, on the same host (the daemon's polls) and on a new host
/// (each `tandem sync run`, which also checks the connections and reads the field
/// definitions once per process). The numbers are those of `docs/request-economy.md`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_nothing_changed_costs_the_minimum_per_connector() {
    let syncs = format!("{FS_FM_SYNC}\n{FS_GOOGLE_GROUP}");
    let mut w = World::start(
        &[FreshsalesSuite, Freshmarketer, GooglePeople],
        small(),
        &syncs,
    )
    .await;
    w.settle("s", 4).await;
    w.settle("g", 4).await;
    // Past the look-back of incremental listings (records the first runs wrote are not
    // listed again), as between two polls of an idle account.
    w.advance(600).await;
    w.settle("s", 2).await;
    w.settle("g", 2).await;
    w.advance(600).await;
    let poll_s = one_run(&w, "s").await;
    let poll_g = one_run(&w, "g").await;
    w.reopen();
    let cli_s = one_run(&w, "s").await;
    w.reopen();
    let cli_g = one_run(&w, "g").await;
    let total = |run: &BTreeMap<String, BTreeMap<String, u64>>, app: App| {
        run.get(&format!("{app:?}"))
            .map(|r| r.values().sum::<u64>())
            .unwrap_or(0)
    };
    let on = |run: &BTreeMap<String, BTreeMap<String, u64>>, app: App, part: &str| {
        run.get(&format!("{app:?}"))
            .map(|r| count(r, part))
            .unwrap_or(0)
    };
    let all = format!("poll s {poll_s:#?}\npoll g {poll_g:#?}\ncli s {cli_s:#?}\ncli g {cli_g:#?}");
    // A poll: the change feeds and the scope's container, nothing else.
    assert_eq!(
        total(&poll_s, App::Fs),
        2,
        "Freshsales: view page + deleted search\n{all}"
    );
    assert_eq!(
        total(&poll_s, App::Fm),
        3,
        "Freshmarketer: lists + list page + deleted search\n{all}"
    );
    assert_eq!(total(&poll_g, App::Fs), 2, "{all}");
    assert_eq!(
        total(&poll_g, App::Google),
        3,
        "Google: groups + the group + connections with the sync token; no token refresh\n{all}"
    );
    for run in [&poll_s, &poll_g, &cli_s, &cli_g] {
        for app in [App::Fs, App::Fm, App::Google] {
            assert_eq!(on(run, app, "lookup"), 0, "no lookups\n{all}");
        }
    }
    // A new process adds its check, the field definitions, and one token refresh.
    assert_eq!(
        total(&cli_s, App::Fs),
        4,
        "+ filters (check) + fields\n{all}"
    );
    assert_eq!(
        total(&cli_s, App::Fm),
        5,
        "+ filters (check) + fields\n{all}"
    );
    assert_eq!(
        on(&cli_g, App::Google, "/token"),
        1,
        "one refresh per process\n{all}"
    );
    assert_eq!(
        on(&cli_g, App::Google, "GET /v1/people/{id}"),
        1,
        "people/me (check)\n{all}"
    );
    assert_eq!(
        on(&cli_g, App::Google, "/connections"),
        2,
        "the sync-token listing + the custom-field scan of `schema`\n{all}"
    );
    assert_eq!(total(&cli_g, App::Google), 6, "{all}");
}

/// A Google side that covers the whole account: a poll with nothing changed is one
/// `connections.list` with the sync token; a new process adds its check, one token
/// refresh and the custom-field scan of `schema`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_whole_account_google_side_costs_one_listing() {
    const SYNC: &str = r#"
[syncs.ga]
a = "freshsales"
b = "google"
entities = "contacts"
direction = "two-way"
"#;
    let mut w = World::start(&[FreshsalesSuite, GooglePeople], small(), SYNC).await;
    w.settle("ga", 4).await;
    w.advance(600).await;
    w.settle("ga", 2).await;
    w.advance(600).await;
    let apps = [App::Fs, App::Google];
    let poll = runs_on(&w, "ga", &apps).await;
    w.reopen();
    let cli = runs_on(&w, "ga", &apps).await;
    let all = format!("poll {poll:#?}\ncli {cli:#?}");
    let google = |run: &BTreeMap<String, BTreeMap<String, u64>>| {
        run.get("Google").cloned().unwrap_or_default()
    };
    assert_eq!(
        google(&poll),
        BTreeMap::from([("GET /v1/people/me/connections".to_owned(), 1)]),
        "{all}"
    );
    let cli_google = google(&cli);
    assert_eq!(count(&cli_google, "/token"), 1, "{all}");
    assert_eq!(count(&cli_google, "GET /v1/people/{id}"), 1, "{all}");
    assert_eq!(count(&cli_google, "/connections"), 2, "{all}");
    assert_eq!(cli_google.values().sum::<u64>(), 4, "{all}");
    let fs = |run: &BTreeMap<String, BTreeMap<String, u64>>| {
        run.get("Fs").map(|r| r.values().sum::<u64>()).unwrap_or(0)
    };
    assert_eq!((fs(&poll), fs(&cli)), (2, 4), "{all}");
}

/// Syncs that start together and share a connection check it once, not once each: a
/// check goes out before the account (and so its budget) is known, so every extra one
/// was a request outside the account's quota (a fleet of two daemons running six syncs
/// exceeded a Freshsales minute limit by the four extra checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_starting_together_check_their_connection_once() {
    let w = World::start(FS_FM, small(), FS_FM_SYNC).await;
    clear(&w, App::Fs).await;
    let host = w.host();
    let checked = futures::future::join_all((0..4).map(|_| host.connection("freshsales"))).await;
    let first = checked[0].as_ref().expect("the connection checks");
    for c in &checked {
        let c = c.as_ref().expect("the connection checks");
        assert!(std::sync::Arc::ptr_eq(c, first), "one checked connection");
    }
    let checks = |r: &BTreeMap<String, u64>| count(r, "GET /crm/sales/api/contacts/filters");
    let after = routes(&w, App::Fs).await;
    assert_eq!(checks(&after), 1, "one check: {after:?}");
    // Checked once, later uses send nothing.
    host.connection("freshsales").await.unwrap();
    assert_eq!(checks(&routes(&w, App::Fs).await), 1);
}

/// One tenant's failing connection costs the others nothing: a connection whose check
/// fails (its key revoked) is checked again at its next use, and only it; the daemon's
/// other connections stay checked and send no new check (each would be a request outside
/// its account's budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_does_not_make_other_connections_check_again() {
    let syncs = format!(
        "{FS_FM_SYNC}\n[syncs.g]\na = \"classic\"\nb = \"google\"\nentities = \"contacts\"\ndirection = \"two-way\"\n"
    );
    let mut w = World::start(
        &[
            FreshsalesSuite,
            Freshmarketer,
            FreshsalesClassic,
            GooglePeople,
        ],
        small(),
        &syncs,
    )
    .await;
    w.control(App::Classic, reqwest::Method::POST, "/auth/revoke", None)
        .await;
    let daemon = w.start_daemon();
    // The first runs: s syncs, g fails its check. The scheduler's own first run of s (a
    // full listing, which looks the view up) may come after this test's; a second run
    // waits for it, so that nothing but checks could send the requests counted below.
    daemon.run_now("s", RunOptions::default()).await.unwrap();
    daemon.run_now("s", RunOptions::default()).await.unwrap();
    assert!(daemon.run_now("g", RunOptions::default()).await.is_err());
    clear(&w, App::Fs).await;
    clear(&w, App::Classic).await;
    for _ in 0..3 {
        let g = daemon.run_now("g", RunOptions::default()).await;
        let err = g.expect_err("the revoked key fails the check").to_string();
        assert!(err.contains("classic"), "{err}");
        daemon.run_now("s", RunOptions::default()).await.unwrap();
    }
    let checks = |r: &BTreeMap<String, u64>| count(r, "contacts/filters");
    // The failing connection is checked at each use (with the check's own retries)...
    assert!(checks(&routes(&w, App::Classic).await) >= 3);
    // ...and the healthy one never again: its incremental runs need no view lookup.
    assert_eq!(checks(&routes(&w, App::Fs).await), 0);
    daemon.shutdown(std::time::Duration::from_secs(30)).await;
}
