//! Hostile plugins: one test per deny path of the sandbox, each asserting the precise
//! outcome. The fixtures live in `tests/fixtures/` (see `hostile/src/lib.rs` for the
//! commands of the hostile connector).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tandem::runtime::capabilities::InterfaceError;
use tandem::runtime::types::{Field, MapContext, Record, Value};
use tandem::runtime::{
    CallError, ConnectorLimits, Credentials, Grant, LoadFailure, MapperLimits, PluginSource,
    Secret, StorageGrant, TrapKind,
};
use tandem_tests::host::{
    BLOCKED_NAME, TestServer, attack, connection, counting_server, loopback_grant, plugin, runtime,
};

// Attacks by area (the tests below are the first red-team pass).
mod contained;
mod exhaustion;
mod secrets;

const HOSTILE: &str = "tandem-fixture-hostile";
const HOSTILE_MAPPER: &str = "tandem-fixture-hostile-mapper";

/// A connector client of the hostile fixture with `base-url` granted (loopback allowed).
async fn hostile_client(
    id: &str,
    base: &str,
    limits: ConnectorLimits,
) -> tandem::runtime::ConnectorClient {
    let mut grant = loopback_grant(&["setting:base-url"]);
    grant.limits = limits;
    let conn = connection(id, &[("base-url", base)], grant);
    runtime().connector(&plugin(HOSTILE).await, conn).unwrap()
}

