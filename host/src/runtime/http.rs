//! The `http` host interface: buffered requests sent by the host on the plugin's behalf.
//!
//! For every request and every redirect hop, in order:
//! 1. the URL must be `http(s)` and match both the manifest's and the operator's origins;
//! 2. an IP literal must not be in a blocked range;
//! 3. the optional [`RequestBudget`] is awaited (and sees every response's status and
//!    headers, so that it can read the app's rate-limit headers);
//! 4. names are resolved through the injected [`Resolve`]r and **every** resolved address
//!    must pass the same range check; the connection dials exactly those addresses;
//! 5. credentials are attached if the URL matches the auth profile and the operator's
//!    auth origins (guest-set `Authorization`-like headers are always dropped);
//! 6. redirects are followed by hand (never by reqwest), each hop re-checked from 1; a
//!    URL carrying credentials (`http://user:pass@host/`) is refused on every hop, since
//!    the client would turn them into an `Authorization: Basic` header;
//! 7. the guest's timeout may shorten the host's, never lengthen it; request and
//!    response bodies are capped; credential-bearing response headers are removed and
//!    every secret the host injects is scrubbed from response headers and bodies
//!    (`runtime::scrub`);
//! 8. the OAuth2 token endpoint is the host's: plugins may not call it, and it must be one
//!    the operator approved
//!    ([`approve_manifest_token_url`](super::credentials::approve_manifest_token_url)). Refreshes are single-flight, at most
//!    one per [`TOKEN_REFRESH_FLOOR`] unless the token expired.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::bindings::http::{Host, HttpError, Method, Request, Response};
use super::capabilities::{AddressPolicy, EgressPolicy};
use super::credentials::{Credentials, Secret};
use super::limits::ConnectorLimits;
use super::manifest::AuthProfile;
use super::scrub::Scrubber;
use super::state::HostState;

/// Shortest time between two refreshes of a connection's OAuth2 token, unless the token
/// expired: a 401 storm (a revoked token, an app that answers 401 to everything) costs
/// one refresh, not one per request.
pub const TOKEN_REFRESH_FLOOR: Duration = Duration::from_secs(30);

/// How long an unused connection stays open for the next request. A run's requests
/// follow each other closely, and syncs of one host that fall due together share
/// connections; between one sync's polls (minutes apart) an idle connection would only
/// hold its buffers (up to hundreds of KB after a page of records), for thousands of
/// account hosts. reqwest's default keeps them 90 s.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// Resolves host names for plugin requests. Inject one in tests to map names to
/// chosen addresses; [`SystemResolver`] uses the operating system.
pub trait Resolve: Send + Sync + 'static {
    /// Every address `host` resolves to.
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver (through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A budget awaited before each outbound request of a connection (the scheduler plugs
/// in a per-account rate limiter).
pub trait RequestBudget: Send + Sync + 'static {
    /// Resolves when the request to `url` may go out.
    fn acquire<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, ()>;

    /// Sees the status and headers of every response to a request it let out (before the
    /// plugin does, credential headers included: they must not be kept). Default: nothing.
    fn observe(&self, _url: &Url, _status: u16, _headers: &HeaderMap) {}
}

/// Sees every request a connection's plugin sends past the host's own checks, and may
/// answer it instead of the network: the conformance kit records a run's exchanges with
/// it and replays them without a server (`tandem plugin test --record` / `--replay`,
/// `conformance::recording`). It sits at the capability boundary, so it sees exactly what
/// the plugin sent and got: the answer after redirects, credential headers dropped and
/// secrets scrubbed, and transport failures (timeouts) as the plugin saw them.
pub(crate) trait HttpTap: Send + Sync + 'static {
    /// The answer to give instead of sending (replay); `None` sends the request.
    fn answer(&self, request: &TappedRequest<'_>) -> Option<TapAnswer>;

    /// What the plugin got for a request that was sent (record). `oauth_refused` is why
    /// the token endpoint last refused the connection's refresh token, if it did: it is
    /// part of what the plugin's `unauthorized` errors say.
    fn record(
        &self,
        request: &TappedRequest<'_>,
        outcome: &Result<Response, HttpError>,
        oauth_refused: Option<&str>,
    );
}

/// A plugin request as an [`HttpTap`] sees it: no headers (the guest's carry nothing the
/// app's answer depends on in a replay, and the host's carry credentials).
pub(crate) struct TappedRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) url: &'a Url,
    pub(crate) body: Option<&'a [u8]>,
}

/// A replayed answer, and the token endpoint's refusal at that point of the recording.
pub(crate) struct TapAnswer {
    pub(crate) outcome: Result<Response, HttpError>,
    pub(crate) oauth_refused: Option<String>,
}

/// Resolver error raised when a name resolves to a blocked address.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to a blocked address: {reason}")]
struct BlockedAddress {
    host: String,
    reason: String,
}

/// reqwest resolver: the injected resolver, then the address policy on every answer.
struct CheckedResolver {
    inner: Arc<dyn Resolve>,
    policy: AddressPolicy,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = self.inner.clone();
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = inner.resolve(&host).await?;
            if ips.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            // One blocked answer refuses the name: mixing public and private answers is
            // how DNS rebinding gets in.
            for ip in &ips {
                // Not boxed here: `?` boxes it once, so the error chain can downcast it.
                policy.check(*ip).map_err(|reason| BlockedAddress {
                    host: host.clone(),
                    reason: reason.to_string(),
                })?;
            }
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Request headers a plugin may not set: credentials and hop-by-hop framing.
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// Response headers a plugin never sees.
const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "set-cookie",
    "set-cookie2",
    "proxy-authenticate",
];

/// How the host authenticates this connection's requests.
// One per connection, never held in bulk: boxing the OAuth2 state would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Auth {
    None,
    Header {
        name: HeaderName,
        value: HeaderValue,
    },
    OAuth2(OAuth2),
}

struct OAuth2 {
    token_url: Result<Url, String>,
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    scopes: Vec<String>,
    /// The token state, shared by every context of the runtime with the same credentials
    /// (see [`TokenCache`]).
    shared: Arc<TokenShared>,
    /// The token generation this context's scrubber has learnt: a token another context
    /// obtained is added to this context's scrubber before this context first sends it.
    scrubbed: std::sync::atomic::AtomicU64,
}

/// One OAuth2 token and why it was last refused, shared per credentials.
#[derive(Default)]
struct TokenShared {
    /// Held while refreshing, so that concurrent requests wait for one refresh.
    state: tokio::sync::Mutex<TokenState>,
    /// Why the token endpoint last refused the refresh token (its OAuth error code and
    /// description, never a token), until a refresh succeeds: a 401 the plugin then gets
    /// is explained by it, not by "wrong key" (see [`HttpCtx::oauth_refusal`]).
    refused: std::sync::Mutex<Option<String>>,
}

