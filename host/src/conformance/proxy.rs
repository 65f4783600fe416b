//! The fault-injecting proxy the kit starts in front of a target's base URL, so that the
//! error-mapping checks (429 with and without `Retry-After`, 503, a truncated body, a
//! timeout, revoked credentials) run against any API, not only a simulated account.
//!
//! It listens on a free loopback port and forwards each request to the same path under
//! the upstream origin; while a [`ProxyFault`] is set, it answers (or spoils the answer)
//! instead. The kit points a second connection's `base-url` at it, so the plugin's
//! requests, and the credentials the host attaches to them, go through it; nothing leaves
//! the machine but what the plugin would send anyway. The proxy lives as long as the
//! kit's run: dropping it stops the listener and every request in flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

/// Largest body the proxy passes in either direction (the host's own response cap is
/// 16 MiB by default).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// How the proxy answers while the fault is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyFault {
    /// `429 Too Many Requests`, with `Retry-After: N` seconds when given.
    RateLimited {
        /// The `Retry-After` header's seconds, or none.
        retry_after: Option<u32>,
    },
    /// `503 Service Unavailable`.
    Unavailable,
    /// The upstream's answer with its body cut in half (a connection that dropped).
    Truncated,
    /// No answer for this long, then `504`: longer than the client waits.
    Stall(Duration),
    /// The request goes upstream with this header's value replaced by a wrong one: the
    /// app answers as it does to revoked credentials.
    WrongCredential(HeaderName),
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The base URL is not an absolute `http(s)` URL.
    #[error("the base URL `{0}` is not an absolute http(s) URL")]
    BaseUrl(String),
    /// The listener could not start.
    #[error("cannot start the kit's fault proxy on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    /// The forwarding client could not be built.
    #[error("cannot build the kit's fault proxy client: {0}")]
    Client(String),
}

struct Shared {
    upstream: url::Url,
    client: reqwest::Client,
    fault: Mutex<Option<ProxyFault>>,
    requests: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    path: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl FaultProxy {
    /// Starts a proxy for `base_url` (its origin; its path is kept in [`FaultProxy::url`]).
    pub async fn start(base_url: &str) -> Result<Self, ProxyError> {
        let parsed = url::Url::parse(base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| ProxyError::BaseUrl(base_url.to_owned()))?;
        let client = reqwest::Client::builder()
            // The plugin sees the app's redirects, as without the proxy.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ProxyError::Client(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(ProxyError::Listen)?;
        let addr = listener.local_addr().map_err(ProxyError::Listen)?;
        let shared = Arc::new(Shared {
            upstream: parsed.clone(),
            client,
            fault: Mutex::new(None),
            requests: AtomicU64::new(0),
        });
        let (stop, mut stopped) = watch::channel(false);
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        });
        Ok(Self {
            addr,
            path: parsed.path().to_owned(),
            shared,
            stop,
        })
    }

    /// The base URL to give the plugin: the proxy's origin, the upstream's path.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// Sets (or, with `None`, clears) the fault every request gets until changed.
    pub fn set(&self, fault: Option<ProxyFault>) {
        *lock(&self.shared.fault) = fault;
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Headers that describe one hop's connection, not the message (RFC 9110 §7.6.1), and the
/// ones the client and server set themselves.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let fault = lock(&shared.fault).clone();
    match &fault {
        Some(ProxyFault::RateLimited { retry_after }) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                [("content-type", "application/json")],
                r#"{"message":"Too many requests (injected by tandem plugin test)"}"#,
            )
                .into_response();
            if let Some(s) = retry_after {
                r.headers_mut().insert("retry-after", HeaderValue::from(*s));
            }
            return r;
        }
        Some(ProxyFault::Unavailable) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("content-type", "application/json")],
                r#"{"message":"Service unavailable (injected by tandem plugin test)"}"#,
            )
                .into_response();
        }
        Some(ProxyFault::Stall(d)) => {
            tokio::time::sleep(*d).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        _ => {}
    }
    let mut target = shared.upstream.clone();
    target.set_path(uri.path());
    target.set_query(uri.query());
    let mut request = shared.client.request(method, target.as_str());
    for (name, value) in &headers {
        if hop_by_hop(name) {
            continue;
        }
        let value = match &fault {
            Some(ProxyFault::WrongCredential(h)) if h == name => {
                HeaderValue::from_static("Bearer tandem-kit-revoked-credential")
            }
            _ => value.clone(),
        };
        request = request.header(name, value);
    }
    let upstream = match request.body(body).send().await {
        Ok(r) => r,
        // Without the URL: its query may hold what an auth profile put there.
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!(
                    "the kit's proxy could not reach the base URL: {}",
                    e.without_url()
                ),
            )
                .into_response();
        }
    };
    let status = upstream.status();
    let mut out = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !hop_by_hop(name) {
            out.append(name.clone(), value.clone());
        }
    }
    let mut bytes = match upstream.bytes().await {
        Ok(b) if b.len() <= MAX_BODY => b,
        Ok(_) => return StatusCode::BAD_GATEWAY.into_response(),
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("the base URL's answer broke off: {}", e.without_url()),
            )
                .into_response();
        }
    };
    if fault == Some(ProxyFault::Truncated) {
        bytes = bytes.slice(..bytes.len() / 2);
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = out;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes the path it got, for the right bearer token only.
    async fn upstream() -> String {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(|uri: Uri, headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if auth != "Bearer right" {
                return (StatusCode::UNAUTHORIZED, "{}".to_owned()).into_response();
            }
            (
                [("content-type", "application/json")],
                format!(r#"{{"path":"{}","padding":"0123456789"}}"#, uri),
            )
                .into_response()
        });
        // Serves until the test's runtime ends with the test.
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/api/v2")
    }

    #[tokio::test]
    async fn forwards_and_injects_each_fault() {
        let base = upstream().await;
        let proxy = FaultProxy::start(&base).await.unwrap();
        assert!(proxy.url().ends_with("/api/v2"), "{}", proxy.url());
        let client = reqwest::Client::new();
        let get = |fault: Option<ProxyFault>| {
            proxy.set(fault);
            client
                .get(format!("{}/contacts?page=2", proxy.url()))
                .header("authorization", "Bearer right")
                .timeout(Duration::from_millis(500))
                .send()
        };
        let r = get(None).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"path":"/api/v2/contacts?page=2","padding":"0123456789"}"#
        );
        let r = get(Some(ProxyFault::RateLimited {
            retry_after: Some(7),
        }))
        .await
        .unwrap();
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers()["retry-after"].to_str().unwrap()
            ),
            (429, "7")
        );
        let r = get(Some(ProxyFault::RateLimited { retry_after: None }))
            .await
            .unwrap();
        assert!(r.status() == 429 && r.headers().get("retry-after").is_none());
        assert_eq!(
            get(Some(ProxyFault::Unavailable)).await.unwrap().status(),
            503
        );
        let cut = get(Some(ProxyFault::Truncated)).await.unwrap();
        assert_eq!(cut.status(), 200);
        let text = cut.text().await.unwrap();
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_err(),
            "{text}"
        );
        let r = get(Some(ProxyFault::WrongCredential(HeaderName::from_static(
            "authorization",
        ))))
        .await
        .unwrap();
        assert_eq!(
            r.status(),
            401,
            "the upstream refused the spoiled credential"
        );
        let stalled = get(Some(ProxyFault::Stall(Duration::from_secs(5)))).await;
        assert!(stalled.unwrap_err().is_timeout());
        assert_eq!(proxy.requests(), 7);
        assert!(FaultProxy::start("not a url").await.is_err());
    }
}
