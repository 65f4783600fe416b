//! The control API, mounted under [`CONTROL_PREFIX`] (`/_sandbox`) on every account's server,
//! apart from the real API paths. It is never rate-limited, faulted or counted.
//!
//! Generic endpoints (this module; all JSON):
//!
//! | Method + path | Body | Reply |
//! |---|---|---|
//! | `POST /_sandbox/reset` | — | `{"reset":true}`: account state back to its seeded start; faults and counters cleared |
//! | `GET /_sandbox/faults` | — | `{"faults":[FaultRule…]}` (armed rules with remaining skip/count) |
//! | `POST /_sandbox/faults` | a [`FaultRule`] | `{"id":N}` |
//! | `DELETE /_sandbox/faults` | — | `{"cleared":true}` |
//! | `DELETE /_sandbox/faults/{id}` | — | `{"removed":bool}` |
//! | `GET /_sandbox/counters` | — | [`CountersSnapshot`](super::counters::CountersSnapshot) |
//! | `DELETE /_sandbox/counters` | — | `{"cleared":true}` |
//! | `GET /_sandbox/clock` | — | `{"now":RFC3339,"unix":N,"mode":"system"/"manual"}` |
//! | `POST /_sandbox/clock/advance` | `{"seconds":N}` and/or `{"millis":N}` | same as `GET /_sandbox/clock` |
//! | `POST /_sandbox/clock/set` | `{"now":RFC3339}` (forward only) | same as `GET /_sandbox/clock` |
//!
//! Each account type merges its own control routes (seed, state, user edits, token expiry…)
//! through [`mount`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clock::{Clock, format_seconds, parse_rfc3339};
use super::counters::{Counters, count_middleware};
use super::faults::{FaultRule, Faults, fault_middleware};

/// Path prefix of the control API.
pub const CONTROL_PREFIX: &str = "/_sandbox";

/// Restores an account to its seeded start state.
pub type ResetFn = Arc<dyn Fn() + Send + Sync>;

/// The generic control handles of one account: its clock (shared sandbox-wide), fault table,
/// counters and reset hook. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    /// The sandbox clock.
    pub clock: Clock,
    /// This account's fault rules.
    pub faults: Faults,
    /// This account's request counters.
    pub counters: Counters,
    reset: ResetFn,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("clock", &self.clock)
            .field("faults", &self.faults)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Handles with empty faults and counters; `reset` restores the account's seeded state
    /// (faults and counters are cleared by [`ControlPlane::reset`] itself).
    pub fn new(clock: Clock, reset: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            clock,
            faults: Faults::new(),
            counters: Counters::new(),
            reset: Arc::new(reset),
        }
    }

    /// Reset the account state, clear faults and counters.
    pub fn reset(&self) {
        (self.reset)();
        self.faults.clear();
        self.counters.clear();
    }
}

/// Wrap an account's API router with the fault and counter middleware (counters outermost,
/// so faulted requests are counted too). Apply it to the router whose routes are final: the
/// layers run after routing and read the matched route pattern.
pub fn instrument(api: Router, plane: &ControlPlane) -> Router {
    api.layer(axum::middleware::from_fn_with_state(
        plane.faults.clone(),
        fault_middleware,
    ))
    .layer(axum::middleware::from_fn_with_state(
        plane.counters.clone(),
        count_middleware,
    ))
}

/// The account's whole app: `api` (already [`instrument`]ed, with whatever fallback it wants)
/// plus the generic control routes and `account_control` (paths relative to `/_sandbox`, e.g.
/// `/state`) nested under [`CONTROL_PREFIX`].
pub fn mount(api: Router, plane: ControlPlane, account_control: Router) -> Router {
    let control = generic_router(plane).merge(account_control);
    Router::new().nest(CONTROL_PREFIX, control).merge(api)
}

/// The generic control routes (relative paths; [`mount`] nests them under `/_sandbox`).
pub fn generic_router(plane: ControlPlane) -> Router {
    Router::new()
        .route("/reset", post(reset))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/faults/{id}", delete(remove_fault))
        .route("/counters", get(counters).delete(clear_counters))
        .route("/clock", get(clock))
        .route("/clock/advance", post(advance_clock))
        .route("/clock/set", post(set_clock))
        .with_state(plane)
}

/// A control-API error reply: `{"error":"…"}` with `status`.
pub fn control_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn reset(State(p): State<ControlPlane>) -> Json<Value> {
    p.reset();
    Json(json!({ "reset": true }))
}

async fn list_faults(State(p): State<ControlPlane>) -> Json<Value> {
    Json(json!({ "faults": p.faults.list() }))
}

async fn add_fault(State(p): State<ControlPlane>, Json(rule): Json<FaultRule>) -> Json<Value> {
    Json(json!({ "id": p.faults.add(rule) }))
}

async fn clear_faults(State(p): State<ControlPlane>) -> Json<Value> {
    p.faults.clear();
    Json(json!({ "cleared": true }))
}

async fn remove_fault(State(p): State<ControlPlane>, Path(id): Path<u64>) -> Json<Value> {
    Json(json!({ "removed": p.faults.remove(id) }))
}

async fn counters(State(p): State<ControlPlane>) -> Json<Value> {
    Json(json!(p.counters.snapshot()))
}

async fn clear_counters(State(p): State<ControlPlane>) -> Json<Value> {
    p.counters.clear();
    Json(json!({ "cleared": true }))
}

fn clock_json(c: &Clock) -> Json<Value> {
    let now = c.now();
    Json(json!({
        "now": format_seconds(now, time::UtcOffset::UTC),
        "unix": now.unix_timestamp(),
        "mode": c.mode(),
    }))
}

async fn clock(State(p): State<ControlPlane>) -> Json<Value> {
    clock_json(&p.clock)
}

#[derive(Debug, Deserialize)]
struct Advance {
    #[serde(default)]
    seconds: u64,
    #[serde(default)]
    millis: u64,
}

async fn advance_clock(State(p): State<ControlPlane>, Json(a): Json<Advance>) -> Json<Value> {
    p.clock
        .advance(Duration::from_secs(a.seconds) + Duration::from_millis(a.millis));
    clock_json(&p.clock)
}

#[derive(Debug, Deserialize)]
struct SetClock {
    now: String,
}

async fn set_clock(State(p): State<ControlPlane>, Json(s): Json<SetClock>) -> Response {
    match parse_rfc3339(&s.now) {
        Some(t) => {
            p.clock.set(t);
            clock_json(&p.clock).into_response()
        }
        None => control_error(
            StatusCode::BAD_REQUEST,
            format!("`now` must be an RFC 3339 timestamp, got {:?}", s.now),
        ),
    }
}