#[derive(Default)]
struct TokenState {
    token: Option<CachedToken>,
    /// Bumped by every token obtained; a 401 invalidates only the token it was sent with.
    generation: u64,
    /// When the token endpoint was last asked (successfully or not).
    last_refresh: Option<Instant>,
}

/// Token states by credentials, shared by a runtime's connection contexts. The host
/// opens a connection once to check it and again for each run; without sharing, each
/// of those refreshed the token (two refreshes per CLI run, one per daemon poll) although
/// it lives an hour. Tokens stay in host memory only (never in the store or a plugin),
/// keyed by a digest of the credentials, so a changed credential gets its own token.
#[derive(Default)]
pub(crate) struct TokenCache(
    std::sync::Mutex<std::collections::HashMap<[u8; 32], Arc<TokenShared>>>,
);

impl TokenCache {
    fn slot(&self, key: [u8; 32]) -> Arc<TokenShared> {
        let mut slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(key).or_default().clone()
    }
}

struct CachedToken {
    value: HeaderValue,
    /// The access token itself, for the scrubber of a context that did not obtain it.
    access: Secret,
    expires: Instant,
}

/// Why a connection's HTTP context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    /// The manifest's auth profile and the connection's credentials do not fit.
    #[error("{0}")]
    Credentials(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Built HTTP clients, one per address policy and connect timeout, shared by every
/// connection of a runtime. Building a client parses the system's root certificates
/// (measured at ~7 % of host CPU when 1,000 syncs start), and a shared client keeps its
/// connection pool and TLS sessions from one run to the next. Sharing is safe: a
/// client carries no credentials (they are added per request), and connections are
/// only dialled through the resolver check of the key's policy.
#[derive(Default)]
pub(crate) struct ClientCache(
    std::sync::Mutex<std::collections::HashMap<(AddressPolicy, Duration), reqwest::Client>>,
);

impl ClientCache {
    /// The client for `addresses` and `connect_timeout`, built on first use.
    pub(crate) fn get(
        &self,
        resolver: &Arc<dyn Resolve>,
        addresses: AddressPolicy,
        connect_timeout: Duration,
    ) -> Result<reqwest::Client, HttpSetupError> {
        let mut clients = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&(addresses, connect_timeout)) {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver {
                inner: resolver.clone(),
                policy: addresses,
            }))
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpSetupError::Client(e.to_string()))?;
        clients.insert((addresses, connect_timeout), client.clone());
        Ok(client)
    }
}

/// Host-side HTTP state of one connection, shared by all its calls.
pub(crate) struct HttpCtx {
    client: reqwest::Client,
    policy: EgressPolicy,
    auth: Auth,
    /// Header name the auth profile writes (dropped from guest requests too).
    auth_header: Option<HeaderName>,
    budget: Option<Arc<dyn RequestBudget>>,
    request_bytes: usize,
    response_bytes: usize,
    timeout: Duration,
    max_redirects: u32,
    scrub: Arc<Scrubber>,
    refresh_floor: Duration,
    tap: Option<Arc<dyn HttpTap>>,
}

impl HttpCtx {
    pub(crate) fn new(
        policy: EgressPolicy,
        profile: Option<&AuthProfile>,
        credentials: &Credentials,
        settings: &std::collections::BTreeMap<String, String>,
        client: reqwest::Client,
        budget: Option<Arc<dyn RequestBudget>>,
        limits: &ConnectorLimits,
    ) -> Result<Self, HttpSetupError> {
        let (auth, auth_header) = build_auth(profile, credentials, settings, &policy)?;
        let secrets = secrets_of(credentials, &auth);
        let scrub = Arc::new(Scrubber::new(secrets.iter().map(String::as_str)));
        Ok(Self {
            client,
            policy,
            auth,
            auth_header,
            budget,
            request_bytes: limits.http_request_bytes,
            response_bytes: limits.http_response_bytes,
            timeout: limits.http_timeout,
            max_redirects: limits.max_redirects,
            scrub,
            refresh_floor: TOKEN_REFRESH_FLOOR,
            tap: None,
        })
    }

    /// Records or answers this connection's requests through `tap`.
    pub(crate) fn with_tap(mut self, tap: Option<Arc<dyn HttpTap>>) -> Self {
        self.tap = tap;
        self
    }

    /// The scrubber of this connection's secrets (shared with log, storage and errors).
    pub(crate) fn scrubber(&self) -> &Arc<Scrubber> {
        &self.scrub
    }

    /// The origins credentials are attached to, for display.
    pub(crate) fn auth_origins(&self) -> Vec<String> {
        self.policy.describe_auth()
    }

