//! `[plugins.NAME]`: where a plugin comes from and what the operator grants it.
//!
//! A plugin gets what its manifest asks for AND what is granted here (deny by default):
//! this section is the operator's half of that intersection.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::{KeyPath, Location};
use super::reader::{Item, Reader};

/// One `[plugins.NAME]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The name connections and syncs use to refer to it.
    pub name: String,
    /// Where the component comes from.
    pub source: PluginSource,
    /// What the operator grants it.
    pub grant: GrantConfig,
    /// Where the entry is (for errors found later, e.g. when loading).
    pub at: Location,
    /// Where `sha256` is, when the plugin is a file.
    pub(crate) pin_at: Option<(Location, KeyPath)>,
    /// Where `builtin` or `path` is.
    pub(crate) source_at: Location,
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// One of the first-party plugins embedded in the `tandem` binary.
    Builtin(String),
    /// A component file, pinned by its SHA-256 digest.
    File {
        /// The file, resolved against the config file's directory.
        path: PathBuf,
        /// The digest the file must have.
        sha256: [u8; 32],
    },
}

/// The operator's grant (`[plugins.NAME.grant]`). Everything not granted is denied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrantConfig {
    /// Origins the plugin may send HTTP requests to, normalised to `scheme://host[:port]`;
    /// a host may start with `*.` to cover its subdomains. `setting:K` grants the origin of
    /// the connection's setting `K` (e.g. `setting:base-url`); `*` grants every origin the
    /// plugin's manifest requests.
    pub http: Vec<String>,
    /// Allow requests to loopback addresses (127.0.0.0/8, ::1), e.g. the simulated accounts.
    pub loopback: bool,
    /// Allow requests to private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7,
    /// local-use NAT64). Link-local addresses (cloud metadata) stay blocked.
    pub private_networks: bool,
    /// Storage quota in bytes for each (plugin, connection) namespace; `None`: the runtime's default.
    pub storage_quota: Option<u64>,
    /// Limit overrides; `None` fields keep the runtime's defaults.
    pub limits: LimitOverrides,
}

/// Per-call limits an operator may override (`[plugins.NAME.grant.limits]`); `None`
/// keeps the runtime's default. A plugin's manifest may lower memory and timeout further.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// Linear memory, summed over all memories of an instance, in bytes (rounded up to MiB).
    pub memory: Option<u64>,
    /// Wall-clock time of one call.
    pub timeout: Option<Duration>,
    /// Time a connector may spend running its own code in one call.
    pub cpu: Option<Duration>,
    /// Fuel (roughly, instructions) of one mapper call.
    pub fuel: Option<u64>,
    /// Largest HTTP request body a connector may send, in bytes.
    pub request_size: Option<u64>,
    /// Largest HTTP response body the host accepts for a connector, in bytes.
    pub response_size: Option<u64>,
    /// Log lines a connector may write per run, across its calls.
    pub log_lines_per_run: Option<u64>,
    /// Log bytes a connector may write per run.
    pub log_size_per_run: Option<u64>,
    /// Log lines a connection may write per hour, across runs.
    pub log_lines_per_hour: Option<u64>,
    /// Log bytes a connection may write per hour.
    pub log_size_per_hour: Option<u64>,
}

impl LimitOverrides {
    /// The keys set that do not apply to `kind` (fuel is for mappers; network for connectors).
    pub(crate) fn misplaced(&self, kind: crate::runtime::PluginKind) -> Vec<&'static str> {
        use crate::runtime::PluginKind::{Connector, Mapper};
        let mut out = Vec::new();
        match kind {
            Connector if self.fuel.is_some() => out.push("fuel"),
            Mapper => {
                for (key, set) in [
                    ("cpu", self.cpu.is_some()),
                    ("request-size", self.request_size.is_some()),
                    ("response-size", self.response_size.is_some()),
                    ("log-lines-per-run", self.log_lines_per_run.is_some()),
                    ("log-size-per-run", self.log_size_per_run.is_some()),
                    ("log-lines-per-hour", self.log_lines_per_hour.is_some()),
                    ("log-size-per-hour", self.log_size_per_hour.is_some()),
                ] {
                    if set {
                        out.push(key);
                    }
                }
            }
            _ => {}
        }
        out
    }
}

const PLUGIN_KEYS: &[&str] = &["builtin", "path", "sha256", "grant"];
const GRANT_KEYS: &[&str] = &[
    "http",
    "loopback",
    "private-networks",
    "storage-quota",
    "limits",
];
const LIMIT_KEYS: &[&str] = &[
    "memory",
    "timeout",
    "cpu",
    "fuel",
    "request-size",
    "response-size",
    "log-lines-per-run",
    "log-size-per-run",
    "log-lines-per-hour",
    "log-size-per-hour",
];

/// Reads `[plugins]`.
pub(crate) fn read_plugins(cx: &mut Reader<'_>, section: Item<'_, '_>) -> Vec<PluginConfig> {
    let Some(mut plugins) = section.table(cx, &[]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, item) in plugins.entries() {
        if let Some(p) = read_plugin(cx, name, item) {
            out.push(p);
        }
    }
    out
}

