//! The daemon's webhook receiver: `POST /v1/webhooks/{connection}` (or `PUT`).
//!
//! Apps that offer webhooks (Freshworks: a workflow's "Trigger Webhook" action on record
//! create/update) call it so that the syncs using that connection run now instead of at
//! their next poll. A webhook is a **hint**: its body is never read as data (it is only
//! bounded and counted); the run reads the changes through the connector like a polled
//! run, so echo suppression, the baselines and consent rules all apply. Forged or replayed
//! webhooks can therefore cost at most a run, never a wrong write.
//!
//! - Served on its own listener (`[daemon.webhooks] listen`, loopback by default) when at
//!   least one connection has `[connections.NAME.webhook]`, so the control API can stay
//!   on loopback while a TLS proxy forwards only the webhook path from the internet.
//! - Each connection has its own secret, read from the referenced variable or file when
//!   the receiver starts and kept only as a SHA-256 digest; the app sends it in a custom
//!   header (`header`, default `X-Tandem-Webhook-Secret`). Digests are compared in
//!   constant time. Neither the secret nor the header's value is ever logged.
//! - Unknown connection (or one without a webhook): 404. Missing or wrong secret: 401.
//!   A body over `max-body`: 413. Accepted: 202 `{"accepted": true, "syncs": N}`.
//!
//! Documented in `docs/control-api.md` (Webhooks) and the README's operator section.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, body::to_bytes};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::daemon::Daemon;

/// Why the webhook receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A webhook secret reference could not be read.
    #[error(transparent)]
    Secret(Box<crate::config::ConfigError>),
    /// The address could not be bound.
    #[error(
        "cannot serve webhooks on {addr}: {message}; set [daemon.webhooks] listen to a free address"
    )]
    Bind {
        /// The `[daemon.webhooks] listen` address.
        addr: SocketAddr,
        /// The operating system's reason.
        message: String,
    },
}

/// What one connection's webhooks must carry.
struct Expect {
    /// The header (lower case).
    header: String,
    /// SHA-256 of the secret.
    digest: [u8; 32],
}

#[derive(Clone)]
struct Ctx {
    daemon: Daemon,
    expect: Arc<BTreeMap<String, Expect>>,
    max_body: usize,
}

/// Serves the webhook receiver until the daemon stops; returns the bound address, or
/// `None` when no connection has a `webhook` table.
pub async fn serve(daemon: &Daemon) -> Result<Option<SocketAddr>, WebhookError> {
    let config = daemon.host().config();
    let mut expect = BTreeMap::new();
    for (name, conn) in &config.connections {
        let Some(hook) = &conn.webhook else { continue };
        let secret = hook
            .secret
            .read(daemon.host().env())
            .map_err(|e| WebhookError::Secret(Box::new(e)))?;
        expect.insert(
            name.clone(),
            Expect {
                header: hook.header.clone(),
                digest: Sha256::digest(secret.as_bytes()).into(),
            },
        );
    }
    if expect.is_empty() {
        return Ok(None);
    }
    let cfg = &config.daemon.webhooks;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| WebhookError::Bind {
            addr: cfg.listen,
            message: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| WebhookError::Bind {
        addr: cfg.listen,
        message: e.to_string(),
    })?;
    let connections: Vec<String> = expect.keys().cloned().collect();
    let app = router(Ctx {
        daemon: daemon.clone(),
        expect: Arc::new(expect),
        max_body: cfg.max_body,
    });
    super::control::spawn_until_stopping(daemon, listener, app, "webhook receiver");
    tracing::info!(%addr, connections = ?connections, "webhook receiver listening");
    Ok(Some(addr))
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        // Freshworks lets the admin pick the method: POST and PUT both count.
        .route("/v1/webhooks/{connection}", post(receive).put(receive))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; webhooks go to POST /v1/webhooks/<connection>",
            )
        })
        .with_state(ctx)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn receive(State(ctx): State<Ctx>, Path(connection): Path<String>, req: Request) -> Response {
    let Some(expect) = ctx.expect.get(&connection) else {
        // Names are not listed: the caller is not authenticated yet.
        return error(
            StatusCode::NOT_FOUND,
            "no webhook for this connection; give it a [connections.NAME.webhook] table",
        );
    };
    let given: [u8; 32] = match req.headers().get(expect.header.as_str()) {
        Some(v) => Sha256::digest(v.as_bytes()).into(),
        None => [0; 32],
    };
    // Digests of equal length, compared in constant time: the timing says nothing.
    let ok: bool = given.ct_eq(&expect.digest).into();
    if !ok {
        tracing::warn!(
            connection,
            "webhook refused: missing or wrong secret header"
        );
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong webhook secret; send the secret [connections.NAME.webhook] references in its header",
        );
    }
    // The body is bounded and dropped: a webhook only says "something changed".
    let size = match to_bytes(req.into_body(), ctx.max_body).await {
        Ok(b) => b.len(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "webhook body too large; send fewer fields or raise [daemon.webhooks] max-body",
            );
        }
    };
    match ctx.daemon.hint(&connection) {
        Ok(syncs) => {
            tracing::debug!(connection, bytes = size, "webhook accepted");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "accepted": true, "syncs": syncs.len() })),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
