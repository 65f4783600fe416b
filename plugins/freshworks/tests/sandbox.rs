//! The connectors end to end against the simulated Freshworks accounts (`tandem-sandbox`),
//! run natively: `tandem_sdk::testing::mock_http` hands every request to the account's
//! axum app (with its auth gate, rate limits, faults and counters) and, like the host,
//! attaches `Authorization: Token token=<key>`. The counters give the request figures.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tandem_freshworks::cursor::Cursor;

use axum::Router;
use axum::body::Body;
use serde_json::{Value as Json, json};
use tandem_freshworks::App;
use tandem_sandbox::AccountKind;
use tandem_sandbox::common::{Clock, ControlPlane};
use tandem_sandbox::freshworks::{Account, SeedParams, Switches};
use tandem_sdk::http::{Method, Request, Response};
use tandem_sdk::{
    CreateOp, Error, Field, Lookup, MembershipOp, Op, Page, PullRequest, Record, UpdateOp, Value,
    Write, WriteResult, testing,
};
use tower::ServiceExt;

const HOST: &str = "http://freshworks.sandbox.test";

/// A simulated account wired to this thread's SDK stand-in.
struct Sandbox {
    rt: Arc<tokio::runtime::Runtime>,
    app: Router,
    plane: ControlPlane,
    key: Rc<RefCell<String>>,
    prefix: &'static str,
}

impl Sandbox {
    fn start(kind: AccountKind, count: usize, switches: Json) -> Sandbox {
        let rt = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        );
        let clock = Clock::manual(time::macros::datetime!(2024-06-01 10:00 UTC));
        let switches: Switches = serde_json::from_value(switches).unwrap();
        let account = Arc::new(Account::new(
            kind,
            clock.clone(),
            SeedParams { seed: 7, count },
            switches,
        ));
        let reset = account.clone();
        let plane = ControlPlane::new(clock, move || reset.reset());
        let app = account.app(&plane);
        let key = account.keys().api_key;
        let prefix = if kind == AccountKind::FreshsalesClassic {
            "/api"
        } else {
            "/crm/sales/api"
        };
        let sandbox = Sandbox {
            rt,
            app,
            plane,
            key: Rc::new(RefCell::new(key)),
            prefix,
        };
        sandbox.install(&[]);
        sandbox
    }

    /// Points the connector at the account (as the host would) with extra settings.
    fn install(&self, settings: &[(&str, &str)]) {
        testing::reset();
        testing::set_config("base-url", &format!("{HOST}{}", self.prefix));
        for (k, v) in settings {
            testing::set_config(k, v);
        }
        let app = self.app.clone();
        let rt = self.rt.clone();
        let key = self.key.clone();
        let clock = self.plane.clock.clone();
        testing::mock_http(move |req: &Request| {
            let path = req
                .url
                .strip_prefix(HOST)
                .expect("only the sandbox is called");
            // The connector sleeps before polling a bulk job; the manual clock follows.
            if path.contains("/job_statuses/") {
                clock.advance(Duration::from_secs(1));
            }
            let mut builder = axum::http::Request::builder()
                .method(method(req.method))
                .uri(path);
            for (k, v) in &req.headers {
                builder = builder.header(k, v);
            }
            builder = builder.header("authorization", format!("Token token={}", key.borrow()));
            let request = builder
                .body(Body::from(req.body.clone().unwrap_or_default()))
                .unwrap();
            Ok(send(&rt, &app, request))
        });
    }

    /// A control-API call (`/_sandbox/...`).
    fn control(&self, method: &str, path: &str, body: Option<Json>) -> Json {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(format!("/_sandbox{path}"))
            .header("content-type", "application/json")
            .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .unwrap();
        let reply = send(&self.rt, &self.app, request);
        assert!(
            reply.status < 300,
            "{method} {path}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        serde_json::from_slice(&reply.body).unwrap_or(Json::Null)
    }

    /// API requests counted since the last call (and resets the count).
    fn take_count(&self) -> u64 {
        let total = self.plane.counters.snapshot().total;
        self.plane.counters.clear();
        total
    }

    /// Live records of an entity, as the account holds them.
    fn live(&self, entity: &str) -> Vec<Json> {
        let all = self.control("GET", &format!("/records/{entity}"), None);
        all[entity]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["is_deleted"] != json!(true))
            .cloned()
            .collect()
    }

    fn advance(&self, secs: u64) {
        self.plane.clock.advance(Duration::from_secs(secs));
    }
}

