//! `[state]` (where the state lives: a redb file, or a PostgreSQL database shared by a
//! fleet) and `[daemon]` (the control API, `[daemon.webhooks]`: the webhook receiver, and
//! `[daemon.fleet]`: leases when the state is on PostgreSQL).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::connections::read_secret;
use super::env::{SecretRef, resolve_path};
use super::reader::{Item, Reader};
use crate::db::TlsMode;

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
    /// against the config file's directory. With PostgreSQL, only its directory is used
    /// (the compile cache lives beside it).
    pub path: PathBuf,
    /// `cache-size` (redb only): the most memory redb's page cache of the file may hold.
    pub cache_size: u64,
    /// `backend = "postgres"`: the database and how to reach it.
    pub postgres: Option<PostgresConfig>,
}

/// redb's page cache by default: its own default (1 GiB) lets a daemon's memory grow with
/// the file, run after run, while a run reads little of it (docs/performance.md).
pub const DEFAULT_STATE_CACHE: u64 = 64 << 20;

/// `[state] backend = "postgres"` (docs/fleet.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `url`: a reference to `postgres://user:password@host:port/database`.
    pub url: SecretRef,
    /// `tls`.
    pub tls: TlsMode,
    /// `ca-file`: extra root certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// `pool-size`: connections per daemon.
    pub pool_size: usize,
}

/// `[daemon.fleet]`: how daemons sharing a PostgreSQL state divide the syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `lease-ttl`: a sync's owner must renew its lease within this; a dead daemon's
    /// syncs are taken over after it.
    pub lease_ttl: Duration,
    /// `capacity`: the most syncs this daemon owns at once.
    pub capacity: usize,
    /// `id`: this daemon's name in the fleet (default: host name, pid and a random part).
    pub id: Option<String>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            lease_ttl: Duration::from_secs(30),
            capacity: 1000,
            id: None,
        }
    }
}

/// Runs a daemon has in progress at once unless `[daemon] concurrent-runs` says
/// otherwise: enough to keep the apps' latency hidden (a run mostly waits on them), few
/// enough that syncs falling due together do not hold a run's memory each at once
/// (docs/performance.md §3).
pub const DEFAULT_CONCURRENT_RUNS: u32 = 64;
/// The most `[daemon] concurrent-runs` accepts.
pub const MAX_CONCURRENT_RUNS: u32 = 10_000;

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
    /// `[daemon.fleet]`.
    pub fleet: FleetConfig,
    /// `plugin-instances`: plugin instances live at once, per kind (the instance pool's
    /// slots; a call waits for a free one).
    pub plugin_instances: u32,
    /// `concurrent-runs`: runs in progress at once; the others wait their turn.
    pub concurrent_runs: u32,
}

impl StateConfig {
    pub(crate) fn default_in(base: &std::path::Path) -> Self {
        StateConfig {
            path: base.join(DEFAULT_STATE_PATH),
            cache_size: DEFAULT_STATE_CACHE,
            postgres: None,
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
            fleet: FleetConfig::default(),
            plugin_instances: crate::runtime::DEFAULT_INSTANCE_SLOTS,
            concurrent_runs: DEFAULT_CONCURRENT_RUNS,
        }
    }
}

