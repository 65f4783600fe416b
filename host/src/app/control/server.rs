//! The control API's server (axum) over the daemon: list syncs, pause, resume, trigger a
//! run, plan, read logs, look a person up, disconnect, resolve, connections and budgets.
//! Loopback by default; every request needs `Authorization: Bearer <token>`, the token
//! read from the reference in `[daemon] token` (without a token the API is not served),
//! or the operator console's session cookie and, to change anything, its CSRF token
//! (`console.rs`). Documented in `docs/control-api.md`; its paths and bodies are
//! [`super::api`]'s. The console's page is served on the same listener.

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
    self, Disconnected, ErrorReply, LogsQuery, PersonQuery, PlanQuery, Resolved, RunQuery,
    StatusChanged, SyncList, Triggered,
};
use super::console::{self, Access, Sessions};
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
    sessions: Arc<Sessions>,
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
        sessions: Arc::new(Sessions::default()),
    };
    spawn_until_stopping(daemon, listener, router(ctx), "control API");
    tracing::info!(%addr, console = %format!("http://{addr}/console/"), "control API listening");
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
    let console = console::routes(ctx.sessions.clone(), ctx.token_digest.clone());
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
        .route(api::PLAN, post(plan))
        .route(api::PERSON, get(person))
        .route(api::CONNECTIONS, get(connections))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; see docs/control-api.md",
            )
        })
        .layer(middleware::from_fn_with_state(ctx.clone(), auth))
        .merge(console)
        .layer(middleware::from_fn(console::security_headers))
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
    if !ok && given.is_none() {
        // The console's session instead of the bearer token.
        match ctx.sessions.check(req.headers()) {
            Access::Session(csrf) => {
                if let Some(why) = console::forged(req.method(), req.headers(), &csrf) {
                    return error(StatusCode::FORBIDDEN, why);
                }
                return next.run(req).await;
            }
            Access::None => {}
        }
    }
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

