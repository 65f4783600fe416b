//! The plugin manifest: what a plugin is and what it asks for.
//!
//! It travels with the `.wasm`, either embedded as the custom section
//! [`MANIFEST_SECTION`] (which `wasm-component-ld` keeps inside the nested core module)
//! or as a sidecar file `<stem>.tandem.toml` beside it. Unknown keys are refused.
//!
//! ```toml
//! name = "freshsales"
//! version = "0.1.0"
//! kind = "connector"            # or "mapper"
//! contract = "0.1.0"            # optional: the component's interfaces carry it
//! description = "Freshsales contacts and leads"
//! [http]
//! origins = ["https://*.myfreshworks.com", "setting:base-url"]
//! [auth]                        # optional; the host injects the credential
//! kind = "api-key"
//! header = "Authorization"
//! template = "Token token={secret}"
//! [storage]
//! quota-bytes = 1048576
//! [limits]
//! memory-mib = 64
//! timeout-ms = 30000
//! [settings.domain]             # optional; what the plugin reads through `config`
//! type = "string"
//! required = true
//! description = "The account's domain, such as acme.myfreshworks.com"
//! ```
//!
//! `[auth]` kinds (every one injected by the host; the plugin never sees the secret):
//!
//! - `api-key`: `header` (e.g. `X-Api-Key`) and `template` with `{secret}` (default
//!   `{secret}`, the key alone); the connection gives `credentials.api-key`.
//! - `bearer`: `Authorization: Bearer KEY`; the connection gives `credentials.api-key`.
//! - `basic`: HTTP Basic, `Authorization: Basic base64(user:secret)`, encoded by the host.
//!   `user` fixes the user name when the app takes the key as the password with any user
//!   (Mailchimp: `user = "anystring"`); otherwise the connection names it
//!   (`credentials.basic = { user = "jane@acme.example", password = { env = "VAR" } }`),
//!   and a connection's `user` replaces the manifest's.
//! - `oauth2`: bearer tokens from the refresh-token grant at `token-url`.
//!
//! Keys in query parameters are not offered: URLs end up in access logs, proxies and
//! error messages, where a header does not.
//!
//! `[settings.NAME]` declares a connection setting: `type` (`string`, `integer`,
//! `boolean`, `url` (absolute http(s)) or `enum` with `values`), `required`, `default`,
//! `description`. A plugin that declares settings gets only declared ones (an unknown
//! one is refused with the closest name) and the defaults of those not given; a plugin
//! that declares none gets the connection's settings as they are. Settings are never
//! secret: a name that looks like one (`api-key`, `password`...) is refused here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::capabilities::{InterfaceError, OriginError, OriginSpec, check_contract_version};

/// Name of the custom section holding the embedded manifest.
pub const MANIFEST_SECTION: &str = "tandem-manifest";

/// The kind of plugin, which selects its world and policy class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Talks to one app through the host (`connector` world).
    Connector,
    /// A pure field transform (`mapper` world).
    Mapper,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connector => "connector",
            Self::Mapper => "mapper",
        })
    }
}

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Stable plugin name (lowercase letters, digits, `-`, `_`).
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// Connector or mapper.
    pub kind: PluginKind,
    /// Optional: the contract version the plugin was built against (semver). The
    /// component's interface names carry it already (the SDK's bindings put it there),
    /// which is what the host goes by; a line here that disagrees is refused at load.
    #[serde(default)]
    pub contract: Option<String>,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
    /// Requested HTTP origins.
    #[serde(default)]
    pub http: HttpRequest,
    /// How the host attaches credentials, if the plugin needs any.
    #[serde(default)]
    pub auth: Option<AuthProfile>,
    /// Requested storage.
    #[serde(default)]
    pub storage: Option<StorageRequest>,
    /// Requested limits (the operator's caps still apply).
    #[serde(default)]
    pub limits: LimitsRequest,
    /// Declared settings, by name (empty: the plugin takes any setting, as before 0.1.x
    /// manifests could declare them).
    #[serde(default)]
    pub settings: BTreeMap<String, SettingSpec>,
}

