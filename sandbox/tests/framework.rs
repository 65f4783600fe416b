//! Wire tests of the shared simulator framework (`tandem_sandbox::common`) through a
//! Freshworks account: fault injection of every kind, request counters, the clock, reset,
//! and bounded shutdown.

mod fw_support;

use fw_support::env;
use reqwest::Method;
use serde_json::json;
use tandem_sandbox::AccountKind;

const SUITE: AccountKind = AccountKind::FreshsalesSuite;

#[tokio::test]
async fn status_fault_with_headers_matches_method_and_prefix_then_expires() {
    let e = env().await;
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/faults",
            Some(json!({"method": "GET", "path_prefix": "/crm/sales/api/contacts/filters", "count": 2,
                   "fault": {"kind": "status", "status": 503, "body": "{\"errors\":{\"code\":503,\"message\":[\"down\"]}}",
                             "headers": {"Retry-After": "7"}}})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["id"].as_u64().is_some());
    // Other paths and methods are untouched.
    assert_eq!(e.get(SUITE, "/lists").await.status, 200);
    for _ in 0..2 {
        let r = e.get(SUITE, "/contacts/filters").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("7"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body["errors"]["message"][0], "down");
    }
    assert_eq!(e.get(SUITE, "/contacts/filters").await.status, 200);
    assert_eq!(
        e.ctl(SUITE, Method::GET, "/faults", None).await.body["faults"],
        json!([])
    );
}

#[tokio::test]
async fn skip_then_fire_and_unlimited_rules_can_be_removed() {
    let e = env().await;
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/faults",
            Some(json!({"skip": 1, "count": null, "fault": {"kind": "status", "status": 500}})),
        )
        .await;
    let id = r.body["id"].as_u64().unwrap();
    assert_eq!(
        e.get(SUITE, "/lists").await.status,
        200,
        "first match skipped"
    );
    assert_eq!(e.get(SUITE, "/lists").await.status, 500);
    assert_eq!(e.get(SUITE, "/lists").await.status, 500);
    let r = e
        .ctl(SUITE, Method::DELETE, &format!("/faults/{id}"), None)
        .await;
    assert_eq!(r.body["removed"], true);
    assert_eq!(e.get(SUITE, "/lists").await.status, 200);
    // Control paths are never faulted.
    e.ctl(
        SUITE,
        Method::POST,
        "/faults",
        Some(json!({"count": null, "fault": {"kind": "status", "status": 500}})),
    )
    .await;
    assert_eq!(
        e.ctl(SUITE, Method::GET, "/counters", None).await.status,
        200
    );
    assert_eq!(
        e.ctl(SUITE, Method::DELETE, "/faults", None).await.body["cleared"],
        true
    );
    assert_eq!(e.get(SUITE, "/lists").await.status, 200);
}

#[tokio::test]
async fn drop_fault_breaks_the_connection() {
    let e = env().await;
    e.ctl(
        SUITE,
        Method::POST,
        "/faults",
        Some(json!({"fault": {"kind": "drop"}})),
    )
    .await;
    let url = format!("{}/lists", e.account(SUITE).api_base);
    let key = format!("Token token={}", e.key(SUITE));
    let sent = e.http.get(&url).header("authorization", &key).send().await;
    let failed = match sent {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "the client sees a transport error");
    assert_eq!(e.get(SUITE, "/lists").await.status, 200);
}

#[tokio::test]
async fn truncated_bodies_both_ways() {
    let e = env().await;
    // Well-formed HTTP, cut JSON.
    e.ctl(
        SUITE,
        Method::POST,
        "/faults",
        Some(json!({"fault": {"kind": "truncate", "keep_bytes": 10}})),
    )
    .await;
    let r = e.get(SUITE, "/lists").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text.len(), 10);
    assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_err());
    // Declared full length, connection cut early: a transport error while reading.
    e.ctl(
        SUITE,
        Method::POST,
        "/faults",
        Some(json!({"fault": {"kind": "truncate", "declare_full_length": true}})),
    )
    .await;
    let url = format!("{}/lists", e.account(SUITE).api_base);
    let key = format!("Token token={}", e.key(SUITE));
    let failed = match e.http.get(&url).header("authorization", &key).send().await {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed);
}

