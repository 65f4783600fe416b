//! `[state]` (where the redb state file lives) and `[daemon]` (the control API, and
//! `[daemon.webhooks]`: the webhook receiver).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::connections::read_secret;
use super::env::{SecretRef, resolve_path};
use super::reader::{Item, Reader};

/// The default state file, relative to the config file's directory.
pub const DEFAULT_STATE_PATH: &str = ".tandem/state.redb";
/// The default control API address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7380";

/// The default webhook receiver address: loopback (put a TLS proxy in front).
pub const DEFAULT_WEBHOOK_LISTEN: &str = "127.0.0.1:7381";

/// `[daemon.webhooks]`: the receiver of app webhooks (served when a connection has a
/// `[connections.NAME.webhook]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhooksConfig {
    /// Where the receiver listens.
    pub listen: SocketAddr,
    /// Whether `listen` may be a non-loopback address.
    pub allow_remote: bool,
    /// A run starts this long after the first webhook of a burst; the burst joins it.
    pub debounce: Duration,
    /// The largest body accepted (413 above).
    pub max_body: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            listen: DEFAULT_WEBHOOK_LISTEN
                .parse()
                .expect("the default address parses"),
            allow_remote: false,
            debounce: Duration::from_secs(2),
            max_body: 64 * 1024,
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// The redb state file (links, baselines, cursors, outbox, runs, logs), resolved
    /// against the config file's directory.
    pub path: PathBuf,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Where the control API listens.
    pub listen: SocketAddr,
    /// The bearer token clients must send; without one the control API is not served.
    pub token: Option<SecretRef>,
    /// Whether `listen` may be a non-loopback address.
    pub allow_remote: bool,
    /// `[daemon.webhooks]`.
    pub webhooks: WebhooksConfig,
}

impl StateConfig {
    pub(crate) fn default_in(base: &std::path::Path) -> Self {
        StateConfig {
            path: base.join(DEFAULT_STATE_PATH),
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: DEFAULT_LISTEN.parse().expect("the default address parses"),
            token: None,
            allow_remote: false,
            webhooks: WebhooksConfig::default(),
        }
    }
}

pub(crate) fn read_state(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<StateConfig> {
    let mut t = item.table(cx, &["path"])?;
    let path = t.get("path");
    t.finish(cx);
    let path = match path {
        Some(p) => resolve_path(cx.base_dir, &p.name(cx)?),
        None => cx.base_dir.join(DEFAULT_STATE_PATH),
    };
    Some(StateConfig { path })
}

pub(crate) fn read_daemon(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<DaemonConfig> {
    let mut t = item.table(cx, &["listen", "token", "allow-remote", "webhooks"])?;
    let listen = t.get("listen");
    let token = t.get("token");
    let allow_remote = t.get("allow-remote");
    let webhooks = t.get("webhooks");
    t.finish(cx);
    let mut d = DaemonConfig::default();
    if let Some(w) = webhooks {
        d.webhooks = read_webhooks(cx, w)?;
    }
    if let Some(a) = &allow_remote {
        d.allow_remote = a.bool(cx)?;
    }
    if let Some(t) = &token {
        d.token = Some(read_secret(cx, t)?);
    }
    if let Some(l) = &listen {
        let text = l.str(cx)?;
        d.listen = match text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => return l.invalid(
                cx,
                format!(
                    "cannot read {text:?} as an address; write ip:port such as {DEFAULT_LISTEN:?}"
                ),
            ),
        };
        if !d.listen.ip().is_loopback() && !d.allow_remote {
            return l.invalid(
                cx,
                format!("{} is reachable from other machines; use a loopback address, or set allow-remote = true and a token", d.listen),
            );
        }
    }
    if d.allow_remote && d.token.is_none() {
        return allow_remote?.invalid(
            cx,
            "a remote control API needs a token; add token = { env = \"VAR\" }",
        );
    }
    Some(d)
}

fn read_webhooks(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<WebhooksConfig> {
    let mut t = item.table(cx, &["listen", "allow-remote", "debounce", "max-body"])?;
    let listen = t.get("listen");
    let allow_remote = t.get("allow-remote");
    let debounce = t.get("debounce");
    let max_body = t.get("max-body");
    t.finish(cx);
    let mut w = WebhooksConfig::default();
    if let Some(a) = &allow_remote {
        w.allow_remote = a.bool(cx)?;
    }
    if let Some(d) = &debounce {
        w.debounce = d.duration(cx)?;
        if w.debounce > Duration::from_secs(3600) {
            return d.invalid(
                cx,
                "at most \"1h\"; a webhook should make a run happen soon",
            );
        }
    }
    if let Some(m) = &max_body {
        let n = m.size(cx)?;
        if !(1024..=16 * 1024 * 1024).contains(&n) {
            return m.invalid(cx, "between 1KiB and 16MiB");
        }
        w.max_body = n as usize;
    }
    if let Some(l) = &listen {
        let text = l.str(cx)?;
        w.listen = match text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                return l.invalid(
                    cx,
                    format!("cannot read {text:?} as an address; write ip:port such as {DEFAULT_WEBHOOK_LISTEN:?}"),
                );
            }
        };
        if !w.listen.ip().is_loopback() && !w.allow_remote {
            return l.invalid(
                cx,
                format!("{} is reachable from other machines; use a loopback address behind a TLS proxy, or set allow-remote = true", w.listen),
            );
        }
    }
    Some(w)
}
