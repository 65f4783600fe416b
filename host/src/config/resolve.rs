//! From a checked [`Config`] to the runtime's types: plugin sources, grants, limits,
//! credentials and whole connections.
//!
//! This is the only place where secrets are read: [`Config::connection`] reads the
//! referenced variables or files and wraps them in the runtime's redacting
//! [`Secret`](crate::runtime::Secret) straight away.

use std::path::Path;
use std::sync::Arc;

use super::env::Env;
use super::error::{ConfigError, KeyPath};
use super::validate::{Catalog, Inspected};
use super::{
    Config, ConnectionConfig, CredentialsConfig, GrantConfig, LimitOverrides, PluginConfig,
    PluginSource,
};
use crate::runtime::manifest::{
    resolve_manifest, resolve_pinned_manifest, scan_component, sidecar_path,
};
use crate::runtime::{
    Connection, ConnectorLimits, Credentials, Grant, ManifestError, MapperLimits, PluginKind,
    Secret, StorageGrant,
};

const MIB: u64 = 1024 * 1024;

/// A built-in plugin: its manifest name, kind and component bytes.
#[derive(Debug, Clone)]
pub struct BuiltinPlugin {
    /// The manifest's name (what `builtin = "..."` names).
    pub name: String,
    /// Connector or mapper.
    pub kind: PluginKind,
    /// The component's bytes, embedded in the binary.
    pub wasm: &'static [u8],
    /// The manifest's OAuth2 token endpoint, if it authenticates with OAuth2.
    pub token_url: Option<String>,
    /// What config checks need of its manifest (auth profile, declared settings).
    pub inspected: Inspected,
}

/// The plugins embedded in this binary, named by their manifests. A builtin whose
/// manifest cannot be read is left out (`tandem plugin list` reports it).
pub fn builtin_plugins() -> Vec<BuiltinPlugin> {
    tandem_plugins::builtins()
        .into_iter()
        .filter_map(|b| {
            let scan = scan_component(b.wasm).ok()?;
            let manifest = resolve_manifest(&scan.manifests, None).ok()?;
            Some(BuiltinPlugin {
                token_url: oauth_token_url(&manifest),
                inspected: Inspected::of(&manifest),
                name: manifest.name,
                kind: manifest.kind,
                wasm: b.wasm,
            })
        })
        .collect()
}

fn oauth_token_url(manifest: &crate::runtime::Manifest) -> Option<String> {
    match &manifest.auth {
        Some(crate::runtime::manifest::AuthProfile::OAuth2 { token_url, .. }) => {
            Some(token_url.clone())
        }
        _ => None,
    }
}

/// What pass 2 needs of a pinned component file, from its manifest. A pinned file must
/// embed its manifest (a sidecar beside it may only repeat it): the pin covers the
/// component's bytes, not a file next to it.
fn inspect_file(path: &Path, wasm: &[u8]) -> Result<Inspected, ManifestError> {
    let scan = scan_component(wasm)?;
    let sidecar = sidecar_path(path);
    let text = std::fs::read_to_string(&sidecar).ok();
    let origin = sidecar.display().to_string();
    resolve_pinned_manifest(
        &scan.manifests,
        text.as_deref().map(|t| (origin.as_str(), t)),
    )
    .map(|m| Inspected::of(&m))
}

impl Catalog {
    /// The plugins built into this binary, and manifest inspection for plugin files.
    pub fn builtin() -> Self {
        let builtins = builtin_plugins();
        let manifests: Vec<(String, Inspected)> = builtins
            .iter()
            .map(|b| (b.name.clone(), b.inspected.clone()))
            .collect();
        Catalog::new(
            builtins.into_iter().map(|b| (b.name, b.kind)),
            Some(inspect_file),
        )
        .with_manifests(manifests)
    }
}

/// What `tandem config validate` runs: [`load`](super::load) with the process environment
/// and the plugins built into this binary.
pub fn validate_file(file: &Path) -> Result<Config, Vec<ConfigError>> {
    super::load(file, &Env::process(), &Catalog::builtin())
}

impl PluginConfig {
    /// The runtime's source for this plugin and the sha256 pin to check (hex), if any.
    #[expect(
        clippy::result_large_err,
        reason = "a cold path, once per plugin loaded"
    )]
    pub fn runtime_source(
        &self,
    ) -> Result<(crate::runtime::PluginSource, Option<String>), ConfigError> {
        match &self.source {
            PluginSource::File { path, sha256 } => Ok((
                crate::runtime::PluginSource::Path(path.clone()),
                Some(hex::encode(sha256)),
            )),
            PluginSource::Builtin(name) => {
                let builtins = builtin_plugins();
                match builtins.iter().find(|b| &b.name == name) {
                    Some(b) => Ok((
                        crate::runtime::PluginSource::Bytes {
                            name: name.clone(),
                            wasm: Arc::from(b.wasm),
                            manifest: None,
                        },
                        None,
                    )),
                    None => Err(ConfigError::UnknownValue {
                        at: self.source_at.clone(),
                        key: KeyPath::root()
                            .key("plugins")
                            .key(&self.name)
                            .key("builtin"),
                        value: name.clone(),
                        did_you_mean: super::error::closest(
                            name,
                            builtins.iter().map(|b| b.name.as_str()),
                        ),
                        expected: super::reader::join(builtins.iter().map(|b| b.name.as_str())),
                    }),
                }
            }
        }
    }

    /// The limits for this plugin when it is a mapper.
    pub fn mapper_limits(&self) -> MapperLimits {
        self.grant.limits.mapper_limits()
    }
}

