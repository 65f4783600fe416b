//! Pass 2: checks that look outside the document.
//!
//! Names referring to each other, built-in plugin names, plugin files and their sha256
//! pins, plugin kinds (a connection needs a connector, a sync's `mappers` need mappers),
//! and whether every referenced secret can be read. Secrets are read only to check them
//! and are dropped at once; messages name the variable or file, never the value.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::env::{Env, io_reason};
use super::error::{ConfigError, KeyPath, Location, closest};
use super::reader::join;
use super::{Config, PluginSource};
use crate::runtime::manifest::{AuthProfile, SettingSpec, SettingType};
use crate::runtime::settings::{SettingProblem, apply_declared};
use crate::runtime::{ManifestError, PluginKind};

/// How a pinned component file is read: its path (for a sidecar manifest) and bytes.
pub type Inspect = fn(&Path, &[u8]) -> Result<Inspected, ManifestError>;

/// What pass 2 needs from a plugin's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Connector or mapper.
    pub kind: PluginKind,
    /// The manifest's OAuth2 `token-url`, if its auth profile is `oauth2`.
    pub token_url: Option<String>,
    /// The manifest's auth profile (`None`: the plugin sends no credentials).
    pub auth: Option<AuthProfile>,
    /// The manifest's declared settings (empty: any setting is passed through).
    pub settings: BTreeMap<String, SettingSpec>,
}

impl Inspected {
    /// What pass 2 needs of `manifest`.
    pub fn of(manifest: &crate::runtime::Manifest) -> Self {
        Inspected {
            kind: manifest.kind,
            token_url: match &manifest.auth {
                Some(AuthProfile::OAuth2 { token_url, .. }) => Some(token_url.clone()),
                _ => None,
            },
            auth: manifest.auth.clone(),
            settings: manifest.settings.clone(),
        }
    }
}

/// What the checks know about plugins outside the config: the built-in ones and how to
/// tell a component file's kind.
#[derive(Debug, Clone)]
pub struct Catalog {
    builtins: BTreeMap<String, PluginKind>,
    builtin_token_urls: BTreeMap<String, String>,
    builtin_manifests: BTreeMap<String, Inspected>,
    inspect: Option<Inspect>,
}

impl Catalog {
    /// A catalog with the given built-ins and a way to inspect component files
    /// (`None`: the kind of a file plugin is not checked).
    pub fn new(
        builtins: impl IntoIterator<Item = (String, PluginKind)>,
        inspect: Option<Inspect>,
    ) -> Self {
        Catalog {
            builtins: builtins.into_iter().collect(),
            builtin_token_urls: BTreeMap::new(),
            builtin_manifests: BTreeMap::new(),
            inspect,
        }
    }

    /// What the built-in plugins' manifests say (auth profile, declared settings), by
    /// plugin name, so that connections using them are checked against them.
    pub fn with_manifests(
        mut self,
        manifests: impl IntoIterator<Item = (String, Inspected)>,
    ) -> Self {
        for (name, found) in manifests {
            if let Some(url) = &found.token_url {
                self.builtin_token_urls.insert(name.clone(), url.clone());
            }
            self.builtin_manifests.insert(name, found);
        }
        self
    }

    /// The OAuth2 token endpoints the built-in plugins' manifests name, by plugin name.
    pub fn with_token_urls(mut self, urls: impl IntoIterator<Item = (String, String)>) -> Self {
        self.builtin_token_urls = urls.into_iter().collect();
        self
    }

    /// The built-in plugins' names.
    pub fn builtin_names(&self) -> impl Iterator<Item = &str> + Clone {
        self.builtins.keys().map(String::as_str)
    }
}

/// Runs pass 2 on a parsed config and returns every problem found.
pub fn check(config: &Config, env: &Env, catalog: &Catalog) -> Vec<ConfigError> {
    let defined = Defined {
        plugins: config.plugins.keys().cloned().collect(),
        connections: config.connections.keys().cloned().collect(),
    };
    check_defined(config, &defined, env, catalog)
}

/// Names defined in the file, including entries that failed to parse (so that pass 2
/// does not call them undefined).
pub(crate) struct Defined {
    pub plugins: Vec<String>,
    pub connections: Vec<String>,
}