fn read_plugin(cx: &mut Reader<'_>, name: &str, item: Item<'_, '_>) -> Option<PluginConfig> {
    let mut t = item.table(cx, PLUGIN_KEYS)?;
    let builtin = t.get("builtin");
    let path = t.get("path");
    let sha = t.get("sha256");
    let grant = t.get("grant");
    let at = t.loc(cx);
    let mut pin_at = None;
    let source_at = builtin
        .as_ref()
        .or(path.as_ref())
        .map_or_else(|| at.clone(), |i| i.loc(cx));
    let source = match (builtin, path) {
        (Some(b), None) => {
            if let Some(sha) = &sha {
                sha.invalid::<()>(
                    cx,
                    "a builtin plugin is not pinned; remove sha256 (it pins a `path`)",
                );
            }
            b.name(cx).map(PluginSource::Builtin)
        }
        (None, Some(p)) => {
            let path = p
                .name(cx)
                .map(|s| super::env::resolve_path(cx.base_dir, &s));
            let digest = match &sha {
                Some(s) => {
                    pin_at = Some((s.loc(cx), s.path.clone()));
                    read_sha256(cx, s)
                }
                None => {
                    cx.push(super::ConfigError::Missing {
                        at: t.loc(cx),
                        key: t.path.key("sha256"),
                        hint: "a plugin file must be pinned: add sha256 = \"<hex digest>\" (print it with `sha256sum FILE`)".into(),
                    });
                    None
                }
            };
            Some(PluginSource::File {
                path: path?,
                sha256: digest?,
            })
        }
        (Some(_), Some(p)) => p.invalid(cx, "builtin and path are exclusive; keep one of them"),
        (None, None) => {
            cx.push(super::ConfigError::Missing {
                at: t.loc(cx),
                key: t.path.key("builtin"),
                hint: "say where the plugin comes from: builtin = \"freshsales\" or path = \"plugin.wasm\" with sha256".into(),
            });
            None
        }
    };
    let grant = match grant {
        Some(g) => read_grant(cx, g),
        None => Some(GrantConfig::default()),
    };
    t.finish(cx);
    // A failed grant has been reported; the source is still checked in pass 2.
    Some(PluginConfig {
        name: name.to_owned(),
        source: source?,
        grant: grant.unwrap_or_default(),
        at,
        pin_at,
        source_at,
    })
}

fn read_sha256(cx: &mut Reader<'_>, item: &Item<'_, '_>) -> Option<[u8; 32]> {
    let s = item.str(cx)?;
    let mut out = [0u8; 32];
    match hex::decode_to_slice(s.trim(), &mut out) {
        Ok(()) => Some(out),
        Err(_) => item.invalid(
            cx,
            "expected 64 hexadecimal digits (the output of `sha256sum FILE`)",
        ),
    }
}