/// `[settings.NAME]`: one setting the plugin reads through the `config` interface.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SettingSpec {
    /// What the value must be.
    #[serde(rename = "type")]
    pub kind: SettingType,
    /// The connection must give it (exclusive with `default`).
    #[serde(default)]
    pub required: bool,
    /// The value the plugin reads when the connection gives none.
    #[serde(default)]
    pub default: Option<SettingDefault>,
    /// One line for the operator (`plugin inspect` shows it).
    #[serde(default)]
    pub description: String,
    /// The allowed values of an `enum`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A setting's type. Every setting reaches the plugin as text; the type says which text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingType {
    /// Any text.
    String,
    /// A whole number (`-3`, `42`).
    Integer,
    /// `true` or `false`.
    Boolean,
    /// An absolute http(s) URL.
    Url,
    /// One of `values`.
    Enum,
}

impl fmt::Display for SettingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Url => "url",
            Self::Enum => "enum",
        })
    }
}

/// A declared default, as TOML wrote it (`true`, `25`, `"suite"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SettingDefault {
    /// `default = true`
    Boolean(bool),
    /// `default = 25`
    Integer(i64),
    /// `default = "suite"`
    Text(String),
}

impl SettingDefault {
    /// The text the plugin reads.
    pub fn as_text(&self) -> String {
        match self {
            Self::Boolean(b) => b.to_string(),
            Self::Integer(i) => i.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

impl SettingSpec {
    /// Why `value` is not a value of this setting (one line), if it is not.
    pub fn refuse(&self, value: &str) -> Option<String> {
        match self.kind {
            SettingType::String => None,
            SettingType::Integer => value
                .trim()
                .parse::<i64>()
                .is_err()
                .then(|| format!("expected an integer, found {value:?}")),
            SettingType::Boolean => (!matches!(value, "true" | "false"))
                .then(|| format!("expected true or false, found {value:?}")),
            SettingType::Url => match url::Url::parse(value.trim()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => None,
                _ => Some(format!(
                    "expected an absolute http(s) URL such as \"https://api.example.com\", found {value:?}"
                )),
            },
            SettingType::Enum => (!self.values.iter().any(|v| v == value)).then(|| {
                format!(
                    "{value:?} is not allowed; expected one of {}",
                    self.values.join(", ")
                )
            }),
        }
    }
}

/// `[http]`: requested origins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpRequest {
    /// `scheme://host[:port]` patterns (`*.` as leading label) or `setting:K`.
    #[serde(default)]
    pub origins: Vec<String>,
}

/// `[auth]`: the credential-injection profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields, rename_all = "kebab-case")]
pub enum AuthProfile {
    /// A static API key put into a header.
    #[serde(rename_all = "kebab-case")]
    ApiKey {
        /// Header name, e.g. `Authorization` or `X-Api-Key`.
        header: String,
        /// Header value with `{secret}` where the key goes, e.g. `Token token={secret}`
        /// (default: the key alone).
        #[serde(default = "secret_alone")]
        template: String,
        /// Origins that receive the header; default: every requested origin.
        #[serde(default)]
        origins: Option<Vec<String>>,
    },
    /// A static API key sent as `Authorization: Bearer KEY`.
    #[serde(rename_all = "kebab-case")]
    Bearer {
        /// Origins that receive the header; default: every requested origin.
        #[serde(default)]
        origins: Option<Vec<String>>,
    },
    /// HTTP Basic (RFC 7617): `Authorization: Basic base64(user:secret)`, encoded by the
    /// host from the user name and the secret the operator references.
    #[serde(rename_all = "kebab-case")]
    Basic {
        /// A fixed user name, for apps that take an API key as the password with any
        /// user (Mailchimp: `anystring`); `None`: the connection's credentials name it.
        #[serde(default)]
        user: Option<String>,
        /// Origins that receive the header; default: every requested origin.
        #[serde(default)]
        origins: Option<Vec<String>>,
    },
    /// OAuth2 bearer tokens obtained with the refresh-token grant.
    #[serde(rename = "oauth2", rename_all = "kebab-case")]
    OAuth2 {
        /// Token endpoint (`https://...`) or `setting:K`.
        token_url: String,
        /// Scopes sent with the refresh request (may be empty).
        #[serde(default)]
        scopes: Vec<String>,
        /// Origins that receive the bearer; default: every requested origin.
        #[serde(default)]
        origins: Option<Vec<String>>,
    },
}

impl AuthProfile {
    /// The origins credentials go to, when the profile narrows them.
    pub fn origins(&self) -> Option<&[String]> {
        match self {
            Self::ApiKey { origins, .. }
            | Self::Bearer { origins }
            | Self::Basic { origins, .. }
            | Self::OAuth2 { origins, .. } => origins.as_deref(),
        }
    }

    /// Short name (`api-key`, `bearer`, `basic`, `oauth2`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ApiKey { .. } => "api-key",
            Self::Bearer { .. } => "bearer",
            Self::Basic { .. } => "basic",
            Self::OAuth2 { .. } => "oauth2",
        }
    }

