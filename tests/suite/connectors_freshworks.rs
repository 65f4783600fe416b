//! The Freshsales and Freshmarketer connectors, built for wasm32-wasip2 and run by the host
//! runtime, against started simulated Freshworks accounts: the API key is attached by the
//! host (the plugin never sees it), pull (full, then incremental with a user's edit and
//! deletion), push (bulk creates with read-back, DND, deletes), lists, and the error
//! variants. Request counts come from the accounts' own counters.

use tandem::runtime::types::{
    CreateOp, Error, Field, Lookup, MembershipOp, Op, PullRequest, Record, UpdateOp, Value, Write,
};
use tandem::runtime::{CallError, Connection, ConnectorClient, Credentials, Secret, StorageGrant};
use tandem_sandbox::common::ControlPlane;
use tandem_sandbox::common::faults::FaultRule;
use tandem_sandbox::{AccountInfo, AccountKind, Sandbox, SandboxOptions, Sizes};
use tandem_tests::host::{loopback_grant, plugin, runtime};

const FRESHSALES: &str = "tandem-plugin-freshsales";
const FRESHMARKETER: &str = "tandem-plugin-freshmarketer";

async fn start() -> Sandbox {
    Sandbox::start(SandboxOptions {
        kinds: vec![AccountKind::FreshsalesSuite, AccountKind::Freshmarketer],
        sizes: Sizes {
            freshsales: 230,
            freshmarketer: 120,
            ..Sizes::default()
        },
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts")
}

fn account(sandbox: &Sandbox, kind: AccountKind) -> &AccountInfo {
    sandbox.account(kind).expect("account started")
}

fn keys(account: &AccountInfo) -> (String, String) {
    match &account.credentials {
        tandem_sandbox::Credentials::ApiKey {
            api_key,
            restricted_api_key,
        } => (api_key.clone(), restricted_api_key.clone()),
        other => panic!("a Freshworks account uses API keys, not {other:?}"),
    }
}

/// A client whose connection points `base-url` at the account and carries `key`.
async fn client(package: &str, account: &AccountInfo, key: &str) -> ConnectorClient {
    let mut grant = loopback_grant(&["setting:base-url"]);
    grant.storage = Some(StorageGrant::default());
    let connection = Connection {
        id: format!("{package}-e2e"),
        settings: [("base-url".to_owned(), account.api_base.clone())].into(),
        grant,
        credentials: Credentials::ApiKey(Secret::new(key)),
        budget: None,
    };
    runtime()
        .connector(&plugin(package).await, connection)
        .expect("connector client")
}

fn control(sandbox: &Sandbox, kind: AccountKind) -> &ControlPlane {
    sandbox.control(kind).expect("account started")
}

fn plugin_error(err: CallError) -> Error {
    err.plugin_error()
        .cloned()
        .unwrap_or_else(|| panic!("expected a plugin error, got {err}"))
}

fn request(container: Option<&str>, cursor: Option<String>, full: bool) -> PullRequest {
    PullRequest {
        entity: "contacts".into(),
        container: container.map(str::to_owned),
        cursor,
        full,
        page_size: 100,
    }
}

/// Every page of a listing: (records, deleted ids, checkpoint).
async fn pull_all(
    client: &ConnectorClient,
    mut req: PullRequest,
) -> (Vec<Record>, Vec<String>, Option<String>) {
    let (mut records, mut deleted) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let page = client.pull(&req).await.unwrap_or_else(|e| panic!("{e}"));
        records.extend(page.records);
        deleted.extend(page.deleted);
        if !page.more {
            return (records, deleted, page.next_cursor);
        }
        req.cursor = page.next_cursor;
    }
    panic!("runaway listing");
}

fn get<'a>(record: &'a Record, name: &str) -> Option<&'a Value> {
    record
        .fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| &f.value)
}

fn text<'a>(record: &'a Record, name: &str) -> Option<&'a str> {
    match get(record, name) {
        Some(Value::Text(t)) => Some(t),
        _ => None,
    }
}

