//! The control API's server (axum) over the daemon: list syncs, pause, resume, trigger a
//! run, read logs, disconnect, resolve. Loopback by default; every request needs
//! `Authorization: Bearer <token>`, the token read from the reference in `[daemon] token`
//! (without a token the API is not served). Documented in `docs/control-api.md`; its
//! paths and bodies are [`super::api`]'s.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};

use super::api::{
    self, Disconnected, ErrorReply, LogsQuery, Resolved, RunQuery, StatusChanged, SyncList,
    Triggered,
};
use crate::app::HostError;
use crate::app::daemon::{Daemon, DaemonError};
use crate::app::report::RunSummary;
use crate::sync::RunOptions;

/// Why the control API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
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
pub async fn serve(daemon: &Daemon) -> Result<Option<SocketAddr>, ServeError> {
    let cfg = &daemon.host().config().daemon;
    let Some(token_ref) = &cfg.token else {
        tracing::info!("control API off: set [daemon] token to serve it");
        return Ok(None);
    };
    let token = token_ref
        .read(daemon.host().env())
        .map_err(|e| ServeError::Token(Box::new(e)))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| ServeError::Bind {
            addr: cfg.listen,
            message: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ServeError::Bind {
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
        .route(api::SYNCS, get(list))
        .route(api::SYNC, get(one))
        .route(api::PAUSE, post(pause))
        .route(api::RESUME, post(resume))
        .route(api::RUN, post(run))
        .route(api::LOGS, get(logs))
        .route(api::DISCONNECT, post(disconnect))
        .route(api::RESOLVE, post(resolve))
        .route(api::BUDGETS, get(budgets))
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
    let body = ErrorReply {
        error: message.into(),
    };
    (status, Json(body)).into_response()
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

async fn list(State(ctx): State<Ctx>) -> Response {
    match ctx.daemon.summaries(None) {
        Ok(syncs) => Json(SyncList { syncs }).into_response(),
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
        Ok(()) => Json(StatusChanged {
            sync: name,
            status: "paused".into(),
        })
        .into_response(),
        Err(e) => host_error(e),
    }
}

async fn resume(State(ctx): State<Ctx>, Path(name): Path<String>) -> Response {
    match ctx.daemon.resume(&name) {
        Ok(()) => Json(StatusChanged {
            sync: name,
            status: "active".into(),
        })
        .into_response(),
        Err(e) => host_error(e),
    }
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
                Json(Triggered {
                    sync: name,
                    triggered: true,
                }),
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
        Err(e @ (DaemonError::Cancelled(_) | DaemonError::NotOwner { .. })) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
    }
}

async fn resolve(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    body: Result<Json<crate::app::Resolution>, axum::extract::rejection::JsonRejection>,
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
        Ok(message) => Json(Resolved {
            sync: name,
            message,
        })
        .into_response(),
        Err(e @ HostError::Resolve(_)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => host_error(e),
    }
}

async fn logs(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Response {
    match ctx.daemon.logs(&name, q.run, q.latest()) {
        Ok(runs) => Json(api::Logs { sync: name, runs }).into_response(),
        Err(e) => host_error(e),
    }
}

async fn disconnect(State(ctx): State<Ctx>, Path(name): Path<String>) -> Response {
    match ctx.daemon.disconnect(&name).await {
        Ok(wiped) => Json(Disconnected {
            sync: name,
            wiped,
            status: "paused".into(),
        })
        .into_response(),
        Err(e) => host_error(e),
    }
}

async fn budgets(State(ctx): State<Ctx>) -> Response {
    Json(api::Budgets {
        budgets: ctx.daemon.host().budgets().snapshots(),
    })
    .into_response()
}