#[tokio::test]
async fn after_commit_fault_keeps_the_write() {
    let e = env().await;
    e.ctl(
        SUITE,
        Method::POST,
        "/faults",
        Some(json!({"method": "POST", "path_prefix": "/crm/sales/api/contacts", "fault": {"kind": "after_commit", "status": 500}})),
    )
    .await;
    let r = e
        .api(
            SUITE,
            Method::POST,
            "/contacts",
            Some(json!({"contact": {"email": "committed@x.example"}})),
        )
        .await;
    assert_eq!(r.status, 500);
    let r = e
        .get(
            SUITE,
            "/lookup?q=committed@x.example&f=email&entities=contact",
        )
        .await;
    assert_eq!(
        r.body["contacts"]["contacts"].as_array().unwrap().len(),
        1,
        "the write committed"
    );
    // Variant: the connection drops after the commit.
    e.ctl(
        SUITE,
        Method::POST,
        "/faults",
        Some(json!({"method": "POST", "fault": {"kind": "after_commit"}})),
    )
    .await;
    let url = format!("{}/contacts", e.account(SUITE).api_base);
    let key = format!("Token token={}", e.key(SUITE));
    let res = e
        .http
        .post(&url)
        .header("authorization", &key)
        .json(&json!({"contact": {"email": "dropped@x.example"}}))
        .send()
        .await;
    assert!(match res {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    });
    let r = e
        .get(
            SUITE,
            "/lookup?q=dropped@x.example&f=email&entities=contact",
        )
        .await;
    assert_eq!(r.body["contacts"]["contacts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn latency_fault_delays_but_answers() {
    let e = env().await;
    e.ctl(
        SUITE,
        Method::POST,
        "/faults",
        Some(json!({"fault": {"kind": "latency", "ms": 30}})),
    )
    .await;
    let r = e.get(SUITE, "/lists").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        e.ctl(SUITE, Method::GET, "/faults", None).await.body["faults"],
        json!([]),
        "spent"
    );
    assert_eq!(e.sandbox.control(SUITE).unwrap().faults.fired(), 1);
}

#[tokio::test]
async fn counters_name_route_patterns_and_statuses() {
    let e = env().await;
    let view = e.all_view(SUITE, "contacts").await;
    e.get(SUITE, &format!("/contacts/view/{view}")).await;
    e.get(SUITE, "/contacts/17000000001").await;
    e.get(SUITE, "/contacts/17000000002.json").await;
    e.get(SUITE, "/no/such/path").await;
    e.ctl(SUITE, Method::GET, "/state", None).await;
    let c = e.ctl(SUITE, Method::GET, "/counters", None).await.body;
    let find = |m: &str, route: &str| {
        c["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["method"] == m && x["route"] == route)
            .cloned()
    };
    let show = find("GET", "/crm/sales/api/contacts/{id}").expect("show counted");
    assert_eq!(show["count"], 2);
    assert_eq!(show["statuses"]["404"], 2);
    assert_eq!(
        find("GET", "/crm/sales/api/contacts/view/{view_id}").unwrap()["count"],
        1
    );
    assert_eq!(
        find("GET", "/crm/sales/api/contacts/filters").unwrap()["count"],
        1
    );
    assert_eq!(find("GET", "<unmatched>").unwrap()["count"], 1);
    assert_eq!(c["total"], 5, "control requests are not counted");
    // The in-process handle sees the same.
    let snap = e.sandbox.control(SUITE).unwrap().counters.snapshot();
    assert_eq!(snap.get("GET", "/crm/sales/api/contacts/{id}"), 2);
    e.ctl(SUITE, Method::DELETE, "/counters", None).await;
    assert_eq!(
        e.ctl(SUITE, Method::GET, "/counters", None).await.body["total"],
        0
    );
}

#[tokio::test]
async fn clock_is_shared_and_advanceable() {
    let e = env().await;
    let r = e.ctl(SUITE, Method::GET, "/clock", None).await;
    assert_eq!(r.body["now"], "2024-05-01T12:00:00Z");
    assert_eq!(r.body["mode"], "manual");
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/clock/advance",
            Some(json!({"seconds": 61, "millis": 500})),
        )
        .await;
    assert_eq!(r.body["now"], "2024-05-01T12:01:01Z");
    // Advancing through one account moves every account's clock.
    let fm = e
        .ctl(AccountKind::Freshmarketer, Method::GET, "/clock", None)
        .await;
    assert_eq!(fm.body["now"], "2024-05-01T12:01:01Z");
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/clock/set",
            Some(json!({"now": "2024-06-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r.body["now"], "2024-06-01T00:00:00Z");
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/clock/set",
            Some(json!({"now": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r.body["now"], "2024-06-01T00:00:00Z", "never backwards");
    let r = e
        .ctl(
            SUITE,
            Method::POST,
            "/clock/set",
            Some(json!({"now": "soon"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].as_str().unwrap().contains("RFC 3339"));
    let c = e
        .create_contact(SUITE, json!({"email": "clock@x.example"}))
        .await;
    assert_eq!(c["created_at"], "2024-05-31T18:00:00-06:00");
}

#[tokio::test]
async fn reset_restores_seed_and_clears_faults_and_counters() {
    let e = env().await;
    e.create_contact(SUITE, json!({"email": "gone@x.example"}))
        .await;
    e.ctl(
        SUITE,
        Method::POST,
        "/faults",
        Some(json!({"path_prefix": "/nothing", "fault": {"kind": "drop"}})),
    )
    .await;
    let r = e.ctl(SUITE, Method::POST, "/reset", None).await;
    assert_eq!(r.body["reset"], true);
    assert_eq!(
        e.ctl(SUITE, Method::GET, "/faults", None).await.body["faults"],
        json!([])
    );
    assert_eq!(
        e.ctl(SUITE, Method::GET, "/counters", None).await.body["total"],
        0
    );
    let r = e
        .get(SUITE, "/lookup?q=gone@x.example&f=email&entities=contact")
        .await;
    assert_eq!(r.body["contacts"]["contacts"], json!([]));
    let view = e.all_view(SUITE, "contacts").await;
    assert_eq!(
        e.get(SUITE, &format!("/contacts/view/{view}")).await.body["meta"]["total"],
        130
    );
}

#[tokio::test]
async fn shutdown_is_bounded_and_closes_the_port() {
    let e = env().await;
    let url = format!("{}/lists", e.account(SUITE).api_base);
    let http = e.http.clone();
    assert!(http.get(&url).send().await.is_ok());
    e.sandbox.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(
        fresh.get(&url).send().await.is_err(),
        "nothing listens any more"
    );
}
