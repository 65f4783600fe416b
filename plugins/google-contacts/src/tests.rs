//! Connector-level tests against the simulated Google account (`tandem-sandbox`), run
//! natively: `tandem_sdk::testing::mock_http` hands every request to the account's axum
//! app (with its fault and counter middleware) and, like the host, attaches the OAuth2
//! bearer obtained from the account's token endpoint.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use serde_json::{Value as Json, json};
use tandem_sandbox::common::faults::{FaultKind, FaultRule};
use tandem_sandbox::common::{Clock, ControlPlane};
use tandem_sandbox::google::{self, GoogleAccount, GoogleConfig, GoogleSettings};
use tandem_sdk::http::{Method, Request, Response};
use tandem_sdk::{CreateOp, Field, MembershipOp, Op, UpdateOp, Value, testing};
use tower::ServiceExt;

use super::*;

/// A started simulated account wired to this thread's SDK stand-in.
struct Sandbox {
    rt: Arc<tokio::runtime::Runtime>,
    app: Router,
    account: GoogleAccount,
    plane: ControlPlane,
    token: Rc<RefCell<String>>,
}

const BASE: &str = "http://google.sandbox.test";

impl Sandbox {
    fn start(contacts: usize, settings: GoogleSettings) -> Sandbox {
        let rt = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        );
        let start = time::macros::datetime!(2024-06-01 10:00 UTC);
        let config = GoogleConfig {
            seed: 7,
            contacts,
            settings,
        };
        let account = GoogleAccount::new(&config, Clock::manual(start));
        let plane = account.control_plane();
        let app = account.app(&plane);
        let sandbox = Sandbox {
            rt,
            app,
            account,
            plane,
            token: Rc::new(RefCell::new(String::new())),
        };
        sandbox.refresh_token();
        sandbox.clear_counts();
        sandbox.install();
        sandbox
    }

    fn raw(&self, request: axum::http::Request<Body>) -> Response {
        let app = self.app.clone();
        self.rt.block_on(async move {
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

    /// What the host does: the refresh-token grant against the account's `/token`.
    fn refresh_token(&self) {
        let form = format!(
            "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
            google::CLIENT_ID,
            google::CLIENT_SECRET,
            google::REFRESH_TOKEN
        );
        let request = axum::http::Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        let reply: Json = serde_json::from_slice(&self.raw(request).body).unwrap();
        *self.token.borrow_mut() = reply["access_token"].as_str().unwrap().to_owned();
    }

    /// Routes the SDK's HTTP to the account (fresh SDK state: settings, request log).
    fn install(&self) {
        testing::reset();
        testing::set_config("base-url", BASE);
        let app = self.app.clone();
        let rt = self.rt.clone();
        let token = self.token.clone();
        testing::mock_http(move |req: &Request| {
            let path = req
                .url
                .strip_prefix(BASE)
                .expect("only the sandbox is called");
            let method = match req.method {
                Method::Get => "GET",
                Method::Head => "HEAD",
                Method::Post => "POST",
                Method::Put => "PUT",
                Method::Patch => "PATCH",
                Method::Delete => "DELETE",
            };
            let mut builder = axum::http::Request::builder().method(method).uri(path);
            for (k, v) in &req.headers {
                builder = builder.header(k, v);
            }
            builder = builder.header("authorization", format!("Bearer {}", token.borrow()));
            let request = builder
                .body(Body::from(req.body.clone().unwrap_or_default()))
                .unwrap();
            let app = app.clone();
            Ok(rt.block_on(async move {
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
            }))
        });
    }

    /// Requests the account received since the last [`Sandbox::clear_counts`].
    fn count(&self, method: &str, route: &str) -> u64 {
        self.plane.counters.snapshot().get(method, route)
    }

    fn total(&self) -> u64 {
        self.plane.counters.snapshot().total
    }

    fn clear_counts(&self) {
        self.plane.counters.clear();
    }

    /// An edit as the user would make it in Google Contacts.
    fn user_edit(&self, id: &str, body: Json) {
        let now = self.account.clock().now();
        self.account.store().user_edit(id, &body, now).unwrap();
    }

    fn user_delete(&self, id: &str) {
        let now = self.account.clock().now();
        self.account.store().user_delete(id, now).unwrap();
    }

    fn fault(&self, method: &str, path: &str, fault: FaultKind) {
        self.plane.faults.add(FaultRule {
            id: 0,
            method: Some(method.into()),
            path_prefix: Some(path.into()),
            skip: 0,
            count: Some(1),
            fault,
        });
    }
}

fn request(cursor: Option<String>, full: bool, size: u32) -> PullRequest {
    PullRequest {
        entity: ENTITY.into(),
        container: None,
        cursor,
        full,
        page_size: size,
    }
}

/// A whole listing: (records, deleted ids, checkpoint, pulls).
type Listed = (Vec<Record>, Vec<String>, Option<String>, usize);

/// Pulls every page of a listing.
fn pull_all(mut req: PullRequest) -> Result<Listed, Error> {
    let (mut records, mut deleted, mut pulls) = (Vec::new(), Vec::new(), 0);
    loop {
        let page = GoogleContacts::pull(req.clone())?;
        pulls += 1;
        records.extend(page.records);
        deleted.extend(page.deleted);
        if !page.more {
            return Ok((records, deleted, page.next_cursor, pulls));
        }
        req.cursor = page.next_cursor;
        assert!(pulls < 100, "runaway listing");
    }
}

fn create(marker: &str, email: &str, containers: &[&str]) -> Op {
    Op::Create(CreateOp {
        fields: vec![
            Field::new(mapping::GIVEN_NAME, "Test"),
            Field::new(mapping::FAMILY_NAME, marker),
            Field::new(mapping::EMAIL, email),
            Field::new("userDefined.Source", "tandem"),
        ],
        marker: Some(marker.into()),
        containers: containers.iter().map(|s| s.to_string()).collect(),
    })
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

fn stored(result: &WriteResult) -> &Record {
    match &result.outcome {
        Ok(Some(record)) => record,
        other => panic!("{}: expected a stored record, got {other:?}", result.ref_),
    }
}

#[test]
fn describe_declares_the_capabilities() {
    let info = GoogleContacts::describe();
    assert_eq!(info.name, "google-contacts");
    let contacts = &info.entities[0];
    assert_eq!(contacts.name, "contacts");
    assert!(contacts.incremental && contacts.containers);
    assert_eq!(contacts.deletes, tandem_sdk::DeleteDetection::Tombstones);
    assert_eq!(
        (contacts.max_page_size, contacts.max_batch_size),
        (1000, 1000)
    );
    assert_eq!(info.rate_limits[0].requests, 60);
    assert_eq!(info.rate_limits[0].per_seconds, 60);
}

#[test]
fn check_names_the_account() {
    let sandbox = Sandbox::start(3, GoogleSettings::default());
    let account = GoogleContacts::check().unwrap();
    assert_eq!(account.account_id, format!("people/{}", google::ACCOUNT_ID));
    assert!(
        account.display_name.contains(google::ACCOUNT_EMAIL),
        "{}",
        account.display_name
    );
    // Without a valid bearer the account answers 401: unauthorized.
    *sandbox.token.borrow_mut() = "ya29.not-a-token".into();
    assert!(matches!(
        GoogleContacts::check(),
        Err(Error::Unauthorized(_))
    ));
}

#[test]
fn full_listing_then_incremental_changes_and_tombstones() {
    let sandbox = Sandbox::start(2500, GoogleSettings::default());
    let (records, deleted, checkpoint, pulls) = pull_all(request(None, true, 1000)).unwrap();
    assert_eq!((records.len(), deleted.len(), pulls), (2500, 0, 3));
    assert_eq!(
        sandbox.count("GET", "/v1/people/me/connections"),
        3,
        "one request per page of 1000"
    );
    assert!(
        records
            .iter()
            .all(|r| r.version.is_some() && r.updated_at.is_some())
    );
    let with_email = records
        .iter()
        .filter(|r| r.text(mapping::EMAIL).is_some())
        .count();
    assert!(with_email > 2000, "{with_email}");
    assert!(records.iter().any(|r| r.text("userDefined.Plan").is_some()));

    // Nothing changed: one request, nothing listed.
    sandbox.clear_counts();
    let (records, deleted, checkpoint, _) = pull_all(request(checkpoint, false, 1000)).unwrap();
    assert_eq!((records.len(), deleted.len()), (0, 0));
    assert_eq!(sandbox.total(), 1);

    // Two edits and a deletion in the app: exactly those come back.
    let ids: Vec<String> = GoogleContacts::pull(request(None, true, 3))
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.id)
        .collect();
    sandbox.user_edit(
        &ids[0],
        json!({"names": [{"givenName": "Renamed", "familyName": "Person"}]}),
    );
    sandbox.user_edit(
        &ids[1],
        json!({"userDefined": [{"key": "Plan", "value": "Enterprise"}]}),
    );
    sandbox.user_delete(&ids[2]);
    let (records, deleted, checkpoint, _) = pull_all(request(checkpoint, false, 1000)).unwrap();
    let mut changed: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    changed.sort();
    let mut want = vec![ids[0].as_str(), ids[1].as_str()];
    want.sort();
    assert_eq!(changed, want);
    assert_eq!(deleted, vec![ids[2].clone()]);
    let renamed = records.iter().find(|r| r.id == ids[0]).unwrap();
    assert_eq!(renamed.text(mapping::GIVEN_NAME), Some("Renamed"));
    assert_eq!(renamed.text(mapping::DISPLAY_NAME), Some("Renamed Person"));
    let replanned = records.iter().find(|r| r.id == ids[1]).unwrap();
    assert_eq!(replanned.text("userDefined.Plan"), Some("Enterprise"));

    // The checkpoint moved on: the same changes are not listed twice.
    let (records, deleted, _, _) = pull_all(request(checkpoint, false, 1000)).unwrap();
    assert_eq!((records.len(), deleted.len()), (0, 0));
}

#[test]
fn an_incremental_listing_pages_with_its_sync_token() {
    let sandbox = Sandbox::start(30, GoogleSettings::default());
    let (records, _, checkpoint, _) = pull_all(request(None, false, 1000)).unwrap();
    for record in records.iter().take(25) {
        sandbox.user_edit(&record.id, json!({"biographies": [{"value": "edited"}]}));
    }
    // The page size of the checkpoint is kept (Google binds tokens to it); a smaller
    // first page is honoured for new listings only.
    let (changed, _, _, pulls) = pull_all(request(checkpoint.clone(), false, 10)).unwrap();
    assert_eq!((changed.len(), pulls), (25, 1));
    let (all, _, _, pulls) = pull_all(request(checkpoint, true, 10)).unwrap();
    assert_eq!((all.len(), pulls), (30, 3));
    assert!(
        changed
            .iter()
            .all(|r| r.text(mapping::NOTES) == Some("edited"))
    );
}

#[test]
fn an_expired_sync_token_asks_for_a_full_listing() {
    let sandbox = Sandbox::start(20, GoogleSettings::default());
    let (_, _, checkpoint, _) = pull_all(request(None, false, 1000)).unwrap();
    // Seven days after the full sync the token dies (docs/google-people-api.md §3.1).
    sandbox
        .account
        .clock()
        .advance(std::time::Duration::from_secs(8 * 24 * 3600));
    sandbox.refresh_token();
    let err = GoogleContacts::pull(request(checkpoint.clone(), false, 1000)).unwrap_err();
    assert!(
        matches!(err, Error::CursorExpired(ref m) if m.contains("EXPIRED_SYNC_TOKEN")),
        "{err:?}"
    );
    // The host then runs a full listing (full = true, same cursor).
    let (records, _, fresh, _) = pull_all(request(checkpoint, true, 1000)).unwrap();
    assert_eq!(records.len(), 20);
    // Tokens invalidated early (docs/google-people-api.md §8.2) and the 410 of the old docs are handled the same way.
    sandbox.account.store().expire_sync_tokens();
    sandbox.account.store().settings.expired_sync_token_http = 410;
    let err = GoogleContacts::pull(request(fresh, false, 1000)).unwrap_err();
    assert!(matches!(err, Error::CursorExpired(_)), "{err:?}");
}

#[test]
fn a_refused_token_is_an_expired_cursor() {
    let _sandbox = Sandbox::start(5, GoogleSettings::default());
    // A token Google cannot read: "Request contains an invalid argument." (docs/google-people-api.md §7.2).
    let forged = cursor::Cursor::new(
        1000,
        cursor::Phase::Checkpoint {
            sync: "bm90LWEtdG9rZW4".into(),
        },
    );
    let err = GoogleContacts::pull(request(Some(forged.encode()), false, 1000)).unwrap_err();
    assert!(
        matches!(err, Error::CursorExpired(ref m) if m.contains("invalid argument")),
        "{err:?}"
    );
    // Not our cursor at all.
    let err =
        GoogleContacts::pull(request(Some("{\"page\":\"x\"}".into()), false, 1000)).unwrap_err();
    assert!(matches!(err, Error::CursorExpired(_)), "{err:?}");
}

/// `updateContact` replaces `organizations` wholesale (the sandbox does too): a write of
/// one sub-field (the job title, the company) carries the others, so nothing else of the
/// organization is lost.
#[test]
fn a_write_to_one_organization_part_keeps_the_others() {
    let _sandbox = Sandbox::start(0, GoogleSettings::default());
    let mut op = create("m-org", "org@example.com", &[]);
    if let Op::Create(c) = &mut op {
        c.fields.push(Field::new(mapping::COMPANY, "Acme"));
        c.fields.push(Field::new(mapping::JOB_TITLE, "CEO"));
        c.fields.push(Field::new(mapping::DEPARTMENT, "Board"));
    }
    let created = stored(&GoogleContacts::push(ENTITY, writes(vec![op])).unwrap()[0]).clone();
    let update = |field: &str, value: Value, version: Option<String>| {
        Op::Update(UpdateOp {
            id: created.id.clone(),
            if_version: version,
            fields: vec![Field::new(field, value)],
        })
    };
    let after = stored(
        &GoogleContacts::push(
            ENTITY,
            writes(vec![update(mapping::JOB_TITLE, Value::text("Chair"), None)]),
        )
        .unwrap()[0],
    )
    .clone();
    assert_eq!(after.text(mapping::JOB_TITLE), Some("Chair"));
    assert_eq!(after.text(mapping::COMPANY), Some("Acme"), "{after:?}");
    assert_eq!(after.text(mapping::DEPARTMENT), Some("Board"));
    let after = stored(
        &GoogleContacts::push(
            ENTITY,
            writes(vec![update(mapping::COMPANY, Value::text("Globex"), None)]),
        )
        .unwrap()[0],
    )
    .clone();
    assert_eq!(after.text(mapping::COMPANY), Some("Globex"));
    assert_eq!(after.text(mapping::JOB_TITLE), Some("Chair"), "{after:?}");
    assert_eq!(after.text(mapping::DEPARTMENT), Some("Board"));
    // Read back from the account itself, not only from the write's answer.
    let found = GoogleContacts::find(ENTITY, Lookup::Ids(vec![created.id.clone()])).unwrap();
    assert_eq!(found[0].text(mapping::JOB_TITLE), Some("Chair"));
    assert_eq!(found[0].text(mapping::DEPARTMENT), Some("Board"));
}

#[test]
fn push_batches_creates_updates_and_deletes() {
    let sandbox = Sandbox::start(10, GoogleSettings::default());

    // 450 creates: three batchCreateContacts (200 + 200 + 50).
    let ops: Vec<Op> = (0..450)
        .map(|i| create(&format!("m-{i}"), &format!("new{i}@example.com"), &[]))
        .collect();
    let results = GoogleContacts::push(ENTITY, writes(ops)).unwrap();
    assert_eq!(results.len(), 450);
    assert_eq!(sandbox.count("POST", "/v1/people:batchCreateContacts"), 3);
    assert_eq!(sandbox.total(), 3);
    let created: Vec<Record> = results.iter().map(|r| stored(r).clone()).collect();
    assert_eq!(created[7].text(mapping::MARKER), Some("m-7"));
    assert_eq!(created[7].text(mapping::EMAIL), Some("new7@example.com"));
    assert_eq!(created[7].text("userDefined.Source"), Some("tandem"));
    assert_eq!(
        created[7].get(mapping::GROUPS),
        Some(&Value::texts([mapping::MY_CONTACTS]))
    );

    // 450 updates carrying the etags: three batchGet + three batchUpdateContacts.
    sandbox.clear_counts();
    let ops: Vec<Op> = created
        .iter()
        .map(|r| {
            Op::Update(UpdateOp {
                id: r.id.clone(),
                if_version: r.version.clone(),
                fields: vec![Field::new(mapping::JOB_TITLE, "Engineer")],
            })
        })
        .collect();
    let results = GoogleContacts::push(ENTITY, writes(ops)).unwrap();
    assert_eq!(sandbox.count("GET", "/v1/people:batchGet"), 3);
    assert_eq!(sandbox.count("POST", "/v1/people:batchUpdateContacts"), 3);
    assert_eq!(sandbox.total(), 6);
    let updated: Vec<Record> = results.iter().map(|r| stored(r).clone()).collect();
    assert_eq!(updated[3].text(mapping::JOB_TITLE), Some("Engineer"));
    assert_eq!(
        updated[3].text(mapping::FAMILY_NAME),
        Some("m-3"),
        "other fields untouched"
    );
    assert_ne!(updated[3].version, created[3].version, "a new etag");

    // A stale etag is a conflict (Google says so); the other writes of the push go through.
    sandbox.clear_counts();
    let ops = vec![
        Op::Update(UpdateOp {
            id: created[0].id.clone(),
            if_version: created[0].version.clone(),
            fields: vec![Field::new(mapping::JOB_TITLE, "Stale")],
        }),
        Op::Update(UpdateOp {
            id: created[1].id.clone(),
            if_version: updated[1].version.clone(),
            fields: vec![Field::new(mapping::JOB_TITLE, "Fresh")],
        }),
    ];
    let results = GoogleContacts::push(ENTITY, writes(ops)).unwrap();
    assert!(
        matches!(results[0].outcome, Err(Error::Conflict(_))),
        "{:?}",
        results[0]
    );
    assert_eq!(stored(&results[1]).text(mapping::JOB_TITLE), Some("Fresh"));
    assert_eq!(sandbox.count("GET", "/v1/people:batchGet"), 1);
    assert_eq!(
        sandbox.count("PATCH", "/v1/people/{id}"),
        2,
        "the stale one alone"
    );

    // 450 deletes: one batchDeleteContacts; again: still success (already gone).
    sandbox.clear_counts();
    let ops: Vec<Op> = created.iter().map(|r| Op::Delete(r.id.clone())).collect();
    let results = GoogleContacts::push(ENTITY, writes(ops.clone())).unwrap();
    assert!(
        results.iter().all(|r| r.outcome == Ok(None)),
        "{:?}",
        results[0]
    );
    assert_eq!(sandbox.total(), 1);
    let results = GoogleContacts::push(ENTITY, writes(ops)).unwrap();
    assert!(
        results.iter().all(|r| r.outcome == Ok(None)),
        "{:?}",
        results[0]
    );
    let (records, _, _, _) = pull_all(request(None, true, 1000)).unwrap();
    assert_eq!(records.len(), 10);
}

#[test]
fn updates_replace_only_what_changed_and_keep_secondary_values() {
    let _sandbox = Sandbox::start(1, GoogleSettings::default());
    let results = GoogleContacts::push(
        ENTITY,
        writes(vec![Op::Create(CreateOp {
            fields: vec![
                Field::new(mapping::EMAILS, Value::texts(["a@x.io", "b@x.io"])),
                Field::new(mapping::MOBILE, "+1 202 555 0100"),
                Field::new(mapping::STREET, "1 Main St"),
                Field::new(mapping::CITY, "Springfield"),
                Field::new(mapping::BIRTHDAY, "--04-01"),
            ],
            marker: None,
            containers: vec![],
        })]),
    )
    .unwrap();
    let created = stored(&results[0]).clone();
    assert_eq!(
        created.text(mapping::ADDRESS),
        Some("1 Main St\nSpringfield")
    );
    let results = GoogleContacts::push(
        ENTITY,
        writes(vec![Op::Update(UpdateOp {
            id: created.id.clone(),
            if_version: created.version.clone(),
            fields: vec![
                Field::new(mapping::EMAIL, "c@x.io"),
                Field::new(mapping::CITY, "Shelbyville"),
                Field::new(mapping::BIRTHDAY, Value::Null),
            ],
        })]),
    )
    .unwrap();
    let updated = stored(&results[0]);
    assert_eq!(
        updated.get(mapping::EMAILS),
        Some(&Value::texts(["c@x.io", "b@x.io"]))
    );
    assert_eq!(updated.text(mapping::MOBILE), Some("+1 202 555 0100"));
    assert_eq!(
        updated.text(mapping::ADDRESS),
        Some("1 Main St\nShelbyville"),
        "recomputed"
    );
    assert_eq!(updated.get(mapping::BIRTHDAY), Some(&Value::Null));
    // Writing the same values again sends nothing but the read.
    let results = GoogleContacts::push(
        ENTITY,
        writes(vec![Op::Update(UpdateOp {
            id: created.id.clone(),
            if_version: None,
            fields: vec![Field::new(mapping::CITY, "Shelbyville")],
        })]),
    )
    .unwrap();
    assert_eq!(stored(&results[0]).version, updated.version);
    let sent: Vec<String> = testing::requests().iter().map(|r| r.url.clone()).collect();
    assert!(sent.last().unwrap().contains("people:batchGet"), "{sent:?}");
}

#[test]
fn find_by_marker_email_and_ids() {
    let sandbox = Sandbox::start(1500, GoogleSettings::default());
    let results = GoogleContacts::push(
        ENTITY,
        writes(vec![create("m-retry", "Retry@Example.com", &[])]),
    )
    .unwrap();
    let created = stored(&results[0]).clone();

    // A retried create is found by its marker: a 2-page scan plus one batchGet.
    sandbox.clear_counts();
    let found = GoogleContacts::find(ENTITY, Lookup::Marker("m-retry".into())).unwrap();
    assert_eq!(
        found.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [created.id.as_str()]
    );
    assert_eq!(sandbox.count("GET", "/v1/people/me/connections"), 2);
    assert_eq!(sandbox.count("GET", "/v1/people:batchGet"), 1);
    assert!(
        GoogleContacts::find(ENTITY, Lookup::Marker("m-other".into()))
            .unwrap()
            .is_empty()
    );

    // By email, case-insensitively, on any email of the contact.
    let found = GoogleContacts::find(ENTITY, Lookup::Email("retry@example.COM".into())).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].text(mapping::MARKER), Some("m-retry"));

    // By ids: missing and malformed ids are absent.
    let found = GoogleContacts::find(
        ENTITY,
        Lookup::Ids(vec![
            created.id.clone(),
            "people/c404".into(),
            "nonsense/x".into(),
        ]),
    )
    .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].version, created.version);
}