pub(crate) fn read_state(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<StateConfig> {
    let mut t = item.table(
        cx,
        &[
            "path",
            "cache-size",
            "backend",
            "url",
            "tls",
            "ca-file",
            "pool-size",
        ],
    )?;
    let path = t.get("path");
    let cache_size = t.get("cache-size");
    let backend = t.get("backend");
    let url = t.get("url");
    let tls = t.get("tls");
    let ca_file = t.get("ca-file");
    let pool_size = t.get("pool-size");
    t.finish(cx);
    let path = match path {
        Some(p) => resolve_path(cx.base_dir, &p.name(cx)?),
        None => cx.base_dir.join(DEFAULT_STATE_PATH),
    };
    let cache = match &cache_size {
        Some(c) => {
            let n = c.size(cx)?;
            if !((1 << 20)..=(64 << 30)).contains(&n) {
                return c.invalid(cx, "between \"1MiB\" and \"64GiB\"");
            }
            n
        }
        None => DEFAULT_STATE_CACHE,
    };
    let postgres = match &backend {
        None => false,
        Some(b) => match b.str(cx)? {
            "redb" => false,
            "postgres" => true,
            other => {
                return b.invalid(
                    cx,
                    format!("unknown backend {other:?}; use \"redb\" (one machine) or \"postgres\" (a fleet)"),
                );
            }
        },
    };
    if !postgres {
        // PostgreSQL keys without the backend would be silently ignored.
        if let Some(k) = url
            .as_ref()
            .or(tls.as_ref())
            .or(ca_file.as_ref())
            .or(pool_size.as_ref())
        {
            return k.invalid(
                cx,
                "only used with backend = \"postgres\"; add it, or remove this key",
            );
        }
        return Some(StateConfig {
            path,
            cache_size: cache,
            postgres: None,
        });
    }
    if let Some(c) = &cache_size {
        return c.invalid(
            cx,
            "only used with backend = \"redb\" (PostgreSQL has its own cache: shared_buffers); remove this key",
        );
    }
    let Some(url) = url else {
        return backend?.invalid(
            cx,
            "backend = \"postgres\" needs url = { env = \"TANDEM_DATABASE_URL\" } (a reference to postgres://user:password@host:port/database)",
        );
    };
    let url = read_secret(cx, &url)?;
    let tls = match &tls {
        Some(t) => match t.str(cx)?.parse::<TlsMode>() {
            Ok(m) => m,
            Err(e) => return t.invalid(cx, e),
        },
        None => TlsMode::default(),
    };
    let ca_file = match &ca_file {
        Some(f) => Some(resolve_path(cx.base_dir, &f.name(cx)?)),
        None => None,
    };
    let pool_size = match &pool_size {
        Some(p) => {
            let n = p.u64(cx)?;
            if !(1..=256).contains(&n) {
                return p.invalid(cx, "between 1 and 256 connections");
            }
            n as usize
        }
        None => crate::db::pg::DEFAULT_POOL_SIZE,
    };
    Some(StateConfig {
        path,
        cache_size: cache,
        postgres: Some(PostgresConfig {
            url,
            tls,
            ca_file,
            pool_size,
        }),
    })
}

fn read_fleet(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<FleetConfig> {
    let mut t = item.table(cx, &["lease-ttl", "capacity", "id"])?;
    let ttl = t.get("lease-ttl");
    let capacity = t.get("capacity");
    let id = t.get("id");
    t.finish(cx);
    let mut f = FleetConfig::default();
    if let Some(d) = &ttl {
        f.lease_ttl = d.duration(cx)?;
        if !(Duration::from_secs(3)..=Duration::from_secs(3600)).contains(&f.lease_ttl) {
            return d.invalid(cx, "between \"3s\" and \"1h\"");
        }
    }
    if let Some(c) = &capacity {
        let n = c.u64(cx)?;
        if n == 0 {
            return c.invalid(cx, "at least 1 sync");
        }
        f.capacity = n as usize;
    }
    if let Some(i) = &id {
        let text = i.str(cx)?;
        if text.is_empty() || text.len() > 100 || text.chars().any(char::is_control) {
            return i.invalid(cx, "a name of 1 to 100 printable characters");
        }
        f.id = Some(text.to_string());
    }
    Some(f)
}

pub(crate) fn read_daemon(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<DaemonConfig> {
    let mut t = item.table(
        cx,
        &[
            "listen",
            "token",
            "allow-remote",
            "webhooks",
            "fleet",
            "plugin-instances",
            "concurrent-runs",
        ],
    )?;
    let plugin_instances = t.get("plugin-instances");
    let concurrent_runs = t.get("concurrent-runs");
    let listen = t.get("listen");
    let token = t.get("token");
    let allow_remote = t.get("allow-remote");
    let webhooks = t.get("webhooks");
    let fleet = t.get("fleet");
    t.finish(cx);
    let mut d = DaemonConfig::default();
    if let Some(p) = &plugin_instances {
        let n = p.u64(cx)?;
        let max = crate::runtime::MAX_INSTANCE_SLOTS;
        if !(1..=u64::from(max)).contains(&n) {
            return p.invalid(cx, format!("between 1 and {max} instances"));
        }
        d.plugin_instances = n as u32;
    }
    if let Some(c) = &concurrent_runs {
        let n = c.u64(cx)?;
        if !(1..=u64::from(MAX_CONCURRENT_RUNS)).contains(&n) {
            return c.invalid(cx, format!("between 1 and {MAX_CONCURRENT_RUNS} runs"));
        }
        d.concurrent_runs = n as u32;
    }
    if let Some(f) = fleet {
        d.fleet = read_fleet(cx, f)?;
    }
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
