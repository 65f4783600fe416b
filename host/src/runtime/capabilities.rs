//! Capabilities, deny by default.
//!
//! * **Interfaces**: before a component is instantiated its imports are checked against
//!   an allowlist: the contract's own interfaces for its kind (mappers: `log` only) and
//!   harmless WASI (`wasi:io`, `wasi:cli` environment/exit/std streams/terminal,
//!   `wasi:clocks`, `wasi:random`, and `wasi:filesystem` / `wasi:sockets`, which the
//!   TypeScript and Python toolchains always import, linked empty: no directory, no
//!   network, see `state.rs`). `wasi:http`, `wasi:cli/run` and anything else are refused. The contract version is read from the `tandem:plugin/...@X.Y.Z` names
//!   and must fall in [`SUPPORTED_CONTRACT`].
//! * **Grants**: the effective grant of a connection is the manifest's request
//!   intersected with the operator's [`Grant`]; an empty side means nothing.
//! * **Egress**: origin patterns (`scheme://host[:port]`, `*.` as a leading label only,
//!   `setting:K` for the origin of connection setting `K`) and the blocked address
//!   ranges: everything but globally reachable unicast ([`AddressPolicy`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use semver::{Version, VersionReq};
use url::Url;

use super::limits::ConnectorLimits;
use super::manifest::{Manifest, PluginKind};

/// The contract versions this host serves, as a semver requirement.
pub const SUPPORTED_CONTRACT: &str = ">=0.1.0, <0.2.0";

/// The contract's WIT package name.
pub const CONTRACT_PACKAGE: &str = "tandem:plugin";

/// Why a component's interfaces are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceError {
    /// The component imports something outside the allowlist.
    #[error(
        "imports {}, which {kind} plugins may not use ({}); remove the code or dependency that pulls them in",
        list_imports(.imports),
        .reasons.join("; ")
    )]
    ForbiddenImport {
        /// Every refused import name.
        imports: Vec<String>,
        /// The plugin kind.
        kind: PluginKind,
        /// Why they are refused (one entry per distinct reason).
        reasons: Vec<&'static str>,
    },
    /// The component was built for a contract version this host does not serve.
    #[error(
        "was built for contract {CONTRACT_PACKAGE}@{found}, but this host (tandem {host}) supports {CONTRACT_PACKAGE} {SUPPORTED_CONTRACT}; rebuild the plugin against a supported tandem-sdk"
    )]
    UnsupportedContract {
        /// The plugin's contract version.
        found: String,
        /// This host's version.
        host: &'static str,
    },
    /// The manifest's optional `contract` line names another version than the one the
    /// component's interfaces carry (which its SDK put there).
    #[error(
        "its manifest says contract = \"{manifest}\" but the component was built for {CONTRACT_PACKAGE}@{component} (its tandem-sdk embeds that version); delete the `contract` line from tandem.toml or set it to \"{component}\""
    )]
    ManifestContract {
        /// The manifest's `contract`.
        manifest: String,
        /// The version the component's interface names carry.
        component: Version,
    },
    /// The component does not export the interface its kind requires.
    #[error("does not export `{CONTRACT_PACKAGE}/{expected}`; is it really a {kind} plugin?")]
    MissingExport {
        /// The interface expected.
        expected: &'static str,
        /// The declared kind.
        kind: PluginKind,
    },
}

/// `a`, `b`, `c` and 4 more.
fn list_imports(imports: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut out = imports
        .iter()
        .take(SHOWN)
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if imports.len() > SHOWN {
        out.push_str(&format!(" and {} more", imports.len() - SHOWN));
    }
    out
}

/// Checks a component's import and export names for `kind`; returns the contract version.
pub fn check_interfaces(
    kind: PluginKind,
    imports: &[String],
    exports: &[String],
) -> Result<Version, InterfaceError> {
    let contract = contract_version(imports.iter().chain(exports))?;
    let mut refused = Vec::new();
    let mut reasons = Vec::new();
    for import in imports {
        if let Err(why) = import_allowed(kind, import) {
            refused.push(import.clone());
            if !reasons.contains(&why) {
                reasons.push(why);
            }
        }
    }
    if !refused.is_empty() {
        return Err(InterfaceError::ForbiddenImport {
            imports: refused,
            kind,
            reasons,
        });
    }
    let expected = match kind {
        PluginKind::Connector => "connector-api",
        PluginKind::Mapper => "mapper-api",
    };
    let exported = exports
        .iter()
        .filter_map(|e| split_name(e))
        .any(|(pkg, iface, _)| pkg == CONTRACT_PACKAGE && iface == expected);
    if !exported {
        return Err(InterfaceError::MissingExport { expected, kind });
    }
    contract.ok_or(InterfaceError::MissingExport { expected, kind })
}

/// Checks the contract version named by the `tandem:plugin/...@X.Y.Z` imports and exports
/// (kind-independent, so it runs before the manifest is read).
pub fn check_contract(
    imports: &[String],
    exports: &[String],
) -> Result<Option<Version>, InterfaceError> {
    contract_version(imports.iter().chain(exports))
}

