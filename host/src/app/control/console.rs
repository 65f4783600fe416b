//! The operator console: a web page served on the control API's listener
//! (`/console/`), whose script calls the control API's own JSON endpoints.
//!
//! No build step: the page, its style and its script are plain files embedded in the
//! binary (`console/`). Signing in exchanges the control token for a session: a random
//! id in an `HttpOnly`, `SameSite=Strict` cookie (never the token itself), and a CSRF
//! token the script holds in memory. The control API accepts that cookie instead of the
//! bearer token; a state-changing request with it must also carry the CSRF token in
//! `X-Tandem-CSRF` and come from the console's own origin (`Origin`), so that a page of
//! another origin on the same machine (same-site for the browser) cannot act for the
//! operator. Every answer carries a strict Content-Security-Policy (no inline script),
//! `X-Frame-Options: DENY` and `nosniff`. Documented in `docs/console.md`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "tandem_session";
/// The header carrying the CSRF token of a cookie-authenticated state-changing request.
pub const CSRF_HEADER: &str = "x-tandem-csrf";
/// How long a session lasts after sign-in.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; signing in past it ends the oldest.
const MAX_SESSIONS: usize = 64;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// The policy every answer carries: scripts and styles from the daemon only, no
/// framing, no plugins, requests to the daemon only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

struct Session {
    csrf: String,
    expires: Instant,
}

/// The console's signed-in sessions, by the SHA-256 of their cookie (the cookie value
/// itself is not kept).
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// What a session check found.
pub(crate) enum Access {
    /// No session cookie, or an unknown or expired one.
    None,
    /// A session; its CSRF token.
    Session(String),
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source");
    hex::encode(b)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Sessions {
    fn open(&self) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            digest(&id),
            Session {
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        (id, csrf)
    }

    fn close(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&digest(id));
    }

    /// The session the request's cookie names.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Access {
        let Some(id) = cookie(headers) else {
            return Access::None;
        };
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&digest(&id)) {
            Some(s) if s.expires > Instant::now() => Access::Session(s.csrf.clone()),
            _ => Access::None,
        }
    }
}

/// The session id of the request's cookie.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Why a cookie-authenticated request that changes something is refused, if it is:
/// its `Origin` must be the daemon's own (the `Host` it was sent to), and it must carry
/// the session's CSRF token.
pub(crate) fn forged(method: &Method, headers: &HeaderMap, csrf: &str) -> Option<&'static str> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if !same_origin(headers) {
        return Some(
            "cross-site request refused: its Origin is not this console's; use the console's own page",
        );
    }
    let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    // Digests are compared, so the comparison's timing says nothing about the token.
    if given.is_none_or(|g| digest(g) != digest(csrf)) {
        return Some(
            "missing or wrong CSRF token: reload the console's page (or send Authorization: Bearer <token>)",
        );
    }
    None
}

/// The request's `Origin` is present and names the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(o), Some(h)) => o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .is_some_and(|rest| rest.eq_ignore_ascii_case(h)),
        _ => false,
    }
}

/// Adds the console's security headers to every answer of the listener.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

/// The console's own routes: its page and assets, sign-in and sign-out. They need no
/// credentials (the page holds no data; everything it shows comes from the API).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(
    sessions: std::sync::Arc<Sessions>,
    token_digest: std::sync::Arc<[u8; 32]>,
) -> axum::Router<S> {
    let ctx = Ctx {
        sessions,
        token_digest,
    };
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/console/session", get(session).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .with_state(ctx)
}

#[derive(Clone)]
struct Ctx {
    sessions: std::sync::Arc<Sessions>,
    token_digest: std::sync::Arc<[u8; 32]>,
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(super::api::ErrorReply {
            error: message.into(),
        }),
    )
        .into_response()
}

/// The body of a sign-in.
#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// The answer to a sign-in or a session check: the CSRF token the script sends back.
#[derive(Serialize)]
struct SessionReply {
    csrf: String,
}

async fn session(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    match ctx.sessions.check(&headers) {
        Access::Session(csrf) => Json(SessionReply { csrf }).into_response(),
        Access::None => error(StatusCode::UNAUTHORIZED, "not signed in"),
    }
}

async fn sign_in(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    body: Result<Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Response {
    // A page of another origin must not sign the browser in to a session of its choice.
    if !same_origin(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "cross-site sign-in refused: sign in on the console's own page",
        );
    }
    let Ok(Json(b)) = body else {
        return error(StatusCode::BAD_REQUEST, "send {\"token\": \"…\"}");
    };
    if digest(b.token.trim()) != *ctx.token_digest {
        return error(
            StatusCode::UNAUTHORIZED,
            "wrong token: use the token that [daemon] token references",
        );
    }
    let (id, csrf) = ctx.sessions.open();
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut r = Json(SessionReply { csrf }).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("hex and ASCII"),
    );
    r
}

async fn sign_out(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Access::Session(csrf) = ctx.sessions.check(&headers) {
        if let Some(why) = forged(&Method::POST, &headers, &csrf) {
            return error(StatusCode::FORBIDDEN, why);
        }
        if let Some(id) = cookie(&headers) {
            ctx.sessions.close(&id);
        }
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("tandem_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let s = Sessions::default();
        let (id, csrf) = s.open();
        let with = headers(&[("cookie", &format!("a=b; {COOKIE}={id}"))]);
        assert!(matches!(s.check(&with), Access::Session(c) if c == csrf));
        let other = headers(&[("cookie", &format!("{COOKIE}={}", random_hex()))]);
        assert!(matches!(s.check(&other), Access::None));
        assert!(matches!(s.check(&HeaderMap::new()), Access::None));
        s.close(&id);
        assert!(matches!(s.check(&with), Access::None));
    }

    #[test]
    fn a_state_change_needs_the_own_origin_and_the_csrf_token() {
        let ok = [
            ("host", "127.0.0.1:7380"),
            ("origin", "http://127.0.0.1:7380"),
            (CSRF_HEADER, "t0ken"),
        ];
        assert_eq!(forged(&Method::POST, &headers(&ok), "t0ken"), None);
        assert_eq!(forged(&Method::GET, &HeaderMap::new(), "t0ken"), None);
        let foreign = [
            ("host", "127.0.0.1:7380"),
            ("origin", "http://127.0.0.1:9999"),
            (CSRF_HEADER, "t0ken"),
        ];
        assert!(
            forged(&Method::POST, &headers(&foreign), "t0ken")
                .unwrap()
                .contains("Origin")
        );
        assert!(forged(&Method::POST, &headers(&ok[..2]), "t0ken").is_some());
        assert!(forged(&Method::POST, &headers(&ok), "other").is_some());
        assert!(forged(&Method::POST, &headers(&[ok[0], ok[2]]), "t0ken").is_some());
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::default();
        for _ in 0..MAX_SESSIONS + 5 {
            s.open();
        }
        assert_eq!(s.map.lock().unwrap().len(), MAX_SESSIONS);
    }
}
