//! `[connections.NAME]`: one app account reached through a connector plugin.
//!
//! Settings are non-secret and readable by the plugin (WIT `config` interface); they may
//! be interpolated from the environment. Credentials are references only and are handed
//! to the host's HTTP layer, never to the plugin.
//!
//! Two optional sub-tables belong to the host, not the plugin: `rate-limit` (how the
//! account's budget reads the app's rate-limit headers, [`RatePolicy`]) and `webhook`
//! (the secret the app's webhooks must carry to trigger early runs, [`WebhookConfig`]).

use std::collections::BTreeMap;

use super::env::{SecretRef, SecretSource, resolve_path};
use super::error::{ConfigError, Location};
use super::reader::{Item, Reader};
use crate::config::rate_limit::{NoWaitPolicy, RatePolicy, ResetMeaning, Share, Window};

/// The header a webhook carries its secret in, unless `header` says otherwise.
pub const DEFAULT_WEBHOOK_HEADER: &str = "x-tandem-webhook-secret";

/// `[connections.NAME.webhook]`: the app may call the daemon's webhook receiver for this
/// connection, and every sync using it then runs early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The shared secret the app sends (a reference; read when the receiver starts).
    pub secret: SecretRef,
    /// The request header that carries it (lower case).
    pub header: String,
}

/// One `[connections.NAME]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    /// The name syncs use to refer to it.
    pub name: String,
    /// The connector plugin (a `[plugins.NAME]` key).
    pub plugin: String,
    /// Non-secret settings given to the plugin, with `{ env = ... }` already resolved.
    pub settings: BTreeMap<String, String>,
    /// Where each setting's value is, and the `settings` table (or the entry, without
    /// one), for checks against the plugin's declared settings.
    pub(crate) settings_at: (BTreeMap<String, Location>, Location),
    /// How the host authenticates the plugin's requests.
    pub credentials: CredentialsConfig,
    /// Where the credentials may be sent (`credentials.origins`); `None`: the default,
    /// the origin of the `base-url` setting, or without one the plugin's granted origins.
    pub auth_origins: Option<Vec<String>>,
    /// Where the `credentials` table is (and its `oauth2` table), for pass 2's errors.
    pub(crate) credentials_at: Option<(Location, Option<Location>)>,
    /// How the account's budget reads rate-limit headers (`None`: the defaults).
    pub rate_limit: Option<RatePolicy>,
    /// The account's own limits (`rate-limit.limits`, e.g. its plan's quota), replacing
    /// the ones the connector declares.
    pub rate_windows: Option<Vec<Window>>,
    /// Webhooks from the app that trigger early runs (`None`: polls only).
    pub webhook: Option<WebhookConfig>,
    /// Where the entry is.
    pub at: Location,
    /// Where `plugin` is.
    pub(crate) plugin_at: Location,
}

/// Credentials by reference (`[connections.NAME.credentials]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsConfig {
    /// No credentials (an app that needs none, or a test double).
    None,
    /// An API key, for the plugin's `api-key` or `bearer` auth profile (Freshworks:
    /// `Authorization: Token token=KEY`).
    ApiKey(SecretRef),
    /// HTTP Basic (`credentials.basic`), for the plugin's `basic` auth profile: the host
    /// encodes `user:password`; the operator never pre-encodes it.
    Basic {
        /// The user name (not secret: an e-mail, an account SID); `None`: the manifest's.
        user: Option<String>,
        /// The password or API key.
        password: SecretRef,
    },
    /// An OAuth2 refresh token exchanged for access tokens by the host (Google).
    OAuth2 {
        /// The OAuth client id (not secret).
        client_id: String,
        /// The OAuth client secret.
        client_secret: SecretRef,
        /// The long-lived refresh token.
        refresh_token: SecretRef,
        /// The token endpoint; `None`: the one in the plugin's manifest.
        token_url: Option<String>,
    },
}