/// Checks a manifest's optional `contract` line against the version the component's
/// interfaces carry: the component is what the host runs, so a hand-written line that
/// disagrees is refused rather than believed or silently ignored.
pub fn check_manifest_contract(
    manifest: Option<&str>,
    component: &Version,
) -> Result<(), InterfaceError> {
    match manifest {
        Some(line) if Version::parse(line).ok().as_ref() != Some(component) => {
            Err(InterfaceError::ManifestContract {
                manifest: super::text::clean_line(line),
                component: component.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Checks a contract version string (from a manifest) against [`SUPPORTED_CONTRACT`].
pub fn check_contract_version(version: &str) -> Result<Version, InterfaceError> {
    let unsupported = || InterfaceError::UnsupportedContract {
        found: version.to_owned(),
        host: env!("CARGO_PKG_VERSION"),
    };
    let parsed = Version::parse(version).map_err(|_| unsupported())?;
    if supported_req().matches(&parsed) {
        Ok(parsed)
    } else {
        Err(unsupported())
    }
}

fn supported_req() -> VersionReq {
    VersionReq::parse(SUPPORTED_CONTRACT).expect("SUPPORTED_CONTRACT is a valid requirement")
}

/// The contract version named by every `tandem:plugin/...@X.Y.Z`; all must be supported.
fn contract_version<'a>(
    names: impl Iterator<Item = &'a String>,
) -> Result<Option<Version>, InterfaceError> {
    let mut found: Option<Version> = None;
    for (pkg, _, version) in names.filter_map(|n| split_name(n)) {
        if pkg != CONTRACT_PACKAGE {
            continue;
        }
        let version = check_contract_version(version.unwrap_or("unversioned"))?;
        if found.as_ref().is_none_or(|f| version > *f) {
            found = Some(version);
        }
    }
    Ok(found)
}

/// `ns:pkg/iface@ver` -> (`ns:pkg`, `iface`, `ver`).
fn split_name(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let (path, version) = match name.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (name, None),
    };
    let (pkg, iface) = path.split_once('/')?;
    Some((pkg, iface, version))
}

fn import_allowed(kind: PluginKind, name: &str) -> Result<(), &'static str> {
    let Some((pkg, iface, _)) = split_name(name) else {
        return Err("not an interface of the contract or of WASI");
    };
    match pkg {
        CONTRACT_PACKAGE => match (kind, iface) {
            (_, "types" | "log" | "config") => Ok(()),
            (PluginKind::Connector, "http" | "storage") => Ok(()),
            (PluginKind::Mapper, "http" | "storage") => {
                Err("mappers are pure: they may only log and read their settings")
            }
            _ => Err("not a host interface of the contract"),
        },
        "wasi:io" | "wasi:clocks" | "wasi:random" => Ok(()),
        "wasi:cli" => match iface {
            "environment" | "exit" | "stdin" | "stdout" | "stderr" | "terminal-input"
            | "terminal-output" | "terminal-stdin" | "terminal-stdout" | "terminal-stderr" => {
                Ok(())
            }
            _ => Err("only environment, exit, std streams and terminal are provided"),
        },
        // Linked empty (no preopened directory; no TCP, UDP, name lookup or address): the
        // TypeScript and Python toolchains import them whatever the plugin does.
        "wasi:filesystem" => match iface {
            "types" | "preopens" => Ok(()),
            _ => Err("only the empty filesystem (no directories) is provided"),
        },
        "wasi:sockets" => match iface {
            "network" | "instance-network" | "tcp" | "tcp-create-socket" | "udp"
            | "udp-create-socket" | "ip-name-lookup" => Ok(()),
            _ => Err("only the empty sockets (no network) are provided"),
        },
        "wasi:http" => Err("use the contract's http interface, which the host polices"),
        _ => Err("not an interface of the contract or of harmless WASI"),
    }
}

/// What the operator grants one connection. `Grant::default()` grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Origins the plugin may call, intersected with the manifest's request.
    /// Same syntax as the manifest (`https://*.example.com`, `setting:base-url`);
    /// `"*"` means "every origin the manifest requests".
    pub http: Vec<String>,
    /// Origins the connection's credentials may be attached to, intersected with the
    /// manifest's auth origins (same syntax; `"*"`: every origin the auth profile names).
    /// `None`: the origin of the connection's `base-url` setting only, or, for a
    /// connection without one, the origins of `http`.
    pub auth_origins: Option<Vec<String>>,
    /// Allow loopback addresses (127.0.0.0/8, ::1). Off by default; the simulated
    /// accounts of the demo and tests live on 127.0.0.1.
    pub allow_loopback: bool,
    /// Allow private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7,
    /// fec0::/10, local-use NAT64 64:ff9b:1::/48). Never link-local (cloud metadata).
    pub allow_private: bool,
    /// Storage for this connection; `None` means none: reads find nothing, writes fail
    /// with quota-exceeded, and what an earlier grant stored is kept.
    pub storage: Option<StorageGrant>,
    /// The operator's name for the plugin (`[plugins.NAME]`); with the connection id it
    /// keys the storage namespace, so that no plugin can pick another's. `None` (a plugin
    /// run outside a config): the plugin's sha256 keys it.
    pub plugin: Option<String>,
    /// Per-call caps (the manifest may lower memory and timeout).
    pub limits: ConnectorLimits,
}

/// The operator's storage grant for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageGrant {
    /// Most bytes (keys + values) the namespace may hold; the manifest may ask for less.
    pub quota_bytes: u64,
    /// Most keys the namespace may hold.
    pub max_keys: u64,
}

