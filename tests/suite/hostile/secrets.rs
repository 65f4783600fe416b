//! Hostile plugins: secrets. Every attack here tries to get a credential out of the host
//! (read it back, log it, store it, send it somewhere) or to make the host send one
//! where the operator did not say.

use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::Request as AxumRequest;
use axum::routing::{any, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tandem::conformance::Target;
use tandem::runtime::{ConnectError, LoadError, ManifestError};

use super::*;

/// The manifest-less connector: the tests hand it a manifest.
const BARE: &str = "tandem-fixture-hostile-bare";

/// A long API key with characters every encoding changes.
const KEY: &str = "sk_live/7Hq+Zr9 \"x&y\"=wK3pL";

/// The hostile fixture's rendered header value (`template = "key={secret}"`).
fn rendered() -> String {
    format!("key={KEY}")
}

/// Every spelling of `secret` a reflecting server below uses.
fn spellings(secret: &str) -> Vec<String> {
    vec![
        secret.to_owned(),
        STANDARD.encode(secret),
        STANDARD.encode(format!("user:{secret}")),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        "7Hq+Zr9".to_owned(),
    ]
}

fn assert_no_secret(fields: &BTreeMap<String, String>, secret: &str) {
    for (name, value) in fields {
        for spelling in spellings(secret) {
            assert!(
                !value.contains(&spelling),
                "the plugin read back the credential ({spelling}) in {name}: {value}"
            );
        }
    }
}

/// Loads the manifest-less fixture with `manifest` (text in place of an embedded one).
async fn bare_plugin(manifest: String) -> Arc<tandem::runtime::Plugin> {
    let path = tandem_plugins::wasm_path(BARE).unwrap();
    let wasm = std::fs::read(path).unwrap();
    runtime()
        .load(
            PluginSource::Bytes {
                name: "hostile-bare".into(),
                wasm: wasm.into(),
                manifest: Some(manifest),
            },
            None,
        )
        .await
        .unwrap()
}

fn bare_manifest(rest: &str) -> String {
    format!(
        "name = \"hostile-bare\"\nversion = \"0.1.0\"\nkind = \"connector\"\ncontract = \"0.1.0\"\n{rest}"
    )
}

/// `GET url` through the manifest-less fixture.
async fn bare_get(
    client: &tandem::runtime::ConnectorClient,
    url: &str,
) -> Result<BTreeMap<String, String>, CallError> {
    attack(client, "get", url).await
}

/// A server that records every request (method, path, headers, body) and answers 200.
async fn recording_server() -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let router = Router::new().fallback(move |req: AxumRequest| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let headers: Vec<String> = parts
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            record.lock().unwrap().push(format!(
                "{} {} | {} | {}",
                parts.method,
                parts.uri,
                headers.join(" ; "),
                String::from_utf8_lossy(&body)
            ));
            "ok"
        }
    });
    (TestServer::start(router).await, seen)
}