    /// Refused when `url` is a URL the plugin may not call whatever the grant: one with
    /// credentials in it, or the host's own token endpoint.
    fn check_hop(&self, url: &Url) -> Result<(), HttpError> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::Denied(
                "credentials in the URL are not allowed (the host attaches credentials)".into(),
            ));
        }
        if let Auth::OAuth2(OAuth2 {
            token_url: Ok(token),
            ..
        }) = &self.auth
            && url.origin() == token.origin()
            && url
                .path()
                .trim_end_matches('/')
                .eq_ignore_ascii_case(token.path().trim_end_matches('/'))
        {
            return Err(HttpError::Denied(
                "this is the host's OAuth2 token endpoint; plugins may not call it".into(),
            ));
        }
        Ok(())
    }

    /// Why the OAuth2 token endpoint refused this connection's refresh token the last
    /// time it was asked (e.g. `invalid_grant (Token has been expired or revoked.)`), if it
    /// did and no refresh succeeded since.
    pub(crate) fn oauth_refusal(&self) -> Option<String> {
        match &self.auth {
            Auth::OAuth2(oauth) => oauth
                .shared
                .refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            _ => None,
        }
    }

    /// Shares the OAuth2 access token with every context of `cache` that has the same
    /// credentials (token endpoint, client, refresh token, scopes).
    pub(crate) fn share_tokens(mut self, cache: &TokenCache) -> Self {
        use sha2::{Digest, Sha256};
        if let Auth::OAuth2(oauth) = &mut self.auth {
            let mut digest = Sha256::new();
            let url = match &oauth.token_url {
                Ok(url) => url.as_str().to_owned(),
                Err(e) => e.clone(),
            };
            for part in [
                url.as_str(),
                oauth.client_id.as_str(),
                oauth.client_secret.expose(),
                oauth.refresh_token.expose(),
                &oauth.scopes.join(" "),
            ] {
                digest.update((part.len() as u64).to_le_bytes());
                digest.update(part.as_bytes());
            }
            oauth.shared = cache.slot(digest.finalize().into());
        }
        self
    }

    /// The effective origins, for display.
    pub(crate) fn origins(&self) -> Vec<String> {
        self.policy.describe()
    }

    /// Sends one guest request under every rule of this module.
    pub(crate) async fn send(&self, req: Request) -> Result<Response, HttpError> {
        let url =
            Url::parse(&req.url).map_err(|e| HttpError::InvalidRequest(format!("bad URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!(
                "scheme `{}` is not supported; use http or https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::InvalidRequest(
                "credentials in the URL are not allowed".into(),
            ));
        }
        let body = req.body;
        if let Some(b) = &body
            && b.len() > self.request_bytes
        {
            return Err(HttpError::TooLarge(self.request_bytes as u64));
        }
        let timeout = req
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()).min(self.timeout))
            .unwrap_or(self.timeout);
        let deadline = Instant::now() + timeout;
        let headers = self.guest_headers(&req.headers)?;
        let method = to_reqwest_method(req.method);
        self.check_hop(&url)?;
        self.policy
            .check_url(&url)
            .map_err(|e| HttpError::Denied(e.to_string()))?;
        let Some(tap) = &self.tap else {
            return self.exchange(method, url, &headers, body, deadline).await;
        };
        let tapped = TappedRequest {
            method: method.as_str(),
            url: &url,
            body: body.as_deref(),
        };
        if let Some(answer) = tap.answer(&tapped) {
            if let Auth::OAuth2(oauth) = &self.auth {
                *oauth
                    .shared
                    .refused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = answer.oauth_refused;
            }
            return answer.outcome;
        }
        let outcome = self
            .exchange(
                method.clone(),
                url.clone(),
                &headers,
                body.clone(),
                deadline,
            )
            .await;
        tap.record(&tapped, &outcome, self.oauth_refusal().as_deref());
        outcome
    }

    /// Sends a checked request and follows its redirects, each hop checked again.
    async fn exchange(
        &self,
        mut method: reqwest::Method,
        mut url: Url,
        headers: &HeaderMap,
        mut body: Option<Vec<u8>>,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        let mut hops = 0;
        loop {
            let response = self
                .send_authenticated(&method, &url, headers, body.as_ref(), deadline)
                .await?;
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response.headers().get(reqwest::header::LOCATION)
            {
                if hops >= self.max_redirects {
                    return Err(HttpError::Transport(format!(
                        "more than {} redirects",
                        self.max_redirects
                    )));
                }
                hops += 1;
                let location = location.to_str().map_err(|_| {
                    HttpError::Transport("redirect with a non-text Location".into())
                })?;
                url = url.join(location).map_err(|e| {
                    HttpError::Transport(format!("redirect to an invalid URL: {e}"))
                })?;
                let to_get = status == reqwest::StatusCode::SEE_OTHER
                    || (matches!(status.as_u16(), 301 | 302) && method == reqwest::Method::POST);
                if to_get && method != reqwest::Method::HEAD {
                    method = reqwest::Method::GET;
                    body = None;
                }
                self.check_hop(&url)?;
                self.policy
                    .check_url(&url)
                    .map_err(|e| HttpError::Denied(e.to_string()))?;
                continue;
            }
            return self.read_response(response).await;
        }
    }

    /// The guest's headers, minus credentials and framing; invalid ones refused.
    fn guest_headers(&self, headers: &[(String, String)]) -> Result<HeaderMap, HttpError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::InvalidRequest(format!("bad header name `{name}`")))?;
            if DROPPED_REQUEST_HEADERS.contains(&name.as_str())
                || self.auth_header.as_ref() == Some(&name)
            {
                tracing::debug!(header = %name, "plugin-set header dropped");
                continue;
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| HttpError::InvalidRequest(format!("bad value for header `{name}`")))?;
            map.append(name, value);
        }
        Ok(map)
    }

    /// Sends one hop with credentials when they apply; on a 401 with an OAuth2 token,
    /// retries once with a fresh token (refreshed by whichever request sees the 401
    /// first, at most once per refresh floor).
    async fn send_authenticated(
        &self,
        method: &reqwest::Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<&Vec<u8>>,
        deadline: Instant,
    ) -> Result<reqwest::Response, HttpError> {
        let applies = self.policy.auth_applies(url);
        let mut retried = false;
        loop {
            let mut headers = headers.clone();
            let mut sent_generation = None;
            match (&self.auth, applies) {
                (Auth::Header { name, value }, true) => {
                    headers.insert(name.clone(), value.clone());
                }
                (Auth::OAuth2(oauth), true) => {
                    if let Some((token, generation)) = self.bearer(oauth, deadline).await? {
                        headers.insert(reqwest::header::AUTHORIZATION, token);
                        sent_generation = Some(generation);
                    }
                }
                _ => {}
            }
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers);
            if let Some(body) = body {
                request = request.body(body.clone());
            }
            let response = self.execute(request, url, deadline).await?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED
                && applies
                && !retried
                && let Auth::OAuth2(oauth) = &self.auth
            {
                retried = true;
                let mut state = oauth.shared.state.lock().await;
                if state.generation != sent_generation.unwrap_or(0) && state.token.is_some() {
                    // Another request refreshed meanwhile: retry with its token.
                    continue;
                }
                let recent = state
                    .last_refresh
                    .is_some_and(|t| t.elapsed() < self.refresh_floor);
                if state.token.is_some() && !recent {
                    // The token may have been revoked early: drop it and retry once.
                    state.token = None;
                    continue;
                }
                // Refreshed moments ago and still refused: the 401 is the app's answer.
            }
            return Ok(response);
        }
    }

    /// Awaits the budget, then sends with the remaining time.
    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
        deadline: Instant,
    ) -> Result<reqwest::Response, HttpError> {
        if let Some(budget) = &self.budget {
            budget.acquire(url).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HttpError::Timeout);
        }
        let response = request
            .timeout(remaining)
            .send()
            .await
            .map_err(map_reqwest_error)?;
        // Rate headers count only from the app's own origins (the auth profile's): any
        // other origin could make the account pause by sending a low count.
        if let Some(budget) = &self.budget
            && self.policy.auth_applies(url)
        {
            budget.observe(url, response.status().as_u16(), response.headers());
        }
        Ok(response)
    }

    /// A bearer header and its generation, refreshing through the token endpoint when
    /// needed. `None` when there is no token and the endpoint refused one (or was asked
    /// moments ago): the request then goes out without it and the app's 401 tells the
    /// plugin its credentials are wrong.
    async fn bearer(
        &self,
        oauth: &OAuth2,
        deadline: Instant,
    ) -> Result<Option<(HeaderValue, u64)>, HttpError> {
        let mut state = oauth.shared.state.lock().await;
        if let Some(token) = state.token.as_ref()
            && token.expires > Instant::now()
        {
            self.learn(oauth, state.generation, token);
            return Ok(Some((token.value.clone(), state.generation)));
        }
        // An expired token is always refreshed; a refused or dropped one waits the floor.
        let recent = state
            .last_refresh
            .is_some_and(|t| t.elapsed() < self.refresh_floor);
        if recent && state.token.is_none() {
            return Ok(None);
        }
        state.last_refresh = Some(Instant::now());
        state.token = None;
        let token_url = oauth.token_url.clone().map_err(HttpError::Denied)?;
        // The token endpoint is the host's own call, but it still may not reach
        // blocked addresses (the resolver checks names; literals are checked here).
        if let Some(ip) = literal_ip(&token_url) {
            self.policy
                .addresses
                .check(ip)
                .map_err(|e| HttpError::Denied(format!("token endpoint: {e}")))?;
        }
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", oauth.refresh_token.expose().to_owned()),
            ("client_id", oauth.client_id.clone()),
            ("client_secret", oauth.client_secret.expose().to_owned()),
        ];
        if !oauth.scopes.is_empty() {
            form.push(("scope", oauth.scopes.join(" ")));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request = self
            .client
            .post(token_url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        let response = self
            .execute(request, &token_url, deadline)
            .await
            .map_err(|e| match e {
                HttpError::Transport(m) => HttpError::Transport(format!("token endpoint: {m}")),
                other => other,
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = read_capped(response, 16 * 1024).await.unwrap_or_default();
            // The description is the endpoint's text: it may echo what it was sent.
            let reason = self.scrub.text(oauth_error(status.as_u16(), &body));
            tracing::warn!(status = %status, reason = %reason, "OAuth2 token refresh refused");
            *oauth
                .shared
                .refused
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(reason);
            return Ok(None);
        }
        *oauth
            .shared
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let bytes = read_capped(response, 64 * 1024).await?;
        let token: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
            HttpError::Transport("token endpoint: the response is not a token".into())
        })?;
        let bearer = format!("Bearer {}", token.access_token);
        // Known before it is used, so that no reflection of it reaches the plugin.
        self.scrub
            .add(&[token.access_token.as_str(), bearer.as_str()]);
        let mut value = HeaderValue::from_str(&bearer)
            .map_err(|_| HttpError::Transport("token endpoint: unusable token".into()))?;
        value.set_sensitive(true);
        // Refresh a minute early so a token never expires mid-request (half-way for
        // short-lived tokens).
        let expires_in = token.expires_in.unwrap_or(3600);
        let lifetime = Duration::from_secs(if expires_in > 120 {
            expires_in - 60
        } else {
            expires_in / 2
        });
        state.generation += 1;
        state.token = Some(CachedToken {
            value: value.clone(),
            access: Secret::new(token.access_token),
            expires: Instant::now() + lifetime,
        });
        oauth
            .scrubbed
            .store(state.generation, std::sync::atomic::Ordering::Relaxed);
        Ok(Some((value, state.generation)))
    }

    /// Adds a token obtained by another context sharing it to this context's scrubber,
    /// once per token, before this context sends it.
    fn learn(&self, oauth: &OAuth2, generation: u64, token: &CachedToken) {
        use std::sync::atomic::Ordering;
        if oauth.scrubbed.swap(generation, Ordering::Relaxed) != generation {
            let bearer = String::from_utf8_lossy(token.value.as_bytes()).into_owned();
            self.scrub.add(&[token.access.expose(), bearer.as_str()]);
        }
    }

    async fn read_response(&self, response: reqwest::Response) -> Result<Response, HttpError> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| {
                !DROPPED_RESPONSE_HEADERS.contains(&name.as_str())
                    && self.auth_header.as_ref() != Some(*name)
            })
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    self.scrub
                        .text(String::from_utf8_lossy(value.as_bytes()).into_owned()),
                )
            })
            .collect();
        // The request timeout set in `execute` also bounds reading the body.
        let body = self
            .scrub
            .bytes(read_capped(response, self.response_bytes).await?);
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A token endpoint's refusal in one line: the OAuth error code (RFC 6749 §5.2:
/// `invalid_grant`, `invalid_client`, …) and its description, or the status when the body
/// says nothing usable. Only the code's own characters and a short printable description
/// are kept, so that whatever the endpoint echoes cannot smuggle anything into errors.
fn oauth_error(status: u16, body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = json
        .get("error")
        .and_then(serde_json::Value::as_str)
        .filter(|c| {
            !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
    let Some(code) = code else {
        return format!("HTTP {status}");
    };
    let description: String = json
        .get("error_description")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    if description.trim().is_empty() {
        code.to_owned()
    } else {
        format!("{code} ({})", description.trim())
    }
}

/// Reads a body, refusing it as soon as it exceeds `cap` bytes.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, HttpError> {
    if response
        .content_length()
        .is_some_and(|len| len > cap as u64)
    {
        return Err(HttpError::TooLarge(cap as u64));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(map_reqwest_error)? {
        if body.len() + chunk.len() > cap {
            return Err(HttpError::TooLarge(cap as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Maps a reqwest failure to the WIT error; a blocked resolution becomes `denied`.
fn map_reqwest_error(err: reqwest::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(blocked) = e.downcast_ref::<BlockedAddress>() {
            return HttpError::Denied(blocked.to_string());
        }
        source = e.source();
    }
    if err.is_timeout() {
        return HttpError::Timeout;
    }
    // Name the innermost cause; the URL is left out (the plugin knows it).
    let mut cause = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        cause = e.to_string();
        source = e.source();
    }
    HttpError::Transport(cause.replace('\n', " "))
}

fn to_reqwest_method(method: Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

fn build_auth(
    profile: Option<&AuthProfile>,
    credentials: &Credentials,
    settings: &std::collections::BTreeMap<String, String>,
    policy: &EgressPolicy,
) -> Result<(Auth, Option<HeaderName>), HttpSetupError> {
    let mismatch = |want: &str| {
        HttpSetupError::Credentials(format!(
            "the plugin's auth profile is `{want}` but the connection's credentials are of another kind; configure {want} credentials"
        ))
    };
    match (profile, credentials) {
        (_, Credentials::None) => {
            let header = match profile {
                Some(AuthProfile::ApiKey { header, .. }) => HeaderName::from_bytes(header.as_bytes()).ok(),
                _ => None,
            };
            Ok((Auth::None, header))
        }
        (None, _) => Err(HttpSetupError::Credentials(
            "the connection has credentials but the plugin's manifest declares no [auth] profile to use them".into(),
        )),
        (Some(AuthProfile::ApiKey { header, template, .. }), Credentials::ApiKey(key)) => {
            let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                HttpSetupError::Credentials(format!("auth header `{header}` is invalid"))
            })?;
            let mut value = HeaderValue::from_str(&template.replace("{secret}", key.expose()))
                .map_err(|_| {
                    HttpSetupError::Credentials(
                        "the API key contains characters not allowed in a header".into(),
                    )
                })?;
            value.set_sensitive(true);
            Ok((Auth::Header { name: name.clone(), value }, Some(name)))
        }
        (Some(AuthProfile::ApiKey { .. }), _) => Err(mismatch("api-key")),
        (Some(AuthProfile::Bearer { .. }), Credentials::ApiKey(key)) => {
            let value = sensitive_value(&format!("Bearer {}", key.expose()))?;
            let name = reqwest::header::AUTHORIZATION;
            Ok((Auth::Header { name: name.clone(), value }, Some(name)))
        }
        (Some(AuthProfile::Bearer { .. }), _) => Err(mismatch("bearer")),
        (Some(AuthProfile::Basic { user: fixed, .. }), Credentials::Basic { user, password }) => {
            // The connection's user wins; the manifest's is for apps that take any user.
            let user = user.as_deref().or(fixed.as_deref()).ok_or_else(|| {
                HttpSetupError::Credentials(
                    "the plugin authenticates with HTTP Basic and names no user; add user = \"...\" to the connection's credentials.basic".into(),
                )
            })?;
            if !super::manifest::valid_basic_user(user) {
                return Err(HttpSetupError::Credentials(
                    "the HTTP Basic user name may not be empty or contain `:` or control characters".into(),
                ));
            }
            let value = sensitive_value(&basic_value(user, password.expose()))?;
            let name = reqwest::header::AUTHORIZATION;
            Ok((Auth::Header { name: name.clone(), value }, Some(name)))
        }
        (Some(AuthProfile::Basic { .. }), _) => Err(mismatch("basic")),
        (
            Some(AuthProfile::OAuth2 { token_url, scopes, .. }),
            Credentials::OAuth2 {
                client_id,
                client_secret,
                refresh_token,
                token_url: named,
            },
        ) => {
            let token_url = match named {
                // Named by the operator: approved.
                Some(url) => Url::parse(url)
                    .map_err(|e| format!("the token endpoint `{url}` is not a URL: {e}")),
                // Chosen by the plugin: only an https endpoint the operator granted.
                None => Ok(super::credentials::approve_manifest_token_url(
                    token_url,
                    settings,
                    |u| policy.explicitly_granted(u),
                )
                .map_err(HttpSetupError::Credentials)?),
            };
            Ok((
                Auth::OAuth2(OAuth2 {
                    token_url,
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    refresh_token: refresh_token.clone(),
                    scopes: scopes.clone(),
                    shared: Arc::default(),
                    scrubbed: Default::default(),
                }),
                Some(reqwest::header::AUTHORIZATION),
            ))
        }
        (Some(AuthProfile::OAuth2 { .. }), _) => Err(mismatch("oauth2")),
    }
}

/// A header value the HTTP layer keeps out of its own debug output.
fn sensitive_value(text: &str) -> Result<HeaderValue, HttpSetupError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        HttpSetupError::Credentials("the secret contains characters not allowed in a header".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `Basic base64(user:password)` (RFC 7617, UTF-8).
fn basic_value(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// The exact secrets this connection's requests carry, for the scrubber (access tokens
/// are added when they are obtained). Derived forms are listed too: the rendered header
/// value, and for Basic the `user:password` pair and its base64 token, which an app may
/// echo without the `Basic ` prefix (the scrubber also finds the password's own base64
/// inside it, but a short password's can be misaligned with the pair's).
fn secrets_of(credentials: &Credentials, auth: &Auth) -> Vec<String> {
    let mut out = Vec::new();
    match credentials {
        Credentials::None => {}
        Credentials::ApiKey(key) => out.push(key.expose().to_owned()),
        Credentials::Basic { password, .. } => out.push(password.expose().to_owned()),
        Credentials::OAuth2 {
            client_secret,
            refresh_token,
            ..
        } => {
            out.push(client_secret.expose().to_owned());
            out.push(refresh_token.expose().to_owned());
        }
    }
    if let Auth::Header { value, .. } = auth
        && let Ok(text) = value.to_str()
    {
        out.push(text.to_owned());
        if let (Credentials::Basic { password, .. }, Some(token)) =
            (credentials, text.strip_prefix("Basic "))
        {
            use base64::Engine as _;
            out.push(token.to_owned());
            if let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(token)
                && let Ok(pair) = String::from_utf8(pair)
            {
                debug_assert!(pair.ends_with(password.expose()));
                out.push(pair);
            }
        }
    }
    out
}

impl Host for HostState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let conn = self.conn()?;
        let _waiting = self.http_wait.start();
        Ok(conn.http.send(req).await)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::{HeaderMap as AxumHeaders, StatusCode};
    use axum::routing::{get, post};

    use super::*;
    use crate::runtime::capabilities::Grant;
    use crate::runtime::manifest::Manifest;

    async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    fn manifest(auth: &str) -> Manifest {
        Manifest::parse(&format!(
            "name = \"t\"\nversion = \"0.1.0\"\nkind = \"connector\"\ncontract = \"0.1.0\"\n\
             [http]\norigins = [\"setting:base-url\"]\n{auth}"
        ))
        .unwrap()
    }

    fn ctx(
        manifest: &Manifest,
        base: SocketAddr,
        credentials: Credentials,
        budget: Option<Arc<dyn RequestBudget>>,
        limits: ConnectorLimits,
    ) -> HttpCtx {
        let settings: BTreeMap<String, String> =
            [("base-url".to_owned(), format!("http://{base}"))].into();
        let grant = Grant {
            http: vec!["*".into()],
            allow_loopback: true,
            ..Grant::default()
        };
        let policy = EgressPolicy::new(manifest, &grant, &settings);
        let client = ClientCache::default()
            .get(
                &(Arc::new(SystemResolver) as Arc<dyn Resolve>),
                policy.addresses,
                limits.http_timeout,
            )
            .unwrap();
        HttpCtx::new(
            policy,
            manifest.auth.as_ref(),
            &credentials,
            &settings,
            client,
            budget,
            &limits,
        )
        .unwrap()
    }

    fn get_req(url: String) -> Request {
        Request {
            method: Method::Get,
            url,
            headers: vec![],
            body: None,
            timeout_ms: None,
        }
    }

    /// A server that records the credential headers of each request and echoes them
    /// back in every form an app might: as received, the Basic token alone, its decoded
    /// `user:password`, and in a response header.
    async fn echo_server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
        use base64::Engine as _;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let router = Router::new().route(
            "/echo",
            get(move |headers: AxumHeaders| {
                let log = log.clone();
                async move {
                    let mut echoed = Vec::new();
                    for name in ["authorization", "x-api-key"] {
                        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                            log.lock().unwrap().push((name.to_owned(), v.to_owned()));
                            echoed.push(format!("{name}={v}"));
                            if let Some(token) = v.strip_prefix("Basic ") {
                                echoed.push(format!("token={token}"));
                                let pair = base64::engine::general_purpose::STANDARD
                                    .decode(token)
                                    .unwrap();
                                echoed.push(format!("pair={}", String::from_utf8(pair).unwrap()));
                            }
                        }
                    }
                    let body = echoed.join("\n");
                    ([("x-echo", body.replace('\n', " "))], body)
                }
            }),
        );
        (serve(router).await, seen)
    }

    /// Each auth profile puts exactly the expected header on the wire, and nothing the
    /// plugin reads back (body, headers) holds the secret in any form.
    #[tokio::test]
    async fn every_auth_profile_sends_its_exact_header_and_the_echo_is_scrubbed() {
        use base64::Engine as _;
        const KEY: &str = "k3y-0f-the-acc0unt";
        let basic = |user: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{KEY}"))
            )
        };
        let cases = [
            (
                "[auth]\nkind = \"api-key\"\nheader = \"X-Api-Key\"\n",
                Credentials::ApiKey(Secret::new(KEY)),
                ("x-api-key", KEY.to_owned()),
            ),
            (
                "[auth]\nkind = \"api-key\"\nheader = \"Authorization\"\ntemplate = \"Token token={secret}\"\n",
                Credentials::ApiKey(Secret::new(KEY)),
                ("authorization", format!("Token token={KEY}")),
            ),
            (
                "[auth]\nkind = \"bearer\"\n",
                Credentials::ApiKey(Secret::new(KEY)),
                ("authorization", format!("Bearer {KEY}")),
            ),
            // Jira, Zendesk: the operator names the user.
            (
                "[auth]\nkind = \"basic\"\n",
                Credentials::Basic {
                    user: Some("jane@acme.example/token".into()),
                    password: Secret::new(KEY),
                },
                ("authorization", basic("jane@acme.example/token")),
            ),
            // Mailchimp: any user, fixed by the manifest.
            (
                "[auth]\nkind = \"basic\"\nuser = \"anystring\"\n",
                Credentials::Basic {
                    user: None,
                    password: Secret::new(KEY),
                },
                ("authorization", basic("anystring")),
            ),
            // The connection's user replaces the manifest's.
            (
                "[auth]\nkind = \"basic\"\nuser = \"anystring\"\n",
                Credentials::Basic {
                    user: Some("AC0123".into()),
                    password: Secret::new(KEY),
                },
                ("authorization", basic("AC0123")),
            ),
        ];
        for (auth, credentials, (header, value)) in cases {
            let (addr, seen) = echo_server().await;
            let m = manifest(auth);
            let http = ctx(&m, addr, credentials, None, ConnectorLimits::default());
            let response = http
                .send(get_req(format!("http://{addr}/echo")))
                .await
                .unwrap();
            assert_eq!(
                *seen.lock().unwrap(),
                vec![(header.to_owned(), value.clone())],
                "{auth}"
            );
            let body = String::from_utf8(response.body).unwrap();
            let headers = format!("{:?}", response.headers);
            let token = value.strip_prefix("Basic ");
            for leaked in [Some(KEY), Some(value.as_str()), token]
                .into_iter()
                .flatten()
            {
                assert!(!body.contains(leaked), "{auth}: {leaked} in {body}");
                assert!(!headers.contains(leaked), "{auth}: {leaked} in {headers}");
            }
            assert!(body.contains("[redacted]"), "{body}");
        }
    }

    #[test]
    fn basic_credentials_need_a_user_and_a_matching_profile() {
        let m = manifest("[auth]\nkind = \"basic\"\n");
        let policy = EgressPolicy::new(&m, &Grant::default(), &BTreeMap::new());
        let creds = Credentials::Basic {
            user: None,
            password: Secret::new("s3cret-value"),
        };
        let err = build_auth(m.auth.as_ref(), &creds, &BTreeMap::new(), &policy)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("names no user") && !err.contains("s3cret"),
            "{err}"
        );
        let bearer = manifest("[auth]\nkind = \"bearer\"\n");
        let err = build_auth(bearer.auth.as_ref(), &creds, &BTreeMap::new(), &policy)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("`bearer`"), "{err}");
    }

    #[test]
    fn clients_are_built_once_per_address_policy_and_timeout() {
        let cache = ClientCache::default();
        let resolver: Arc<dyn Resolve> = Arc::new(SystemResolver);
        let open = AddressPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        let second = Duration::from_secs(1);
        for _ in 0..3 {
            cache.get(&resolver, open, second).unwrap();
        }
        assert_eq!(cache.0.lock().unwrap().len(), 1, "one client reused");
        cache
            .get(&resolver, AddressPolicy::default(), second)
            .unwrap();
        cache.get(&resolver, open, Duration::from_secs(2)).unwrap();
        assert_eq!(
            cache.0.lock().unwrap().len(),
            3,
            "a stricter address policy or another timeout never shares a client"
        );
    }

    #[tokio::test]
    async fn oauth2_token_is_cached_and_refreshed_once_on_401() {
        let token_calls = Arc::new(AtomicUsize::new(0));
        let valid = Arc::new(AtomicUsize::new(1));
        let calls = token_calls.clone();
        let accepted = valid.clone();
        let router = Router::new()
            .route(
                "/token",
                post(move |body: String| {
                    let calls = calls.clone();
                    async move {
                        assert!(body.contains("grant_type=refresh_token"), "{body}");
                        assert!(body.contains("refresh_token=r3fresh"), "{body}");
                        assert!(body.contains("client_id=cid&client_secret=cs3cret"), "{body}");
                        assert!(body.contains("scope=contacts"), "{body}");
                        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                        format!("{{\"access_token\":\"tok-{n}\",\"expires_in\":3600,\"token_type\":\"Bearer\"}}")
                    }
                }),
            )
            .route(
                "/api",
                get(move |headers: AxumHeaders| {
                    let accepted = accepted.clone();
                    async move {
                        let want = format!("Bearer tok-{}", accepted.load(Ordering::SeqCst));
                        match headers.get("authorization") {
                            Some(v) if v == want.as_str() => (StatusCode::OK, "data"),
                            _ => (StatusCode::UNAUTHORIZED, "no"),
                        }
                    }
                }),
            );
        let addr = serve(router).await;
        let m = manifest(
            "[auth]\nkind = \"oauth2\"\ntoken-url = \"setting:base-url\"\nscopes = [\"contacts\"]\n",
        );
        let creds = Credentials::OAuth2 {
            client_id: "cid".into(),
            client_secret: Secret::new("cs3cret"),
            refresh_token: Secret::new("r3fresh"),
            token_url: Some(format!("http://{addr}/token")),
        };
        let mut http = ctx(&m, addr, creds, None, ConnectorLimits::default());
        // Early revocations are retried at once here; the floor has its own test.
        http.refresh_floor = Duration::ZERO;
        let api = format!("http://{addr}/api");

        for _ in 0..2 {
            let resp = http.send(get_req(api.clone())).await.unwrap();
            assert_eq!(
                (resp.status, resp.body.as_slice()),
                (200, b"data".as_slice())
            );
            assert!(resp.headers.iter().all(|(k, _)| k != "authorization"));
        }
        assert_eq!(token_calls.load(Ordering::SeqCst), 1, "token cached");

        valid.store(2, Ordering::SeqCst); // tok-1 revoked early
        let resp = http.send(get_req(api.clone())).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(token_calls.load(Ordering::SeqCst), 2, "refreshed on 401");

        valid.store(99, Ordering::SeqCst); // nothing works: refresh once, then give up
        let resp = http.send(get_req(api)).await.unwrap();
        assert_eq!(resp.status, 401);
        assert_eq!(
            token_calls.load(Ordering::SeqCst),
            3,
            "one refresh per request"
        );
    }

    /// Contexts of one runtime with the same OAuth2 credentials (the check of a connection
    /// and each run of it) share one access token: one refresh, not one per context. A
    /// context that sends a token another one obtained scrubs it from what it reads, and
    /// other credentials get their own token.
    #[tokio::test]
    async fn oauth2_tokens_are_shared_per_credentials_and_scrubbed_by_every_sharer() {
        let token_calls = Arc::new(AtomicUsize::new(0));
        let calls = token_calls.clone();
        let router = Router::new()
            .route(
                "/token",
                post(move || {
                    let calls = calls.clone();
                    async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                        format!("{{\"access_token\":\"shared-tok-{n}\",\"expires_in\":3600}}")
                    }
                }),
            )
            // Echoes the credentials it was sent, as a careless API might.
            .route(
                "/echo",
                get(|headers: AxumHeaders| async move {
                    headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap_or_default().to_owned())
                        .unwrap_or_default()
                }),
            );
        let addr = serve(router).await;
        let m = manifest(
            "[auth]\nkind = \"oauth2\"\ntoken-url = \"setting:base-url\"\nscopes = [\"contacts\"]\n",
        );
        let creds = |refresh: &str| Credentials::OAuth2 {
            client_id: "cid".into(),
            client_secret: Secret::new("cs3cret"),
            refresh_token: Secret::new(refresh),
            token_url: Some(format!("http://{addr}/token")),
        };
        let cache = TokenCache::default();
        let check =
            ctx(&m, addr, creds("r3fresh"), None, ConnectorLimits::default()).share_tokens(&cache);
        let run =
            ctx(&m, addr, creds("r3fresh"), None, ConnectorLimits::default()).share_tokens(&cache);
        let echo = format!("http://{addr}/echo");
        for http in [&check, &run] {
            let resp = http.send(get_req(echo.clone())).await.unwrap();
            let body = String::from_utf8(resp.body).unwrap();
            assert_eq!(resp.status, 200);
            assert!(
                !body.contains("shared-tok"),
                "the token is scrubbed: {body}"
            );
            assert!(body.contains(crate::runtime::scrub::REDACTED), "{body}");
        }
        assert_eq!(
            token_calls.load(Ordering::SeqCst),
            1,
            "one refresh for both contexts"
        );
        let other = ctx(
            &m,
            addr,
            creds("other-r3fresh"),
            None,
            ConnectorLimits::default(),
        )
        .share_tokens(&cache);
        other.send(get_req(echo)).await.unwrap();
        assert_eq!(
            token_calls.load(Ordering::SeqCst),
            2,
            "other credentials, another token"
        );
    }

    struct CountingBudget(AtomicUsize, std::sync::Mutex<Vec<(u16, Option<String>)>>);

    impl RequestBudget for CountingBudget {
        fn acquire<'a>(&'a self, _url: &'a Url) -> BoxFuture<'a, ()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {})
        }

        fn observe(&self, _url: &Url, status: u16, headers: &HeaderMap) {
            let remaining = headers
                .get("x-ratelimit-remaining")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            self.1.lock().unwrap().push((status, remaining));
        }
    }

    #[tokio::test]
    async fn budget_is_awaited_for_every_hop() {
        let router = Router::new()
            .route(
                "/hop",
                post(|| async { (StatusCode::SEE_OTHER, [("location", "/landing")]) }),
            )
            .route(
                "/landing",
                get(|| async { ([("x-ratelimit-remaining", "41")], "ok") }),
            );
        let addr = serve(router).await;
        let budget = Arc::new(CountingBudget(AtomicUsize::new(0), Default::default()));
        let http = ctx(
            &manifest(""),
            addr,
            Credentials::None,
            Some(budget.clone()),
            ConnectorLimits::default(),
        );
        let mut req = get_req(format!("http://{addr}/hop"));
        req.method = Method::Post;
        req.body = Some(b"payload".to_vec());
        let resp = http.send(req).await.unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, b"ok".as_slice()));
        assert_eq!(budget.0.load(Ordering::SeqCst), 2);
        // Every hop's answer is shown to the budget (it reads rate-limit headers).
        assert_eq!(
            *budget.1.lock().unwrap(),
            vec![(303, None), (200, Some("41".to_owned()))]
        );
    }

    /// What a test tap saw: method, URL, body, and the status and body the plugin got.
    type Seen = (String, String, Option<Vec<u8>>, u16, Vec<u8>);

    #[derive(Default)]
    struct TestTap {
        answer: Option<Response>,
        seen: std::sync::Mutex<Vec<Seen>>,
    }

    impl HttpTap for TestTap {
        fn answer(&self, _: &TappedRequest<'_>) -> Option<TapAnswer> {
            self.answer.clone().map(|r| TapAnswer {
                outcome: Ok(r),
                oauth_refused: None,
            })
        }

        fn record(
            &self,
            request: &TappedRequest<'_>,
            outcome: &Result<Response, HttpError>,
            _: Option<&str>,
        ) {
            let r = outcome.as_ref().unwrap();
            self.seen.lock().unwrap().push((
                request.method.to_owned(),
                request.url.to_string(),
                request.body.map(<[u8]>::to_vec),
                r.status,
                r.body.clone(),
            ));
        }
    }

    /// A tap (the conformance kit's recordings) sees a request as the plugin sent it and
    /// the answer as the plugin got it, after redirects and scrubbing; never a request the
    /// host refused itself; and an answering tap keeps the request off the network.
    #[tokio::test]
    async fn a_tap_sees_what_the_plugin_sent_and_got_and_can_answer_instead() {
        const KEY: &str = "tap-s3cret-key";
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let router = Router::new()
            .route(
                "/hop",
                post(|| async { (StatusCode::SEE_OTHER, [("location", "/landing")]) }),
            )
            .route(
                "/landing",
                get(move |headers: AxumHeaders| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    async move { format!("auth={auth}") }
                }),
            );
        let addr = serve(router).await;
        let http = |tap: Arc<TestTap>| {
            ctx(
                &manifest("[auth]\nkind = \"bearer\"\n"),
                addr,
                Credentials::ApiKey(Secret::new(KEY)),
                None,
                ConnectorLimits::default(),
            )
            .with_tap(Some(tap))
        };
        let recording = Arc::new(TestTap::default());
        let recorder = http(recording.clone());
        let mut req = get_req(format!("http://{addr}/hop"));
        req.method = Method::Post;
        req.body = Some(b"payload".to_vec());
        let got = recorder.send(req).await.unwrap();
        assert_eq!(got.body, b"auth=[redacted]");
        assert_eq!(
            *recording.seen.lock().unwrap(),
            vec![(
                "POST".to_owned(),
                format!("http://{addr}/hop"),
                Some(b"payload".to_vec()),
                200,
                b"auth=[redacted]".to_vec()
            )]
        );
        // Refused by the host before the tap: not an exchange of the app's.
        let denied = recorder
            .send(get_req("http://other.example/x".into()))
            .await;
        assert!(matches!(denied, Err(HttpError::Denied(_))), "{denied:?}");
        assert_eq!(recording.seen.lock().unwrap().len(), 1);
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let answering = Arc::new(TestTap {
            answer: Some(Response {
                status: 418,
                headers: vec![("x-replayed".into(), "yes".into())],
                body: b"tea".to_vec(),
            }),
            ..TestTap::default()
        });
        let player = http(answering.clone());
        let got = player
            .send(get_req(format!("http://{addr}/landing")))
            .await
            .unwrap();
        assert_eq!((got.status, got.body.as_slice()), (418, b"tea".as_slice()));
        assert_eq!(hits.load(Ordering::SeqCst), 1, "nothing reached the app");
        assert!(answering.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn timeouts_can_be_shortened_not_lengthened() {
        let router = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        );
        let addr = serve(router).await;
        let url = format!("http://{addr}/slow");
        let http = ctx(
            &manifest(""),
            addr,
            Credentials::None,
            None,
            ConnectorLimits::default(),
        );
        let mut req = get_req(url.clone());
        req.timeout_ms = Some(100);
        assert!(matches!(http.send(req).await, Err(HttpError::Timeout)));

        let limits = ConnectorLimits {
            http_timeout: Duration::from_millis(100),
            ..ConnectorLimits::default()
        };
        let http = ctx(&manifest(""), addr, Credentials::None, None, limits);
        let mut req = get_req(url);
        req.timeout_ms = Some(60_000);
        assert!(matches!(http.send(req).await, Err(HttpError::Timeout)));
    }

    #[tokio::test]
    async fn malformed_and_oversized_requests_are_refused() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let limits = ConnectorLimits {
            http_request_bytes: 10,
            ..ConnectorLimits::default()
        };
        let http = ctx(&manifest(""), addr, Credentials::None, None, limits);
        let mut req = get_req(format!("http://{addr}/"));
        req.body = Some(vec![0; 11]);
        assert!(matches!(http.send(req).await, Err(HttpError::TooLarge(10))));
        for url in [
            "ftp://127.0.0.1:9/",
            "http://user:pw@127.0.0.1:9/",
            "not a url",
        ] {
            let err = http.send(get_req(url.into())).await.unwrap_err();
            assert!(
                matches!(err, HttpError::InvalidRequest(_)),
                "{url}: {err:?}"
            );
        }
        let mut req = get_req(format!("http://{addr}/"));
        req.headers = vec![("bad header".into(), "x".into())];
        assert!(matches!(
            http.send(req).await,
            Err(HttpError::InvalidRequest(_))
        ));
    }

    #[test]
    fn api_key_template_and_mismatches() {
        let profile = AuthProfile::ApiKey {
            header: "Authorization".into(),
            template: "Token token={secret}".into(),
            origins: None,
        };
        let settings = Default::default();
        let policy = EgressPolicy::default();
        let (auth, header) = build_auth(
            Some(&profile),
            &Credentials::ApiKey(Secret::new("k3y")),
            &settings,
            &policy,
        )
        .unwrap();
        assert_eq!(header, Some(reqwest::header::AUTHORIZATION));
        match auth {
            Auth::Header { value, .. } => {
                assert_eq!(value.to_str().unwrap(), "Token token=k3y");
                assert!(value.is_sensitive());
            }
            _ => panic!("expected a header"),
        }
        let oauth = Credentials::OAuth2 {
            client_id: "c".into(),
            client_secret: Secret::new("s"),
            refresh_token: Secret::new("r"),
            token_url: None,
        };
        let err = build_auth(Some(&profile), &oauth, &settings, &policy)
            .err()
            .unwrap();
        assert!(err.to_string().contains("api-key"));
        let err = build_auth(
            None,
            &Credentials::ApiKey(Secret::new("k")),
            &settings,
            &policy,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("no [auth] profile"));
    }
}
