//! An in-memory version of the API the template connector (`plugins/template`) speaks:
//! what the conformance suite runs the template against, and a connector without the
//! contract's optional `lookup-api` for the sync tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value as Json, json};

use crate::host::TestServer;

/// An in-memory version of the API the template connector speaks (see
/// `plugins/template/src/lib.rs`), with `Authorization: Bearer <KEY>`.
pub struct FakeApi {
    /// The HTTP server serving the fake API on 127.0.0.1.
    pub server: TestServer,
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    contacts: BTreeMap<u64, Map<String, Json>>,
    next_id: u64,
    tick: u64,
    honour_if_match: bool,
    /// Listings filtered by `email` (the template's `find` by e-mail).
    email_queries: u64,
}

impl FakeState {
    /// Writes get increasing `updated_at`s, one second apart.
    fn stamp(&mut self, contact: &mut Map<String, Json>) {
        self.tick += 1;
        let (m, s) = (self.tick / 60, self.tick % 60);
        contact.insert(
            "updated_at".into(),
            json!(format!("2024-05-01T12:{m:02}:{s:02}Z")),
        );
        contact.insert("version".into(), json!(format!("v{}", self.tick)));
    }

    fn insert(&mut self, mut contact: Map<String, Json>) -> Map<String, Json> {
        self.next_id += 1;
        contact.insert("id".into(), json!(self.next_id.to_string()));
        self.stamp(&mut contact);
        self.contacts.insert(self.next_id, contact.clone());
        contact
    }
}

type Shared = Arc<Mutex<FakeState>>;

impl FakeApi {
    /// The API key it accepts (`Authorization: Bearer KEY`).
    pub const KEY: &str = "fake-api-key";

    /// Starts the API with one seeded contact; `honour_if_match`: refuse stale writes.
    pub async fn start(honour_if_match: bool) -> Self {
        let state: Shared = Arc::new(Mutex::new(FakeState {
            honour_if_match,
            ..FakeState::default()
        }));
        let seeded = json!({"email": "seeded@example.com", "first_name": "Seeded",
                            "custom_fields": {"region": "EU"}});
        state
            .lock()
            .unwrap()
            .insert(seeded.as_object().unwrap().clone());
        let router = Router::new()
            .route("/me", get(me))
            .route("/fields", get(fields))
            .route("/contacts", get(list).post(create))
            .route("/contacts/{id}", get(show).patch(update).delete(remove))
            .with_state(state.clone());
        Self {
            server: TestServer::start(router).await,
            state,
        }
    }

    /// Listings filtered by `email` so far (the template's lookups by e-mail).
    pub fn email_queries(&self) -> u64 {
        self.state.lock().unwrap().email_queries
    }

    /// The e-mails of the contacts it holds.
    pub fn live_emails(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .contacts
            .values()
            .filter_map(|c| c["email"].as_str().map(str::to_owned))
            .collect()
    }
}

/// `None` when the request carries the key, else the 401 to answer.
fn refused(headers: &HeaderMap) -> Option<Response> {
    let wanted = format!("Bearer {}", FakeApi::KEY);
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(value) if value == wanted => None,
        _ => Some((StatusCode::UNAUTHORIZED, "{\"error\":\"bad key\"}").into_response()),
    }
}

async fn me(headers: HeaderMap) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    // Like the debug endpoints of many APIs, it reflects the request's credentials: the
    // host must scrub them before the plugin (or a recording) sees them.
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        [("x-echo-authorization", auth.clone())],
        axum::Json(json!({"account_id": "acct-1", "name": "Fake API", "authorization": auth})),
    )
        .into_response()
}

async fn fields(headers: HeaderMap) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    axum::Json(json!([{"name": "region", "label": "Region", "type": "text"}])).into_response()
}

async fn list(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    let mut state = state.lock().unwrap();
    if q.contains_key("email") {
        state.email_queries += 1;
    }
    let matches = |c: &Map<String, Json>| {
        let text = |k: &str| c.get(k).and_then(Json::as_str).unwrap_or_default();
        q.get("email")
            .is_none_or(|e| text("email").eq_ignore_ascii_case(e))
            && q.get("external_id")
                .is_none_or(|m| text("external_id") == m)
            && q.get("updated_since")
                .is_none_or(|t| text("updated_at") >= t.as_str())
    };
    let all: Vec<&Map<String, Json>> = state.contacts.values().filter(|c| matches(c)).collect();
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let offset: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page: Vec<&Map<String, Json>> = all.iter().skip(offset).take(limit).copied().collect();
    let next = (offset + limit < all.len()).then(|| (offset + limit).to_string());
    axum::Json(json!({"contacts": page, "next_cursor": next})).into_response()
}

fn parse_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

async fn show(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    let state = state.lock().unwrap();
    match parse_id(&id).and_then(|id| state.contacts.get(&id)) {
        Some(c) => axum::Json(c.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn create(
    State(state): State<Shared>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Map<String, Json>>,
) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    let contact = state.lock().unwrap().insert(body);
    (StatusCode::CREATED, axum::Json(contact)).into_response()
}

async fn update(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<Map<String, Json>>,
) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    let mut state = state.lock().unwrap();
    let honour = state.honour_if_match;
    let Some(mut contact) = parse_id(&id).and_then(|id| state.contacts.get(&id).cloned()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let if_match = headers.get("if-match").and_then(|v| v.to_str().ok());
    if honour && if_match.is_some_and(|v| Some(v) != contact["version"].as_str()) {
        return (
            StatusCode::PRECONDITION_FAILED,
            "{\"error\":\"version mismatch\"}",
        )
            .into_response();
    }
    contact.extend(body);
    state.stamp(&mut contact);
    state
        .contacts
        .insert(parse_id(&id).unwrap_or_default(), contact.clone());
    axum::Json(contact).into_response()
}

async fn remove(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refused(&headers) {
        return r;
    }
    let removed = parse_id(&id).and_then(|id| state.lock().unwrap().contacts.remove(&id));
    match removed {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl FakeApi {
    /// A world with a simulated Freshsales account and a connection `tpl` to this API
    /// through the connector at `path` (pinned by `sha256`, loaded from the config as
    /// plugin `plugin`), and sync `t` from Freshsales contacts to it.
    pub async fn world_from_freshsales(
        &self,
        plugin: &str,
        path: &std::path::Path,
        sha256: &str,
    ) -> crate::e2e::World {
        let sync = format!(
            r#"
[plugins.{plugin}]
path = "{path}"
sha256 = "{sha256}"
[plugins.{plugin}.grant]
http = ["setting:base-url"]
loopback = true

[connections.tpl]
plugin = "{plugin}"
[connections.tpl.settings]
base-url = "{origin}"
[connections.tpl.credentials]
api-key = {{ env = "TPL_KEY" }}

[syncs.t]
a = "freshsales"
b = "tpl"
entities = "contacts"
direction = "a-to-b"
"#,
            path = path.display(),
            origin = self.server.origin(),
        );
        let mut opts = crate::e2e::options(crate::e2e::small());
        opts.kinds = vec![tandem_sandbox::AccountKind::FreshsalesSuite];
        crate::e2e::World::start_with_env(opts, &sync, &[("TPL_KEY", Self::KEY)]).await
    }
}