    /// The connection's `credentials` key this profile takes (`api-key`, `basic`,
    /// `oauth2`).
    pub fn credentials_key(&self) -> &'static str {
        match self {
            Self::ApiKey { .. } | Self::Bearer { .. } => "api-key",
            Self::Basic { .. } => "basic",
            Self::OAuth2 { .. } => "oauth2",
        }
    }
}

fn secret_alone() -> String {
    "{secret}".to_owned()
}

/// Whether `user` can be an HTTP Basic user name: no `:` (it ends the user name, RFC
/// 7617) and no control characters.
pub fn valid_basic_user(user: &str) -> bool {
    !user.is_empty() && !user.contains(':') && !user.chars().any(char::is_control)
}

/// `[storage]`: requested storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StorageRequest {
    /// Most bytes (keys + values) the plugin expects to keep per connection.
    pub quota_bytes: u64,
}

/// `[limits]`: requested per-call limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsRequest {
    /// Linear memory, all memories together, in MiB.
    pub memory_mib: Option<u32>,
    /// Wall time of one call, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// Why a manifest could not be found or used. Messages are one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Neither an embedded section nor a sidecar file.
    #[error(
        "no manifest: embed a `{MANIFEST_SECTION}` custom section (tandem-sdk does) or put a `<name>.tandem.toml` beside the .wasm"
    )]
    Missing,
    /// The TOML is malformed or breaks the schema.
    #[error("invalid manifest ({origin}): {message}")]
    Invalid {
        /// Where it came from (section or file).
        origin: String,
        /// What is wrong, one line.
        message: String,
    },
    /// The file is not a readable component.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The embedded and sidecar manifests differ.
    #[error("the embedded manifest and {0} differ; remove one of them")]
    Conflict(String),
    /// A pinned component relies on a sidecar manifest, which its pin does not cover.
    #[error(
        "the manifest is only in {0}, which the sha256 pin does not cover (another manifest could grant other origins, auth or token URL with the same pin); pinned plugins must embed their manifest in the component (tandem-sdk's export macros do)"
    )]
    UnpinnedSidecar(String),
    /// The sidecar file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The sidecar path.
        path: String,
        /// The I/O error.
        message: String,
    },
}

/// What is wrong with a manifest's text (one line each).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidManifest {
    /// Not TOML, or not the manifest's schema: the message with its line and column.
    #[error("{0}")]
    Toml(String),
    /// The name breaks the naming rule (the name is shown cleaned).
    #[error("name `{0}` must be 1-64 lowercase letters, digits, `-` or `_`")]
    Name(String),
    /// The version is not semver.
    #[error("version `{version}` is not semver: {reason}")]
    Version {
        /// The version as written (cleaned).
        version: String,
        /// The semver parser's reason.
        reason: String,
    },
    /// The contract version is not one this host supports.
    #[error("contract: plugin {0}")]
    Contract(InterfaceError),
    /// An `http.origins` entry does not parse.
    #[error("http.origins: {0}")]
    HttpOrigin(OriginError),
    /// An `auth.origins` entry does not parse.
    #[error("auth.origins: {0}")]
    AuthOrigin(OriginError),
    /// A mapper asks for the network, credentials or storage.
    #[error("a mapper may not request http, auth or storage")]
    MapperRequests,
    /// `auth.header` is not a header name.
    #[error("auth.header `{0}` is not a valid header name")]
    AuthHeader(String),
    /// `auth.template` has no (or several) `{secret}` placeholders.
    #[error("auth.template must contain `{{secret}}` exactly once")]
    AuthTemplate,
    /// `auth.token-url` is not a URL.
    #[error("auth.token-url `{url}`: {reason}")]
    TokenUrl {
        /// The URL as written.
        url: String,
        /// The URL parser's reason.
        reason: String,
    },
    /// `auth.token-url` is not http(s).
    #[error("auth.token-url `{0}` must be http(s)")]
    TokenUrlScheme(String),
    /// A zero memory or time limit.
    #[error("limits must be positive")]
    Limits,
    /// `auth.user` cannot be a Basic user name.
    #[error("auth.user must be a non-empty user name without `:` or control characters")]
    BasicUser,
    /// A declared setting is inconsistent.
    #[error("settings.{name}: {problem}")]
    Setting {
        /// The setting's name (cleaned).
        name: String,
        /// What is wrong.
        problem: String,
    },
}