fn field(name: &str, value: Value) -> Field {
    Field {
        name: name.into(),
        value,
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
            field("first_name", Value::Text("E2e".into())),
            field(
                "last_name",
                Value::Text(email.split('@').next().unwrap_or("x").into()),
            ),
            field("email", Value::Text(email.into())),
        ],
        marker: Some(format!("tandem:{email}")),
        containers: containers.to_vec(),
    })
}

/// Live records of the account, through its control API.
async fn live(account: &AccountInfo) -> Vec<serde_json::Value> {
    let all: serde_json::Value = reqwest::get(format!("{}/records/contacts", account.control_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    all["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["is_deleted"] != serde_json::json!(true))
        .cloned()
        .collect()
}

async fn user_edit(
    account: &AccountInfo,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) {
    let reply = reqwest::Client::new()
        .request(method, format!("{}{path}", account.control_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{path}: {}", reply.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshsales_pull_push_and_errors() {
    let sandbox = start().await;
    let fs = account(&sandbox, AccountKind::FreshsalesSuite);
    let (api_key, restricted) = keys(fs);
    let counters = &control(&sandbox, AccountKind::FreshsalesSuite).counters;
    let client = client(FRESHSALES, fs, &api_key).await;

    let info = client.describe().await.unwrap();
    assert_eq!(info.name, "freshsales");
    assert!(
        info.entities
            .iter()
            .any(|e| e.name == "contacts" && e.incremental && e.max_page_size == 100)
    );
    let account_info = client.check().await.unwrap();
    assert!(
        account_info.account_id.starts_with("freshworks:127.0.0.1:"),
        "{account_info:?}"
    );
    let schema = client.schema("contacts").await.unwrap();
    for (name, tag) in [
        ("email", "email"),
        ("first_name", "first-name"),
        ("do_not_disturb", "dnd"),
        ("external_id", "marker"),
    ] {
        let def = schema
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(def.well_known.as_deref(), Some(tag), "{name}");
    }
    // One consent field per app: in Freshsales it is DND; the status is described untagged.
    let status = schema
        .iter()
        .find(|d| d.name == "subscription_status")
        .expect("described");
    assert_eq!(status.well_known, None);
    assert!(
        schema
            .iter()
            .any(|d| d.name == "cf_interests" && d.custom && d.multi_value)
    );

    // Full listing: one request per page of 100, plus the field metadata and the view id.
    counters.clear();
    let (records, _, checkpoint) = pull_all(&client, request(None, None, true)).await;
    let expected = live(fs).await.len();
    assert_eq!(records.len(), expected);
    let requests = counters.snapshot().total;
    eprintln!("freshsales: full listing of {expected} contacts took {requests} requests");
    assert_eq!(requests, expected.div_ceil(100) as u64 + 2);

    // Push: five creates in one bulk job, read back.
    counters.clear();
    let emails: Vec<String> = (0..5).map(|i| format!("e2e{i}@tandem.example")).collect();
    let results = client
        .push(
            "contacts",
            &writes(emails.iter().map(|e| create(e, &[])).collect()),
        )
        .await
        .unwrap();
    let created: Vec<Record> = results
        .iter()
        .map(|r| match &r.outcome {
            Ok(Some(record)) => record.clone(),
            other => panic!("{}: {other:?}", r.ref_),
        })
        .collect();
    for (record, email) in created.iter().zip(&emails) {
        assert_eq!(text(record, "email"), Some(email.as_str()));
    }
    let requests = counters.snapshot().total;
    eprintln!("freshsales: 5 creates took {requests} requests");
    assert_eq!(
        requests, 4,
        "holders' search + bulk upsert + job status + read-back (field types cached)"
    );
    let found = client
        .find(
            "contacts",
            &Lookup::Marker("tandem:e2e3@tandem.example".into()),
        )
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        [created[3].id.clone()]
    );

    // DND through the connector; a user edits and deletes in the app.
    let dnd = client
        .push(
            "contacts",
            &writes(vec![Op::Update(UpdateOp {
                id: created[0].id.clone(),
                if_version: None,
                fields: vec![field("do_not_disturb", Value::Boolean(true))],
            })]),
        )
        .await
        .unwrap();
    let stored = dnd[0].outcome.clone().unwrap().unwrap();
    assert_eq!(get(&stored, "do_not_disturb"), Some(&Value::Boolean(true)));
    user_edit(
        fs,
        reqwest::Method::PATCH,
        &format!("/records/contacts/{}", created[1].id),
        serde_json::json!({"job_title": "Edited in the app"}),
    )
    .await;
    user_edit(
        fs,
        reqwest::Method::DELETE,
        &format!("/records/contacts/{}", created[2].id),
        serde_json::json!({}),
    )
    .await;
    let deleted = client
        .push("contacts", &writes(vec![Op::Delete(created[4].id.clone())]))
        .await
        .unwrap();
    assert_eq!(deleted[0].outcome, Ok(None));

    counters.clear();
    let (changed, gone, _) = pull_all(&client, request(None, checkpoint, false)).await;
    let requests = counters.snapshot().total;
    eprintln!("freshsales: incremental run took {requests} requests");
    assert_eq!(requests, 2, "one view page + one deleted search");
    let edited = changed
        .iter()
        .find(|r| r.id == created[1].id)
        .expect("the user's edit is listed");
    assert_eq!(text(edited, "job_title"), Some("Edited in the app"));
    assert!(
        changed.iter().any(|r| r.id == created[0].id),
        "the DND change is listed"
    );
    assert!(
        gone.contains(&created[2].id) && gone.contains(&created[4].id),
        "{gone:?}"
    );

    // Errors: bad key, restricted key, 429 with X-RateLimit-Reset, 5xx.
    let bad = client_with_key(fs, "not-the-key").await;
    assert!(
        matches!(plugin_error(bad.check().await.unwrap_err()), Error::Unauthorized(m) if m.contains("Incorrect or expired API key"))
    );
    let restricted = client_with_key(fs, &restricted).await;
    assert!(matches!(
        plugin_error(restricted.check().await.unwrap_err()),
        Error::Forbidden(_)
    ));
    control(&sandbox, AccountKind::FreshsalesSuite).faults.add(fault(serde_json::json!({
        "path_prefix": "/crm/sales/api/contacts/filters", "count": 1,
        "fault": {"kind": "status", "status": 429, "body": "{\"errors\":{\"code\":429,\"message\":[\"Too many requests\"]}}",
                  "headers": {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "42"}}})));
    match plugin_error(client.check().await.unwrap_err()) {
        Error::RateLimited(info) => assert_eq!(info.retry_after_ms, Some(42_000)),
        other => panic!("{other:?}"),
    }
    control(&sandbox, AccountKind::FreshsalesSuite).faults.add(fault(serde_json::json!({
        "path_prefix": "/crm/sales/api/contacts/filters", "count": 1, "fault": {"kind": "status", "status": 503}})));
    assert!(matches!(
        plugin_error(client.check().await.unwrap_err()),
        Error::Transient(_)
    ));
    sandbox.shutdown().await;
}

async fn client_with_key(account: &AccountInfo, key: &str) -> ConnectorClient {
    client(FRESHSALES, account, key).await
}

fn fault(json: serde_json::Value) -> FaultRule {
    serde_json::from_value(json).expect("a fault rule")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshmarketer_lists_and_consent() {
    let sandbox = start().await;
    let fm = account(&sandbox, AccountKind::Freshmarketer);
    let (api_key, _) = keys(fm);
    let counters = &control(&sandbox, AccountKind::Freshmarketer).counters;
    let client = client(FRESHMARKETER, fm, &api_key).await;

    let info = client.describe().await.unwrap();
    assert!(info.entities[0].containers);
    let lists = client.containers("contacts").await.unwrap();
    assert_eq!(lists.len(), 5);
    let newsletter = lists
        .iter()
        .find(|l| l.name == "Newsletter")
        .unwrap()
        .clone();

    counters.clear();
    let (members, _, _) = pull_all(&client, request(Some(&newsletter.id), None, true)).await;
    assert_eq!(Some(members.len() as u64), newsletter.member_count);
    eprintln!(
        "freshmarketer: list of {} members took {} requests",
        members.len(),
        counters.snapshot().total
    );

    // Consent is text, from subscription_status (tightened by DND).
    let (all, _, _) = pull_all(&client, request(None, None, true)).await;
    let allowed = [
        "subscribed",
        "not-subscribed",
        "unsubscribed",
        "spam",
        "bounced",
    ];
    assert!(
        all.iter()
            .all(|r| text(r, "subscription_status").is_some_and(|c| allowed.contains(&c)))
    );
    assert!(
        all.iter()
            .any(|r| text(r, "subscription_status") == Some("unsubscribed"))
    );

    // Create into the list, add and remove members, unsubscribe one.
    let outsider = all
        .iter()
        .find(|r| !members.iter().any(|m| m.id == r.id))
        .unwrap()
        .id
        .clone();
    let results = client
        .push(
            "contacts",
            &writes(vec![
                create(
                    "listed@tandem.example",
                    std::slice::from_ref(&newsletter.id),
                ),
                Op::AddToContainer(MembershipOp {
                    container: newsletter.id.clone(),
                    ids: vec![outsider.clone()],
                }),
                Op::RemoveFromContainer(MembershipOp {
                    container: newsletter.id.clone(),
                    ids: vec![members[0].id.clone()],
                }),
                Op::Update(UpdateOp {
                    id: outsider.clone(),
                    if_version: None,
                    fields: vec![field(
                        "subscription_status",
                        Value::Text("unsubscribed".into()),
                    )],
                }),
            ]),
        )
        .await
        .unwrap();
    let new_id = match &results[0].outcome {
        Ok(Some(record)) => record.id.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(results[1].outcome, Ok(None));
    assert_eq!(results[2].outcome, Ok(None));
    let unsubscribed = results[3].outcome.clone().unwrap().unwrap();
    assert_eq!(
        text(&unsubscribed, "subscription_status"),
        Some("unsubscribed")
    );
    let (now, _, _) = pull_all(&client, request(Some(&newsletter.id), None, true)).await;
    assert!(now.iter().any(|r| r.id == new_id) && now.iter().any(|r| r.id == outsider));
    assert!(!now.iter().any(|r| r.id == members[0].id));
    assert_eq!(now.len(), members.len() + 1);
    sandbox.shutdown().await;
}

/// A call cut by its wall-time limit while the app had not answered is blamed on the
/// slow app, with the time spent waiting, not on the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_is_not_blamed_on_the_plugin() {
    let sandbox = start().await;
    let fs = account(&sandbox, AccountKind::FreshsalesSuite);
    let (api_key, _) = keys(fs);
    let mut grant = loopback_grant(&["setting:base-url"]);
    grant.limits.timeout = std::time::Duration::from_millis(400);
    let connection = Connection {
        id: "slow-e2e".into(),
        settings: [("base-url".to_owned(), fs.api_base.clone())].into(),
        grant,
        credentials: Credentials::ApiKey(Secret::new(api_key)),
        budget: None,
    };
    let slow = runtime()
        .connector(&plugin(FRESHSALES).await, connection)
        .expect("connector client");
    control(&sandbox, AccountKind::FreshsalesSuite)
        .faults
        .add(fault(serde_json::json!({
        "path_prefix": "/crm/sales/api/contacts/filters", "count": 1,
        "fault": {"kind": "latency", "ms": 5000}})));
    let err = slow.check().await.unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::Timeout {
                http_wait: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("waiting for the app's HTTP answers")
            && message.contains("the app answers slowly (not a plugin fault)"),
        "{message}"
    );
    sandbox.shutdown().await;
}