impl LimitOverrides {
    /// The runtime's connector limits with these overrides applied.
    pub fn connector_limits(&self) -> ConnectorLimits {
        let mut l = ConnectorLimits::default();
        if let Some(m) = self.memory {
            l.memory_mib = mib(m);
        }
        if let Some(t) = self.timeout {
            l.timeout = t;
        }
        if let Some(c) = self.cpu {
            l.cpu = c;
        }
        if let Some(b) = self.request_size {
            l.http_request_bytes = usize::try_from(b).unwrap_or(usize::MAX);
        }
        if let Some(b) = self.response_size {
            l.http_response_bytes = usize::try_from(b).unwrap_or(usize::MAX);
        }
        for (set, slot) in [
            (self.log_lines_per_run, &mut l.log.run_lines),
            (self.log_size_per_run, &mut l.log.run_bytes),
            (self.log_lines_per_hour, &mut l.log.hour_lines),
            (self.log_size_per_hour, &mut l.log.hour_bytes),
        ] {
            if let Some(v) = set {
                *slot = v;
            }
        }
        l
    }

    /// The runtime's mapper limits with these overrides applied.
    pub fn mapper_limits(&self) -> MapperLimits {
        let mut l = MapperLimits::default();
        if let Some(m) = self.memory {
            l.memory_mib = mib(m);
        }
        if let Some(t) = self.timeout {
            l.timeout = t;
        }
        if let Some(f) = self.fuel {
            l.fuel = f;
        }
        l
    }
}

/// Bytes to whole MiB, rounded up (a cap never shrinks below what was asked).
fn mib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(MIB)).unwrap_or(u32::MAX)
}

impl GrantConfig {
    /// The runtime's grant for one connection of this plugin.
    pub fn to_grant(&self) -> Grant {
        Grant {
            http: self.http.clone(),
            auth_origins: None,
            allow_loopback: self.loopback,
            allow_private: self.private_networks,
            storage: self.storage_quota.map(|quota_bytes| StorageGrant {
                quota_bytes,
                ..StorageGrant::default()
            }),
            limits: self.limits.connector_limits(),
            plugin: None,
        }
    }
}

impl CredentialsConfig {
    /// Reads the referenced secrets into the runtime's credentials.
    #[expect(
        clippy::result_large_err,
        reason = "a cold path, once per connection opened"
    )]
    pub fn resolve(&self, env: &Env) -> Result<Credentials, ConfigError> {
        Ok(match self {
            CredentialsConfig::None => Credentials::None,
            CredentialsConfig::ApiKey(key) => Credentials::ApiKey(Secret::new(key.read(env)?)),
            CredentialsConfig::Basic { user, password } => Credentials::Basic {
                user: user.clone(),
                password: Secret::new(password.read(env)?),
            },
            CredentialsConfig::OAuth2 {
                client_id,
                client_secret,
                refresh_token,
                token_url,
            } => Credentials::OAuth2 {
                client_id: client_id.clone(),
                client_secret: Secret::new(client_secret.read(env)?),
                refresh_token: Secret::new(refresh_token.read(env)?),
                token_url: token_url.clone(),
            },
        })
    }
}

impl Config {
    /// The runtime's [`Connection`] for `[connections.NAME]`: settings, the plugin's grant
    /// and the credentials (read now). The request budget is left to the caller (the
    /// engine shares one per app account).
    #[expect(
        clippy::result_large_err,
        reason = "a cold path, once per connection opened"
    )]
    pub fn connection(&self, name: &str, env: &Env) -> Result<Connection, ConfigError> {
        let conn: &ConnectionConfig =
            self.connections
                .get(name)
                .ok_or_else(|| ConfigError::UnknownReference {
                    at: super::Location::at(&self.file, "", 0),
                    key: KeyPath::root().key("connections"),
                    kind: "connection",
                    name: name.to_owned(),
                    did_you_mean: super::error::closest(
                        name,
                        self.connections.keys().map(String::as_str),
                    ),
                    defined: super::reader::join(self.connections.keys().map(String::as_str)),
                })?;
        let mut grant = self
            .plugins
            .get(&conn.plugin)
            .map(|p| p.grant.to_grant())
            .unwrap_or_default();
        grant.auth_origins = conn.auth_origins.clone();
        // The storage namespace belongs to the operator's plugin entry, not to whatever
        // name the plugin declares.
        grant.plugin = Some(conn.plugin.clone());
        Ok(Connection {
            id: conn.name.clone(),
            settings: conn.settings.clone(),
            grant,
            credentials: conn.credentials.resolve(env)?,
            budget: None,
        })
    }
}