pub(crate) fn check_defined(
    config: &Config,
    defined: &Defined,
    env: &Env,
    catalog: &Catalog,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut kinds: BTreeMap<&str, Option<PluginKind>> =
        defined.plugins.iter().map(|n| (n.as_str(), None)).collect();
    let mut token_urls: BTreeMap<&str, String> = BTreeMap::new();
    let mut manifests: BTreeMap<&str, Inspected> = BTreeMap::new();
    for (name, plugin) in &config.plugins {
        let (kind, found) = check_plugin(plugin, catalog, &mut errors).unzip();
        let (token_url, found) = found.unzip();
        if let Some(Some(url)) = token_url {
            token_urls.insert(name, url);
        }
        if let Some(Some(found)) = found {
            manifests.insert(name, found);
        }
        if let Some(kind) = kind {
            for key in plugin.grant.limits.misplaced(kind) {
                errors.push(ConfigError::Invalid {
                    at: plugin.at.clone(),
                    key: KeyPath::root()
                        .key("plugins")
                        .key(name)
                        .key("grant")
                        .key("limits")
                        .key(key),
                    problem: format!("does not apply to a {kind} plugin; remove it"),
                });
            }
        }
        kinds.insert(name, kind);
    }
    for conn in config.connections.values() {
        check_ref(
            &mut errors,
            (&conn.plugin_at, &conn_key(&conn.name)),
            &conn.plugin,
            "plugin",
            &kinds,
            PluginKind::Connector,
        );
        check_credentials(
            conn,
            config,
            token_urls.get(conn.plugin.as_str()),
            &mut errors,
        );
        if let Some(found) = manifests.get(conn.plugin.as_str()) {
            check_auth_kind(conn, found.auth.as_ref(), &mut errors);
            let base = KeyPath::root()
                .key("connections")
                .key(&conn.name)
                .key("settings");
            check_settings(
                &found.settings,
                &conn.settings,
                (&conn.settings_at.0, &conn.settings_at.1),
                &base,
                &mut errors,
            );
        }
        let webhook = conn.webhook.as_ref().map(|w| &w.secret);
        for secret in conn.credentials.secrets().into_iter().chain(webhook) {
            if let Err(e) = secret.check(env) {
                errors.push(e);
            }
        }
    }
    if let Some(token) = &config.daemon.token
        && let Err(e) = token.check(env)
    {
        errors.push(e);
    }
    if let Some(pg) = &config.state.postgres
        && let Err(e) = pg.url.check(env)
    {
        errors.push(e);
    }
    let conns: BTreeMap<&str, ()> = defined
        .connections
        .iter()
        .map(|k| (k.as_str(), ()))
        .collect();
    for sync in config.syncs.values() {
        for (name, at) in [(&sync.a, &sync.refs.a), (&sync.b, &sync.refs.b)] {
            if let Some((loc, key)) = at {
                check_name(&mut errors, loc, key, name, "connection", &conns);
            }
        }
        if sync.a == sync.b
            && let Some((loc, key)) = &sync.refs.b
        {
            errors.push(ConfigError::Invalid {
                at: loc.clone(),
                key: key.clone(),
                problem: format!(
                    "a and b both name {:?}; a sync needs two different connections",
                    sync.b
                ),
            });
        }
        for (name, (loc, key)) in sync.policy.mappers.iter().zip(&sync.refs.mappers) {
            check_ref(
                &mut errors,
                (loc, key),
                name,
                "plugin",
                &kinds,
                PluginKind::Mapper,
            );
            // A mapper's declared settings are checked for every sync that uses it
            // (those without mapper-settings too: a required one is missing there).
            if let Some(found) = manifests.get(name.as_str()) {
                let empty = (BTreeMap::new(), loc.clone());
                let (value_at, table_at) = sync.refs.mapper_settings.get(name).unwrap_or(&empty);
                let given = sync.mapper_settings.get(name).cloned().unwrap_or_default();
                let base = KeyPath::root()
                    .key("syncs")
                    .key(&sync.name)
                    .key("mapper-settings")
                    .key(name);
                check_settings(
                    &found.settings,
                    &given,
                    (value_at, table_at),
                    &base,
                    &mut errors,
                );
            }
        }
    }
    errors
}

fn conn_key(name: &str) -> KeyPath {
    KeyPath::root().key("connections").key(name).key("plugin")
}

