//! Fault injection for the simulated APIs, as an axum middleware.
//!
//! A [`Faults`] holds an ordered list of [`FaultRule`]s. Each API request is checked against
//! the rules in order: a rule matches on an optional method and an optional path prefix, may
//! let its first `skip` matches through, and fires `count` times (or forever when `count` is
//! `null`/`None`) before it is removed. [`FaultKind::Latency`] rules add delay and keep
//! looking; the first other matching rule decides the request.
//!
//! Kinds: a status reply (optional body and headers, e.g. `Retry-After`) instead of the real
//! handler; added latency; a truncated body (valid HTTP with a cut body, or a connection that
//! drops after part of the declared length); a dropped connection before any reply; and
//! **after-commit** faults where the real handler runs (so the write is committed) and its reply
//! is then replaced by an error status or a dropped connection.
//!
//! Install with [`crate::common::instrument`]; control endpoints live in
//! [`crate::common::control`] (`/_sandbox/faults`). The control API itself is never faulted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Largest body the truncation fault will buffer.
const MAX_BUFFER: usize = 64 * 1024 * 1024;

fn one() -> Option<u32> {
    Some(1)
}

/// One fault rule (also the JSON accepted by `POST /_sandbox/faults`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    /// Assigned by [`Faults::add`]; ignored on input.
    #[serde(default)]
    pub id: u64,
    /// Only requests with this method (case-insensitive), if set.
    #[serde(default)]
    pub method: Option<String>,
    /// Only requests whose path starts with this, if set.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Let this many matching requests through before firing.
    #[serde(default)]
    pub skip: u32,
    /// How many times the rule fires; `None` (JSON `null`) = until removed. Default 1.
    #[serde(default = "one")]
    pub count: Option<u32>,
    /// What happens.
    pub fault: FaultKind,
}

/// What a fault does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Reply with `status` (and `body`, `content_type`, `headers`) without running the handler.
    Status {
        status: u16,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        content_type: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// Wait `ms` milliseconds (real time) before handling; other rules still apply.
    Latency { ms: u64 },
    /// Run the handler, then send only the first `keep_bytes` of its body (default: half).
    /// With `declare_full_length` the `Content-Length` announces the full body and the
    /// connection drops early (a transport error for the client); otherwise the short body is a
    /// complete, well-formed HTTP reply whose payload is cut.
    Truncate {
        #[serde(default)]
        keep_bytes: Option<usize>,
        #[serde(default)]
        declare_full_length: bool,
    },
    /// Run the handler (the write commits), then reply with `status` instead — or drop the
    /// connection when `status` is `None`.
    AfterCommit {
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        body: Option<String>,
    },
    /// Drop the connection without running the handler.
    Drop,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    rules: Vec<FaultRule>,
    fired: u64,
}

/// The shared fault table of one account (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<Inner>>,
}

/// What the middleware should do for one request, decided under the lock.
#[derive(Debug, Default)]
struct Decision {
    delay_ms: u64,
    terminal: Option<FaultKind>,
}

impl Faults {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a rule; returns its id.
    pub fn add(&self, mut rule: FaultRule) -> u64 {
        let mut g = self.lock();
        g.next_id += 1;
        rule.id = g.next_id;
        let id = rule.id;
        g.rules.push(rule);
        id
    }

    /// Remove one rule; false if it was not there (already spent or never added).
    pub fn remove(&self, id: u64) -> bool {
        let mut g = self.lock();
        let before = g.rules.len();
        g.rules.retain(|r| r.id != id);
        g.rules.len() != before
    }

    /// Remove every rule.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// The rules still armed (with their remaining `skip`/`count`).
    pub fn list(&self) -> Vec<FaultRule> {
        self.lock().rules.clone()
    }

    /// How many faults have fired since creation (latency included).
    pub fn fired(&self) -> u64 {
        self.lock().fired
    }

    fn decide(&self, method: &str, path: &str) -> Decision {
        let mut g = self.lock();
        let mut d = Decision::default();
        let mut fired = 0;
        let mut i = 0;
        while i < g.rules.len() {
            let r = &mut g.rules[i];
            let matches = r
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p));
            if !matches {
                i += 1;
                continue;
            }
            if r.skip > 0 {
                r.skip -= 1;
                i += 1;
                continue;
            }
            let kind = r.fault.clone();
            let spent = match &mut r.count {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n == 0
                }
                None => false,
            };
            if spent {
                g.rules.remove(i);
            } else {
                i += 1;
            }
            fired += 1;
            if let FaultKind::Latency { ms } = kind {
                d.delay_ms = d.delay_ms.saturating_add(ms);
                continue;
            }
            d.terminal = Some(kind);
            break;
        }
        g.fired += fired;
        d
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The middleware: `axum::middleware::from_fn_with_state(faults, fault_middleware)`.
pub async fn fault_middleware(State(faults): State<Faults>, req: Request, next: Next) -> Response {
    let decision = faults.decide(req.method().as_str(), req.uri().path());
    if decision.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.delay_ms)).await;
    }
    match decision.terminal {
        None => next.run(req).await,
        Some(FaultKind::Latency { .. }) => next.run(req).await,
        Some(FaultKind::Status {
            status,
            body,
            content_type,
            headers,
        }) => status_reply(status, body, content_type, &headers),
        Some(FaultKind::Drop) => dropped_connection(None),
        Some(FaultKind::AfterCommit { status, body }) => {
            let committed = next.run(req).await;
            drop(committed);
            match status {
                Some(s) => status_reply(s, body, None, &BTreeMap::new()),
                None => dropped_connection(None),
            }
        }
        Some(FaultKind::Truncate {
            keep_bytes,
            declare_full_length,
        }) => {
            let resp = next.run(req).await;
            truncate(resp, keep_bytes, declare_full_length).await
        }
    }
}