impl Default for StorageGrant {
    fn default() -> Self {
        Self {
            quota_bytes: 1024 * 1024,
            max_keys: 10_000,
        }
    }
}

/// A parsed origin pattern: scheme, host (exact or `*.suffix`) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// Matches any host with at least one more label in front of the suffix.
    Subdomains(String),
}

/// One entry of an origin list, before settings are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginSpec {
    /// A literal pattern.
    Pattern(OriginPattern),
    /// The origin of connection setting `K` (`setting:K`).
    Setting(String),
    /// `*`: whatever the other side allows (operator grants only).
    Any,
}

/// Why an entry of an origin list does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// A bare `*` where only the operator may write one.
    #[error("`*` alone is not a valid origin; list the origins")]
    BareWildcard,
    /// `setting:` without a setting name.
    #[error("`{0}`: name the setting after `setting:`")]
    NoSettingName(String),
    /// Not `scheme://host[:port]`.
    #[error("`{text}` is not a valid origin: {why}")]
    Invalid {
        /// The entry as written.
        text: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Why a plugin may not send a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The plugin's manifest does not list the origin.
    #[error("{0} is not among the origins the plugin's manifest requests")]
    NotRequested(String),
    /// The operator's grant does not cover the origin.
    #[error("{0} is not among the origins the operator granted this connection")]
    NotGranted(String),
    /// The address is in a blocked range.
    #[error("{ip} is a {range} address, which plugins may not reach")]
    Address {
        /// The address.
        ip: IpAddr,
        /// Its blocked range.
        range: Range,
    },
    /// The address embeds an IPv4 address in a blocked range (6to4, NAT64, mapped...).
    #[error("{ip} embeds {embedded}, a {range} address, which plugins may not reach")]
    Embedded {
        /// The address.
        ip: IpAddr,
        /// The IPv4 address it embeds.
        embedded: Ipv4Addr,
        /// The embedded address's blocked range.
        range: Range,
    },
}

impl OriginSpec {
    /// Parses one entry; `allow_any` admits the bare `*`.
    pub fn parse(text: &str, allow_any: bool) -> Result<Self, OriginError> {
        let text = text.trim();
        if text == "*" {
            return if allow_any {
                Ok(Self::Any)
            } else {
                Err(OriginError::BareWildcard)
            };
        }
        if let Some(key) = text.strip_prefix("setting:") {
            if key.is_empty() {
                return Err(OriginError::NoSettingName(text.to_owned()));
            }
            return Ok(Self::Setting(key.to_owned()));
        }
        OriginPattern::parse(text).map(Self::Pattern)
    }
}

impl OriginPattern {
    /// Parses `scheme://host[:port]` (no path, query or credentials); `*.` may lead the host.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let bad = |why: &str| OriginError::Invalid {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host[:port]"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad("an origin has no path, query or credentials"));
        }
        let (wildcard, authority) = match authority.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, authority),
        };
        if authority.contains('*') {
            return Err(bad("`*.` is only allowed as the leading label"));
        }
        let url =
            Url::parse(&format!("{scheme}://{authority}/")).map_err(|e| bad(&e.to_string()))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("missing host"))?
            .to_owned();
        if wildcard
            && url
                .host()
                .is_some_and(|h| !matches!(h, url::Host::Domain(_)))
        {
            return Err(bad("`*.` applies to domain names, not IP addresses"));
        }
        if wildcard && !host.contains('.') {
            return Err(bad(
                "`*.` needs at least two labels after it (`*.example.com`)",
            ));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad("missing port"))?;
        let host = if wildcard {
            HostPattern::Subdomains(host)
        } else {
            HostPattern::Exact(host)
        };
        Ok(Self { scheme, host, port })
    }

    /// The exact origin of a URL.
    pub fn of_url(url: &Url) -> Option<Self> {
        Some(Self {
            scheme: url.scheme().to_owned(),
            host: HostPattern::Exact(url.host_str()?.to_owned()),
            port: url.port_or_known_default()?,
        })
    }

    /// Whether some URL could match both patterns (two different exact hosts cannot).
    fn may_overlap(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.port == other.port
            && !matches!(
                (&self.host, &other.host),
                (HostPattern::Exact(a), HostPattern::Exact(b)) if a != b
            )
    }

    /// Whether `url` (already parsed, so host normalised) matches this pattern.
    pub fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme || url.port_or_known_default() != Some(self.port) {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        match &self.host {
            HostPattern::Exact(h) => host == h,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty()),
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(h) => write!(f, "{}://{h}:{}", self.scheme, self.port),
            HostPattern::Subdomains(h) => write!(f, "{}://*.{h}:{}", self.scheme, self.port),
        }
    }
}

