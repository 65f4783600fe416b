//! The daemon's HTTP control API (axum): list syncs, pause, resume, trigger a run, read
//! logs, disconnect. Loopback by default; every request needs
//! `Authorization: Bearer <token>`, the token read from the reference in `[daemon] token`
//! (without a token the API is not served). Documented in `docs/control-api.md`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::HostError;
use super::daemon::{Daemon, DaemonError};
use super::report::RunSummary;
use crate::sync::RunOptions;

/// Why the control API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The token reference could not be read.
    #[error(transparent)]
    Token(Box<crate::config::ConfigError>),
    /// The address could not be bound.
    #[error(
        "cannot serve the control API on {addr}: {message}; set [daemon] listen to a free loopback address"
    )]
    Bind {
        /// The `[daemon] listen` address.
        addr: SocketAddr,
        /// The operating system's reason.
        message: String,
    },
}

#[derive(Clone)]
struct Ctx {
    daemon: Daemon,
    token_digest: Arc<[u8; 32]>,
}

/// Serves the control API until the daemon stops; returns the bound address, or `None`
/// when `[daemon]` has no token (the API is then off).
pub async fn serve(daemon: &Daemon) -> Result<Option<SocketAddr>, ControlError> {
    let cfg = &daemon.host().config().daemon;
    let Some(token_ref) = &cfg.token else {
        tracing::info!("control API off: set [daemon] token to serve it");
        return Ok(None);
    };
    let token = token_ref
        .read(daemon.host().env())
        .map_err(|e| ControlError::Token(Box::new(e)))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| ControlError::Bind {
            addr: cfg.listen,
            message: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ControlError::Bind {
        addr: cfg.listen,
        message: e.to_string(),
    })?;
    let ctx = Ctx {
        daemon: daemon.clone(),
        token_digest: Arc::new(Sha256::digest(token.as_bytes()).into()),
    };
    spawn_until_stopping(daemon, listener, router(ctx), "control API");
    tracing::info!(%addr, "control API listening");
    Ok(Some(addr))
}

/// Serves `app` on `listener` in its own task until the daemon stops (graceful: requests
/// in progress finish). Shared by the control API and the webhook receiver.
pub(crate) fn spawn_until_stopping(
    daemon: &Daemon,
    listener: tokio::net::TcpListener,
    app: Router,
    what: &'static str,
) {
    let mut stopping = daemon.stopping();
    tokio::spawn(async move {
        let stop = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "{what} stopped");
        }
    });
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/v1/syncs", get(list))
        .route("/v1/syncs/{name}", get(one))
        .route("/v1/syncs/{name}/pause", post(pause))
        .route("/v1/syncs/{name}/resume", post(resume))
        .route("/v1/syncs/{name}/run", post(run))
        .route("/v1/syncs/{name}/logs", get(logs))
        .route("/v1/syncs/{name}/disconnect", post(disconnect))
        .route("/v1/syncs/{name}/resolve", post(resolve))
        .route("/v1/budgets", get(budgets))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; see docs/control-api.md",
            )
        })
        .layer(middleware::from_fn_with_state(ctx.clone(), auth))
        .with_state(ctx)
}

/// An error reply: `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn host_error(e: HostError) -> Response {
    let status = match e {
        HostError::Unknown { .. } => StatusCode::NOT_FOUND,
        HostError::Check { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

async fn auth(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // Digests are compared, so the comparison's timing says nothing about the token.
    let ok = given.is_some_and(|t| {
        let d: [u8; 32] = Sha256::digest(t.as_bytes()).into();
        d == *ctx.token_digest
    });
    if !ok {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token; send Authorization: Bearer <the token [daemon] token references>",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    next.run(req).await
}

#[derive(Serialize, Deserialize)]
struct Syncs {
    syncs: Vec<super::report::SyncSummary>,
}

async fn list(State(ctx): State<Ctx>) -> Response {
    match ctx.daemon.summaries(None) {
        Ok(syncs) => Json(Syncs { syncs }).into_response(),
        Err(e) => host_error(e),
    }
}

async fn one(State(ctx): State<Ctx>, Path(name): Path<String>) -> Response {
    match ctx.daemon.summaries(Some(&name)) {
        Ok(mut s) if !s.is_empty() => Json(s.remove(0)).into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, format!("no sync `{name}`")),
        Err(e) => host_error(e),
    }
}

async fn pause(State(ctx): State<Ctx>, Path(name): Path<String>) -> Response {
    match ctx.daemon.pause(&name) {
        Ok(()) => Json(json!({ "sync": name, "status": "paused" })).into_response(),
        Err(e) => host_error(e),
    }
}

async fn resume(State(ctx): State<Ctx>, Path(name): Path<String>) -> Response {
    match ctx.daemon.resume(&name) {
        Ok(()) => Json(json!({ "sync": name, "status": "active" })).into_response(),
        Err(e) => host_error(e),
    }
}

#[derive(Deserialize)]
struct RunQuery {
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    full: bool,
    #[serde(default)]
    force: bool,
}

async fn run(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    if !q.wait {
        return match ctx.daemon.trigger(&name) {
            Ok(()) => (
                StatusCode::ACCEPTED,
                Json(json!({ "sync": name, "triggered": true })),
            )
                .into_response(),
            Err(e) => host_error(e),
        };
    }
    let opts = RunOptions {
        full: q.full,
        force: q.force,
        ..RunOptions::default()
    };
    match ctx.daemon.run_now(&name, opts).await {
        Ok(report) => Json(RunSummary::from(&report)).into_response(),
        Err(DaemonError::Host(e)) => host_error(e),
        Err(e @ DaemonError::Cancelled(_)) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn resolve(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    body: Result<Json<super::Resolution>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(r) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "bad resolution: {}; send one of {{\"link\":{{\"a\":..,\"b\":..}}}}, {{\"keep-apart\":{{..}}}}, {{\"take\":{{\"record\":..,\"field\":..,\"side\":\"a\"}}}}, {{\"release\":{{\"record\":..}}}}",
                    e.body_text()
                ),
            );
        }
    };
    match ctx
        .daemon
        .between_runs(&name, |host| host.apply_resolution(&name, &r))
        .await
    {
        Ok(message) => Json(json!({ "sync": name, "message": message })).into_response(),
        Err(e @ HostError::Resolve(_)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => host_error(e),
    }
}

#[derive(Deserialize)]
struct LogsQuery {
    run: Option<u64>,
    #[serde(default = "one_run")]
    runs: usize,
}

fn one_run() -> usize {
    1
}

async fn logs(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Response {
    match ctx.daemon.logs(&name, q.run, q.runs) {
        Ok(runs) => Json(json!({ "sync": name, "runs": runs })).into_response(),
        Err(e) => host_error(e),
    }
}

async fn disconnect(State(ctx): State<Ctx>, Path(name): Path<String>) -> Response {
    match ctx.daemon.disconnect(&name).await {
        Ok(n) => Json(json!({ "sync": name, "wiped": n, "status": "paused" })).into_response(),
        Err(e) => host_error(e),
    }
}

async fn budgets(State(ctx): State<Ctx>) -> Response {
    Json(json!({ "budgets": ctx.daemon.host().budgets().snapshots() })).into_response()
}