// --- 1. The OAuth2 token endpoint is the operator's choice ---------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_cannot_choose_where_the_refresh_token_goes() {
    let (thief, stolen) = recording_server().await;
    let (api, _) = recording_server().await;
    // The plugin's manifest names the token endpoint; the operator's credentials do not.
    let plugin = bare_plugin(bare_manifest(&format!(
        "[http]\norigins = [\"setting:base-url\"]\n\
         [auth]\nkind = \"oauth2\"\ntoken-url = \"{}\"\n",
        thief.url("/steal")
    )))
    .await;
    let credentials = |token_url: Option<String>| Credentials::OAuth2 {
        client_id: "cid".into(),
        client_secret: Secret::new("client-s3cret-value"),
        refresh_token: Secret::new("refresh-t0ken-value"),
        token_url,
    };
    for (grant, why) in [
        (vec!["setting:base-url".to_owned()], "not granted"),
        (vec!["*".to_owned()], "granted only by `*`"),
        (
            vec!["setting:base-url".to_owned(), thief.origin()],
            "granted, but not https",
        ),
    ] {
        let mut conn = connection(
            "oauth-thief",
            &[("base-url", &api.origin())],
            Grant {
                http: grant,
                allow_loopback: true,
                ..Grant::default()
            },
        );
        conn.credentials = credentials(None);
        match runtime().connector(&plugin, conn) {
            Err(err @ ConnectError::Http { .. }) => {
                let msg = err.to_string();
                assert!(
                    msg.contains(&thief.origin()) && msg.contains("token-url"),
                    "{why}: {msg}"
                );
            }
            Ok(client) => {
                let _ = bare_get(&client, &api.url("/contacts")).await;
                panic!(
                    "{why}: the connection was accepted; the token endpoint got {:?}",
                    stolen.lock().unwrap()
                );
            }
            Err(other) => panic!("{why}: {other}"),
        }
    }
    assert!(
        stolen.lock().unwrap().is_empty(),
        "{:?}",
        stolen.lock().unwrap()
    );

    // Named by the operator, the endpoint is used (and only it).
    let (tokens, issued) = recording_server().await;
    let mut conn = connection(
        "oauth-named",
        &[("base-url", &api.origin())],
        loopback_grant(&["setting:base-url"]),
    );
    conn.credentials = credentials(Some(tokens.url("/token")));
    let client = runtime().connector(&plugin, conn).unwrap();
    let _ = bare_get(&client, &api.url("/contacts")).await.unwrap();
    assert_eq!(
        issued.lock().unwrap().len(),
        1,
        "the named endpoint was asked"
    );
    assert!(stolen.lock().unwrap().is_empty());
}

// --- 2. Credentials read back -----------------------------------------------------------

/// Reflects the `x-api-key` request header every way a careless app does.
async fn reflecting_api() -> TestServer {
    let router = Router::new()
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let key = headers
                    .get("x-api-key")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                let body = serde_json::json!({
                    "headers": { "X-Api-Key": key },
                    "b64": STANDARD.encode(&key),
                    "basic": STANDARD.encode(format!("user:{}", key.trim_start_matches("key="))),
                    "query": url::form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>(),
                })
                .to_string();
                (
                    [
                        (
                            header::WWW_AUTHENTICATE,
                            format!("Token realm=\"{key}\""),
                        ),
                        (header::HeaderName::from_static("x-echo"), key.clone()),
                    ],
                    body,
                )
                    .into_response()
            }),
        )
        .route(
            "/error",
            get(|headers: HeaderMap| async move {
                let key = headers
                    .get("x-api-key")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                (
                    StatusCode::BAD_REQUEST,
                    format!("<html><p>Bad request: X-Api-Key: {key}</p></html>"),
                )
                    .into_response()
            }),
        );
    TestServer::start(router).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflected_credentials_are_scrubbed_from_headers_and_bodies() {
    let api = reflecting_api().await;
    let mut conn = connection(
        "reflect",
        &[("base-url", &api.origin())],
        loopback_grant(&["setting:base-url"]),
    );
    conn.credentials = Credentials::ApiKey(Secret::new(KEY));
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();

    let fields = attack(&client, "reflect", &api.url("/echo")).await.unwrap();
    assert_eq!(fields["status"], "200", "{fields:?}");
    assert_no_secret(&fields, KEY);
    assert_no_secret(&fields, &rendered());
    assert!(fields["header:x-echo"].contains("[redacted]"), "{fields:?}");
    assert!(fields["header:www-authenticate"].starts_with("Token realm="));
    let body: serde_json::Value = serde_json::from_str(&fields["body"]).unwrap();
    for key in ["b64", "basic", "query"] {
        assert!(body[key].as_str().unwrap().contains("[redacted]"), "{body}");
    }

    let fields = attack(&client, "reflect", &api.url("/error"))
        .await
        .unwrap();
    assert_eq!(fields["status"], "400");
    assert_no_secret(&fields, KEY);
    assert!(
        fields["body"].contains("X-Api-Key: [redacted]"),
        "{fields:?}"
    );
}

