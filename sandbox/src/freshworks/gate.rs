//! The gate in front of every Freshworks API route: rate limits (docs/freshworks-api.md §8)
//! then authentication (docs/freshworks-api.md §2.2, §2.3).
//!
//! Every request counts against the account's hourly and per-minute windows, rejected ones
//! included. Over a limit: 429 `{"errors":{"code":429,"message":["Too many requests"]}}` with
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset` (and `Retry-After` only
//! when switched on). The same headers go on other replies while
//! [`Switches::rate_headers_on_success`](super::Switches) is on.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Account;
use super::error::ApiError;
use super::switches::{ResetHeader, Switches, UnauthorizedBody};

/// The user a request acts as (request extension set by the gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User(pub u64);

/// Rate-limit state after counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    /// Limit of the window reported.
    pub limit: u32,
    /// Requests left in it.
    pub remaining: u32,
    /// Seconds until it resets.
    pub reset_in: i64,
    /// Unix time at which it resets.
    pub reset_at: i64,
    /// This request is over the limit.
    pub exceeded: bool,
}

/// Which header carries the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader {
    /// `Authorization: Token token=<key>` (CRM trees).
    Token,
    /// `fm-token: <key>` (standalone Freshmarketer).
    FmToken,
}

enum Auth {
    Ok,
    Restricted,
    Refused,
}

fn key_from(headers: &HeaderMap, which: KeyHeader, sw: &Switches) -> Option<String> {
    match which {
        KeyHeader::FmToken => headers
            .get("fm-token")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_owned()),
        KeyHeader::Token => {
            let v = headers
                .get(axum::http::header::AUTHORIZATION)?
                .to_str()
                .ok()?
                .trim();
            let (scheme, rest) = v.split_once(char::is_whitespace)?;
            if !scheme.eq_ignore_ascii_case("token") {
                return None;
            }
            let rest = rest.trim();
            if let Some(k) = rest.strip_prefix("token=") {
                Some(k.trim().trim_matches('"').to_owned())
            } else if sw.accept_bare_token && !rest.contains('=') {
                Some(rest.to_owned())
            } else {
                None
            }
        }
    }
}

fn authenticate(acct: &Account, headers: &HeaderMap, which: KeyHeader, sw: &Switches) -> Auth {
    let keys = acct.keys();
    match key_from(headers, which, sw) {
        _ if keys.revoked => Auth::Refused,
        Some(k) if !k.is_empty() && k == keys.api_key => Auth::Ok,
        Some(k) if !k.is_empty() && k == keys.restricted_api_key => Auth::Restricted,
        _ => Auth::Refused,
    }
}

/// The 401 reply (shape per switch).
pub fn unauthorized(sw: &Switches) -> Response {
    const MSG: &str = "Incorrect or expired API key";
    let body = match sw.unauthorized_body {
        UnauthorizedBody::Login => json!({"login": "failed", "message": MSG}),
        UnauthorizedBody::Errors => json!({"errors": {"code": 401, "message": [MSG]}}),
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

fn add_rate_headers(resp: &mut Response, r: &RateStatus, sw: &Switches) {
    let reset = match sw.reset_header {
        ResetHeader::Seconds => r.reset_in,
        ResetHeader::Epoch => r.reset_at,
    };
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(r.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(r.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    if r.exceeded && sw.send_retry_after {
        h.insert("retry-after", HeaderValue::from(r.reset_in.max(1)));
    }
}

async fn gate(acct: Arc<Account>, which: KeyHeader, mut req: Request, next: Next) -> Response {
    let sw = acct.switches();
    let rate = acct.rate_tick(&sw);
    let mut resp = if rate.is_some_and(|r| r.exceeded) {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests").into_response()
    } else {
        match authenticate(&acct, req.headers(), which, &sw) {
            Auth::Ok => {
                let owner = acct.with_store(|s, _, _| s.refs.user_ids()[0]);
                req.extensions_mut().insert(User(owner));
                next.run(req).await
            }
            Auth::Restricted => ApiError::forbidden().into_response(),
            Auth::Refused => unauthorized(&sw),
        }
    };
    if let Some(r) = rate
        && (r.exceeded || sw.rate_headers_on_success)
    {
        add_rate_headers(&mut resp, &r, &sw);
    }
    resp
}

/// Gate for the CRM trees (`Authorization: Token token=…`).
pub async fn token_gate(State(acct): State<Arc<Account>>, req: Request, next: Next) -> Response {
    gate(acct, KeyHeader::Token, req, next).await
}

/// Gate for the standalone Freshmarketer tree (`fm-token`).
pub async fn fm_token_gate(State(acct): State<Arc<Account>>, req: Request, next: Next) -> Response {
    gate(acct, KeyHeader::FmToken, req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(v).unwrap(),
        );
        m
    }

    #[test]
    fn token_header_forms() {
        let sw = Switches::default();
        assert_eq!(
            key_from(&h("Token token=abc"), KeyHeader::Token, &sw).as_deref(),
            Some("abc")
        );
        assert_eq!(
            key_from(&h("token token=\"abc\""), KeyHeader::Token, &sw).as_deref(),
            Some("abc")
        );
        assert_eq!(
            key_from(&h("Token abc"), KeyHeader::Token, &sw).as_deref(),
            Some("abc")
        );
        assert_eq!(key_from(&h("Bearer abc"), KeyHeader::Token, &sw), None);
        let strict = Switches {
            accept_bare_token: false,
            ..Switches::default()
        };
        assert_eq!(key_from(&h("Token abc"), KeyHeader::Token, &strict), None);
    }
}