/// The default auth origin of a connection with a `base-url` setting.
const BASE_URL_SPEC: &str = "setting:base-url";

/// Whether `url` matches an entry of `specs` other than `*` (`setting:K` read from
/// `settings`), e.g. an operator's explicit grant.
pub fn origin_listed(specs: &[String], settings: &BTreeMap<String, String>, url: &Url) -> bool {
    resolve_specs(specs, settings, true)
        .1
        .iter()
        .any(|p| p.matches(url))
}

/// Resolves an origin list against connection settings; unresolvable entries grant nothing.
fn resolve_specs(
    specs: &[String],
    settings: &BTreeMap<String, String>,
    allow_any: bool,
) -> (bool, Vec<OriginPattern>) {
    let mut any = false;
    let mut out = Vec::new();
    for text in specs {
        match OriginSpec::parse(text, allow_any) {
            Ok(OriginSpec::Any) => any = true,
            Ok(OriginSpec::Pattern(p)) => out.push(p),
            Ok(OriginSpec::Setting(key)) => {
                match settings.get(&key).map(|v| Url::parse(v.trim())) {
                    Some(Ok(url)) => match OriginPattern::of_url(&url) {
                        Some(p) if matches!(url.scheme(), "http" | "https") => out.push(p),
                        _ => {
                            tracing::warn!(setting = %key, "setting is not an http(s) URL; origin not granted")
                        }
                    },
                    Some(Err(e)) => {
                        tracing::debug!(setting = %key, error = %e, "setting is not a URL; origin not granted")
                    }
                    None => tracing::debug!(setting = %key, "setting missing; origin not granted"),
                }
            }
            Err(e) => tracing::debug!(error = %e, "origin entry ignored"),
        }
    }
    (any, out)
}

/// The HTTP part of an effective grant: a URL must match both sides.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    requested: Vec<OriginPattern>,
    operator_any: bool,
    granted: Vec<OriginPattern>,
    /// Origins credentials are attached to (the auth profile's, within the grant)...
    auth: Vec<OriginPattern>,
    /// ...and within the operator's auth origins (`None`: `*`).
    operator_auth: Option<Vec<OriginPattern>>,
    /// Address ranges allowed despite being blocked by default.
    pub addresses: AddressPolicy,
}

impl EgressPolicy {
    /// Intersects the manifest's request with the operator's grant for a connection.
    pub fn new(manifest: &Manifest, grant: &Grant, settings: &BTreeMap<String, String>) -> Self {
        let (_, requested) = resolve_specs(&manifest.http.origins, settings, false);
        let (operator_any, granted) = resolve_specs(&grant.http, settings, true);
        let auth = match manifest.auth.as_ref().and_then(|a| a.origins()) {
            Some(origins) => resolve_specs(origins, settings, false).1,
            None => requested.clone(),
        };
        // Where credentials may go by default: the base URL's origin (a test account, a
        // proxy) when there is one, else what the operator granted for HTTP.
        let base_url = [BASE_URL_SPEC.to_owned()];
        let auth_specs: &[String] = match &grant.auth_origins {
            Some(specs) => specs.as_slice(),
            None if settings.contains_key("base-url") => &base_url,
            None => &grant.http,
        };
        let operator_auth = match resolve_specs(auth_specs, settings, true) {
            (true, _) => None,
            (false, patterns) => Some(patterns),
        };
        Self {
            requested,
            operator_any,
            granted,
            auth,
            operator_auth,
            addresses: AddressPolicy {
                allow_loopback: grant.allow_loopback,
                allow_private: grant.allow_private,
            },
        }
    }

    /// `Ok` if `url` is allowed by both the manifest and the operator, else the reason.
    pub fn check_url(&self, url: &Url) -> Result<(), Denied> {
        let origin = OriginPattern::of_url(url)
            .map(|o| o.to_string())
            .unwrap_or_else(|| url.to_string());
        if !self.requested.iter().any(|p| p.matches(url)) {
            return Err(Denied::NotRequested(origin));
        }
        if !self.operator_any && !self.granted.iter().any(|p| p.matches(url)) {
            return Err(Denied::NotGranted(origin));
        }
        if let Some(host) = url.host() {
            let ip = match host {
                url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
                url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
                url::Host::Domain(_) => None,
            };
            if let Some(ip) = ip {
                self.addresses.check(ip)?;
            }
        }
        Ok(())
    }

    /// Whether credentials may be attached to a request to `url` (already allowed).
    pub fn auth_applies(&self, url: &Url) -> bool {
        self.auth.iter().any(|p| p.matches(url))
            && self
                .operator_auth
                .as_ref()
                .is_none_or(|ops| ops.iter().any(|p| p.matches(url)))
    }