/// Log lines written while `f` runs on this thread.
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_secret_the_plugin_holds_is_scrubbed_from_logs_errors_and_storage() {
    // However a plugin came by the key (guessed, hard-coded, an app that leaked it in a
    // way the scrubber missed), the host does not log, store or report it.
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || LogCapture(sink.clone()))
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut grant = loopback_grant(&["setting:base-url"]);
    grant.storage = Some(StorageGrant::default());
    let mut conn = connection("second-line", &[("base-url", "http://127.0.0.1:9")], grant);
    conn.credentials = Credentials::ApiKey(Secret::new(KEY));
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();

    attack(&client, "leak-log", KEY).await.unwrap();
    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("leaking [redacted]"), "{logged}");
    assert!(!logged.contains("7Hq+Zr9"), "{logged}");

    let err = attack(&client, "leak-stderr", KEY).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("panicking with [redacted]"), "{msg}");
    assert!(!msg.contains("7Hq+Zr9"), "{msg}");

    attack(&client, "set", &format!("stash={KEY}"))
        .await
        .unwrap();
    let fields = attack(&client, "get", "stash").await.unwrap();
    assert_eq!(fields["value"], "[redacted]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_and_the_token_endpoint_stay_with_the_host() {
    const ACCESS: &str = "ya29.access-token-of-the-host";
    let router = Router::new()
        // A token endpoint that hands a token to anyone who asks.
        .route(
            "/token",
            any(|| async { format!("{{\"access_token\":\"{ACCESS}\",\"expires_in\":3600}}") }),
        )
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default();
                format!("you sent: {auth}")
            }),
        );
    let api = TestServer::start(router).await;
    let plugin = bare_plugin(bare_manifest(
        "[http]\norigins = [\"setting:base-url\"]\n\
         [auth]\nkind = \"oauth2\"\ntoken-url = \"setting:base-url\"\n",
    ))
    .await;
    let mut conn = connection(
        "oauth-echo",
        &[("base-url", &api.origin())],
        loopback_grant(&["setting:base-url"]),
    );
    conn.credentials = Credentials::OAuth2 {
        client_id: "cid".into(),
        client_secret: Secret::new("client-s3cret-value"),
        refresh_token: Secret::new("refresh-t0ken-value"),
        token_url: Some(api.url("/token")),
    };
    let client = runtime().connector(&plugin, conn).unwrap();

    let fields = bare_get(&client, &api.url("/echo")).await.unwrap();
    assert_eq!(fields["body"], "you sent: [redacted]", "{fields:?}");

    for url in [api.url("/token"), api.url("/token/"), api.url("/TOKEN?x=1")] {
        let fields = bare_get(&client, &url).await.unwrap();
        assert!(
            fields.get("error").is_some_and(
                |e| e.starts_with("HttpError::Denied(") && e.contains("token endpoint")
            ),
            "{url}: {fields:?}"
        );
    }
}

// --- 6. The pin covers the manifest ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_plugin_cannot_take_its_manifest_from_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let wasm_path = dir.path().join("bare.wasm");
    let wasm = std::fs::read(tandem_plugins::wasm_path(BARE).unwrap()).unwrap();
    std::fs::write(&wasm_path, &wasm).unwrap();
    let pin = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    // The manifest the operator reviewed, then one swapped in with the same pin.
    for origins in ["https://api.example.com", "https://evil.example"] {
        std::fs::write(
            dir.path().join("bare.tandem.toml"),
            bare_manifest(&format!("[http]\norigins = [\"{origins}\"]\n")),
        )
        .unwrap();
        let err: LoadError = runtime()
            .load(PluginSource::Path(wasm_path.clone()), Some(&pin))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.reason,
                LoadFailure::Manifest(ManifestError::UnpinnedSidecar(_))
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("bare.tandem.toml") && msg.contains("embed"),
            "{msg}"
        );
    }
    // Unpinned (a plugin author trying a build), the sidecar is read.
    let plugin = runtime()
        .load(PluginSource::Path(wasm_path), None)
        .await
        .unwrap();
    assert_eq!(plugin.manifest().http.origins, ["https://evil.example"]);
}