impl CredentialsConfig {
    /// Every secret reference, to check them all.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        match self {
            CredentialsConfig::None => Vec::new(),
            CredentialsConfig::ApiKey(k) => vec![k],
            CredentialsConfig::Basic { password, .. } => vec![password],
            CredentialsConfig::OAuth2 {
                client_secret,
                refresh_token,
                ..
            } => vec![client_secret, refresh_token],
        }
    }
}

const CONNECTION_KEYS: &[&str] = &["plugin", "settings", "credentials", "rate-limit", "webhook"];
const RATE_KEYS: &[&str] = &[
    "limits",
    "headers",
    "reset",
    "reserve",
    "slow-below",
    "without-retry-after",
    "max-retry-after",
    "min-declared-per-hour",
];
const WEBHOOK_KEYS: &[&str] = &["secret", "header"];
const CREDENTIAL_KEYS: &[&str] = &["api-key", "basic", "oauth2", "origins"];
const BASIC_KEYS: &[&str] = &["user", "password"];
const OAUTH_KEYS: &[&str] = &["client-id", "client-secret", "refresh-token", "token-url"];

/// Reads `[connections]`.
pub(crate) fn read_connections(
    cx: &mut Reader<'_>,
    section: Item<'_, '_>,
) -> Vec<ConnectionConfig> {
    let Some(mut t) = section.table(cx, &[]) else {
        return Vec::new();
    };
    t.entries()
        .into_iter()
        .filter_map(|(name, item)| read_connection(cx, name, item))
        .collect()
}

fn read_connection(
    cx: &mut Reader<'_>,
    name: &str,
    item: Item<'_, '_>,
) -> Option<ConnectionConfig> {
    let mut t = item.table(cx, CONNECTION_KEYS)?;
    let at = t.loc(cx);
    let plugin = t.require(
        cx,
        "plugin",
        "name the connector: plugin = \"freshsales\" (a [plugins.NAME] key)",
    );
    let plugin_at = plugin.as_ref().map_or_else(|| at.clone(), |p| p.loc(cx));
    let plugin = plugin.and_then(|p| p.name(cx));
    let (settings, settings_at) = match t.get("settings") {
        Some(s) => {
            let table_at = s.loc(cx);
            let (values, locations) = read_settings(cx, s).unzip();
            (values, (locations.unwrap_or_default(), table_at))
        }
        None => (Some(BTreeMap::new()), (BTreeMap::new(), at.clone())),
    };
    let (credentials, auth_origins, credentials_at) = match t.get("credentials") {
        Some(c) => read_credentials(cx, c),
        None => (Some(CredentialsConfig::None), None, None),
    };
    let (rate_limit, rate_windows) = match t.get("rate-limit").and_then(|r| read_rate_limit(cx, r))
    {
        Some((p, w)) => (Some(p), w),
        None => (None, None),
    };
    let webhook = t.get("webhook").and_then(|w| read_webhook(cx, w));
    t.finish(cx);
    // A part that failed has been reported; the rest is kept so pass 2 can check it too.
    Some(ConnectionConfig {
        name: name.to_owned(),
        plugin: plugin?,
        settings: settings.unwrap_or_default(),
        settings_at,
        credentials: credentials.unwrap_or(CredentialsConfig::None),
        auth_origins,
        credentials_at,
        rate_limit,
        rate_windows,
        webhook,
        at,
        plugin_at,
    })
}