    /// Whether an entry of the operator's grant other than `*` matches `url`.
    pub fn explicitly_granted(&self, url: &Url) -> bool {
        self.granted.iter().any(|p| p.matches(url))
    }

    /// Where credentials may go, for display: the auth profile's origins, each with the
    /// operator's auth origins it is narrowed by.
    pub fn describe_auth(&self) -> Vec<String> {
        match &self.operator_auth {
            None => self.auth.iter().map(ToString::to_string).collect(),
            Some(ops) => {
                let mut out = Vec::new();
                for o in ops {
                    for a in &self.auth {
                        if o == a {
                            out.push(o.to_string());
                        } else if o.may_overlap(a) {
                            out.push(format!("{o} ∩ {a}"));
                        }
                    }
                }
                out
            }
        }
    }

    /// The effective origins, for display (`requested ∩ granted`).
    pub fn describe(&self) -> Vec<String> {
        if self.operator_any {
            return self.requested.iter().map(ToString::to_string).collect();
        }
        let mut out = Vec::new();
        for g in &self.granted {
            for r in &self.requested {
                if g == r {
                    out.push(g.to_string());
                } else if g.may_overlap(r) {
                    out.push(format!("{g} ∩ {r}"));
                }
            }
        }
        out
    }
}

/// Which blocked address ranges the operator opened for a connection.
///
/// A plugin may reach only globally reachable unicast addresses (the IANA IPv4 and IPv6
/// special-purpose registries' "globally reachable" column), plus what the operator opens:
/// loopback (`loopback = true`) and private networks (`private-networks = true`: RFC 1918,
/// shared address space, unique-local and site-local IPv6, local-use NAT64). Link-local
/// addresses, and with them the cloud metadata endpoint 169.254.169.254, are never opened.
/// An IPv4 address embedded in an IPv6 one (IPv4-mapped, IPv4-compatible, SIIT, NAT64,
/// 6to4) is judged as that IPv4 address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AddressPolicy {
    /// 127.0.0.0/8 and ::1.
    pub allow_loopback: bool,
    /// RFC 1918, shared (100.64/10), unique-local and site-local IPv6, local-use NAT64.
    pub allow_private: bool,
}

impl AddressPolicy {
    /// `Ok` if the plugin may connect to `ip`, else a message naming the blocked range.
    pub fn check(&self, ip: IpAddr) -> Result<(), Denied> {
        let Some(blocked) = classify(ip) else {
            return Ok(());
        };
        match blocked.range {
            Range::Loopback if self.allow_loopback => return Ok(()),
            Range::Private | Range::LocalNat64 if self.allow_private => return Ok(()),
            _ => {}
        }
        let range = blocked.range;
        Err(match blocked.embedded {
            Some(embedded) => Denied::Embedded {
                ip,
                embedded,
                range,
            },
            None => Denied::Address { ip, range },
        })
    }
}

/// A blocked address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Unspecified,
    Loopback,
    LinkLocal,
    Private,
    LocalNat64,
    Multicast,
    Documentation,
    Benchmarking,
    Teredo,
    Reserved,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Range::Unspecified => "unspecified",
            Range::Loopback => "loopback",
            Range::LinkLocal => "link-local (cloud metadata)",
            Range::Private => "private",
            Range::LocalNat64 => "local-use NAT64 (private)",
            Range::Multicast => "multicast",
            Range::Documentation => "documentation",
            Range::Benchmarking => "benchmarking",
            Range::Teredo => "Teredo tunnel",
            Range::Reserved => "reserved",
        })
    }
}

/// Why an address is blocked: its range, and the IPv4 address that decided it when the
/// address embeds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Blocked {
    range: Range,
    embedded: Option<Ipv4Addr>,
}

impl From<Range> for Blocked {
    fn from(range: Range) -> Self {
        Self {
            range,
            embedded: None,
        }
    }
}

/// The blocked range `ip` falls in; `None` for a globally reachable address.
fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(Blocked::from),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// An embedded IPv4 address judged as itself.
fn embedded(v4: Ipv4Addr) -> Option<Blocked> {
    classify_v4(v4).map(|range| Blocked {
        range,
        embedded: Some(v4),
    })
}

fn v4_at(o: &[u8; 16], at: [usize; 4]) -> Ipv4Addr {
    Ipv4Addr::new(o[at[0]], o[at[1]], o[at[2]], o[at[3]])
}

