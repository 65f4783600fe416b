//! `[state]` (where the redb state file lives) and `[daemon]` (the control API).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::connections::read_secret;
use super::env::{SecretRef, resolve_path};
use super::reader::{Cx, Item};

/// The default state file, relative to the config file's directory.
pub const DEFAULT_STATE_PATH: &str = ".tandem/state.redb";
/// The default control API address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7380";

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
        }
    }
}

pub(crate) fn read_state(cx: &mut Cx<'_>, item: Item<'_, '_>) -> Option<StateConfig> {
    let mut t = item.table(cx, &["path"])?;
    let path = t.get("path");
    t.finish(cx);
    let path = match path {
        Some(p) => resolve_path(cx.base_dir, &p.name(cx)?),
        None => cx.base_dir.join(DEFAULT_STATE_PATH),
    };
    Some(StateConfig { path })
}

pub(crate) fn read_daemon(cx: &mut Cx<'_>, item: Item<'_, '_>) -> Option<DaemonConfig> {
    let mut t = item.table(cx, &["listen", "token", "allow-remote"])?;
    let listen = t.get("listen");
    let token = t.get("token");
    let allow_remote = t.get("allow-remote");
    t.finish(cx);
    let mut d = DaemonConfig::default();
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