impl Manifest {
    /// Parses and validates manifest text.
    pub fn parse(text: &str) -> Result<Self, InvalidManifest> {
        let manifest: Manifest = toml::from_str(text)
            .map_err(|e| InvalidManifest::Toml(one_line_toml_error(text, &e)))?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), InvalidManifest> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(InvalidManifest::Name(super::text::clean_line(&self.name)));
        }
        semver::Version::parse(&self.version).map_err(|e| InvalidManifest::Version {
            version: super::text::clean_line(&self.version),
            reason: e.to_string(),
        })?;
        if let Some(contract) = &self.contract {
            check_contract_version(contract).map_err(InvalidManifest::Contract)?;
        }
        for origin in &self.http.origins {
            OriginSpec::parse(origin, false).map_err(InvalidManifest::HttpOrigin)?;
        }
        if self.kind == PluginKind::Mapper
            && (!self.http.origins.is_empty() || self.auth.is_some() || self.storage.is_some())
        {
            return Err(InvalidManifest::MapperRequests);
        }
        match &self.auth {
            Some(AuthProfile::ApiKey {
                header, template, ..
            }) => {
                reqwest::header::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| InvalidManifest::AuthHeader(header.clone()))?;
                if template.matches("{secret}").count() != 1 {
                    return Err(InvalidManifest::AuthTemplate);
                }
            }
            Some(AuthProfile::OAuth2 { token_url, .. }) if !token_url.starts_with("setting:") => {
                let url = url::Url::parse(token_url).map_err(|e| InvalidManifest::TokenUrl {
                    url: token_url.clone(),
                    reason: e.to_string(),
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(InvalidManifest::TokenUrlScheme(token_url.clone()));
                }
            }
            Some(AuthProfile::Basic {
                user: Some(user), ..
            }) if !valid_basic_user(user) => return Err(InvalidManifest::BasicUser),
            Some(AuthProfile::OAuth2 { .. } | AuthProfile::Bearer { .. })
            | Some(AuthProfile::Basic { .. })
            | None => {}
        }
        self.validate_settings()?;
        if let Some(origins) = self.auth.as_ref().and_then(|a| a.origins()) {
            for origin in origins {
                OriginSpec::parse(origin, false).map_err(InvalidManifest::AuthOrigin)?;
            }
        }
        if self.limits.memory_mib == Some(0) || self.limits.timeout_ms == Some(0) {
            return Err(InvalidManifest::Limits);
        }
        Ok(())
    }
}