fn classify_v6(v6: Ipv6Addr) -> Option<Blocked> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = v4_at(&o, [12, 13, 14, 15]);
    if v6.is_unspecified() {
        return Some(Range::Unspecified.into());
    }
    if v6.is_loopback() {
        return Some(Range::Loopback.into());
    }
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible, deprecated), ::ffff:0:a.b.c.d
    // (SIIT), 64:ff9b::a.b.c.d (NAT64 well-known prefix): the IPv4 address decides.
    let mapped = s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff;
    let compatible = s[..6] == [0; 6];
    let siit = s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0;
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if mapped || compatible || siit || nat64 {
        return embedded(tail);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        // Local-use NAT64 (64:ff9b:1::/48) translates into the operator's network:
        // private, unless the IPv4 address in any RFC 6052 layout a translator in this
        // prefix may use is one that private-networks does not open (0.0.0.0/8 is what
        // the zero bits of the other layouts read as, and no translator forwards it).
        for at in [
            [6, 7, 9, 10],
            [7, 9, 10, 11],
            [9, 10, 11, 12],
            [12, 13, 14, 15],
        ] {
            if let Some(b) = embedded(v4_at(&o, at))
                && !matches!(b.range, Range::Private | Range::Unspecified)
            {
                return Some(b);
            }
        }
        return Some(Range::LocalNat64.into());
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address of the tunnel end.
        return embedded(v4_at(&o, [2, 3, 4, 5]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(Range::Teredo.into());
    }
    if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        // 2001:db8::/32 and 3fff::/20
        return Some(Range::Documentation.into());
    }
    if s[0] == 0x2001 && s[1] == 2 && s[2] == 0 {
        return Some(Range::Benchmarking.into());
    }
    if s[0] == 0x2001 && s[1] < 0x200 {
        // 2001::/23 IETF protocol assignments: only its globally reachable entries pass
        // (PCP/TURN/DNS-SD anycast, AMT, AS112, ORCHIDv2, drone remote ID).
        let global = (s[1] == 1 && s[2..7] == [0; 5] && (1..=3).contains(&s[7]))
            || s[1] == 3
            || (s[1] == 4 && s[2] == 0x112)
            || (0x20..0x40).contains(&s[1]);
        return (!global).then_some(Range::Reserved.into());
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some(Range::Multicast.into());
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some(Range::LinkLocal.into());
    }
    if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        // unique local fc00::/7 and deprecated site-local fec0::/10
        return Some(Range::Private.into());
    }
    if s[0] & 0xe000 != 0x2000 {
        // Outside global unicast 2000::/3: discard-only 100::/64, SRv6 5f00::/16, the
        // dummy prefix and unassigned space.
        return Some(Range::Reserved.into());
    }
    None
}