/// An OAuth2 token endpoint only if the operator approved it: named in the credentials,
/// or https on an origin the plugin's grant names explicitly.
fn check_credentials(
    conn: &super::ConnectionConfig,
    config: &Config,
    manifest_token_url: Option<&String>,
    errors: &mut Vec<ConfigError>,
) {
    let Some((at, oauth_at)) = &conn.credentials_at else {
        return;
    };
    let key = KeyPath::root()
        .key("connections")
        .key(&conn.name)
        .key("credentials");
    if matches!(conn.credentials, super::CredentialsConfig::None) {
        return;
    }
    if let super::CredentialsConfig::OAuth2 {
        token_url: None, ..
    } = &conn.credentials
        && let Some(manifest_url) = manifest_token_url
    {
        let grant = config
            .plugins
            .get(&conn.plugin)
            .map(|p| p.grant.http.as_slice())
            .unwrap_or_default();
        if let Err(problem) = crate::runtime::credentials::approve_manifest_token_url(
            manifest_url,
            &conn.settings,
            |u| crate::runtime::capabilities::origin_listed(grant, &conn.settings, u),
        ) {
            errors.push(ConfigError::Invalid {
                at: oauth_at.clone().unwrap_or_else(|| at.clone()),
                key: key.key("oauth2"),
                problem,
            });
        }
    }
}

/// The connection's credentials are the kind the plugin's auth profile takes: a one-line
/// error at `credentials` naming the key to write. No credentials at all is allowed
/// (an app reached without them, a test double).
fn check_auth_kind(
    conn: &super::ConnectionConfig,
    auth: Option<&AuthProfile>,
    errors: &mut Vec<ConfigError>,
) {
    use super::CredentialsConfig as C;
    let Some((at, _)) = &conn.credentials_at else {
        return;
    };
    let key = KeyPath::root()
        .key("connections")
        .key(&conn.name)
        .key("credentials");
    let given = match &conn.credentials {
        C::None => return,
        C::ApiKey(_) => "api-key",
        C::Basic { .. } => "basic",
        C::OAuth2 { .. } => "oauth2",
    };
    let Some(auth) = auth else {
        errors.push(ConfigError::Invalid {
            at: at.clone(),
            key,
            problem: format!(
                "plugin `{}` declares no [auth] profile, so the host would send these credentials nowhere; remove them",
                conn.plugin
            ),
        });
        return;
    };
    let want = auth.credentials_key();
    if want != given {
        let example = match want {
            "basic" => "basic = { user = \"...\", password = { env = \"VAR\" } }",
            "oauth2" => {
                "oauth2 = { client-id = \"...\", client-secret = { env = \"VAR\" }, refresh-token = { file = \"path\" } }"
            }
            _ => "api-key = { env = \"VAR\" }",
        };
        errors.push(ConfigError::Invalid {
            at: at.clone(),
            key: key.key(given),
            problem: format!(
                "plugin `{}` authenticates with `{}`, which takes credentials.{want}; write {example}",
                conn.plugin,
                auth.kind()
            ),
        });
        return;
    }
    if let (C::Basic { user: None, .. }, AuthProfile::Basic { user: None, .. }) =
        (&conn.credentials, auth)
    {
        errors.push(ConfigError::Missing {
            at: at.clone(),
            key: key.key("basic").key("user"),
            hint: format!(
                "plugin `{}` names no HTTP Basic user; add user = \"...\" (an e-mail, an account id: the app's documentation says which)",
                conn.plugin
            ),
        });
    }
}

/// Checks settings against a plugin's declared ones: each problem one error at the
/// value's line (a missing one at its table's).
pub(crate) fn check_settings(
    declared: &BTreeMap<String, SettingSpec>,
    given: &BTreeMap<String, String>,
    (value_at, table_at): (&BTreeMap<String, Location>, &Location),
    base: &KeyPath,
    errors: &mut Vec<ConfigError>,
) {
    let Err(problems) = apply_declared(declared, given) else {
        return;
    };
    let names = || declared.keys().map(String::as_str);
    for problem in problems {
        let key = base.key(problem.key());
        let at = value_at.get(problem.key()).unwrap_or(table_at).clone();
        errors.push(match problem {
            SettingProblem::Unknown { key: name, .. } => ConfigError::UnknownKey {
                at,
                key,
                did_you_mean: closest(&name, names()),
                expected: join(names()),
            },
            SettingProblem::Missing {
                key: name,
                description,
            } => ConfigError::Missing {
                at,
                key,
                hint: if description.is_empty() {
                    format!("the plugin requires setting `{name}`")
                } else {
                    format!(
                        "the plugin requires it: {}",
                        crate::runtime::text::clean_line(&description)
                    )
                },
            },
            SettingProblem::Invalid { key: name, problem } => match declared.get(&name) {
                Some(spec) if spec.kind == SettingType::Enum => ConfigError::UnknownValue {
                    at,
                    key,
                    did_you_mean: closest(&given[&name], spec.values.iter().map(String::as_str)),
                    value: given[&name].clone(),
                    expected: join(spec.values.iter().map(String::as_str)),
                },
                _ => ConfigError::Invalid { at, key, problem },
            },
        });
    }
}