// --- 7. The operator limits where credentials go -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_to_the_base_url_origin_unless_the_operator_says_otherwise() {
    let (api, api_seen) = recording_server().await;
    let (other, other_seen) = recording_server().await;
    // The auth profile names no origins: by the manifest, every requested origin.
    let plugin = bare_plugin(bare_manifest(
        "[http]\norigins = [\"setting:base-url\", \"setting:other-url\"]\n\
         [auth]\nkind = \"api-key\"\nheader = \"X-Api-Key\"\ntemplate = \"{secret}\"\n",
    ))
    .await;
    let settings = [("base-url", api.origin()), ("other-url", other.origin())];
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut conn = connection("auth-origins", &settings, loopback_grant(&["*"]));
    conn.credentials = Credentials::ApiKey(Secret::new(KEY));
    let client = runtime().connector(&plugin, conn.clone()).unwrap();
    bare_get(&client, &other.url("/")).await.unwrap();
    bare_get(&client, &api.url("/")).await.unwrap();
    assert!(
        !other_seen.lock().unwrap()[0].contains("x-api-key"),
        "the key went to a second origin: {:?}",
        other_seen.lock().unwrap()
    );
    assert!(api_seen.lock().unwrap()[0].contains("x-api-key"));
    assert_eq!(client.auth_origins(), [api.origin()]);

    // The operator may open it up explicitly.
    conn.grant.auth_origins = Some(vec!["*".into()]);
    let client = runtime().connector(&plugin, conn).unwrap();
    bare_get(&client, &other.url("/")).await.unwrap();
    assert!(other_seen.lock().unwrap()[1].contains("x-api-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_kit_grants_only_the_base_url_origin() {
    let (api, _) = recording_server().await;
    let (other, other_seen) = recording_server().await;
    let plugin = bare_plugin(bare_manifest(
        "[http]\norigins = [\"setting:base-url\", \"setting:other-url\"]\n\
         [auth]\nkind = \"api-key\"\nheader = \"X-Api-Key\"\ntemplate = \"{secret}\"\n",
    ))
    .await;
    // `tandem plugin test --base-url URL --setting other-url=…`
    let mut target = Target::base_url(&api.origin(), Credentials::ApiKey(Secret::new(KEY)));
    target.settings.insert("other-url".into(), other.origin());
    let client = target
        .connect(runtime(), &plugin, "kit", target.credentials.clone())
        .unwrap();
    let fields = bare_get(&client, &other.url("/")).await.unwrap();
    assert!(
        fields["error"].starts_with("HttpError::Denied("),
        "{fields:?}"
    );
    assert!(other_seen.lock().unwrap().is_empty());
    assert_eq!(client.granted_origins(), [api.origin()]);
}

// --- 10. Refreshes ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_storm_costs_one_token_refresh() {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let count = refreshes.clone();
    let router = Router::new()
        .route(
            "/token",
            post(move |_body: Bytes| {
                let count = count.clone();
                async move {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    format!("{{\"access_token\":\"token-number-{n}\",\"expires_in\":3600}}")
                }
            }),
        )
        // Every token is refused (revoked, or an app that answers 401 to everything).
        .route("/api", get(|| async { StatusCode::UNAUTHORIZED }));
    let api = TestServer::start(router).await;
    let plugin = bare_plugin(bare_manifest(
        "[http]\norigins = [\"setting:base-url\"]\n\
         [auth]\nkind = \"oauth2\"\ntoken-url = \"setting:base-url\"\n",
    ))
    .await;
    let mut conn = connection(
        "oauth-storm",
        &[("base-url", &api.origin())],
        loopback_grant(&["setting:base-url"]),
    );
    conn.credentials = Credentials::OAuth2 {
        client_id: "cid".into(),
        client_secret: Secret::new("client-s3cret-value"),
        refresh_token: Secret::new("refresh-t0ken-value"),
        token_url: Some(api.url("/token")),
    };
    let client = runtime().connector(&plugin, conn).unwrap();
    let url = api.url("/api");
    // 25 at once, then 25 one after the other.
    let burst: Vec<_> = (0..25)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { bare_get(&client, &url).await.unwrap() })
        })
        .collect();
    for call in burst {
        assert_eq!(call.await.unwrap()["status"], "401");
    }
    for _ in 0..25 {
        assert_eq!(bare_get(&client, &url).await.unwrap()["status"], "401");
    }
    assert_eq!(
        refreshes.load(Ordering::SeqCst),
        1,
        "50 refused requests within the refresh floor"
    );
}