impl Manifest {
    fn validate_settings(&self) -> Result<(), InvalidManifest> {
        for (name, spec) in &self.settings {
            let bad = |problem: String| InvalidManifest::Setting {
                name: super::text::clean_line(name),
                problem,
            };
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !name_ok {
                return Err(bad(
                    "a setting name is 1-64 lowercase letters, digits, `-` or `_`".into(),
                ));
            }
            if super::settings::looks_secret(name) {
                return Err(bad(
                    "looks like a secret, and settings are readable by the plugin; declare an [auth] profile, whose secret the host injects".into(),
                ));
            }
            match (spec.kind, spec.values.is_empty()) {
                (SettingType::Enum, true) => {
                    return Err(bad("an enum needs values = [\"...\", ...]".into()));
                }
                (SettingType::Enum, false) | (_, true) => {}
                (kind, false) => {
                    return Err(bad(format!("values apply to type = \"enum\", not {kind}")));
                }
            }
            if let Some(default) = &spec.default {
                if spec.required {
                    return Err(bad(
                        "a required setting has no default; drop one of them".into()
                    ));
                }
                let type_ok = matches!(
                    (spec.kind, default),
                    (SettingType::Boolean, SettingDefault::Boolean(_))
                        | (SettingType::Integer, SettingDefault::Integer(_))
                        | (
                            SettingType::String | SettingType::Url | SettingType::Enum,
                            SettingDefault::Text(_)
                        )
                );
                let problem = if type_ok {
                    spec.refuse(&default.as_text())
                } else {
                    Some(format!("the default is not a {}", spec.kind))
                };
                if let Some(problem) = problem {
                    return Err(bad(format!("default: {problem}")));
                }
            }
        }
        // With declared settings, a `setting:K` reference must name one of them.
        if !self.settings.is_empty() {
            let token_url = match &self.auth {
                Some(AuthProfile::OAuth2 { token_url, .. }) => Some(token_url),
                _ => None,
            };
            let origins = self.auth.as_ref().and_then(|a| a.origins()).unwrap_or(&[]);
            for reference in self.http.origins.iter().chain(origins).chain(token_url) {
                if let Some(key) = reference.strip_prefix("setting:")
                    && !self.settings.contains_key(key)
                {
                    return Err(InvalidManifest::Setting {
                        name: super::text::clean_line(key),
                        problem: format!(
                            "`{}` names a setting the manifest does not declare; add [settings.{}]",
                            super::text::clean_line(reference),
                            super::text::clean_line(key)
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Turns a `toml` error (multi-line, with a snippet) into `message at line L column C`.
fn one_line_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} at line {line} column {column}")
        }
        None => message,
    }
}

/// What a scan of a component binary finds (no compilation involved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentScan {
    /// Top-level import names (`wasi:io/streams@0.2.6`, ...).
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// Contents of every `tandem-manifest` custom section, at any depth.
    pub manifests: Vec<String>,
}

/// Why a file is not a component the host can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A core module (built for another target than `wasm32-wasip2`).
    #[error("this is a core WebAssembly module, not a component; build for wasm32-wasip2")]
    CoreModule,
    /// Not WebAssembly at all.
    #[error("not a WebAssembly component")]
    NotComponent,
    /// `wasmparser` refused a part of it.
    #[error("malformed {part}: {message}")]
    Malformed {
        /// `component`, `import` or `export`.
        part: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The manifest section is not text.
    #[error("the `{}` section is not UTF-8", MANIFEST_SECTION)]
    ManifestNotUtf8,
}

/// Walks a component with `wasmparser`: top-level imports/exports and manifest sections.
pub fn scan_component(wasm: &[u8]) -> Result<ComponentScan, ScanError> {
    use wasmparser::{Parser, Payload};
    if !Parser::is_component(wasm) {
        return Err(if Parser::is_core_wasm(wasm) {
            ScanError::CoreModule
        } else {
            ScanError::NotComponent
        });
    }
    let malformed = |part: &'static str| {
        move |e: wasmparser::BinaryReaderError| ScanError::Malformed {
            part,
            message: e.to_string(),
        }
    };
    let mut scan = ComponentScan::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(malformed("component"))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(malformed("import"))?;
                    scan.imports.push(import.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(malformed("export"))?;
                    scan.exports.push(export.name.name.to_owned());
                }
            }
            Payload::CustomSection(reader) if reader.name() == MANIFEST_SECTION => {
                let text =
                    std::str::from_utf8(reader.data()).map_err(|_| ScanError::ManifestNotUtf8)?;
                scan.manifests.push(text.to_owned());
            }
            _ => {}
        }
    }
    Ok(scan)
}

/// The sidecar manifest path of a `.wasm` file: `<dir>/<stem>.tandem.toml`.
pub fn sidecar_path(wasm: &Path) -> PathBuf {
    let stem = wasm
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    wasm.with_file_name(format!("{stem}.tandem.toml"))
}

/// `name version` from the first manifest that has them, without validating the rest
/// (for messages about plugins refused before their manifest is checked).
pub fn peek_label(embedded: &[String], sidecar: Option<(&str, &str)>) -> Option<String> {
    embedded
        .iter()
        .map(String::as_str)
        .chain(sidecar.map(|(_, text)| text))
        .find_map(|text| {
            let table: toml::Table = toml::from_str(text).ok()?;
            let name = table.get("name")?.as_str()?;
            let version = table.get("version")?.as_str()?;
            Some(super::text::clean_line(&format!("{name} {version}")))
        })
}