/// A plugin's manifest token URL, and what else its manifest says, when known.
type Known = (Option<String>, Option<Inspected>);

/// Checks a plugin's source; returns its kind, and what its manifest says when known.
fn check_plugin(
    plugin: &super::PluginConfig,
    catalog: &Catalog,
    errors: &mut Vec<ConfigError>,
) -> Option<(PluginKind, Known)> {
    match &plugin.source {
        PluginSource::Builtin(name) => {
            let kind = catalog.builtins.get(name).copied();
            if kind.is_none() {
                errors.push(ConfigError::UnknownValue {
                    at: plugin.source_at.clone(),
                    key: KeyPath::root()
                        .key("plugins")
                        .key(&plugin.name)
                        .key("builtin"),
                    value: name.clone(),
                    did_you_mean: closest(name, catalog.builtin_names()),
                    expected: join(catalog.builtin_names()),
                });
            }
            kind.map(|kind| {
                let token_url = catalog.builtin_token_urls.get(name).cloned();
                (
                    kind,
                    (token_url, catalog.builtin_manifests.get(name).cloned()),
                )
            })
        }
        PluginSource::File { path, sha256 } => {
            let (at, key) = plugin.pin_at.clone().unwrap_or_else(|| {
                (
                    plugin.at.clone(),
                    KeyPath::root().key("plugins").key(&plugin.name).key("path"),
                )
            });
            let path_key = KeyPath::root().key("plugins").key(&plugin.name).key("path");
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(ConfigError::File {
                        at: plugin.source_at.clone(),
                        key: path_key,
                        path: path.clone(),
                        reason: format!("{}; build the plugin or fix the path", io_reason(&e)),
                    });
                    return None;
                }
            };
            let actual: [u8; 32] = Sha256::digest(&bytes).into();
            if &actual != sha256 {
                errors.push(ConfigError::Sha256Mismatch {
                    at,
                    key,
                    path: path.clone(),
                    actual: hex::encode(actual),
                });
                return None;
            }
            let inspect = catalog.inspect?;
            match inspect(path, &bytes) {
                Ok(found) => Some((found.kind, (found.token_url.clone(), Some(found)))),
                Err(reason) => {
                    errors.push(ConfigError::File {
                        at: plugin.source_at.clone(),
                        key: path_key,
                        path: path.clone(),
                        reason: reason.to_string(),
                    });
                    None
                }
            }
        }
    }
}

/// Checks that `name` is a defined plugin of kind `want` (kinds that are unknown pass).
fn check_ref(
    errors: &mut Vec<ConfigError>,
    (at, key): (&Location, &KeyPath),
    name: &str,
    kind: &'static str,
    defined: &BTreeMap<&str, Option<PluginKind>>,
    want: PluginKind,
) {
    if !check_name(errors, at, key, name, kind, defined) {
        return;
    }
    if let Some(Some(actual)) = defined.get(name)
        && *actual != want
    {
        errors.push(ConfigError::WrongPluginKind {
            at: at.clone(),
            key: key.clone(),
            name: name.to_owned(),
            expected: want,
            actual: *actual,
        });
    }
}

fn check_name<T>(
    errors: &mut Vec<ConfigError>,
    at: &Location,
    key: &KeyPath,
    name: &str,
    kind: &'static str,
    defined: &BTreeMap<&str, T>,
) -> bool {
    if defined.contains_key(name) {
        return true;
    }
    errors.push(ConfigError::UnknownReference {
        at: at.clone(),
        key: key.clone(),
        kind,
        name: name.to_owned(),
        did_you_mean: closest(name, defined.keys().copied()),
        defined: join(defined.keys().copied()),
    });
    false
}