#[test]
fn contact_groups_are_containers() {
    let sandbox = Sandbox::start(40, GoogleSettings::default());
    let groups = GoogleContacts::containers(ENTITY).unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    assert!(
        names.contains(&mapping::MY_CONTACTS) && names.contains(&"contactGroups/starred"),
        "{names:?}"
    );
    assert!(!names.contains(&"contactGroups/all") && !names.contains(&"contactGroups/blocked"));
    let my = groups
        .iter()
        .find(|g| g.id == mapping::MY_CONTACTS)
        .unwrap();
    assert_eq!(my.member_count, Some(40));

    let vip = {
        let now = sandbox.account.clock().now();
        sandbox.account.store().ensure_user_group("VIP test", now)
    };
    let listed = GoogleContacts::containers(ENTITY).unwrap();
    let found = listed.iter().find(|g| g.id == vip).unwrap();
    assert_eq!(
        (found.name.as_str(), found.member_count),
        ("VIP test", Some(0))
    );

    // Create into the group, add two existing contacts, remove one.
    let (records, _, _, _) = pull_all(request(None, true, 1000)).unwrap();
    let results = GoogleContacts::push(
        ENTITY,
        writes(vec![
            create("m-vip", "vip@example.com", &[&vip]),
            Op::AddToContainer(MembershipOp {
                container: vip.clone(),
                ids: vec![records[0].id.clone(), records[1].id.clone()],
            }),
        ]),
    )
    .unwrap();
    assert_eq!(results[1].outcome, Ok(None));
    let new_id = stored(&results[0]).id.clone();
    let scoped = |cursor: Option<String>| {
        pull_all(PullRequest {
            container: Some(vip.clone()),
            ..request(cursor, false, 1000)
        })
        .unwrap()
    };
    let (members, _, checkpoint, _) = scoped(None);
    let mut ids: Vec<String> = members.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    let mut want = vec![new_id.clone(), records[0].id.clone(), records[1].id.clone()];
    want.sort();
    assert_eq!(ids, want);

    let results = GoogleContacts::push(
        ENTITY,
        writes(vec![Op::RemoveFromContainer(MembershipOp {
            container: vip.clone(),
            ids: vec![records[0].id.clone()],
        })]),
    )
    .unwrap();
    assert_eq!(results[0].outcome, Ok(None));
    // Incremental, scoped: the contact that left is not listed as a member any more.
    let (changed, _, _, _) = scoped(checkpoint);
    assert!(changed.is_empty(), "{changed:?}");
    assert_eq!(scoped(None).0.len(), 2);

    // Adding a contact that does not exist, an unknown group.
    let results = GoogleContacts::push(
        ENTITY,
        writes(vec![Op::AddToContainer(MembershipOp {
            container: vip.clone(),
            ids: vec!["people/c1".into()],
        })]),
    )
    .unwrap();
    assert!(
        matches!(results[0].outcome, Err(Error::NotFound(_))),
        "{:?}",
        results[0]
    );
    let err = GoogleContacts::pull(PullRequest {
        container: Some("contactGroups/nope".into()),
        ..request(None, true, 10)
    })
    .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

/// Membership writes of one contact each (as the sync engine sends them) share one
/// `members:modify` per group, direction and 1000 names; a contact that does not exist
/// fails its own write only.
#[test]
fn membership_writes_share_requests() {
    let sandbox = Sandbox::start(300, GoogleSettings::default());
    let group = {
        let now = sandbox.account.clock().now();
        sandbox.account.store().ensure_user_group("Batch test", now)
    };
    let (records, _, _, _) = pull_all(request(None, true, 1000)).unwrap();
    let add = |id: &str| {
        Op::AddToContainer(MembershipOp {
            container: group.clone(),
            ids: vec![id.to_owned()],
        })
    };
    let mut ops: Vec<Op> = records.iter().take(250).map(|r| add(&r.id)).collect();
    ops.insert(100, add("people/c1"));
    sandbox.clear_counts();
    let results = GoogleContacts::push(ENTITY, writes(ops)).unwrap();
    assert_eq!(
        sandbox.count("POST", "/v1/contactGroups/{id}/members:modify"),
        1
    );
    assert_eq!(results.len(), 251);
    for (i, result) in results.iter().enumerate() {
        if i == 100 {
            assert!(
                matches!(&result.outcome, Err(Error::NotFound(m)) if m.contains("people/c1")),
                "{result:?}"
            );
        } else {
            assert_eq!(result.outcome, Ok(None), "{i}");
        }
    }
    let listed = GoogleContacts::containers(ENTITY).unwrap();
    let found = listed.iter().find(|g| g.id == group).unwrap();
    assert_eq!(found.member_count, Some(250));
}

#[test]
fn schema_reports_custom_fields_found_on_contacts() {
    let sandbox = Sandbox::start(50, GoogleSettings::default());
    let id = GoogleContacts::pull(request(None, true, 1))
        .unwrap()
        .records[0]
        .id
        .clone();
    sandbox.user_edit(
        &id,
        json!({"userDefined": [{"key": "Favourite colour", "value": "teal"}],
                                  "clientData": [{"key": "crm-id", "value": "42"}]}),
    );
    let fields = GoogleContacts::schema(ENTITY).unwrap();
    let find = |name: &str| fields.iter().find(|f| f.name == name);
    for name in [
        "userDefined.Favourite colour",
        "userDefined.Plan",
        "clientData.crm-id",
    ] {
        let def = find(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(def.custom && def.writable, "{name}");
    }
    assert_eq!(
        find(mapping::EMAIL).unwrap().well_known.as_deref(),
        Some("email")
    );
    assert!(matches!(
        GoogleContacts::schema("leads"),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn transient_failures_and_truncated_bodies() {
    let sandbox = Sandbox::start(5, GoogleSettings::default());
    sandbox.fault(
        "GET",
        "/v1/people/me/connections",
        FaultKind::Status {
            status: 503,
            body: None,
            content_type: None,
            headers: Default::default(),
        },
    );
    assert!(matches!(
        GoogleContacts::pull(request(None, true, 10)),
        Err(Error::Transient(_))
    ));
    sandbox.fault(
        "GET",
        "/v1/people/me/connections",
        FaultKind::Truncate {
            keep_bytes: Some(100),
            declare_full_length: false,
        },
    );
    let err = GoogleContacts::pull(request(None, true, 10)).unwrap_err();
    assert!(
        matches!(err, Error::Transient(ref m) if m.contains("truncated")),
        "{err:?}"
    );
    assert_eq!(pull_all(request(None, true, 10)).unwrap().0.len(), 5);
}

#[test]
fn a_lost_create_reply_is_found_by_its_marker() {
    let sandbox = Sandbox::start(3, GoogleSettings::default());
    // The server commits the batch, then the reply is lost (a 500 after commit).
    sandbox.fault(
        "POST",
        "/v1/people:batchCreateContacts",
        FaultKind::AfterCommit {
            status: Some(500),
            body: None,
        },
    );
    let ops = vec![
        create("m-a", "a@lost.example", &[]),
        create("m-b", "b@lost.example", &[]),
    ];
    let results = GoogleContacts::push(ENTITY, writes(ops)).unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r.outcome, Err(Error::Transient(_)))),
        "{results:?}"
    );
    // Before re-creating, the host looks for the marker: found, no duplicate.
    for marker in ["m-a", "m-b"] {
        let found = GoogleContacts::find(ENTITY, Lookup::Marker(marker.into())).unwrap();
        assert_eq!(found.len(), 1, "{marker}");
    }
}

#[test]
fn quota_refusals_stop_the_push_and_carry_the_wait() {
    let settings = GoogleSettings {
        quotas: Some(google::settings::QuotaLimits {
            critical_writes_per_minute: 6,
            ..Default::default()
        }),
        ..GoogleSettings::default()
    };
    let sandbox = Sandbox::start(5, settings);
    // One batch costs 6 critical writes: the second one is refused; the third is not sent.
    let ops: Vec<Op> = (0..500)
        .map(|i| create(&format!("q-{i}"), &format!("q{i}@x.io"), &[]))
        .collect();
    let results = GoogleContacts::push(ENTITY, writes(ops)).unwrap();
    assert!(results[..200].iter().all(|r| r.outcome.is_ok()));
    assert!(
        results[200..]
            .iter()
            .all(|r| matches!(r.outcome, Err(Error::RateLimited(_)))),
        "{:?}",
        results[450]
    );
    assert_eq!(sandbox.count("POST", "/v1/people:batchCreateContacts"), 2);
}

#[test]
fn invalid_writes_fail_alone() {
    let sandbox = Sandbox::start(2, GoogleSettings::default());
    let (records, _, _, _) = pull_all(request(None, true, 10)).unwrap();
    let ops = vec![
        create("m-ok", "ok@x.io", &[]),
        Op::Create(CreateOp {
            fields: vec![Field::new(mapping::DISPLAY_NAME, "x")],
            marker: None,
            containers: vec![],
        }),
        create("m-bad-group", "g@x.io", &["contactGroups/doesnotexist"]),
        Op::Update(UpdateOp {
            id: "people/c404".into(),
            if_version: None,
            fields: vec![Field::new(mapping::NOTES, "x")],
        }),
        Op::Update(UpdateOp {
            id: records[0].id.clone(),
            if_version: None,
            fields: vec![Field::new(mapping::BIRTHDAY, "soon")],
        }),
        Op::Delete("not an id/".into()),
    ];
    let results = GoogleContacts::push(ENTITY, writes(ops)).unwrap();
    assert!(
        results[0].outcome.as_ref().is_ok_and(Option::is_some),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(results[1].outcome, Err(Error::Invalid(_))),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2].outcome, Err(Error::NotFound(_))),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(results[3].outcome, Err(Error::NotFound(_))),
        "{:?}",
        results[3]
    );
    assert!(
        matches!(results[4].outcome, Err(Error::Invalid(_))),
        "{:?}",
        results[4]
    );
    assert!(
        matches!(results[5].outcome, Err(Error::Invalid(_))),
        "{:?}",
        results[5]
    );
    // The refused batch of two creates was retried one by one.
    assert_eq!(sandbox.count("POST", "/v1/people:batchCreateContacts"), 1);
    assert_eq!(sandbox.count("POST", "/v1/people:createContact"), 2);
    assert!(matches!(
        GoogleContacts::push("leads", vec![]),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn the_real_api_is_the_default() {
    testing::reset();
    testing::mock_http(|req: &Request| {
        assert!(
            req.url
                .starts_with("https://people.googleapis.com/v1/people/me?"),
            "{}",
            req.url
        );
        assert!(
            !req.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        );
        Ok(testing::json_response(
            200,
            &json!({"resourceName": "people/1"}),
        ))
    });
    assert_eq!(GoogleContacts::check().unwrap().account_id, "people/1");
}

/// Requests for 10,000 contacts, in pushes of the declared batch size, against the lower
/// bound (pages of 1000, batches of 200 creates/updates and 500 deletes).
#[test]
fn request_economy_for_10000_contacts() {
    let sandbox = Sandbox::start(10_000, GoogleSettings::default());
    let push_size = GoogleContacts::describe().entities[0].max_batch_size as usize;
    let run = |ops: Vec<Op>| -> Vec<WriteResult> {
        let mut results = Vec::new();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let chunk: Vec<Op> = ops.by_ref().take(push_size).collect();
            results.extend(GoogleContacts::push(ENTITY, writes(chunk)).unwrap());
        }
        results
    };

    let (records, _, _, _) = pull_all(request(None, true, 1000)).unwrap();
    assert_eq!(records.len(), 10_000);
    let pull = sandbox.total();

    sandbox.clear_counts();
    let results = run((0..10_000)
        .map(|i| create(&format!("e-{i}"), &format!("e{i}@x.io"), &[]))
        .collect());
    let created: Vec<Record> = results.iter().map(|r| stored(r).clone()).collect();
    let creates = sandbox.total();

    sandbox.clear_counts();
    let results = run(created
        .iter()
        .map(|r| {
            Op::Update(UpdateOp {
                id: r.id.clone(),
                if_version: r.version.clone(),
                fields: vec![Field::new(mapping::JOB_TITLE, "Economist")],
            })
        })
        .collect());
    assert!(results.iter().all(|r| r.outcome.is_ok()));
    let updates = sandbox.total();

    sandbox.clear_counts();
    let results = run(created.iter().map(|r| Op::Delete(r.id.clone())).collect());
    assert!(results.iter().all(|r| r.outcome == Ok(None)));
    let deletes = sandbox.total();

    eprintln!(
        "10,000 contacts: pull {pull} requests (bound 10), create {creates} (bound 50), update {updates} (bound 50 writes), delete {deletes} (bound 20)"
    );
    assert_eq!((pull, creates, updates, deletes), (10, 50, 100, 20));
}
