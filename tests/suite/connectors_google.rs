//! The Google Contacts connector, built for wasm32-wasip2 and run by the host runtime,
//! against a started simulated Google account: OAuth2 by the host (the plugin never sees
//! a token), pull (full, then incremental with sync tokens and tombstones), push in
//! batches, find by marker, contact groups, and the error variants. Request counts come
//! from the account's own counters.

use tandem::runtime::types::{
    CreateOp, Error, Field, Lookup, Op, PullRequest, Record, UpdateOp, Value, Write,
};
use tandem::runtime::{CallError, Connection, ConnectorClient, Credentials, Secret};
use tandem_sandbox::common::ControlPlane;
use tandem_sandbox::common::faults::{FaultKind, FaultRule};
use tandem_sandbox::{AccountKind, Sandbox, SandboxOptions, Sizes};
use tandem_tests::host::{loopback_grant, plugin, runtime};

const PACKAGE: &str = "tandem-plugin-google-contacts";
const CONNECTIONS: &str = "/v1/people/me/connections";

async fn start(contacts: usize) -> Sandbox {
    Sandbox::start(SandboxOptions {
        kinds: vec![AccountKind::GooglePeople],
        sizes: Sizes {
            google: contacts,
            ..Sizes::default()
        },
        rate_limits_enabled: false,
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts")
}

/// A client for the account, with the host doing OAuth2 against the account's `/token`.
async fn client(sandbox: &Sandbox, refresh_token: &str) -> ConnectorClient {
    let account = sandbox.account(AccountKind::GooglePeople).unwrap();
    let tandem_sandbox::Credentials::OAuth2 {
        token_url,
        client_id,
        client_secret,
        ..
    } = &account.credentials
    else {
        panic!("the Google account uses OAuth2");
    };
    let connection = Connection {
        id: "google-e2e".into(),
        settings: [("base-url".to_owned(), account.base_url.clone())].into(),
        grant: loopback_grant(&["setting:base-url"]),
        credentials: Credentials::OAuth2 {
            client_id: client_id.clone(),
            client_secret: Secret::new(client_secret.clone()),
            refresh_token: Secret::new(refresh_token),
            token_url: Some(token_url.clone()),
        },
        budget: None,
    };
    runtime()
        .connector(&plugin(PACKAGE).await, connection)
        .expect("connector client")
}

fn control(sandbox: &Sandbox) -> &ControlPlane {
    sandbox.control(AccountKind::GooglePeople).unwrap()
}

fn seeded_refresh_token() -> &'static str {
    tandem_sandbox::google::REFRESH_TOKEN
}

fn request(cursor: Option<String>, full: bool) -> PullRequest {
    PullRequest {
        entity: "contacts".into(),
        container: None,
        cursor,
        full,
        page_size: 1000,
    }
}

/// Every page of a listing: (records, deleted ids, checkpoint, pages).
async fn pull_all(
    client: &ConnectorClient,
    mut req: PullRequest,
) -> (Vec<Record>, Vec<String>, Option<String>, usize) {
    let (mut records, mut deleted, mut pages) = (Vec::new(), Vec::new(), 0);
    loop {
        let page = client.pull(&req).await.unwrap_or_else(|e| panic!("{e}"));
        pages += 1;
        records.extend(page.records);
        deleted.extend(page.deleted);
        if !page.more {
            return (records, deleted, page.next_cursor, pages);
        }
        req.cursor = page.next_cursor;
        assert!(pages < 50, "runaway listing");
    }
}

fn text<'a>(record: &'a Record, name: &str) -> Option<&'a str> {
    record
        .fields
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| match &f.value {
            Value::Text(t) => Some(t.as_str()),
            _ => None,
        })
}

fn field(name: &str, value: &str) -> Field {
    Field {
        name: name.into(),
        value: Value::Text(value.into()),
    }
}