fn trap(err: &CallError) -> (TrapKind, String) {
    match err {
        CallError::Trap {
            kind,
            detail,
            stderr,
            ..
        } => (*kind, format!("{detail} / {stderr}")),
        other => panic!("expected a trap, got: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_loop_is_interrupted_while_another_call_completes() {
    let limits = ConnectorLimits {
        cpu: Duration::from_millis(1500),
        timeout: Duration::from_secs(60),
        ..ConnectorLimits::default()
    };
    let spinner = hostile_client("cpu-spin", "http://127.0.0.1:1", limits).await;
    let spin = tokio::spawn(async move { attack(&spinner, "spin", "").await });

    // Another plugin call on the same host runs to completion while the loop spins.
    let other = hostile_client(
        "cpu-other",
        "http://127.0.0.1:1",
        ConnectorLimits::default(),
    )
    .await;
    let fields = attack(&other, "ok", "").await.unwrap();
    assert_eq!(fields["ok"], "yes");
    assert!(
        !spin.is_finished(),
        "the spinning call should still be running (its CPU budget is 1.5 s)"
    );

    let err = spin.await.unwrap().unwrap_err();
    let (kind, _) = trap(&err);
    assert_eq!(kind, TrapKind::Interrupt, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("hostile 0.1.0") && msg.contains("`pull`") && msg.contains("interrupt"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_time_limit_cancels_a_call_blocked_in_the_host() {
    let router = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let server = TestServer::start(router).await;
    let limits = ConnectorLimits {
        timeout: Duration::from_millis(300),
        http_timeout: Duration::from_secs(30),
        ..ConnectorLimits::default()
    };
    let client = hostile_client("wall-time", &server.origin(), limits).await;
    let err = attack(&client, "http", &server.url("/slow"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Timeout { limit, .. } if limit == Duration::from_millis(300)),
        "{err}"
    );
    assert!(
        err.to_string().contains("did not finish within 300ms"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_is_stopped_at_the_limit() {
    let limits = ConnectorLimits {
        memory_mib: 24,
        ..ConnectorLimits::default()
    };
    let client = hostile_client("memory", "http://127.0.0.1:1", limits).await;
    let err = attack(&client, "alloc", "").await.unwrap_err();
    let (kind, detail) = trap(&err);
    assert_eq!(kind, TrapKind::Memory, "{err}");
    assert!(
        detail.contains(&format!(
            "memory limit of {} bytes exceeded",
            24 * 1024 * 1024
        )),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_host_call_payload_is_refused() {
    let limits = ConnectorLimits {
        memory_mib: 128,
        hostcall_bytes: 4 * 1024 * 1024,
        ..ConnectorLimits::default()
    };
    let client = hostile_client("hostcall", "http://127.0.0.1:1", limits).await;
    // 8 MiB in one `log` call, twice the per-call allowance.
    let err = attack(&client, "big-log", "8").await.unwrap_err();
    let (kind, detail) = trap(&err);
    assert_eq!(kind, TrapKind::HostCallData, "{err}");
    assert!(detail.contains("hostcalls has been exhausted"), "{detail}");
    // Within the allowance the same call works.
    let fields = attack(&client, "big-log", "1").await.unwrap();
    assert_eq!(fields["logged"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_http_response_is_refused() {
    const CAP: usize = 64 * 1024;
    let router = Router::new()
        .route("/big", get(|| async { vec![b'x'; CAP + 1] }))
        .route(
            "/streamed",
            get(|| async {
                // No content-length: the cap must hold while streaming.
                let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 8 * 1024]));
                axum::body::Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route("/fits", get(|| async { vec![b'z'; CAP] }));
    let server = TestServer::start(router).await;
    let limits = ConnectorLimits {
        http_response_bytes: CAP,
        ..ConnectorLimits::default()
    };
    let client = hostile_client("big-response", &server.origin(), limits).await;
    for path in ["/big", "/streamed"] {
        let fields = attack(&client, "http", &server.url(path)).await.unwrap();
        assert_eq!(
            fields["error"],
            format!("HttpError::TooLarge({CAP})"),
            "{path}"
        );
    }
    let fields = attack(&client, "http", &server.url("/fits")).await.unwrap();
    assert_eq!(fields["body-len"], CAP.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_not_granted_are_denied_before_any_request() {
    let (granted, granted_hits) = counting_server().await;
    let (other, other_hits) = counting_server().await;
    // The manifest requests `setting:other-url`, but the operator grants base-url only.
    let conn = connection(
        "origins",
        &[
            ("base-url", &granted.origin()),
            ("other-url", &other.origin()),
        ],
        loopback_grant(&["setting:base-url"]),
    );
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();

    let fields = attack(&client, "http", &other.url("/")).await.unwrap();
    assert!(
        fields["error"].starts_with("HttpError::Denied(")
            && fields["error"].contains("not among the origins the operator granted"),
        "{fields:?}"
    );
    // A granted origin works (loopback explicitly allowed)...
    let fields = attack(&client, "http", &granted.url("/")).await.unwrap();
    assert_eq!(fields["status"], "200");
    // ...and an origin the manifest never asked for is refused even if granted.
    let conn = connection(
        "origins-2",
        &[("base-url", &granted.origin())],
        loopback_grant(&["setting:base-url", "http://localhost.test:80"]),
    );
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();
    let fields = attack(&client, "http", "http://localhost.test/")
        .await
        .unwrap();
    assert!(fields["error"].contains("manifest requests"), "{fields:?}");
    // Without `allow_loopback` even a granted 127.0.0.1 origin is refused.
    let conn = connection(
        "origins-3",
        &[("base-url", &granted.origin())],
        Grant {
            http: vec!["*".into()],
            ..Grant::default()
        },
    );
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();
    let fields = attack(&client, "http", &granted.url("/")).await.unwrap();
    assert!(fields["error"].contains("loopback address"), "{fields:?}");

    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    assert_eq!(granted_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_from_a_granted_origin_to_a_forbidden_one_is_denied() {
    let (forbidden, forbidden_hits) = counting_server().await;
    let target = forbidden.url("/secret");
    let router = Router::new()
        .route(
            "/jump",
            get(move || {
                let target = target.clone();
                async move { (StatusCode::FOUND, [(header::LOCATION, target)]) }
            }),
        )
        .route(
            "/hop",
            get(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "/landing")],
                )
            }),
        )
        .route("/landing", get(|| async { "landed" }));
    let granted = TestServer::start(router).await;
    let conn = connection(
        "redirects",
        &[
            ("base-url", &granted.origin()),
            ("other-url", &forbidden.origin()),
        ],
        loopback_grant(&["setting:base-url"]),
    );
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();

    let fields = attack(&client, "http", &granted.url("/jump"))
        .await
        .unwrap();
    assert!(
        fields["error"].starts_with("HttpError::Denied(")
            && fields["error"].contains(&forbidden.addr.to_string()),
        "{fields:?}"
    );
    assert_eq!(
        forbidden_hits.load(Ordering::SeqCst),
        0,
        "the forbidden origin was reached"
    );
    // A redirect within the grant is followed.
    let fields = attack(&client, "http", &granted.url("/hop")).await.unwrap();
    assert_eq!(
        (fields["status"].as_str(), fields["body"].as_str()),
        ("200", "landed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_literals_in_blocked_ranges_are_denied_before_connecting() {
    // The manifest requests http://blocked.test and http://10.0.0.1; the operator grants
    // whatever the manifest requests. The test resolver maps blocked.test to 10.0.0.1, so
    // the check must refuse before any connection (nothing here ever leaves 127.0.0.1).
    let conn = connection(
        "blocked",
        &[("base-url", "http://127.0.0.1:1")],
        Grant {
            http: vec!["*".into()],
            ..Grant::default()
        },
    );
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();
    let fields = attack(&client, "http", &format!("http://{BLOCKED_NAME}/"))
        .await
        .unwrap();
    assert_eq!(
        fields["error"],
        "HttpError::Denied(\"blocked.test resolves to a blocked address: 10.0.0.1 is a private address, which plugins may not reach\")"
    );
    let fields = attack(&client, "http", "http://10.0.0.1/").await.unwrap();
    assert_eq!(
        fields["error"],
        "HttpError::Denied(\"10.0.0.1 is a private address, which plugins may not reach\")"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_connections_storage_is_invisible() {
    let storage = Grant {
        storage: Some(StorageGrant::default()),
        ..Grant::default()
    };
    let a = runtime()
        .connector(
            &plugin(HOSTILE).await,
            connection("tenant-a", &[], storage.clone()),
        )
        .unwrap();
    let b = runtime()
        .connector(&plugin(HOSTILE).await, connection("tenant-b", &[], storage))
        .unwrap();
    assert_eq!(
        attack(&a, "set", "cursor=a-secret").await.unwrap()["set"],
        "cursor"
    );
    assert_eq!(
        attack(&a, "get", "cursor").await.unwrap()["value"],
        "a-secret"
    );
    assert_eq!(
        attack(&b, "get", "cursor").await.unwrap()["value"],
        "<none>"
    );
    assert_eq!(attack(&b, "list", "").await.unwrap()["keys"], "");
    // Keys are plain keys inside the host-chosen namespace: no path escapes.
    assert_eq!(
        attack(&b, "get", "../tenant-a/cursor").await.unwrap()["value"],
        "<none>"
    );
    assert_eq!(attack(&a, "list", "").await.unwrap()["keys"], "cursor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_quota_is_enforced() {
    // The manifest asks for 4096 bytes; the operator would give 1 MiB: 4096 wins.
    let grant = Grant {
        storage: Some(StorageGrant::default()),
        ..Grant::default()
    };
    let client = runtime()
        .connector(&plugin(HOSTILE).await, connection("quota", &[], grant))
        .unwrap();
    let fields = attack(&client, "fill", "").await.unwrap();
    // Each entry is a 9-byte key + 512-byte value = 521 bytes: 7 fit in 4096.
    assert_eq!(fields["written"], "7");
    assert!(
        fields["error"]
            .starts_with("StorageError::QuotaExceeded(\"storage quota of 4096 bytes reached"),
        "{fields:?}"
    );
    // No storage grant at all: nothing can be written.
    let client = runtime()
        .connector(
            &plugin(HOSTILE).await,
            connection("no-storage", &[], Grant::default()),
        )
        .unwrap();
    let fields = attack(&client, "set", "k=v").await.unwrap();
    assert!(fields["error"].contains("no storage grant"), "{fields:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_error_carries_the_panic_text_and_the_next_call_succeeds() {
    let client = hostile_client("panic", "http://127.0.0.1:1", ConnectorLimits::default()).await;
    let err = attack(&client, "panic", "boom-1234").await.unwrap_err();
    let (kind, _) = trap(&err);
    assert_eq!(kind, TrapKind::Unreachable, "{err}");
    assert!(
        err.stderr()
            .contains("hostile plugin panicked on purpose: boom-1234"),
        "stderr: {}",
        err.stderr()
    );
    let msg = err.to_string();
    assert!(msg.contains("boom-1234") && !msg.contains('\n'), "{msg}");
    // The trapped instance is gone; the next call gets a fresh one and works.
    assert_eq!(attack(&client, "ok", "").await.unwrap()["ok"], "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_any_trap_succeeds_on_a_fresh_instance() {
    let limits = ConnectorLimits {
        memory_mib: 16,
        cpu: Duration::from_millis(100),
        ..ConnectorLimits::default()
    };
    let client = hostile_client("after-trap", "http://127.0.0.1:1", limits).await;
    for (command, kind) in [("alloc", TrapKind::Memory), ("spin", TrapKind::Interrupt)] {
        let err = attack(&client, command, "").await.unwrap_err();
        assert_eq!(trap(&err).0, kind, "{err}");
        assert_eq!(attack(&client, "ok", "").await.unwrap()["ok"], "yes");
    }
}

/// `wasi:filesystem` and `wasi:sockets` are linked empty (the TypeScript and Python
/// toolchains import them whatever a plugin does): a Rust plugin that reads a file or opens
/// a socket loads, and gets nothing: no directory exists, and the socket is refused by the
/// host before any packet leaves (the counting server sees no connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_and_socket_imports_load_and_reach_nothing() {
    let (server, hits) = counting_server().await;
    for (package, fails_with) in [
        ("tandem-fixture-sneaky-fs", "no such file or directory"),
        ("tandem-fixture-sneaky-socket", "denied"),
    ] {
        let loaded = plugin(package).await;
        assert!(
            loaded.imports().iter().any(|i| i.starts_with("wasi:")),
            "{package}"
        );
        let conn = connection(package, &[("base-url", &server.origin())], Grant::default());
        let client = runtime().connector(&loaded, conn).unwrap();
        let err = client
            .pull(&tandem::runtime::types::PullRequest {
                entity: "contacts".into(),
                container: None,
                cursor: Some(server.addr.to_string()),
                full: true,
                page_size: 1,
            })
            .await
            .unwrap_err();
        let msg = err.to_string().to_lowercase();
        assert!(msg.contains(fails_with), "{package}: {msg}");
        assert!(!msg.contains("root:"), "{package} read a file: {msg}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a socket reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_contract_major_is_refused_with_the_supported_range() {
    let path = tandem_plugins::wasm_path("tandem-fixture-wrong-major").unwrap();
    let err = runtime()
        .load(PluginSource::Path(path), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err.reason, LoadFailure::Interfaces(InterfaceError::UnsupportedContract { found, .. }) if found == "9.0.0"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("plugin wrong-major 0.1.0: was built for contract tandem:plugin@9.0.0")
            && msg.contains(">=0.1.0, <0.2.0"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_plugin() {
    const KEY: &str = "s3cret-api-key";
    let seen = Arc::new(std::sync::Mutex::new(Vec::<BTreeMap<String, String>>::new()));
    let record = seen.clone();
    let router = Router::new().fallback(move |headers: HeaderMap| {
        let record = record.clone();
        async move {
            let map: BTreeMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            record.lock().unwrap().push(map);
            // A careless server echoing credentials in headers.
            let echoed = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (
                [
                    (header::SET_COOKIE, format!("session={echoed}")),
                    (header::AUTHORIZATION, echoed.clone()),
                    (header::HeaderName::from_static("x-api-key"), echoed),
                ],
                "ok",
            )
                .into_response()
        }
    });
    let api = TestServer::start(router).await;
    let mut conn = connection(
        "creds",
        &[("base-url", &api.origin()), ("domain", "acme.example")],
        loopback_grant(&["setting:base-url"]),
    );
    conn.settings.insert("api-key".into(), KEY.into()); // misplaced by an operator
    conn.credentials = Credentials::ApiKey(Secret::new(KEY));
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();

    let fields = attack(&client, "creds", &api.url("/whoami")).await.unwrap();
    assert_eq!(fields["status"], "200");
    for (name, value) in &fields {
        assert!(
            !value.contains(KEY),
            "the plugin saw the key in {name}: {value}"
        );
        assert!(
            !name.starts_with("env:") && !name.starts_with("arg:"),
            "{name}"
        );
        assert!(
            ![
                "header:set-cookie",
                "header:authorization",
                "header:x-api-key"
            ]
            .contains(&name.as_str()),
            "credential header {name} reached the plugin"
        );
    }
    assert_eq!(
        fields.get("config:domain").map(String::as_str),
        Some("acme.example")
    );
    assert!(!fields.contains_key("config:api-key"));

    // Forged auth headers are dropped; the host's credential is the one sent.
    let fields = attack(&client, "http-auth", &api.url("/forge"))
        .await
        .unwrap();
    assert_eq!(fields["status"], "200");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    for headers in &requests {
        assert_eq!(
            headers.get("x-api-key").map(String::as_str),
            Some("key=s3cret-api-key")
        );
        assert!(!headers.contains_key("authorization"), "{headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_only_to_the_auth_profile_origins() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let record = seen.clone();
    let router = Router::new().fallback(move |headers: HeaderMap| {
        let record = record.clone();
        async move {
            let key = headers
                .get("x-api-key")
                .map(|v| v.to_str().unwrap_or("").to_owned());
            record.lock().unwrap().push(key);
            "ok"
        }
    });
    let api = TestServer::start(router.clone()).await;
    let other = TestServer::start(router).await;
    // Both origins granted; the auth profile names base-url only.
    let mut conn = connection(
        "creds-origins",
        &[("base-url", &api.origin()), ("other-url", &other.origin())],
        loopback_grant(&["*"]),
    );
    conn.credentials = Credentials::ApiKey(Secret::new("k"));
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();
    attack(&client, "http", &other.url("/")).await.unwrap();
    attack(&client, "http", &api.url("/")).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![None, Some("key=k".to_owned())]);
}

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            id: format!("r{i}"),
            version: None,
            updated_at: None,
            fields: vec![Field {
                name: "email".into(),
                value: Value::Text(format!("person{i}@example.com")),
            }],
        })
        .collect()
}

fn ctx(entity: &str, sync: &str) -> MapContext {
    MapContext {
        sync: sync.into(),
        source: "a".into(),
        target: "b".into(),
        entity: entity.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapper_fuel_exhaustion_is_deterministic() {
    let mapper = plugin(HOSTILE_MAPPER).await;
    let limits = MapperLimits {
        fuel: 20_000_000,
        ..MapperLimits::default()
    };
    let client = runtime().mapper(&mapper, limits.clone(), "fuel").unwrap();

    // A runaway mapper stops on fuel, not on time.
    let err = client.map(&ctx("spin", ""), &records(1)).await.unwrap_err();
    assert_eq!(trap(&err).0, TrapKind::OutOfFuel, "{err}");

    // The same input consumes exactly the same fuel every time...
    let input = records(50);
    let (out1, used1) = client
        .map_metered(&ctx("work", "200"), &input)
        .await
        .unwrap();
    let (out2, used2) = client
        .map_metered(&ctx("work", "200"), &input)
        .await
        .unwrap();
    assert_eq!(used1, used2);
    assert_eq!(out1, out2);
    assert_eq!(out1.len(), 50);

    // ...so a budget below that fails every time (fuel is checked at loop headers and
    // calls, so the cut-off is a fixed point of the program, not a moment in time), and
    // the measured budget passes.
    let short = runtime()
        .mapper(
            &mapper,
            MapperLimits {
                fuel: used1 / 2,
                ..limits.clone()
            },
            "fuel",
        )
        .unwrap();
    for _ in 0..2 {
        let err = short.map(&ctx("work", "200"), &input).await.unwrap_err();
        assert_eq!(trap(&err).0, TrapKind::OutOfFuel, "{err}");
    }
    let exact = runtime()
        .mapper(
            &mapper,
            MapperLimits {
                fuel: used1,
                ..limits
            },
            "fuel",
        )
        .unwrap();
    assert_eq!(
        exact
            .map_metered(&ctx("work", "200"), &input)
            .await
            .unwrap()
            .1,
        used1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapper_memory_bomb_is_stopped_and_mappers_cannot_be_connectors() {
    let mapper = plugin(HOSTILE_MAPPER).await;
    let client = runtime()
        .mapper(&mapper, MapperLimits::default(), "memory")
        .unwrap();
    let err = client
        .map(&ctx("alloc", ""), &records(1))
        .await
        .unwrap_err();
    assert_eq!(trap(&err).0, TrapKind::Memory, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("{} bytes", 16 * 1024 * 1024)),
        "{err}"
    );
    // Identity still works afterwards, and logging is allowed.
    let out = client.map(&ctx("log", ""), &records(3)).await.unwrap();
    assert_eq!(out.len(), 3);
    let conn = connection("mapper-as-connector", &[], Grant::default());
    let err = runtime().connector(&mapper, conn).unwrap_err();
    assert!(
        err.to_string().contains("is a mapper, not a connector"),
        "{err}"
    );
}