async fn plan(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Response {
    let report = match ctx.daemon.preview(&name, q.full).await {
        Ok(r) => r,
        Err(DaemonError::Host(e)) => return host_error(e),
        Err(e @ (DaemonError::Cancelled(_) | DaemonError::NotOwner { .. })) => {
            return error(StatusCode::CONFLICT, e.to_string());
        }
    };
    let store = ctx.daemon.host().store();
    let mut links = 0;
    for l in &report.plan.links {
        match store.link(&name, &l.key) {
            Ok(None) if l.ids.a.is_some() && l.ids.b.is_some() => links += 1,
            Ok(_) => {}
            Err(e) => return host_error(e.into()),
        }
    }
    Json(preview(&name, &report, links)).into_response()
}

/// The console's view of a dry run's plan.
fn preview(name: &str, report: &crate::sync::RunReport, links: usize) -> api::Preview {
    use crate::app::report::Outcome;
    let p = &report.plan;
    let outcome = match RunSummary::from(report).outcome {
        Outcome::Paused => "paused",
        _ => "dry-run",
    };
    let rec = |side: crate::sync::model::Side, id: &str| format!("{}:{id}", side.as_str());
    api::Preview {
        sync: name.into(),
        outcome: outcome.into(),
        halted: p.halted.as_ref().map(|h| h.message.clone()),
        withheld: p.withheld,
        ops: p
            .ops
            .iter()
            .map(|o| api::PreviewOp {
                side: o.side.as_str().into(),
                kind: o.kind.label().into(),
                entity: o.entity_name.clone(),
                link: o.link.clone(),
                reason: o.reason.clone(),
            })
            .collect(),
        skips: p
            .skips
            .iter()
            .map(|s| api::PreviewNote {
                subject: rec(s.side, &s.id),
                detail: s.reason.clone(),
            })
            .collect(),
        conflicts: p
            .conflicts
            .iter()
            .map(|c| api::PreviewNote {
                subject: c.link.clone(),
                detail: format!("{}: A {} / B {}: {}", c.field, c.a, c.b, c.decision),
            })
            .collect(),
        ambiguous: p
            .ambiguous
            .iter()
            .map(|a| api::PreviewNote {
                subject: a.email.clone(),
                detail: format!("A {} / B {}: {}", a.a.join(", "), a.b.join(", "), a.reason),
            })
            .collect(),
        links,
    }
}

async fn person(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<PersonQuery>,
) -> Response {
    match find_person(&ctx.daemon, &name, q.q.trim()) {
        Ok(p) => Json(p).into_response(),
        Err(e) => host_error(e),
    }
}

/// The links of sync `name` whose record id is `q` (`ID`, `a:ID`, `b:ID`), or that
/// were matched on, or hold, the e-mail `q`; with every logged event of each.
fn find_person(daemon: &Daemon, name: &str, q: &str) -> Result<api::Person, HostError> {
    use crate::sync::model::Side;
    daemon.host().sync_config(name)?;
    let store = daemon.host().store();
    let email = q.contains('@').then(|| q.to_lowercase());
    let (side, id) = match q.split_once(':') {
        Some(("a", id)) => (Some(Side::A), id),
        Some(("b", id)) => (Some(Side::B), id),
        _ => (None, q),
    };
    let mut found = Vec::new();
    if !q.is_empty() {
        for l in store.links(name)? {
            let hit = match &email {
                Some(e) => {
                    l.match_key.as_deref() == Some(e.as_str())
                        || l.fields
                            .values()
                            .any(|f| f.value.to_string().to_lowercase().contains(e.as_str()))
                }
                None => Side::BOTH
                    .into_iter()
                    .filter(|s| side.is_none_or(|want| want == *s))
                    .any(|s| l.id(s) == Some(id)),
            };
            if hit {
                found.push(l);
            }
            if found.len() == api::PERSON_LIMIT {
                break;
            }
        }
    }
    let runs = if found.is_empty() {
        Vec::new()
    } else {
        store.runs(name).map_err(HostError::from)?
    };
    let mut history: std::collections::BTreeMap<String, Vec<crate::sync::state::Event>> =
        Default::default();
    for r in &runs {
        for e in store.events(name, r.id).map_err(HostError::from)? {
            if let Some(k) = &e.link
                && found.iter().any(|l| &l.key == k)
            {
                history.entry(k.clone()).or_default().push(e);
            }
        }
    }
    let links = found
        .into_iter()
        .map(|l| {
            let mut h = history.remove(&l.key).unwrap_or_default();
            h.sort_by_key(|e| (e.run, e.seq));
            api::PersonLink {
                records: Side::BOTH
                    .into_iter()
                    .filter_map(|s| l.id(s).map(|id| format!("{}:{id}", s.as_str())))
                    .collect(),
                state: serde_json::to_value(l.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                email: l.match_key.clone(),
                fields: l
                    .fields
                    .iter()
                    .map(|(k, f)| (k.clone(), serde_json::json!(f.value.to_string())))
                    .collect(),
                history: h,
                link: l.key,
            }
        })
        .collect();
    Ok(api::Person {
        sync: name.into(),
        links,
    })
}

async fn connections(State(ctx): State<Ctx>) -> Response {
    use crate::config::PluginSource;
    let host = ctx.daemon.host();
    let mut out = Vec::new();
    for (name, c) in &host.config().connections {
        let Some(p) = host.config().plugins.get(&c.plugin) else {
            continue;
        };
        let (version, sha256, error) = match host.plugin(&c.plugin).await {
            Ok(loaded) => (
                Some(loaded.label().to_string()),
                Some(loaded.sha256_hex()),
                None,
            ),
            Err(e) => (None, None, Some(e.to_string())),
        };
        out.push(api::ConnectionInfo {
            name: name.clone(),
            plugin: c.plugin.clone(),
            version,
            sha256,
            error,
            source: match p.source {
                PluginSource::Builtin(_) => "builtin".into(),
                PluginSource::File { .. } => "file".into(),
            },
            origins: p.grant.http.clone(),
            loopback: p.grant.loopback,
            private_networks: p.grant.private_networks,
        });
    }
    Json(api::Connections {
        connections: out,
        budgets: host.budgets().snapshots(),
    })
    .into_response()
}