fn status_reply(
    status: u16,
    body: Option<String>,
    content_type: Option<String>,
    headers: &BTreeMap<String, String>,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = body.unwrap_or_default();
    let mut resp = (status, body.clone()).into_response();
    let h = resp.headers_mut();
    h.remove(header::CONTENT_TYPE);
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_TYPE, ct);
    } else if looks_like_json(&body) {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Bodies given without a content type are labelled JSON when they look like it.
fn looks_like_json(body: &str) -> bool {
    let t = body.trim_start();
    t.starts_with('{') || t.starts_with('[')
}

/// A response whose body fails after `prefix` bytes: hyper aborts the connection, so the client
/// sees a reset / incomplete message instead of a reply.
fn dropped_connection(prefix: Option<(bytes::Bytes, usize, Response)>) -> Response {
    let err = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "sandbox fault: drop");
    match prefix {
        None => {
            let stream = futures::stream::iter(vec![Err::<bytes::Bytes, _>(err())]);
            Response::new(Body::from_stream(stream))
        }
        Some((kept, full_len, template)) => {
            let (mut parts, _) = template.into_parts();
            parts.headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from_str(&full_len.to_string())
                    .unwrap_or(HeaderValue::from_static("0")),
            );
            let stream = futures::stream::iter(vec![Ok(kept), Err(err())]);
            Response::from_parts(parts, Body::from_stream(stream))
        }
    }
}

async fn truncate(resp: Response, keep: Option<usize>, declare_full: bool) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(full) = axum::body::to_bytes(body, MAX_BUFFER).await else {
        return dropped_connection(None);
    };
    let keep = keep.unwrap_or(full.len() / 2).min(full.len());
    let kept = full.slice(..keep);
    if declare_full {
        let template = Response::from_parts(parts, Body::empty());
        return dropped_connection(Some((kept, full.len(), template)));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: Option<&str>, skip: u32, count: Option<u32>, kind: FaultKind) -> FaultRule {
        FaultRule {
            id: 0,
            method: None,
            path_prefix: prefix.map(str::to_owned),
            skip,
            count,
            fault: kind,
        }
    }

    fn status(s: u16) -> FaultKind {
        FaultKind::Status {
            status: s,
            body: None,
            content_type: None,
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn rules_fire_count_times_after_skip_then_vanish() {
        let f = Faults::new();
        f.add(rule(Some("/a"), 1, Some(2), status(503)));
        assert!(f.decide("GET", "/b").terminal.is_none());
        assert!(f.decide("GET", "/a/1").terminal.is_none(), "skipped");
        assert_eq!(f.decide("GET", "/a/1").terminal, Some(status(503)));
        assert_eq!(f.decide("POST", "/a").terminal, Some(status(503)));
        assert!(f.decide("GET", "/a").terminal.is_none());
        assert!(f.list().is_empty());
        assert_eq!(f.fired(), 2);
    }

    #[test]
    fn latency_stacks_and_unlimited_rules_stay() {
        let f = Faults::new();
        f.add(rule(None, 0, None, FaultKind::Latency { ms: 5 }));
        let mut m = rule(None, 0, Some(1), status(500));
        m.method = Some("post".into());
        f.add(m);
        let d = f.decide("GET", "/x");
        assert_eq!((d.delay_ms, d.terminal), (5, None));
        let d = f.decide("POST", "/x");
        assert_eq!((d.delay_ms, d.terminal), (5, Some(status(500))));
        assert_eq!(f.list().len(), 1);
        let id = f.list()[0].id;
        assert!(f.remove(id));
        assert!(!f.remove(id));
    }

    #[test]
    fn rule_json_defaults() {
        let r: FaultRule = serde_json::from_str(r#"{"fault":{"kind":"drop"}}"#).unwrap();
        assert_eq!(r.count, Some(1));
        let r: FaultRule =
            serde_json::from_str(r#"{"count":null,"fault":{"kind":"latency","ms":3}}"#).unwrap();
        assert_eq!(r.count, None);
    }
}