fn method(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

fn send(
    rt: &tokio::runtime::Runtime,
    app: &Router,
    request: axum::http::Request<Body>,
) -> Response {
    let app = app.clone();
    rt.block_on(async move {
        let reply = app.oneshot(request).await.unwrap();
        let status = reply.status().as_u16();
        let headers = reply
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = axum::body::to_bytes(reply.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Response {
            status,
            headers,
            body,
        }
    })
}

fn pull_all(
    app: App,
    entity: &str,
    container: Option<&str>,
    cursor: Option<String>,
    full: bool,
) -> (Vec<Page>, Option<String>) {
    let mut cursor = cursor;
    let mut pages = Vec::new();
    for _ in 0..1000 {
        let page = tandem_freshworks::pull(
            app,
            PullRequest {
                entity: entity.into(),
                container: container.map(str::to_owned),
                cursor: cursor.clone(),
                full,
                page_size: 100,
            },
        )
        .unwrap();
        cursor = page.next_cursor.clone();
        let more = page.more;
        pages.push(page);
        if !more {
            return (pages, cursor);
        }
    }
    panic!("the listing did not end");
}

fn ids(pages: &[Page]) -> BTreeSet<String> {
    pages
        .iter()
        .flat_map(|p| p.records.iter().map(|r| r.id.clone()))
        .collect()
}

fn stored(result: &WriteResult) -> &Record {
    match &result.outcome {
        Ok(Some(record)) => record,
        other => panic!("{}: {other:?}", result.ref_),
    }
}

fn writes(ops: Vec<Op>) -> Vec<Write> {
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| Write {
            ref_: format!("w{i}"),
            op,
        })
        .collect()
}

fn create(email: &str, containers: &[String]) -> Op {
    Op::Create(CreateOp {
        fields: vec![
            Field::new("first_name", "Tandem"),
            Field::new("last_name", email.split('@').next().unwrap()),
            Field::new("email", email),
            Field::new("cf_interests", Value::texts(["Webinars", "Events"])),
        ],
        marker: Some(format!("tandem:{email}")),
        containers: containers.to_vec(),
    })
}

/// Full listing, then incremental runs that see a user's edits, creations and deletions,
/// with the request counts of each.
#[test]
fn suite_full_then_incremental() {
    let sandbox = Sandbox::start(AccountKind::FreshsalesSuite, 250, json!({}));
    let account = tandem_freshworks::check(App::Freshsales).unwrap();
    assert!(account.account_id.starts_with("freshworks:"), "{account:?}");
    sandbox.take_count();

    let (pages, checkpoint) = pull_all(App::Freshsales, "contacts", None, None, true);
    let live = sandbox.live("contacts");
    let expected: BTreeSet<String> = live.iter().map(|r| r["id"].to_string()).collect();
    assert_eq!(ids(&pages), expected);
    let requests = sandbox.take_count();
    let pages_needed = expected.len().div_ceil(100) as u64;
    eprintln!(
        "full listing of {} contacts: {requests} requests ({pages_needed} pages)",
        expected.len()
    );
    assert_eq!(
        requests,
        pages_needed + 2,
        "fields + filters + one request per page"
    );

    // Every record maps: timestamps in UTC, consent as text, multi-selects as lists.
    let raw = live
        .iter()
        .find(|r| {
            r["custom_field"]["cf_interests"]
                .as_str()
                .is_some_and(|s| s.contains(';'))
        })
        .unwrap();
    let sample = pages
        .iter()
        .flat_map(|p| &p.records)
        .find(|r| raw["id"].as_u64().is_some_and(|id| r.id == id.to_string()))
        .unwrap();
    assert!(sample.updated_at.as_deref().unwrap().ends_with('Z'));
    let joined = raw["custom_field"]["cf_interests"].as_str().unwrap();
    assert_eq!(
        sample.get("cf_interests"),
        Some(&Value::texts(joined.split(';')))
    );
    for record in pages.iter().flat_map(|p| &p.records) {
        let consent = record.text("subscription_status").unwrap();
        assert!(
            [
                "subscribed",
                "not-subscribed",
                "unsubscribed",
                "spam",
                "bounced"
            ]
            .contains(&consent),
            "{consent}"
        );
        if record.get("do_not_disturb") == Some(&Value::Boolean(true)) {
            assert!(
                !["subscribed", "not-subscribed"].contains(&consent),
                "DND tightens consent"
            );
        }
    }

    // A user edits one record, deletes another and creates a third.
    sandbox.advance(600);
    let edited = live[10]["id"].as_u64().unwrap();
    let removed = live[20]["id"].as_u64().unwrap();
    sandbox.control(
        "PATCH",
        &format!("/records/contacts/{edited}"),
        Some(json!({"job_title": "Chief Tandem Officer"})),
    );
    sandbox.control("DELETE", &format!("/records/contacts/{removed}"), None);
    let created = sandbox.control(
        "POST",
        "/records/contacts",
        Some(
            json!({"first_name": "New", "last_name": "Person", "emails": "new.person@example.com"}),
        ),
    );
    let created = created["contact"]["id"].to_string();

    let (pages, checkpoint) = pull_all(App::Freshsales, "contacts", None, checkpoint, false);
    let requests = sandbox.take_count();
    eprintln!("incremental run with 3 changes: {requests} requests");
    assert_eq!(requests, 2, "one view page + one deleted search");
    let changed = ids(&pages);
    assert!(
        changed.contains(&edited.to_string()) && changed.contains(&created),
        "{changed:?}"
    );
    assert!(!changed.contains(&removed.to_string()));
    let record = pages[0]
        .records
        .iter()
        .find(|r| r.id == edited.to_string())
        .unwrap();
    assert_eq!(record.text("job_title"), Some("Chief Tandem Officer"));
    assert_eq!(
        pages
            .iter()
            .flat_map(|p| p.deleted.clone())
            .collect::<Vec<_>>(),
        [removed.to_string()]
    );

    // Nothing changes: the run still costs 2 requests and lists again what changed within
    // the overlap before the checkpoint (the user's two writes), but returns neither: the
    // cursor remembers them as they were returned, and they have not changed since.
    sandbox.advance(3600);
    let (again, checkpoint) = pull_all(App::Freshsales, "contacts", None, checkpoint, false);
    assert_eq!(sandbox.take_count(), 2);
    assert_eq!(ids(&again), BTreeSet::new());
    // The memory lasts while they stay in the overlap; an edit to one returns it.
    sandbox.control(
        "PATCH",
        &format!("/records/contacts/{edited}"),
        Some(json!({"job_title": "Chief Sync Officer"})),
    );
    let (again, _) = pull_all(App::Freshsales, "contacts", None, checkpoint, false);
    assert_eq!(ids(&again), BTreeSet::from([edited.to_string()]));
}

/// Short and slightly unordered pages (what Syncari saw) lose nothing, also when every
/// page asked for while more follow comes back one record short (asking for the same page
/// again gives the same short page): the span of a short page is read again with other
/// page boundaries.
#[test]
fn full_listings_rewrite_the_field_type_cache_only_when_it_changed() {
    // An empty account never gets a checkpoint, so every run lists it in full and fetches
    // the field metadata again: the cache must not be written again each time.
    let _sandbox = Sandbox::start(AccountKind::FreshsalesSuite, 0, json!({}));
    pull_all(App::Freshsales, "contacts", None, None, true);
    let after_first = testing::storage_writes();
    assert_eq!(after_first, 1, "the first listing caches the field types");
    let (_, cursor) = pull_all(App::Freshsales, "contacts", None, None, true);
    pull_all(App::Freshsales, "contacts", None, cursor, false);
    assert_eq!(
        testing::storage_writes(),
        after_first,
        "nothing changed, nothing written"
    );

    // A cache that differs from the metadata (here: gone) is written at the next full listing.
    tandem_sdk::storage::delete("field-types/contacts").unwrap();
    pull_all(App::Freshsales, "contacts", None, None, true);
    assert_eq!(testing::storage_writes(), after_first + 2);
    assert!(
        tandem_sdk::storage::get("field-types/contacts")
            .unwrap()
            .is_some()
    );
}

#[test]
fn listings_that_find_nothing_new_make_no_storage_call() {
    // Each storage call is a statement in the host's database: an idle run must make none.
    let sandbox = Sandbox::start(AccountKind::FreshsalesSuite, 3, json!({}));
    let (_, cursor) = pull_all(App::Freshsales, "contacts", None, None, true);
    let reads = testing::storage_reads();
    let (_, cursor) = pull_all(App::Freshsales, "contacts", None, cursor, false);
    assert_eq!(
        testing::storage_reads(),
        reads,
        "no change, no storage call"
    );

    // A full listing whose cursor says the cache holds the types it fetched leaves it be.
    let writes = testing::storage_writes();
    let (_, cursor) = pull_all(App::Freshsales, "contacts", None, cursor, true);
    assert_eq!(
        (testing::storage_reads(), testing::storage_writes()),
        (reads, writes),
        "the same metadata again, no storage call"
    );

    // A changed record is converted with the cached types: one read.
    sandbox.advance(60);
    let id = sandbox.live("contacts")[0]["id"].to_string();
    sandbox.control(
        "PATCH",
        &format!("/records/contacts/{id}"),
        Some(json!({"city": "Lyon"})),
    );
    let (pages, _) = pull_all(App::Freshsales, "contacts", None, cursor.clone(), false);
    assert!(ids(&pages).contains(&id), "the edit is listed");
    assert_eq!(
        testing::storage_reads(),
        reads,
        "the cursor's types know its fields"
    );

    // A cursor whose types predate a custom field that records carry (the admin added it
    // since the last full listing): the cache is read, and it knows the field.
    let forget = |cursor: &Option<String>| {
        let mut c = Cursor::decode(cursor.as_deref().unwrap()).unwrap();
        let types = c.types.as_mut().unwrap();
        let field = types
            .custom
            .pop_first()
            .expect("the account has custom fields");
        (Some(c.encode()), field)
    };
    let (older, field) = forget(&cursor);
    sandbox.take_count();
    let (_, newer) = pull_all(App::Freshsales, "contacts", None, older.clone(), false);
    assert_eq!(testing::storage_reads(), reads + 1, "one read of the cache");
    assert_eq!(sandbox.take_count(), 2, "no metadata request");
    let learned = Cursor::decode(newer.as_deref().unwrap())
        .unwrap()
        .types
        .unwrap();
    assert!(
        learned.custom.contains(&field),
        "the cursor learns the field"
    );
    // Neither the cursor nor the cache knows it: the metadata is fetched again, once.
    tandem_sdk::storage::delete("field-types/contacts").unwrap();
    pull_all(App::Freshsales, "contacts", None, older, false);
    assert_eq!(
        sandbox.take_count(),
        3,
        "the view page, the metadata, the deleted search"
    );
    assert!(
        tandem_sdk::storage::get("field-types/contacts")
            .unwrap()
            .is_some()
    );

    // An empty account is listed in full every run: after the first, no storage call.
    let _empty = Sandbox::start(AccountKind::FreshsalesSuite, 0, json!({}));
    let (_, cursor) = pull_all(App::Freshsales, "contacts", None, None, true);
    let calls = (testing::storage_reads(), testing::storage_writes());
    pull_all(App::Freshsales, "contacts", None, cursor, false);
    assert_eq!((testing::storage_reads(), testing::storage_writes()), calls);
}

#[test]
fn short_and_unordered_pages() {
    let sandbox = Sandbox::start(AccountKind::FreshsalesSuite, 250, json!({}));
    let expected: BTreeSet<String> = sandbox
        .live("contacts")
        .iter()
        .map(|r| r["id"].to_string())
        .collect();
    sandbox.control(
        "POST",
        "/page_quirks",
        Some(json!({"short_pages": 1000, "unordered_pages": 2})),
    );
    sandbox.take_count();
    let (pages, checkpoint) = pull_all(App::Freshsales, "contacts", None, None, true);
    assert_eq!(ids(&pages), expected);
    let requests = sandbox.take_count();
    eprintln!("full listing with every mid-stream page short: {requests} requests");
    assert_eq!(
        requests,
        expected.len().div_ceil(100) as u64 + 2 + 2 * 2,
        "the two short pages are read again as two pages of 99 each"
    );

    // The same on an incremental listing: 150 records changed since the checkpoint.
    sandbox.advance(3600);
    let changed: Vec<String> = expected.iter().take(150).cloned().collect();
    for id in &changed {
        sandbox.control(
            "PATCH",
            &format!("/records/contacts/{id}"),
            Some(json!({"city": "Lyon"})),
        );
    }
    let (pages, _) = pull_all(App::Freshsales, "contacts", None, checkpoint, false);
    let seen = ids(&pages);
    for id in &changed {
        assert!(seen.contains(id), "{id} changed but was not listed");
    }
}

/// Records sharing the checkpoint's second (ties) are not lost.
#[test]
fn ties_at_the_checkpoint_are_listed_again() {
    let sandbox = Sandbox::start(
        AccountKind::FreshsalesSuite,
        30,
        json!({"shuffle_ties": true}),
    );
    let (_, checkpoint) = pull_all(App::Freshsales, "contacts", None, None, true);
    let live = sandbox.live("contacts");
    sandbox.advance(60);
    let tied: Vec<u64> = live[..3]
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    sandbox.control(
        "PATCH",
        &format!("/records/contacts/{}", tied[0]),
        Some(json!({"city": "Lyon"})),
    );
    let (_, checkpoint) = pull_all(App::Freshsales, "contacts", None, checkpoint, false);
    // Two more records get the very same updated_at as the checkpoint, after it was taken.
    let at = sandbox.control("GET", &format!("/records/contacts/{}", tied[0]), None)["contact"]["updated_at"].clone();
    sandbox.control(
        "POST",
        "/records/contacts/timestamps",
        Some(json!({"ids": &tied[1..], "updated_at": at})),
    );
    let (pages, _) = pull_all(App::Freshsales, "contacts", None, checkpoint, false);
    let seen = ids(&pages);
    // The first was returned by the last run and has not changed since: not again.
    assert!(!seen.contains(&tied[0].to_string()), "{seen:?}");
    for id in &tied[1..] {
        assert!(
            seen.contains(&id.to_string()),
            "{id} at the boundary was lost: {seen:?}"
        );
    }
}

/// Creates (bulk), finds, updates (DND, consent, version check), deletes, with counts.
#[test]
fn suite_push_round_trip() {
    let sandbox = Sandbox::start(AccountKind::FreshsalesSuite, 20, json!({}));
    let emails: Vec<String> = (0..150)
        .map(|i| format!("push{i}@tandem.example"))
        .collect();
    let ops = emails.iter().map(|e| create(e, &[])).collect();
    let results = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
    let requests = sandbox.take_count();
    eprintln!("150 creates: {requests} requests");
    // Field metadata once, then per batch of 100: who holds the addresses (nobody), bulk
    // upsert, one job poll, one read-back.
    assert_eq!(requests, 1 + 2 * 4);
    for (result, email) in results.iter().zip(&emails) {
        let record = stored(result);
        assert_eq!(record.text("email"), Some(email.as_str()));
        assert_eq!(
            record.get("cf_interests"),
            Some(&Value::texts(["Webinars", "Events"]))
        );
        assert_eq!(
            record.text("external_id").map(str::to_owned),
            Some(format!("tandem:{email}"))
        );
    }
    assert_eq!(sandbox.live("contacts").len(), 20 + 150);

    // A retried create is found (email, marker) and a re-sent create does not duplicate.
    let found = tandem_freshworks::find(
        App::Freshsales,
        "contacts",
        Lookup::Email("PUSH7@tandem.example".into()),
    )
    .unwrap();
    assert_eq!(found.len(), 1);
    let found = tandem_freshworks::find(
        App::Freshsales,
        "contacts",
        Lookup::Marker("tandem:push8@tandem.example".into()),
    )
    .unwrap();
    assert_eq!(found.len(), 1);
    let again = tandem_freshworks::push(
        App::Freshsales,
        "contacts",
        writes(vec![create(&emails[7], &[])]),
    )
    .unwrap();
    assert_eq!(stored(&again[0]).id, stored(&results[7]).id);
    assert_eq!(sandbox.live("contacts").len(), 20 + 150);
    let ids: Vec<String> = results[..3]
        .iter()
        .map(|r| stored(r).id.clone())
        .chain(["999".to_owned()])
        .collect();
    assert_eq!(
        tandem_freshworks::find(App::Freshsales, "contacts", Lookup::Ids(ids))
            .unwrap()
            .len(),
        3
    );
    sandbox.take_count();

    // DND and consent, a stale version, a bad email, then deletes.
    let a = stored(&results[0]).clone();
    let b = stored(&results[1]).clone();
    sandbox.advance(5);
    let ops = vec![
        Op::Update(UpdateOp {
            id: a.id.clone(),
            if_version: a.version.clone(),
            fields: vec![
                Field::new("do_not_disturb", true),
                Field::new("subscription_status", "unsubscribed"),
            ],
        }),
        Op::Update(UpdateOp {
            id: a.id.clone(),
            if_version: a.version.clone(),
            fields: vec![Field::new("city", "Oslo")],
        }),
        Op::Update(UpdateOp {
            id: b.id.clone(),
            if_version: None,
            fields: vec![Field::new("email", "not an email")],
        }),
        Op::Delete(stored(&results[2]).id.clone()),
        Op::Delete(stored(&results[3]).id.clone()),
    ];
    let out = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
    let requests = sandbox.take_count();
    eprintln!("2 updates with version checks, 1 update, 2 deletes: {requests} requests");
    assert_eq!(
        requests,
        2 + 1 + 1,
        "GET+PUT, conflict with the first PUT's answer (no request), PUT, one bulk destroy"
    );
    let updated = stored(&out[0]);
    assert_eq!(updated.get("do_not_disturb"), Some(&Value::Boolean(true)));
    assert_eq!(updated.text("subscription_status"), Some("unsubscribed"));
    assert_ne!(updated.version, a.version);
    assert!(
        matches!(&out[1].outcome, Err(Error::Conflict(_))),
        "{:?}",
        out[1].outcome
    );
    assert!(
        matches!(&out[2].outcome, Err(Error::Invalid(m)) if m.contains("Email is invalid")),
        "{:?}",
        out[2].outcome
    );
    assert_eq!(
        (out[3].outcome.clone(), out[4].outcome.clone()),
        (Ok(None), Ok(None))
    );
    assert_eq!(sandbox.live("contacts").len(), 20 + 150 - 2);
}

/// Freshmarketer: lists as containers, list-scoped pulls, membership, consent.
#[test]
fn freshmarketer_lists_and_consent() {
    let sandbox = Sandbox::start(AccountKind::Freshmarketer, 120, json!({}));
    let lists = tandem_freshworks::containers(App::Freshmarketer, "contacts").unwrap();
    assert_eq!(lists.len(), 5);
    let newsletter = lists
        .iter()
        .find(|l| l.name == "Newsletter")
        .unwrap()
        .clone();
    sandbox.take_count();

    let (pages, _) = pull_all(
        App::Freshmarketer,
        "contacts",
        Some(&newsletter.id),
        None,
        true,
    );
    let members = ids(&pages);
    assert_eq!(Some(members.len() as u64), newsletter.member_count);
    let requests = sandbox.take_count();
    eprintln!("list of {} members: {requests} requests", members.len());
    assert_eq!(
        requests,
        1 + members.len().div_ceil(100).max(1) as u64,
        "fields + pages"
    );

    // Consent: every subscription_status maps, checked against the account's own data.
    let live = sandbox.live("contacts");
    let (all, _) = pull_all(App::Freshmarketer, "contacts", None, None, true);
    for raw in &live {
        let id = raw["id"].to_string();
        let record = all
            .iter()
            .flat_map(|p| &p.records)
            .find(|r| r.id == id)
            .unwrap();
        let expected = match (
            raw["subscription_status"].as_i64().unwrap(),
            raw["do_not_disturb"] == json!(true),
        ) {
            (0, _) | (1 | 2, true) => "unsubscribed",
            (1, false) => "subscribed",
            (2, false) => "not-subscribed",
            (3, _) => "spam",
            (4, _) => "bounced",
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(record.text("subscription_status"), Some(expected), "{id}");
    }

    // Create into a list, then move members in and out.
    let outside: Vec<String> = live
        .iter()
        .map(|r| r["id"].to_string())
        .filter(|id| !members.contains(id))
        .take(3)
        .collect();
    let ops = vec![
        create(
            "listed@tandem.example",
            std::slice::from_ref(&newsletter.id),
        ),
        Op::AddToContainer(MembershipOp {
            container: newsletter.id.clone(),
            ids: outside.clone(),
        }),
        Op::RemoveFromContainer(MembershipOp {
            container: newsletter.id.clone(),
            ids: vec![members.iter().next().unwrap().clone()],
        }),
        Op::Update(UpdateOp {
            id: outside[0].clone(),
            if_version: None,
            fields: vec![Field::new("subscription_status", "bounced")],
        }),
    ];
    let out = tandem_freshworks::push(App::Freshmarketer, "contacts", writes(ops)).unwrap();
    let new_id = stored(&out[0]).id.clone();
    assert_eq!(out[1].outcome, Ok(None));
    assert_eq!(out[2].outcome, Ok(None));
    assert_eq!(stored(&out[3]).text("subscription_status"), Some("bounced"));
    let (pages, _) = pull_all(
        App::Freshmarketer,
        "contacts",
        Some(&newsletter.id),
        None,
        true,
    );
    let now = ids(&pages);
    assert_eq!(now.len(), members.len() + 1 + 3 - 1);
    assert!(now.contains(&new_id) && outside.iter().all(|id| now.contains(id)));
    let raw = sandbox.control("GET", &format!("/records/contacts/{}", outside[0]), None);
    assert_eq!(raw["contact"]["subscription_status"], json!(4));
}

/// People who join a list in Freshmarketer are listed by the next incremental run even
/// when joining does not move their `updated_at` (unverified either way): the list's
/// member count, free with the first page, disagrees with the last run's plus the
/// connector's own adds, so the run reads the whole list. The connector's own adds do
/// not trigger that; with `list-joins-move-updated-at = false` every run reads the list.
#[test]
fn list_joins_without_a_newer_updated_at() {
    let sandbox = Sandbox::start(
        AccountKind::Freshmarketer,
        120,
        json!({"list_change_bumps_updated_at": false}),
    );
    let lists = tandem_freshworks::containers(App::Freshmarketer, "contacts").unwrap();
    let list = lists
        .iter()
        .find(|l| l.name == "Newsletter")
        .unwrap()
        .id
        .clone();
    let (pages, checkpoint) = pull_all(App::Freshmarketer, "contacts", Some(&list), None, true);
    let members = ids(&pages);
    let outside: Vec<String> = sandbox
        .live("contacts")
        .iter()
        .map(|r| r["id"].to_string())
        .filter(|id| !members.contains(id))
        .take(3)
        .collect();

    // The connector adds one person itself: the next run trusts the window (2 requests).
    let own = Op::AddToContainer(MembershipOp {
        container: list.clone(),
        ids: vec![outside[0].clone()],
    });
    let out = tandem_freshworks::push(App::Freshmarketer, "contacts", writes(vec![own])).unwrap();
    assert_eq!(out[0].outcome, Ok(None));
    sandbox.advance(600);
    sandbox.take_count();
    let (_, checkpoint) = pull_all(
        App::Freshmarketer,
        "contacts",
        Some(&list),
        checkpoint,
        false,
    );
    assert_eq!(
        sandbox.take_count(),
        2,
        "a window page and the deleted search"
    );

    // A user adds two people in the app; their updated_at stays old.
    let joined: Vec<u64> = outside[1..].iter().map(|id| id.parse().unwrap()).collect();
    sandbox.control(
        "PUT",
        &format!("/lists/{list}/members"),
        Some(json!({"add": joined})),
    );
    sandbox.advance(600);
    let (pages, checkpoint) = pull_all(
        App::Freshmarketer,
        "contacts",
        Some(&list),
        checkpoint,
        false,
    );
    let seen = ids(&pages);
    for id in &outside[1..] {
        assert!(seen.contains(id), "{id} joined the list but was not listed");
    }
    sandbox.take_count();

    // Nothing changed since: the count agrees, the window is trusted again.
    sandbox.advance(600);
    pull_all(
        App::Freshmarketer,
        "contacts",
        Some(&list),
        checkpoint.clone(),
        false,
    );
    assert_eq!(sandbox.take_count(), 2);

    // Told that joins do not move updated_at, every run reads the list.
    sandbox.install(&[("list-joins-move-updated-at", "false")]);
    let (pages, _) = pull_all(
        App::Freshmarketer,
        "contacts",
        Some(&list),
        checkpoint,
        false,
    );
    assert_eq!(ids(&pages).len(), members.len() + 3);
}

/// `marker-field` keeps the engine's marker out of `external_id`, which other
/// integrations use: creates (bulk and single) write it into the custom text field, a
/// lookup by marker reads it there, and the `external_id` another tool set stays. A
/// marker field the account does not have is refused by `check` with what to do.
#[test]
fn marker_in_a_custom_field() {
    let sandbox = Sandbox::start(AccountKind::FreshsalesSuite, 5, json!({}));
    sandbox.install(&[("marker-field", "cf_region")]);
    tandem_freshworks::check(App::Freshsales).unwrap();
    let emails: Vec<String> = (0..5).map(|i| format!("mark{i}@tandem.example")).collect();
    // Another integration's id on a person the sync will create again (upsert by email).
    let other = sandbox.control(
        "POST",
        "/records/contacts",
        Some(json!({"first_name": "Other", "email": "mark0@tandem.example", "external_id": "crm-42"})),
    );
    assert!(other["contact"]["id"].is_u64(), "{other}");
    // Bulk (4 or more creates) and single creates.
    for batch in [&emails[..4], &emails[4..]] {
        let ops = batch.iter().map(|e| create(e, &[])).collect();
        let out = tandem_freshworks::push(App::Freshsales, "contacts", writes(ops)).unwrap();
        for (result, email) in out.iter().zip(batch) {
            let record = stored(result);
            let marker = format!("tandem:{email}");
            assert_eq!(record.text("cf_region"), Some(marker.as_str()));
            let found = tandem_freshworks::find(
                App::Freshsales,
                "contacts",
                Lookup::Marker(marker.clone()),
            )
            .unwrap();
            assert_eq!(found.len(), 1, "{marker}");
            assert_eq!(found[0].id, record.id);
        }
    }
    let live = sandbox.live("contacts");
    let mark0 = live
        .iter()
        .find(|r| r["email"] == json!("mark0@tandem.example"))
        .unwrap();
    assert_eq!(
        mark0["external_id"],
        json!("crm-42"),
        "external_id untouched"
    );
    assert!(
        live.iter().all(|r| !r["external_id"]
            .as_str()
            .unwrap_or("")
            .starts_with("tandem:")),
        "no marker in external_id"
    );

    sandbox.install(&[("marker-field", "cf_tandem_id")]);
    let err = tandem_freshworks::check(App::Freshsales).unwrap_err();
    assert!(
        matches!(&err, Error::Fatal(m) if m.contains("`cf_tandem_id` does not exist") && m.contains("marker-field")),
        "{err:?}"
    );
}

/// Updates with `if-version` read their versions with one search by id per 100, and the
/// stale-write protection holds: a record a user edited meanwhile is `conflict` (the
/// user's edit stays), a deleted one `not-found`; on Suite contacts and Classic leads.
#[test]
fn batched_version_checks() {
    for (kind, entity) in [
        (AccountKind::FreshsalesSuite, "contacts"),
        (AccountKind::FreshsalesClassic, "leads"),
    ] {
        let sandbox = Sandbox::start(kind, 30, json!({}));
        let (pages, _) = pull_all(App::Freshsales, entity, None, None, true);
        let records: Vec<Record> = pages
            .iter()
            .flat_map(|p| p.records.clone())
            .take(5)
            .collect();
        sandbox.advance(5);
        let edited = &records[1].id;
        sandbox.control(
            "PATCH",
            &format!("/records/{entity}/{edited}"),
            Some(json!({"last_name": "Edited by a user"})),
        );
        sandbox.control(
            "DELETE",
            &format!("/records/{entity}/{}", records[2].id),
            None,
        );
        sandbox.advance(5);
        sandbox.take_count();
        let ops = records
            .iter()
            .map(|r| {
                Op::Update(UpdateOp {
                    id: r.id.clone(),
                    if_version: r.version.clone(),
                    fields: vec![Field::new("last_name", "Synced")],
                })
            })
            .collect();
        let out = tandem_freshworks::push(App::Freshsales, entity, writes(ops)).unwrap();
        let requests = sandbox.take_count();
        eprintln!("{entity}: 5 checked updates (1 stale, 1 deleted): {requests} requests");
        assert_eq!(
            requests,
            1 + 3 + 1,
            "{entity}: search, 3 PUTs, GET of the deleted one"
        );
        for i in [0, 3, 4] {
            let record = stored(&out[i]);
            assert_eq!(record.text("last_name"), Some("Synced"));
            assert_ne!(record.version, records[i].version);
        }
        assert!(
            matches!(&out[1].outcome, Err(Error::Conflict(m)) if m.contains("changed since")),
            "{entity}: {:?}",
            out[1].outcome
        );
        assert!(
            matches!(&out[2].outcome, Err(Error::NotFound(_))),
            "{entity}: {:?}",
            out[2].outcome
        );
        let singular = &entity[..entity.len() - 1];
        let raw = sandbox.control("GET", &format!("/records/{entity}/{edited}"), None);
        assert_eq!(
            raw[singular]["last_name"],
            json!("Edited by a user"),
            "{entity}"
        );
    }
}

/// Membership writes of one contact each (as the sync engine sends them) share requests:
/// 120 adds to one list are two requests (100 ids, then 20), or three with
/// `list-batch-size = 50`.
#[test]
fn list_adds_share_requests() {
    for (settings, expected) in [(&[][..], 2), (&[("list-batch-size", "50")][..], 3)] {
        let sandbox = Sandbox::start(AccountKind::Freshmarketer, 200, json!({}));
        sandbox.install(settings);
        let lists = tandem_freshworks::containers(App::Freshmarketer, "contacts").unwrap();
        let list = lists
            .iter()
            .find(|l| l.name == "Webinar attendees")
            .unwrap();
        let (members, _) = pull_all(App::Freshmarketer, "contacts", Some(&list.id), None, true);
        let members = ids(&members);
        let outside: Vec<String> = sandbox
            .live("contacts")
            .iter()
            .map(|r| r["id"].to_string())
            .filter(|id| !members.contains(id))
            .take(120)
            .collect();
        assert_eq!(outside.len(), 120);
        sandbox.take_count();
        let ops = outside
            .iter()
            .map(|id| {
                Op::AddToContainer(MembershipOp {
                    container: list.id.clone(),
                    ids: vec![id.clone()],
                })
            })
            .collect();
        let out = tandem_freshworks::push(App::Freshmarketer, "contacts", writes(ops)).unwrap();
        // The field metadata is cached after the first call.
        assert_eq!(sandbox.take_count(), expected, "{settings:?}");
        assert!(out.iter().all(|r| r.outcome == Ok(None)));
        let (now, _) = pull_all(App::Freshmarketer, "contacts", Some(&list.id), None, true);
        let now = ids(&now);
        assert_eq!(now.len(), members.len() + 120);
        assert!(outside.iter().all(|id| now.contains(id)));
    }
}

/// Classic: leads with their nested company; schema tags.
#[test]
fn classic_leads() {
    let sandbox = Sandbox::start(AccountKind::FreshsalesClassic, 60, json!({}));
    let defs = tandem_freshworks::schema(App::Freshsales, "leads").unwrap();
    let tag = |name: &str| {
        defs.iter()
            .find(|d| d.name == name)
            .and_then(|d| d.well_known.clone())
    };
    assert_eq!(tag("email").as_deref(), Some("email"));
    assert_eq!(tag("do_not_disturb").as_deref(), Some("dnd"));
    assert_eq!(tag("external_id").as_deref(), Some("marker"));
    assert!(
        defs.iter()
            .any(|d| d.name == "cf_plan" && d.custom && !d.choices.is_empty())
    );
    let (pages, _) = pull_all(App::Freshsales, "leads", None, None, true);
    assert_eq!(ids(&pages).len(), sandbox.live("leads").len());
    let out = tandem_freshworks::push(
        App::Freshsales,
        "leads",
        writes(vec![Op::Create(CreateOp {
            fields: vec![
                Field::new("last_name", "Lead"),
                Field::new("email", "lead@tandem.example"),
                Field::new("company.name", "Tandem Ltd"),
                Field::new("do_not_disturb", true),
            ],
            marker: None,
            containers: vec![],
        })]),
    )
    .unwrap();
    let lead = stored(&out[0]);
    assert_eq!(lead.text("company.name"), Some("Tandem Ltd"));
    assert_eq!(lead.get("do_not_disturb"), Some(&Value::Boolean(true)));
    let contacts = tandem_freshworks::describe(App::Freshsales);
    assert!(contacts.entities.iter().any(|e| e.name == "leads"));
}

/// The account's errors reach the host as the contract's cases.
#[test]
fn errors_from_the_account() {
    let sandbox = Sandbox::start(AccountKind::FreshsalesSuite, 10, json!({"hourly_limit": 5}));
    // Rate limit: 429 with X-RateLimit-Reset (seconds) and no Retry-After.
    let mut last = None;
    for _ in 0..6 {
        last = Some(tandem_freshworks::check(App::Freshsales));
    }
    match last.unwrap() {
        Err(Error::RateLimited(info)) => {
            let wait = info.retry_after_ms.expect("a wait from X-RateLimit-Reset");
            assert!(wait > 0 && wait <= 3_600_000, "{wait}");
            assert!(
                info.message.contains("Too many requests"),
                "{}",
                info.message
            );
        }
        other => panic!("{other:?}"),
    }
    sandbox.control("DELETE", "/rate_limit", None);
    sandbox.control("PUT", "/switches", Some(json!({"hourly_limit": 1000})));

    sandbox.control("POST", "/auth/revoke", None);
    assert_eq!(
        tandem_freshworks::check(App::Freshsales).unwrap_err(),
        Error::unauthorized("GET contacts/filters: HTTP 401: Incorrect or expired API key")
    );
    sandbox.control("POST", "/auth/restore", None);

    let restricted = sandbox.control("GET", "/info", None)["restricted_api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let good = sandbox.key.replace(restricted);
    assert!(matches!(
        tandem_freshworks::check(App::Freshsales),
        Err(Error::Forbidden(_))
    ));
    sandbox.key.replace(good);

    let fault = |kind: Json| {
        sandbox.control("POST", "/faults", Some(json!({"path_prefix": "/crm/sales/api/contacts/filters", "count": 1, "fault": kind})));
    };
    fault(json!({"kind": "status", "status": 503}));
    assert!(matches!(
        tandem_freshworks::check(App::Freshsales),
        Err(Error::Transient(_))
    ));
    sandbox.install(&[]);
    fault(json!({"kind": "truncate", "keep_bytes": 20}));
    let err = tandem_freshworks::pull(
        App::Freshsales,
        PullRequest {
            entity: "contacts".into(),
            container: None,
            cursor: None,
            full: true,
            page_size: 100,
        },
    );
    assert!(
        matches!(&err, Err(Error::Transient(m)) if m.contains("truncated")),
        "{err:?}"
    );
}