fn classify_v4(v4: Ipv4Addr) -> Option<Range> {
    let [a, b, c, d] = v4.octets();
    if a == 0 {
        // "this network"
        Some(Range::Unspecified)
    } else if v4.is_loopback() {
        Some(Range::Loopback)
    } else if v4.is_link_local() {
        Some(Range::LinkLocal)
    } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some(Range::Private)
    } else if v4.is_multicast() {
        Some(Range::Multicast)
    } else if (a, b, c) == (192, 0, 2) || (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113)
    {
        Some(Range::Documentation)
    } else if a == 198 && (18..20).contains(&b) {
        Some(Range::Benchmarking)
    } else if a >= 240
        || ((a, b, c) == (192, 0, 0) && d != 9 && d != 10)
        || (a, b, c) == (192, 88, 99)
    {
        // 240/4 reserved and broadcast, 192.0.0/24 protocol assignments (but the PCP and
        // TURN anycast addresses), 192.88.99/24 the deprecated 6to4 relay anycast.
        Some(Range::Reserved)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn origin_patterns_match_scheme_host_and_port() {
        let p = OriginPattern::parse("https://*.myfreshworks.com").unwrap();
        assert!(p.matches(&url("https://acme.myfreshworks.com/crm/sales/api")));
        assert!(p.matches(&url("https://a.b.myfreshworks.com:443/")));
        assert!(p.matches(&url("https://ACME.MyFreshworks.com/")));
        assert!(!p.matches(&url("https://myfreshworks.com/")), "bare suffix");
        assert!(
            !p.matches(&url("https://evilmyfreshworks.com/")),
            "label boundary"
        );
        assert!(!p.matches(&url("https://acme.myfreshworks.com.evil.io/")));
        assert!(!p.matches(&url("http://acme.myfreshworks.com/")), "scheme");
        assert!(
            !p.matches(&url("https://acme.myfreshworks.com:8443/")),
            "port"
        );

        let p = OriginPattern::parse("http://127.0.0.1:8080").unwrap();
        assert!(p.matches(&url("http://127.0.0.1:8080/x?y")));
        assert!(!p.matches(&url("http://127.0.0.1:8081/")));
        assert!(!p.matches(&url("http://localhost:8080/")));
        assert_eq!(p.to_string(), "http://127.0.0.1:8080");
    }

    #[test]
    fn origin_pattern_syntax_errors() {
        for bad in [
            "*",
            "https://*",
            "https://*.com",
            "https://a.*.example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "example.com",
            "https://*.10.0.0.1",
        ] {
            assert!(
                OriginSpec::parse(bad, false).is_err(),
                "{bad} should be refused"
            );
        }
        assert_eq!(OriginSpec::parse("*", true).unwrap(), OriginSpec::Any);
        assert_eq!(
            OriginSpec::parse("setting:base-url", false).unwrap(),
            OriginSpec::Setting("base-url".into())
        );
    }

    fn manifest(origins: &[&str]) -> Manifest {
        let list = origins
            .iter()
            .map(|o| format!("\"{o}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Manifest::parse(&format!(
            "name = \"t\"\nversion = \"0.1.0\"\nkind = \"connector\"\ncontract = \"0.1.0\"\n[http]\norigins = [{list}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn effective_grant_is_the_intersection() {
        let m = manifest(&["https://*.myfreshworks.com", "setting:base-url"]);
        let settings: BTreeMap<_, _> = [(
            "base-url".to_owned(),
            "http://127.0.0.1:4000/api".to_owned(),
        )]
        .into();
        let grant = |http: &[&str]| Grant {
            http: http.iter().map(|s| s.to_string()).collect(),
            allow_loopback: true,
            ..Grant::default()
        };

        // Nothing granted: nothing allowed.
        let p = EgressPolicy::new(&m, &Grant::default(), &settings);
        assert!(
            p.check_url(&url("https://acme.myfreshworks.com/"))
                .unwrap_err()
                .to_string()
                .contains("operator")
        );

        // Narrower grant wins.
        let p = EgressPolicy::new(&m, &grant(&["https://acme.myfreshworks.com"]), &settings);
        assert!(p.check_url(&url("https://acme.myfreshworks.com/x")).is_ok());
        assert!(
            p.check_url(&url("https://other.myfreshworks.com/x"))
                .is_err()
        );

        // Grant broader than the request: the request bounds it.
        let p = EgressPolicy::new(&m, &grant(&["https://example.org"]), &settings);
        let err = p
            .check_url(&url("https://example.org/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("manifest"), "{err}");

        // `*` = the manifest's list; settings resolve to their origin.
        let p = EgressPolicy::new(&m, &grant(&["*"]), &settings);
        assert!(
            p.check_url(&url("http://127.0.0.1:4000/other/path"))
                .is_ok()
        );
        assert!(p.check_url(&url("http://127.0.0.1:4001/")).is_err());

        // Missing setting grants nothing.
        let p = EgressPolicy::new(&m, &grant(&["*"]), &BTreeMap::new());
        assert!(p.check_url(&url("http://127.0.0.1:4000/")).is_err());
    }

    #[test]
    fn ip_literals_are_checked_against_blocked_ranges() {
        let m = manifest(&["http://10.0.0.1", "http://127.0.0.1:9"]);
        let g = Grant {
            http: vec!["*".into()],
            ..Grant::default()
        };
        let p = EgressPolicy::new(&m, &g, &BTreeMap::new());
        assert!(
            p.check_url(&url("http://10.0.0.1/"))
                .unwrap_err()
                .to_string()
                .contains("private")
        );
        assert!(
            p.check_url(&url("http://127.0.0.1:9/"))
                .unwrap_err()
                .to_string()
                .contains("loopback")
        );
    }

    #[test]
    fn blocked_address_ranges() {
        let deny = AddressPolicy::default();
        for (ip, range) in [
            ("127.0.0.1", "loopback"),
            ("127.1.2.3", "loopback"),
            ("::1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("10.0.0.1", "private"),
            ("172.16.5.4", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("fd00::1", "private"),
            ("fec0::1", "private"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("240.0.0.1", "reserved"),
            ("192.0.0.1", "reserved"),
            ("192.88.99.1", "reserved"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.99", "documentation"),
            ("2001:db8::1", "documentation"),
            ("3fff:abc::1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("2001:2::1", "benchmarking"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001:10::1", "reserved"),
            ("2001:1::4", "reserved"),
            ("100::1", "reserved"),
            ("5f00::1", "reserved"),
            ("4000::1", "reserved"),
            ("64:ff9b:1::a00:1", "local-use NAT64"),
            // Embedded IPv4: mapped, compatible, SIIT, NAT64, local NAT64, 6to4.
            ("::ffff:127.0.0.1", "embeds 127.0.0.1, a loopback"),
            (
                "::ffff:169.254.169.254",
                "embeds 169.254.169.254, a link-local",
            ),
            ("::ffff:10.1.1.1", "embeds 10.1.1.1, a private"),
            ("::127.0.0.1", "embeds 127.0.0.1, a loopback"),
            ("::ffff:0:a9fe:a9fe", "embeds 169.254.169.254"),
            ("64:ff9b::a00:1", "embeds 10.0.0.1, a private"),
            ("64:ff9b::c000:210", "embeds 192.0.2.16, a documentation"),
            ("64:ff9b:1:a9fe:a9:fe00::", "embeds 169.254.169.254"),
            ("64:ff9b:1::a9fe:a9fe", "embeds 169.254.169.254"),
            ("2002:a9fe:a9fe::1", "embeds 169.254.169.254, a link-local"),
            ("2002:7f00:1::1", "embeds 127.0.0.1, a loopback"),
            ("2002:c0a8:101::1", "embeds 192.168.1.1, a private"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let Err(err) = deny.check(ip).map_err(|e| e.to_string()) else {
                panic!("{ip} must be blocked");
            };
            assert!(
                err.contains(range) && err.ends_with("which plugins may not reach"),
                "{ip}: {err}"
            );
        }
        for ip in [
            "93.184.216.34",
            "2606:4700::1111",
            "8.8.8.8",
            "::ffff:1.1.1.1",
            "172.32.0.1",
            "192.0.0.9",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4:112::1",
            "2001:20::1",
            "2001:1::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(deny.check(ip).is_ok(), "{ip} must be allowed");
        }
        let loopback = AddressPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert!(loopback.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(loopback.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(loopback.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(loopback.check("169.254.169.254".parse().unwrap()).is_err());
    }

    /// `private-networks` opens private ranges, never link-local: the cloud metadata
    /// endpoint stays out of reach whatever the grant says.
    #[test]
    fn private_networks_never_open_link_local() {
        let open = AddressPolicy {
            allow_loopback: true,
            allow_private: true,
        };
        for ip in [
            "10.0.0.1",
            "192.168.1.1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "2002:a00:1::1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::1:2",
        ] {
            assert!(open.check(ip.parse().unwrap()).is_ok(), "{ip}");
        }
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fe80::a9fe:a9fe",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::",
            "192.0.2.1",
            "0.0.0.0",
        ] {
            assert!(open.check(ip.parse().unwrap()).is_err(), "{ip}");
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn interface_allowlist() {
        let exports = names(&["tandem:plugin/connector-api@0.1.0"]);
        let ok = names(&[
            "tandem:plugin/types@0.1.0",
            "tandem:plugin/http@0.1.0",
            "wasi:io/streams@0.2.6",
            "wasi:cli/stderr@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:random/random@0.2.6",
            // Linked empty: what componentize-js / componentize-py components import.
            "wasi:filesystem/types@0.2.6",
            "wasi:filesystem/preopens@0.2.0",
            "wasi:sockets/tcp@0.2.12",
            "wasi:sockets/ip-name-lookup@0.2.0",
        ]);
        assert_eq!(
            check_interfaces(PluginKind::Connector, &ok, &exports).unwrap(),
            Version::new(0, 1, 0)
        );
        for bad in [
            "wasi:filesystem/other@0.2.6",
            "wasi:sockets/other@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:cli/run@0.2.6",
            "acme:evil/backdoor",
            "plain-function",
        ] {
            let mut imports = ok.clone();
            imports.push(bad.into());
            let err = check_interfaces(PluginKind::Connector, &imports, &exports).unwrap_err();
            assert!(
                matches!(&err, InterfaceError::ForbiddenImport { imports, .. } if imports == &[bad.to_owned()]),
                "{err}"
            );
        }
        let mapper_exports = names(&["tandem:plugin/mapper-api@0.1.0"]);
        let err = check_interfaces(
            PluginKind::Mapper,
            &names(&["tandem:plugin/http@0.1.0"]),
            &mapper_exports,
        )
        .unwrap_err();
        assert!(err.to_string().contains("mappers are pure"), "{err}");
        let err = check_interfaces(
            PluginKind::Mapper,
            &names(&["tandem:plugin/storage@0.1.0"]),
            &mapper_exports,
        )
        .unwrap_err();
        assert!(err.to_string().contains("mappers are pure"), "{err}");
        // A mapper reads the settings its sync gives it (`config`, additive in 0.1).
        assert!(
            check_interfaces(
                PluginKind::Mapper,
                &names(&["tandem:plugin/log@0.1.0", "tandem:plugin/config@0.1.0"]),
                &mapper_exports
            )
            .is_ok()
        );
        let err = check_interfaces(PluginKind::Mapper, &[], &exports).unwrap_err();
        assert!(matches!(err, InterfaceError::MissingExport { .. }));
    }

    #[test]
    fn a_manifest_contract_line_must_match_the_component() {
        let component = Version::new(0, 1, 0);
        assert!(check_manifest_contract(None, &component).is_ok());
        assert!(check_manifest_contract(Some("0.1.0"), &component).is_ok());
        let err = check_manifest_contract(Some("0.1.2"), &component).unwrap_err();
        assert_eq!(
            err.to_string(),
            "its manifest says contract = \"0.1.2\" but the component was built for tandem:plugin@0.1.0 (its tandem-sdk embeds that version); delete the `contract` line from tandem.toml or set it to \"0.1.0\""
        );
        assert!(check_manifest_contract(Some("one"), &component).is_err());
    }

    #[test]
    fn contract_major_is_checked_first() {
        let err = check_interfaces(
            PluginKind::Connector,
            &names(&["tandem:plugin/log@9.0.0", "wasi:filesystem/types@0.2.6"]),
            &names(&["tandem:plugin/connector-api@9.0.0"]),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("tandem:plugin@9.0.0") && msg.contains(">=0.1.0, <0.2.0"),
            "{msg}"
        );
        assert!(check_contract_version("0.1.7").is_ok());
        assert!(check_contract_version("0.2.0").is_err());
        assert!(check_contract_version("1.0.0").is_err());
    }
}