fn plugin_error(err: CallError) -> Error {
    err.plugin_error()
        .cloned()
        .unwrap_or_else(|| panic!("expected a plugin error, got {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_contacts_pulls_and_pushes_through_the_host() {
    let sandbox = start(2500).await;
    let client = client(&sandbox, seeded_refresh_token()).await;
    let counters = &control(&sandbox).counters;

    let info = client.describe().await.unwrap();
    let contacts = &info.entities[0];
    assert!(contacts.incremental && contacts.containers);
    assert_eq!(
        (contacts.max_page_size, contacts.max_batch_size),
        (1000, 1000)
    );
    let account = client.check().await.unwrap();
    assert_eq!(
        account.account_id,
        format!("people/{}", tandem_sandbox::google::ACCOUNT_ID)
    );

    // Full listing: one request per page of 1000; one token refresh by the host.
    counters.clear();
    let (records, deleted, checkpoint, pages) = pull_all(&client, request(None, true)).await;
    let snapshot = counters.snapshot();
    assert_eq!((records.len(), deleted.len(), pages), (2500, 0, 3));
    assert_eq!(snapshot.get("GET", CONNECTIONS), 3);
    assert_eq!(snapshot.total, 3, "{snapshot:?}");
    assert!(records.iter().all(|r| r.version.is_some()));

    // Push 250 creates (2 batch requests), then 250 updates with their etags (2 reads,
    // 2 batch writes), then find one by its marker.
    counters.clear();
    let creates: Vec<Write> = (0..250)
        .map(|i| Write {
            ref_: format!("c{i}"),
            op: Op::Create(CreateOp {
                fields: vec![
                    field("names.givenName", "E2E"),
                    field("names.familyName", &format!("Contact {i}")),
                    field("emailAddresses.primary", &format!("e2e{i}@example.com")),
                ],
                marker: Some(format!("e2e-{i}")),
                containers: vec![],
            }),
        })
        .collect();
    let results = client.push("contacts", &creates).await.unwrap();
    let created: Vec<Record> = results
        .iter()
        .map(|r| match &r.outcome {
            Ok(Some(record)) => record.clone(),
            other => panic!("{}: {other:?}", r.ref_),
        })
        .collect();
    assert_eq!(
        counters
            .snapshot()
            .get("POST", "/v1/people:batchCreateContacts"),
        2
    );
    assert_eq!(
        text(&created[42], "clientData.tandem-marker"),
        Some("e2e-42")
    );

    let updates: Vec<Write> = created
        .iter()
        .map(|r| Write {
            ref_: r.id.clone(),
            op: Op::Update(UpdateOp {
                id: r.id.clone(),
                if_version: r.version.clone(),
                fields: vec![field("organizations.title", "Tester")],
            }),
        })
        .collect();
    let results = client.push("contacts", &updates).await.unwrap();
    assert!(results.iter().all(|r| matches!(&r.outcome, Ok(Some(rec)) if text(rec, "organizations.title") == Some("Tester"))));
    let snapshot = counters.snapshot();
    assert_eq!(snapshot.get("GET", "/v1/people:batchGet"), 2);
    assert_eq!(snapshot.get("POST", "/v1/people:batchUpdateContacts"), 2);
    assert_eq!(snapshot.total, 6, "{snapshot:?}");

    let found = client
        .find("contacts", &Lookup::Marker("e2e-7".into()))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, created[7].id);

    // Incremental: the 250 changed contacts, then their deletion as tombstones.
    let (changed, _, checkpoint, _) = pull_all(&client, request(checkpoint, false)).await;
    assert_eq!(changed.len(), 250);
    counters.clear();
    let deletes: Vec<Write> = created
        .iter()
        .map(|r| Write {
            ref_: r.id.clone(),
            op: Op::Delete(r.id.clone()),
        })
        .collect();
    let results = client.push("contacts", &deletes).await.unwrap();
    assert!(results.iter().all(|r| r.outcome == Ok(None)));
    assert_eq!(
        counters
            .snapshot()
            .get("POST", "/v1/people:batchDeleteContacts"),
        1
    );
    let (changed, deleted, _, _) = pull_all(&client, request(checkpoint, false)).await;
    assert_eq!((changed.len(), deleted.len()), (0, 250));

    let groups = client.containers("contacts").await.unwrap();
    assert!(groups.iter().any(|g| g.id == "contactGroups/myContacts"));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_contacts_errors_reach_the_host_as_contract_variants() {
    let sandbox = start(20).await;
    let client = client(&sandbox, seeded_refresh_token()).await;
    let (_, _, checkpoint, _) = pull_all(&client, request(None, true)).await;

    // An expired sync token: cursor-expired, and a full listing recovers.
    let account = sandbox.account(AccountKind::GooglePeople).unwrap();
    let reply = reqwest::Client::new()
        .post(format!("{}/sync-tokens/expire", account.control_url))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    let err = plugin_error(
        client
            .pull(&request(checkpoint.clone(), false))
            .await
            .unwrap_err(),
    );
    assert!(matches!(err, Error::CursorExpired(_)), "{err:?}");
    assert_eq!(
        pull_all(&client, request(checkpoint, true)).await.0.len(),
        20
    );

    // A 429 with Retry-After: rate-limited with the wait.
    control(&sandbox).faults.add(FaultRule {
        id: 0,
        method: Some("GET".into()),
        path_prefix: Some(CONNECTIONS.into()),
        skip: 0,
        count: Some(1),
        fault: FaultKind::Status {
            status: 429,
            body: Some(r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#.into()),
            content_type: Some("application/json".into()),
            headers: [("retry-after".to_owned(), "7".to_owned())].into(),
        },
    });
    match plugin_error(client.pull(&request(None, true)).await.unwrap_err()) {
        Error::RateLimited(info) => assert_eq!(info.retry_after_ms, Some(7000)),
        other => panic!("expected rate-limited, got {other:?}"),
    }

    // A revoked refresh token: the host sends no bearer, Google answers 401, and the
    // error says what the token endpoint said and how to re-authorise (not "wrong key").
    let bad = client_with_bad_token(&sandbox).await;
    let err = plugin_error(bad.check().await.unwrap_err());
    match &err {
        Error::Unauthorized(m) => assert!(
            m.contains(
                "refused the refresh token: invalid_grant (Token has been expired or revoked.)"
            ) && m.contains("re-authorise")
                && m.contains("`connections.google-e2e.credentials.oauth2.refresh-token`")
                && !m.contains("1//not-a-refresh-token"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    sandbox.shutdown().await;
}

async fn client_with_bad_token(sandbox: &Sandbox) -> ConnectorClient {
    client(sandbox, "1//not-a-refresh-token").await
}