/// Picks the manifest: embedded section(s) and/or sidecar text; they must agree.
pub fn resolve_manifest(
    embedded: &[String],
    sidecar: Option<(&str, &str)>,
) -> Result<Manifest, ManifestError> {
    let mut found: Option<Manifest> = None;
    for text in embedded {
        let m = Manifest::parse(text).map_err(|e| ManifestError::Invalid {
            origin: format!("`{MANIFEST_SECTION}` section"),
            message: e.to_string(),
        })?;
        match &found {
            Some(prev) if *prev != m => {
                return Err(ManifestError::Conflict(format!(
                    "another `{MANIFEST_SECTION}` section"
                )));
            }
            _ => found = Some(m),
        }
    }
    if let Some((origin, text)) = sidecar {
        let m = Manifest::parse(text).map_err(|e| ManifestError::Invalid {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        match &found {
            Some(prev) if *prev != m => return Err(ManifestError::Conflict(origin.to_owned())),
            _ => found = Some(m),
        }
    }
    found.ok_or(ManifestError::Missing)
}

/// [`resolve_manifest`] for a component pinned by its sha256: the manifest must be
/// embedded (it is then covered by the pin); a sidecar may only repeat it. Pinning the
/// component alone and reading policy from a file beside it would let that file change
/// origins, auth and token URL under the same pin.
pub fn resolve_pinned_manifest(
    embedded: &[String],
    sidecar: Option<(&str, &str)>,
) -> Result<Manifest, ManifestError> {
    if embedded.is_empty()
        && let Some((origin, _)) = sidecar
    {
        return Err(ManifestError::UnpinnedSidecar(origin.to_owned()));
    }
    resolve_manifest(embedded, sidecar)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
name = "freshsales"
version = "0.1.0"
kind = "connector"
contract = "0.1.0"
description = "Freshsales contacts"
[http]
origins = ["https://*.myfreshworks.com", "setting:base-url"]
[auth]
kind = "api-key"
header = "Authorization"
template = "Token token={secret}"
[storage]
quota-bytes = 1048576
[limits]
memory-mib = 64
timeout-ms = 30000
"#;

    #[test]
    fn parses_the_agreed_schema() {
        let m = Manifest::parse(FULL).unwrap();
        assert_eq!(m.name, "freshsales");
        assert_eq!(m.kind, PluginKind::Connector);
        assert_eq!(m.http.origins.len(), 2);
        assert_eq!(
            m.auth,
            Some(AuthProfile::ApiKey {
                header: "Authorization".into(),
                template: "Token token={secret}".into(),
                origins: None,
            })
        );
        assert_eq!(
            m.storage,
            Some(StorageRequest {
                quota_bytes: 1_048_576
            })
        );
        assert_eq!(m.limits.memory_mib, Some(64));
        assert_eq!(m.limits.timeout_ms, Some(30_000));
    }

    #[test]
    fn parses_oauth2_and_minimal_mapper() {
        let m = Manifest::parse(
            "name = \"google-contacts\"\nversion = \"0.1.0\"\nkind = \"connector\"\ncontract = \"0.1.0\"\n\
             [http]\norigins = [\"https://people.googleapis.com\"]\n\
             [auth]\nkind = \"oauth2\"\ntoken-url = \"setting:token-url\"\nscopes = [\"https://www.googleapis.com/auth/contacts\"]\n",
        )
        .unwrap();
        assert!(
            matches!(m.auth, Some(AuthProfile::OAuth2 { ref token_url, .. }) if token_url == "setting:token-url")
        );
        let m = Manifest::parse(
            "name = \"upper\"\nversion = \"1.2.3\"\nkind = \"mapper\"\ncontract = \"0.1.0\"\n",
        )
        .unwrap();
        assert_eq!(m.kind, PluginKind::Mapper);
        assert!(m.http.origins.is_empty() && m.auth.is_none() && m.storage.is_none());
    }

    #[test]
    fn refuses_unknown_keys_with_one_line() {
        for (text, needle) in [
            (format!("{FULL}\nextra = 1\n"), "unknown field `extra`"),
            (
                FULL.replace("quota-bytes", "quota"),
                "unknown field `quota`",
            ),
            (
                FULL.replace("template = ", "secret = \"x\"\ntemplate = "),
                "unknown field `secret`",
            ),
            (
                FULL.replace("[limits]", "[limits]\ncpu = 3"),
                "unknown field `cpu`",
            ),
        ] {
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
            assert!(err.contains("at line"), "{err}");
        }
    }

    #[test]
    fn refuses_invalid_values() {
        for (from, to, needle) in [
            (
                "kind = \"connector\"",
                "kind = \"robot\"",
                "unknown variant",
            ),
            (
                "contract = \"0.1.0\"",
                "contract = \"9.0.0\"",
                ">=0.1.0, <0.2.0",
            ),
            ("version = \"0.1.0\"", "version = \"one\"", "not semver"),
            (
                "name = \"freshsales\"",
                "name = \"Fresh Sales\"",
                "lowercase",
            ),
            (
                "\"https://*.myfreshworks.com\"",
                "\"*\"",
                "not a valid origin",
            ),
            ("Token token={secret}", "Token token", "{secret}"),
            ("memory-mib = 64", "memory-mib = 0", "positive"),
        ] {
            let err = Manifest::parse(&FULL.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{to}: {err}");
        }
        let err = Manifest::parse(
            "name = \"m\"\nversion = \"0.1.0\"\nkind = \"mapper\"\ncontract = \"0.1.0\"\n[http]\norigins = [\"https://a.example\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mapper may not"), "{err}");
    }

    const BASE: &str =
        "name = \"x\"\nversion = \"0.1.0\"\nkind = \"connector\"\ncontract = \"0.1.0\"\n";

    #[test]
    fn parses_every_auth_kind() {
        let auth = |text: &str| Manifest::parse(&format!("{BASE}[auth]\n{text}")).map(|m| m.auth);
        assert_eq!(
            auth("kind = \"api-key\"\nheader = \"X-Api-Key\"\n").unwrap(),
            Some(AuthProfile::ApiKey {
                header: "X-Api-Key".into(),
                template: "{secret}".into(),
                origins: None
            }),
            "the template defaults to the key alone"
        );
        assert_eq!(
            auth("kind = \"bearer\"\n").unwrap(),
            Some(AuthProfile::Bearer { origins: None })
        );
        assert_eq!(
            auth("kind = \"basic\"\nuser = \"anystring\"\n").unwrap(),
            Some(AuthProfile::Basic {
                user: Some("anystring".into()),
                origins: None
            })
        );
        assert_eq!(
            auth("kind = \"basic\"\n")
                .unwrap()
                .unwrap()
                .credentials_key(),
            "basic"
        );
        for (text, needle) in [
            ("kind = \"basic\"\nuser = \"a:b\"\n", "without `:`"),
            (
                "kind = \"basic\"\npassword = \"x\"\n",
                "unknown field `password`",
            ),
            (
                "kind = \"bearer\"\ntemplate = \"x\"\n",
                "unknown field `template`",
            ),
            ("kind = \"query\"\n", "unknown variant"),
        ] {
            let err = auth(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn parses_declared_settings() {
        let m = Manifest::parse(&format!(
            "{BASE}[http]\norigins = [\"setting:base-url\"]\n\
             [settings.base-url]\ntype = \"url\"\nrequired = true\ndescription = \"API root\"\n\
             [settings.edition]\ntype = \"enum\"\nvalues = [\"suite\", \"classic\"]\ndefault = \"suite\"\n\
             [settings.page-size]\ntype = \"integer\"\ndefault = 50\n\
             [settings.bulk]\ntype = \"boolean\"\ndefault = false\n"
        ))
        .unwrap();
        assert_eq!(m.settings.len(), 4);
        assert!(m.settings["base-url"].required);
        assert_eq!(m.settings["base-url"].kind, SettingType::Url);
        assert_eq!(
            m.settings["page-size"].default,
            Some(SettingDefault::Integer(50))
        );
        assert_eq!(
            m.settings["bulk"].default.as_ref().unwrap().as_text(),
            "false"
        );
        assert_eq!(m.settings["edition"].refuse("suite"), None);
        assert!(m.settings["edition"].refuse("Suite").is_some());
    }

    #[test]
    fn refuses_inconsistent_settings() {
        for (text, needle) in [
            (
                "[settings.x]\ntype = \"float\"\n",
                "unknown variant `float`",
            ),
            ("[settings.x]\ntype = \"enum\"\n", "an enum needs values"),
            (
                "[settings.x]\ntype = \"string\"\nvalues = [\"a\"]\n",
                "values apply to type = \"enum\"",
            ),
            (
                "[settings.x]\ntype = \"integer\"\ndefault = \"ten\"\n",
                "default is not a integer",
            ),
            (
                "[settings.x]\ntype = \"enum\"\nvalues = [\"a\"]\ndefault = \"b\"\n",
                "not allowed",
            ),
            (
                "[settings.x]\ntype = \"url\"\ndefault = \"ftp://a\"\n",
                "http(s) URL",
            ),
            (
                "[settings.x]\ntype = \"string\"\nrequired = true\ndefault = \"a\"\n",
                "drop one",
            ),
            (
                "[settings.api-key]\ntype = \"string\"\n",
                "looks like a secret",
            ),
            ("[settings.X]\ntype = \"string\"\n", "lowercase"),
            (
                "[settings.x]\ntype = \"string\"\nsecret = true\n",
                "unknown field `secret`",
            ),
            (
                "[http]\norigins = [\"setting:base-url\"]\n[settings.x]\ntype = \"string\"\n",
                "add [settings.base-url]",
            ),
        ] {
            let err = Manifest::parse(&format!("{BASE}{text}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    /// The first-party manifests parse, and every connector declares the settings its
    /// origins name.
    #[test]
    fn first_party_manifests_declare_their_settings() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        for (dir, settings) in [
            (
                "freshsales",
                &["base-url", "domain", "edition", "marker-field"][..],
            ),
            (
                "freshmarketer",
                &["base-url", "domain", "edition", "bulk-upsert"][..],
            ),
            ("google-contacts", &["base-url"][..]),
            ("template", &["base-url"][..]),
            ("mappers/normalize", &["default-country-code"][..]),
        ] {
            let text = std::fs::read_to_string(root.join(dir).join("tandem.toml")).unwrap();
            let m = Manifest::parse(&text).unwrap_or_else(|e| panic!("{dir}: {e}"));
            for name in settings {
                assert!(m.settings.contains_key(*name), "{dir} declares {name}");
            }
        }
    }

    #[test]
    fn embedded_and_sidecar_must_agree() {
        let embedded = vec![FULL.to_owned()];
        assert_eq!(
            resolve_manifest(&embedded, None).unwrap().name,
            "freshsales"
        );
        assert_eq!(
            resolve_manifest(&[], Some(("x.tandem.toml", FULL)))
                .unwrap()
                .name,
            "freshsales"
        );
        assert_eq!(
            resolve_manifest(&embedded, Some(("x.tandem.toml", FULL)))
                .unwrap()
                .name,
            "freshsales"
        );
        let other = FULL.replace("0.1.0\"\nkind", "0.2.0\"\nkind");
        assert!(matches!(
            resolve_manifest(&embedded, Some(("x.tandem.toml", &other))),
            Err(ManifestError::Conflict(_))
        ));
        assert_eq!(resolve_manifest(&[], None), Err(ManifestError::Missing));
        let wrong = FULL.replace("contract = \"0.1.0\"", "contract = \"9.0.0\"");
        assert_eq!(
            peek_label(&[wrong], None).as_deref(),
            Some("freshsales 0.1.0")
        );
        let err = resolve_manifest(&["name = 3".into()], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid manifest (`tandem-manifest` section)"),
            "{err}"
        );
    }

    #[test]
    fn a_pinned_component_needs_an_embedded_manifest() {
        let err = resolve_pinned_manifest(&[], Some(("x.tandem.toml", FULL))).unwrap_err();
        assert_eq!(err, ManifestError::UnpinnedSidecar("x.tandem.toml".into()));
        assert!(err.to_string().contains("embed"), "{err}");
        let embedded = vec![FULL.to_owned()];
        assert!(resolve_pinned_manifest(&embedded, Some(("x.tandem.toml", FULL))).is_ok());
        assert!(resolve_pinned_manifest(&embedded, None).is_ok());
    }

    #[test]
    fn sidecar_path_is_beside_the_wasm() {
        assert_eq!(
            sidecar_path(Path::new("/p/freshsales.wasm")),
            PathBuf::from("/p/freshsales.tandem.toml")
        );
    }

    #[test]
    fn scan_finds_nested_manifest_section() {
        // A component whose only content is a nested core module with a custom section.
        let section_name = MANIFEST_SECTION.as_bytes();
        let body = b"name = \"x\"";
        let mut custom = vec![section_name.len() as u8];
        custom.extend_from_slice(section_name);
        custom.extend_from_slice(body);
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.push(0); // custom section id
        module.push(custom.len() as u8);
        module.extend_from_slice(&custom);
        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        component.push(1); // core module section id
        component.push(module.len() as u8);
        component.extend_from_slice(&module);
        let scan = scan_component(&component).unwrap();
        assert_eq!(scan.manifests, vec!["name = \"x\"".to_owned()]);
        assert!(scan.imports.is_empty() && scan.exports.is_empty());
        assert!(
            scan_component(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .to_string()
                .contains("core WebAssembly module")
        );
    }
}