fn read_grant(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<GrantConfig> {
    let mut t = item.table(cx, GRANT_KEYS)?;
    let mut g = GrantConfig::default();
    let mut ok = true;
    if let Some(i) = t.get("loopback") {
        g.loopback = i.bool(cx).unwrap_or_else(|| {
            ok = false;
            false
        });
    }
    if let Some(i) = t.get("private-networks") {
        g.private_networks = i.bool(cx).unwrap_or_else(|| {
            ok = false;
            false
        });
    }
    if let Some(i) = t.get("http") {
        match i.array(cx) {
            Some(items) => {
                for o in items {
                    match read_origin(cx, &o, &g) {
                        Some(origin) => g.http.push(origin),
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    if let Some(i) = t.get("storage-quota") {
        g.storage_quota = i.size(cx);
        ok &= g.storage_quota.is_some();
    }
    if let Some(i) = t.get("limits") {
        match read_limits(cx, i) {
            Some(l) => g.limits = l,
            None => ok = false,
        }
    }
    t.finish(cx);
    ok.then_some(g)
}

fn read_limits(cx: &mut Reader<'_>, item: Item<'_, '_>) -> Option<LimitOverrides> {
    let mut t = item.table(cx, LIMIT_KEYS)?;
    let mut l = LimitOverrides::default();
    let mut ok = true;
    for (key, slot) in [
        ("memory", &mut l.memory),
        ("request-size", &mut l.request_size),
        ("response-size", &mut l.response_size),
        ("log-size-per-run", &mut l.log_size_per_run),
        ("log-size-per-hour", &mut l.log_size_per_hour),
    ] {
        if let Some(i) = t.get(key) {
            let v = i.size(cx);
            *slot = positive(cx, &i, v);
            ok &= slot.is_some();
        }
    }
    for (key, slot) in [("timeout", &mut l.timeout), ("cpu", &mut l.cpu)] {
        if let Some(i) = t.get(key) {
            *slot = match i.duration(cx) {
                Some(d) if d.is_zero() => i.invalid(cx, "must be longer than 0s"),
                d => d,
            };
            ok &= slot.is_some();
        }
    }
    for (key, slot) in [
        ("fuel", &mut l.fuel),
        ("log-lines-per-run", &mut l.log_lines_per_run),
        ("log-lines-per-hour", &mut l.log_lines_per_hour),
    ] {
        if let Some(i) = t.get(key) {
            let v = i.u64(cx);
            *slot = positive(cx, &i, v);
            ok &= slot.is_some();
        }
    }
    t.finish(cx);
    ok.then_some(l)
}

fn positive(cx: &mut Reader<'_>, item: &Item<'_, '_>, v: Option<u64>) -> Option<u64> {
    match v {
        Some(0) => item.invalid(cx, "must be greater than 0"),
        v => v,
    }
}

/// Reads one origin: a literal `scheme://host[:port]` (no path), or `{ env = "VAR" }`
/// whose value is a URL (its origin is taken, so a base URL can be reused).
pub(crate) fn read_origin(
    cx: &mut Reader<'_>,
    item: &Item<'_, '_>,
    grant: &GrantConfig,
) -> Option<String> {
    let from_env = !matches!(item.value.get_ref(), toml::de::DeValue::String(_));
    let text = item.interpolated(cx)?;
    if !from_env {
        // `*` (every origin the manifest requests) and `setting:K` (the origin of the
        // connection's setting K) are resolved by the runtime per connection.
        if text == "*" {
            return Some(text);
        }
        if let Some(key) = text.strip_prefix("setting:") {
            if key.trim().is_empty() {
                return item.invalid(cx, "name the setting: \"setting:base-url\"");
            }
            return Some(text);
        }
    }
    let origin = match parse_origin(&text, from_env) {
        Ok(o) => o,
        Err(problem) => return item.invalid(cx, problem),
    };
    let ip = origin
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    let is_loopback = origin.host == "localhost" || ip.is_some_and(|ip| ip.is_loopback());
    if is_loopback && !grant.loopback {
        return item.invalid(
            cx,
            format!(
                "{} is a loopback origin; also set loopback = true in this grant to allow it",
                origin.text
            ),
        );
    }
    if let Some(why) = ip.and_then(never_reachable) {
        return item.invalid(cx, format!("{why}, whatever the grant says"));
    }
    if ip.is_some_and(is_private) && !grant.private_networks {
        return item.invalid(
            cx,
            format!(
                "{} is a private-network origin; also set private-networks = true in this grant to allow it",
                origin.text
            ),
        );
    }
    Some(origin.text)
}

/// Whether `ip` is reachable only with `private-networks = true` (the runtime's rule).
fn is_private(ip: IpAddr) -> bool {
    let loopback_only = crate::runtime::capabilities::AddressPolicy {
        allow_loopback: true,
        allow_private: false,
    };
    loopback_only.check(ip).is_err() && never_reachable(ip).is_none()
}

/// Why no grant opens `ip` (link-local, documentation, reserved...), if so.
fn never_reachable(ip: IpAddr) -> Option<String> {
    let everything = crate::runtime::capabilities::AddressPolicy {
        allow_loopback: true,
        allow_private: true,
    };
    everything.check(ip).err().map(|e| e.to_string())
}

struct Origin {
    text: String,
    host: String,
}

fn parse_origin(text: &str, allow_path: bool) -> Result<Origin, String> {
    const FORM: &str = "write an origin such as \"https://api.example.com\", \"https://*.example.com\" or \"http://127.0.0.1:8080\"";
    let wildcard = text.contains("://*.");
    let parsable = text.replacen("://*.", "://wildcard.", 1);
    let url = url::Url::parse(&parsable)
        .map_err(|e| format!("cannot read {text:?} as an origin ({e}); {FORM}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not http or https; {FORM}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{text:?} carries credentials; grant only scheme://host[:port]"
        ));
    }
    let has_path = url.path() != "/" || url.query().is_some() || url.fragment().is_some();
    if has_path && !allow_path {
        return Err(format!(
            "an origin has no path; write {:?}",
            url.origin().ascii_serialization()
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(format!("{text:?} has no host; {FORM}"));
    };
    if host.contains('*') {
        return Err(format!(
            "{text:?}: a wildcard may only open the host, as in https://*.example.com"
        ));
    }
    let host = if wildcard {
        format!("*.{}", host.trim_start_matches("wildcard."))
    } else {
        host.to_owned()
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(Origin {
        text: format!("{}://{host}{port}", url.scheme()),
        host,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn origins_are_normalised() {
        let o = |s| parse_origin(s, false).map(|o| o.text);
        assert_eq!(
            o("https://API.example.com").unwrap(),
            "https://api.example.com"
        );
        assert_eq!(
            o("https://*.myfreshworks.com").unwrap(),
            "https://*.myfreshworks.com"
        );
        assert_eq!(o("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(o("https://example.com:443").unwrap(), "https://example.com");
        assert!(
            o("https://example.com/api")
                .unwrap_err()
                .contains("an origin has no path")
        );
        assert!(o("ftp://example.com").is_err());
        assert!(o("https://a.*.example.com").is_err());
        assert_eq!(
            parse_origin("http://127.0.0.1:4001/crm/sales/api", true)
                .unwrap()
                .text,
            "http://127.0.0.1:4001"
        );
    }
}