// --- 11. Userinfo, redirects, header injection -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_on_a_redirect_hop_is_refused() {
    let (api, seen) = recording_server().await;
    let target = format!("http://attacker:chosen@{}/echo", api.addr);
    let router = Router::new().route(
        "/jump",
        get(move || {
            let target = target.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, target)]) }
        }),
    );
    let granted = TestServer::start(router).await;
    let conn = connection(
        "userinfo",
        &[
            ("base-url", &granted.origin()),
            ("other-url", &api.origin()),
        ],
        loopback_grant(&["setting:base-url", "setting:other-url"]),
    );
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();
    let fields = attack(&client, "reflect", &granted.url("/jump"))
        .await
        .unwrap();
    assert!(
        fields["error"].starts_with("HttpError::Denied(")
            && fields["error"].contains("credentials"),
        "{fields:?}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    // And on the first URL.
    let fields = attack(&client, "reflect", &format!("http://u:p@{}/echo", api.addr))
        .await
        .unwrap();
    assert!(fields["error"].contains("credentials"), "{fields:?}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_forbidden_or_odd_targets_are_denied() {
    let (forbidden, forbidden_hits) = counting_server().await;
    let forbidden_url = forbidden.url("/secret");
    let protocol_relative = format!("//{}/secret", forbidden.addr);
    let router = Router::new().route(
        "/to/{code}/{kind}",
        get(
            move |axum::extract::Path((code, kind)): axum::extract::Path<(u16, String)>| {
                let location = match kind.as_str() {
                    "forbidden" => forbidden_url.clone(),
                    "file" => "file:///etc/passwd".to_owned(),
                    "relative" => protocol_relative.clone(),
                    "metadata" => "http://169.254.169.254/latest/meta-data/".to_owned(),
                    _ => "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
                };
                async move {
                    (
                        StatusCode::from_u16(code).unwrap(),
                        [(header::LOCATION, location)],
                    )
                }
            },
        ),
    );
    let granted = TestServer::start(router).await;
    let conn = connection(
        "odd-redirects",
        &[
            ("base-url", &granted.origin()),
            ("other-url", &forbidden.origin()),
        ],
        loopback_grant(&["setting:base-url"]),
    );
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();
    for code in [301, 302, 303, 307, 308] {
        for kind in ["forbidden", "file", "relative", "metadata", "metadata-v6"] {
            let fields = attack(
                &client,
                "reflect",
                &granted.url(&format!("/to/{code}/{kind}")),
            )
            .await
            .unwrap();
            assert!(
                fields
                    .get("error")
                    .is_some_and(|e| e.starts_with("HttpError::Denied(")),
                "{code} to {kind}: {fields:?}"
            );
        }
    }
    assert_eq!(forbidden_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_in_header_names_and_values_is_refused() {
    let (api, seen) = recording_server().await;
    let conn = connection(
        "crlf",
        &[("base-url", &api.origin())],
        loopback_grant(&["setting:base-url"]),
    );
    let client = runtime().connector(&plugin(HOSTILE).await, conn).unwrap();
    for (name, value) in [
        ("X-Ok", "a\r\nX-Injected: 1"),
        ("X-Ok", "a\nX-Injected: 1"),
        ("X-Ok", "a\rX-Injected: 1"),
        ("X-Ok\r\nX-Injected", "1"),
        ("X-Ok: 1\r\nX-Injected", "1"),
        ("X-Ok", "a\0b"),
    ] {
        let fields = attack(
            &client,
            "send-header",
            &format!("{}|{name}|{value}", api.url("/")),
        )
        .await
        .unwrap();
        assert!(
            fields
                .get("error")
                .is_some_and(|e| e.starts_with("HttpError::InvalidRequest(")),
            "{name:?}: {value:?}: {fields:?}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    // A clean header goes through.
    let fields = attack(
        &client,
        "send-header",
        &format!("{}|X-Ok|fine", api.url("/")),
    )
    .await
    .unwrap();
    assert_eq!(fields["status"], "200");
    assert!(seen.lock().unwrap()[0].contains("x-ok: fine"));
}

/// HTTP Basic, host-encoded (Jira's `email:token`): the app receives exactly
/// `Basic base64(user:KEY)`; an app that echoes it back (the header, its token, the
/// decoded pair, in a body, a header or an error page) hands the plugin `[redacted]`;
/// the operator never wrote anything encoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_are_encoded_by_the_host_and_never_read_back() {
    const USER: &str = "jane@acme.example";
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let router = Router::new().fallback(move |headers: HeaderMap| {
        let log = log.clone();
        async move {
            let auth = headers
                .get(header::AUTHORIZATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            log.lock().unwrap().push(auth.clone());
            let token = auth.trim_start_matches("Basic ").to_owned();
            let pair = String::from_utf8(STANDARD.decode(&token).unwrap_or_default()).unwrap();
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, format!("Basic realm=\"{token}\""))],
                format!("refused {auth} (token {token}, pair {pair})"),
            )
                .into_response()
        }
    });
    let api = TestServer::start(router).await;
    let plugin = bare_plugin(bare_manifest(
        "[http]\norigins = [\"setting:base-url\"]\n[auth]\nkind = \"basic\"\n",
    ))
    .await;
    let mut conn = connection(
        "basic",
        &[("base-url", &api.origin())],
        loopback_grant(&["setting:base-url"]),
    );
    conn.credentials = Credentials::Basic {
        user: Some(USER.into()),
        password: Secret::new(KEY),
    };
    let client = runtime().connector(&plugin, conn).unwrap();
    let fields = bare_get(&client, &api.url("/me")).await.unwrap();
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{KEY}")));
    assert_eq!(*seen.lock().unwrap(), vec![expected.clone()]);
    assert_eq!(fields["status"], "401", "{fields:?}");
    assert_no_secret(&fields, KEY);
    for (name, value) in &fields {
        for form in [
            expected.as_str(),
            &expected["Basic ".len()..],
            &format!("{USER}:{KEY}"),
        ] {
            assert!(!value.contains(form), "{name}: {value}");
        }
    }
    assert!(fields["body"].contains("[redacted]"), "{fields:?}");
}

/// Declared settings reach the plugin with their defaults; one the manifest does not
/// declare, or of the wrong type, is refused before the plugin runs, naming the setting.
/// A plugin that declares none reads every setting as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_settings_are_checked_and_defaulted_before_the_plugin_runs() {
    let declared = bare_plugin(bare_manifest(
        "[http]\norigins = [\"setting:base-url\"]\n\
         [settings.base-url]\ntype = \"url\"\nrequired = true\n\
         [settings.page-size]\ntype = \"integer\"\ndefault = 50\n",
    ))
    .await;
    let grant = || loopback_grant(&["setting:base-url"]);
    let conn = connection("s", &[("base-url", "http://127.0.0.1:9")], grant());
    let client = runtime().connector(&declared, conn).unwrap();
    let info = client.check().await.unwrap();
    assert_eq!(
        info.display_name,
        "base-url=http://127.0.0.1:9;page-size=50"
    );

    for (settings, needle) in [
        (
            vec![("base-url", "http://127.0.0.1:9"), ("page-sise", "10")],
            "setting `page-sise` is not one the plugin declares",
        ),
        (
            vec![("base-url", "http://127.0.0.1:9"), ("page-size", "ten")],
            "setting `page-size`: expected an integer",
        ),
        (vec![], "setting `base-url` is required"),
    ] {
        let conn = connection("s", &settings, grant());
        let Err(err) = runtime().connector(&declared, conn) else {
            panic!("{settings:?} accepted")
        };
        assert!(matches!(err, ConnectError::Settings { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{err}");
    }

    let open = bare_plugin(bare_manifest("[http]\norigins = [\"setting:base-url\"]\n")).await;
    let conn = connection(
        "s",
        &[("base-url", "http://127.0.0.1:9"), ("anything", "goes")],
        grant(),
    );
    let info = runtime()
        .connector(&open, conn)
        .unwrap()
        .check()
        .await
        .unwrap();
    assert_eq!(
        info.display_name,
        "anything=goes;base-url=http://127.0.0.1:9"
    );
}