fn read_rate_limit(
    cx: &mut Reader<'_>,
    item: Item<'_, '_>,
) -> Option<(RatePolicy, Option<Vec<Window>>)> {
    let mut t = item.table(cx, RATE_KEYS)?;
    let mut p = RatePolicy::default();
    let mut ok = true;
    let mut windows = None;
    if let Some(i) = t.get("limits") {
        windows = read_windows(cx, &i);
        ok &= windows.is_some();
    }
    if let Some(i) = t.get("headers") {
        ok &= i.bool(cx).map(|v| p.headers = v).is_some();
    }
    if let Some(i) = t.get("reset") {
        ok &= i.choice::<ResetMeaning>(cx).map(|v| p.reset = v).is_some();
    }
    if let Some(i) = t.get("without-retry-after") {
        ok &= i
            .choice::<NoWaitPolicy>(cx)
            .map(|v| p.no_wait = v)
            .is_some();
    }
    if let Some(i) = t.get("max-retry-after") {
        match i.duration(cx) {
            Some(d) if d < std::time::Duration::from_secs(1) => {
                ok = false;
                i.invalid::<()>(cx, "must be at least \"1s\"");
            }
            Some(d) => p.max_retry_after = d,
            None => ok = false,
        }
    }
    if let Some(i) = t.get("min-declared-per-hour") {
        match i.u64(cx).map(u32::try_from) {
            Some(Ok(n)) => p.min_declared_per_hour = n,
            Some(Err(_)) => {
                ok = false;
                i.invalid::<()>(cx, "a whole number of requests per hour, up to 4294967295");
            }
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("reserve", &mut p.reserve),
        ("slow-below", &mut p.slow_below),
    ] {
        if let Some(i) = t.get(key) {
            match read_share(cx, &i) {
                Some(v) => *slot = v,
                None => ok = false,
            }
        }
    }
    t.finish(cx);
    ok.then_some((p, windows))
}

/// `["5000/1h", "400/1m"]`: requests per period.
fn read_windows(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<Vec<Window>> {
    const HINT: &str = "write requests per period, such as \"5000/1h\" or \"400/1m\"";
    let mut out = Vec::new();
    let mut ok = true;
    for (text, i) in item.strings(cx)? {
        let parsed = text.split_once('/').and_then(|(n, d)| {
            let requests = n.trim().parse::<u32>().ok().filter(|n| *n > 0)?;
            let period = super::reader::parse_duration(d.trim())
                .filter(|p| *p >= std::time::Duration::from_secs(1))?;
            Some(Window { requests, period })
        });
        match parsed {
            Some(w) => out.push(w),
            None => {
                i.invalid::<()>(cx, format!("cannot read {text:?}; {HINT}"));
                ok = false;
            }
        }
    }
    if ok && out.is_empty() {
        return item.invalid(cx, format!("no limit given; {HINT}, or leave limits out"));
    }
    ok.then_some(out)
}

/// A number of requests (a whole number) or a share of the app's limit (0 to 1).
fn read_share(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<Share> {
    const HINT: &str =
        "a number of requests (e.g. 50) or a share of the app's limit between 0 and 1 (e.g. 0.1)";
    match item.value.get_ref() {
        toml::de::DeValue::Integer(_) => match item.u64(cx)? {
            n if n <= u64::from(u32::MAX) => Some(Share::Requests(n as u32)),
            _ => item.invalid(cx, HINT),
        },
        toml::de::DeValue::Float(_) => match item.f64(cx)? {
            f if (0.0..=1.0).contains(&f) => Some(Share::Of(f)),
            _ => item.invalid(cx, HINT),
        },
        _ => item.wrong_type(cx, HINT),
    }
}

fn read_webhook(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<WebhookConfig> {
    let mut t = item.table(cx, WEBHOOK_KEYS)?;
    let secret = t.require(
        cx,
        "secret",
        "add secret = { env = \"VAR\" } (the value the app sends in the header)",
    );
    let header = t.get("header");
    t.finish(cx);
    // Both parts are read before giving up, so that both report their errors.
    let header = match header {
        None => Some(DEFAULT_WEBHOOK_HEADER.to_owned()),
        Some(h) => read_header_name(cx, &h),
    };
    let secret = read_secret(cx, &secret?);
    Some(WebhookConfig {
        secret: secret?,
        header: header?,
    })
}

/// A custom request header's name, lower-cased.
fn read_header_name(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<String> {
    let name = item.name(cx)?;
    match reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()) {
        Ok(n) if !FRAMING_HEADERS.contains(&n.as_str()) => Some(n.as_str().to_owned()),
        Ok(_) => item.invalid(
            cx,
            format!("{name:?} is an HTTP framing header; name a custom header such as \"X-Tandem-Webhook-Secret\""),
        ),
        Err(_) => item.invalid(
            cx,
            format!("{name:?} is not a valid HTTP header name; use letters, digits and dashes"),
        ),
    }
}

/// Headers proxies and HTTP itself own: a secret cannot travel in them.
const FRAMING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// Settings and where each value is.
pub(crate) type ReadSettings = (BTreeMap<String, String>, BTreeMap<String, Location>);

/// Reads a settings table (a connection's, or a sync's `mapper-settings.PLUGIN`).
pub(crate) fn read_settings(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<ReadSettings> {
    let mut t = item.table(cx, &[])?;
    let mut out = BTreeMap::new();
    let mut at = BTreeMap::new();
    let mut ok = true;
    for (key, value) in t.entries() {
        at.insert(key.to_owned(), value.loc(cx));
        if looks_secret(key) {
            value.invalid::<()>(
                cx,
                "looks like a secret, and settings are readable by the plugin; put it under credentials as { env = \"VAR\" } or { file = \"path\" }",
            );
            ok = false;
            continue;
        }
        match value.interpolated(cx) {
            Some(v) => {
                out.insert(key.to_owned(), v);
            }
            None => ok = false,
        }
    }
    ok.then_some((out, at))
}

/// Setting names that would carry a secret to the plugin.
fn looks_secret(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    [
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Credentials, the origins they may go to, and where the table (and `oauth2`) is.
type ReadCredentials = (
    Option<CredentialsConfig>,
    Option<Vec<String>>,
    Option<(Location, Option<Location>)>,
);

fn read_credentials(cx: &mut Reader<'_>, item: Item<'_, '_>) -> ReadCredentials {
    let Some(mut t) = item.table(cx, CREDENTIAL_KEYS) else {
        return (None, None, None);
    };
    let at = t.loc(cx);
    let api_key = t.get("api-key");
    let basic = t.get("basic");
    let oauth = t.get("oauth2");
    let oauth_at = oauth.as_ref().map(|o| o.loc(cx));
    let origins = t.get("origins");
    let out = match (api_key, basic, oauth) {
        (Some(k), None, None) => read_secret(cx, &k).map(CredentialsConfig::ApiKey),
        (None, Some(b), None) => read_basic(cx, b),
        (None, None, Some(o)) => read_oauth(cx, o),
        (None, None, None) => Some(CredentialsConfig::None),
        (_, Some(second), _) | (_, _, Some(second)) => second.invalid(
            cx,
            "api-key, basic and oauth2 are exclusive; keep the one the plugin's auth profile uses (`tandem plugin inspect` shows it)",
        ),
    };
    let origins = origins.and_then(|o| read_auth_origins(cx, &o, &out));
    t.finish(cx);
    (out, origins, Some((at, oauth_at)))
}

/// `credentials.origins`: where the host may attach the credentials. Same forms as a
/// grant's `http` (an origin, `*.` subdomains, `setting:K`, `{ env = "VAR" }` with a URL,
/// or `*`: wherever the plugin's auth profile says).
fn read_auth_origins(
    cx: &mut Reader<'_>,
    item: &Item<'_, '_>,
    credentials: &Option<CredentialsConfig>,
) -> Option<Vec<String>> {
    if matches!(credentials, Some(CredentialsConfig::None)) {
        return item.invalid(
            cx,
            "there are no credentials to send; remove origins or add api-key, basic or oauth2",
        );
    }
    // Reachability is the grant's business (loopback, private networks): here the
    // origins only narrow where credentials go.
    let open = super::plugins::GrantConfig {
        loopback: true,
        private_networks: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut ok = true;
    for o in item.array(cx)? {
        match super::plugins::read_origin(cx, &o, &open) {
            Some(origin) => out.push(origin),
            None => ok = false,
        }
    }
    if ok && out.is_empty() {
        return item.invalid(
            cx,
            "no origin given; list where the credentials may go, such as [\"https://acme.myfreshworks.com\"]",
        );
    }
    ok.then_some(out)
}

/// `basic = { user = "jane@acme.example", password = { env = "VAR" } }`. The user is
/// optional when the plugin's manifest fixes one (Mailchimp takes any user).
fn read_basic(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<CredentialsConfig> {
    let mut t = item.table(cx, BASIC_KEYS)?;
    let user = t.get("user");
    let password = t.require(
        cx,
        "password",
        "add password = { env = \"VAR\" } (the password or API key; the host encodes user:password itself)",
    );
    t.finish(cx);
    let user = match user {
        None => None,
        Some(i) => {
            let u = i.interpolated(cx)?;
            if !crate::runtime::manifest::valid_basic_user(&u) {
                return i.invalid(
                    cx,
                    "an HTTP Basic user name is not empty and has no `:` (write the user alone: the host adds `:` and the password, then encodes them)",
                );
            }
            Some(u)
        }
    };
    Some(CredentialsConfig::Basic {
        user,
        password: read_secret(cx, &password?)?,
    })
}

fn read_oauth(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<CredentialsConfig> {
    let mut t = item.table(cx, OAUTH_KEYS)?;
    let client_id = t.require(
        cx,
        "client-id",
        "add client-id = \"...apps.googleusercontent.com\"",
    );
    let client_secret = t.require(cx, "client-secret", "add client-secret = { env = \"VAR\" }");
    let refresh_token = t.require(
        cx,
        "refresh-token",
        "add refresh-token = { file = \"path\" }",
    );
    let token_url = t.get("token-url");
    t.finish(cx);
    let client_id = client_id.and_then(|i| i.interpolated(cx));
    let client_secret = client_secret.and_then(|i| read_secret(cx, &i));
    let refresh_token = refresh_token.and_then(|i| read_secret(cx, &i));
    let token_url = token_url.and_then(|i| {
        let url = i.interpolated(cx)?;
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(url),
            _ => i.invalid(cx, format!("{url:?} is not an http(s) URL")),
        }
    });
    // A failed client-id has been reported; keep the secrets for pass 2.
    Some(CredentialsConfig::OAuth2 {
        client_id: client_id.unwrap_or_default(),
        client_secret: client_secret?,
        refresh_token: refresh_token?,
        token_url,
    })
}

/// Reads a secret reference: `{ env = "VAR" }` or `{ file = "path" }`. A literal string
/// is refused without repeating it.
pub(crate) fn read_secret(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<SecretRef> {
    match item.value.get_ref() {
        toml::de::DeValue::String(_) | toml::de::DeValue::Integer(_) => {
            cx.push(ConfigError::InlineSecret {
                at: item.loc(cx),
                key: item.path.clone(),
            });
            None
        }
        toml::de::DeValue::Table(_) => {
            let mut t = item.table(cx, &["env", "file"])?;
            let env = t.get("env");
            let file = t.get("file");
            t.finish(cx);
            let source = match (env, file) {
                (Some(e), None) => SecretSource::Env(e.name(cx)?),
                (None, Some(f)) => SecretSource::File(resolve_path(cx.base_dir, &f.name(cx)?)),
                (Some(_), Some(f)) => return f.invalid(cx, "env and file are exclusive; keep one"),
                (None, None) => {
                    return item.invalid(
                        cx,
                        "empty reference; write { env = \"VAR\" } or { file = \"path\" }",
                    );
                }
            };
            Some(SecretRef {
                source,
                at: item.loc(cx),
                key: item.path.clone(),
            })
        }
        _ => item.wrong_type(cx, "{ env = \"VAR\" } or { file = \"path\" }"),
    }
}
