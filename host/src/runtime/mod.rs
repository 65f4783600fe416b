//! The plugin runtime: wasmtime engines, plugin loading and limits, and one module per
//! host interface of the WIT contract (`http`, `storage`, `log`, `config`).
//!
//! Typical use by the sync engine:
//!
//! ```no_run
//! # async fn demo(db: std::sync::Arc<redb::Database>) -> Result<(), Box<dyn std::error::Error>> {
//! use tandem::runtime::*;
//! let runtime = Runtime::new(RuntimeOptions::new(db))?;
//! let plugin = runtime
//!     .load(PluginSource::Path("plugins/freshsales.wasm".into()), None)
//!     .await?;
//! let client = runtime.connector(&plugin, Connection {
//!     id: "fs-acme".into(),
//!     settings: [("domain".into(), "acme.myfreshworks.com".into())].into(),
//!     grant: Grant { http: vec!["*".into()], ..Grant::default() },
//!     credentials: Credentials::ApiKey(Secret::new("...")),
//!     budget: None,
//! })?;
//! let account = client.check().await?;
//! # Ok(()) }
//! ```
//!
//! Invariants kept here: deny by default ([`capabilities`]), secrets stay in the host
//! ([`credentials`], [`http`]), a fresh instance per call ([`client`]), hard limits
//! ([`limits`], [`engine`]).

pub mod bindings;
mod buffer;
pub mod capabilities;
pub mod client;
pub mod credentials;
pub mod engine;
pub mod http;
pub mod limits;
pub mod log;
pub mod manifest;
mod packed;
pub(crate) mod scrub;
pub mod settings;
mod state;
pub mod storage;
pub mod text;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Linker;

pub use capabilities::{Grant, SUPPORTED_CONTRACT, StorageGrant};
pub use client::{CallError, ConnectorClient, MapResults, MapShape, MapperClient, TrapKind};
pub use credentials::{Credentials, Secret};
pub use engine::{
    Allocator, CacheError, CompileCache, CompileError, DEFAULT_INSTANCE_SLOTS, MAX_INSTANCE_SLOTS,
    PolicyClass, PoolOptions,
};
pub use http::{RequestBudget, Resolve, SystemResolver};
pub use limits::{ConnectorLimits, MapperLimits};
pub use log::LogLimits;
pub use manifest::{Manifest, ManifestError, PluginKind};

use bindings::connector::ConnectorPre;
use bindings::mapper::MapperPre;
use capabilities::{EgressPolicy, InterfaceError};
use engine::Engines;
use state::{ConnectionCtx, HostState};

/// The contract's data types, shared by both worlds (re-exported from the bindings).
pub mod types {
    pub use super::bindings::connector_api::{
        CreateOp, Lookup, MembershipOp, Op, Page, PullRequest, UpdateOp, Write, WriteResult,
    };
    pub use super::bindings::lookup_api::Key as LookupKey;
    pub use super::bindings::mapper_api::MapContext;
    pub use super::bindings::types::*;
}

/// Options of a [`Runtime`].
#[derive(Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached; `None` disables the cache. The directory must
    /// be writable by this user only; its MAC key lives beside it in `<dir>.key` (see
    /// [`CompileCache`]).
    pub cache_dir: Option<PathBuf>,
    /// The database holding plugin storage (shared with the sync engine): the redb
    /// file or PostgreSQL.
    pub db: crate::db::Db,
    /// Resolves host names of plugin requests.
    pub resolver: Arc<dyn Resolve>,
    /// The instance pool of each engine (how many instances may be live at once).
    pub pool: PoolOptions,
}

impl RuntimeOptions {
    /// No compile cache, the system resolver.
    pub fn new(db: impl Into<crate::db::Db>) -> Self {
        Self {
            cache_dir: None,
            db: db.into(),
            resolver: Arc::new(SystemResolver),
            pool: PoolOptions::default(),
        }
    }
}

impl fmt::Debug for RuntimeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeOptions")
            .field("cache_dir", &self.cache_dir)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// Where a plugin comes from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// A `.wasm` file; a sidecar `<stem>.tandem.toml` beside it is read if present.
    Path(PathBuf),
    /// Bytes in memory (built-in plugins).
    Bytes {
        /// Shown in messages until the manifest names the plugin.
        name: String,
        /// The component's bytes.
        wasm: Arc<[u8]>,
        /// Manifest text, if not embedded in the component.
        manifest: Option<String>,
    },
}

/// Why a plugin was refused. One line: `plugin <name>: <reason>`.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin}: {reason}")]
pub struct LoadError {
    /// `name version` once the manifest is known, else the file name.
    pub plugin: String,
    /// What went wrong.
    pub reason: LoadFailure,
}

/// The cause of a [`LoadError`].
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(String),
    /// The sha256 differs from the pinned one.
    #[error(
        "sha256 is {actual} but the configuration pins {expected}; update the pin if the new file is trusted"
    )]
    Digest {
        /// The pinned digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// Not a component.
    #[error(transparent)]
    NotComponent(#[from] manifest::ScanError),
    /// Manifest missing or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Forbidden imports, wrong contract major, missing export.
    #[error(transparent)]
    Interfaces(#[from] InterfaceError),
    /// wasmtime could not compile it.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// It could not be linked against the host.
    #[error("cannot link against the host: {0}")]
    Link(String),
}

/// A loaded, checked and pre-instantiated plugin.
pub struct Plugin {
    manifest: Manifest,
    label: Arc<str>,
    sha256: [u8; 32],
    size: usize,
    contract: semver::Version,
    imports: Vec<String>,
    exports: Vec<String>,
    pre: PluginPre,
    /// The instance slots of its engine: every call holds one while its instance lives.
    slots: engine::InstanceSlots,
}

enum PluginPre {
    /// A connector, and the indices of its optional `lookup-api` export.
    Connector(
        ConnectorPre<HostState>,
        Option<bindings::lookup_api::GuestIndices>,
    ),
    /// A mapper, and the indices of its optional `mapper-batch-api` and
    /// `mapper-buffer-api` exports.
    Mapper(
        MapperPre<HostState>,
        Option<bindings::mapper_batch_api::GuestIndices>,
        Option<bindings::mapper_buffer_api::GuestIndices>,
    ),
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .field("kind", &self.manifest.kind)
            .field("sha256", &self.sha256_hex())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin's manifest (name, version, kind, what it asks for).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// `name version`.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// Connector or mapper.
    pub fn kind(&self) -> PluginKind {
        self.manifest.kind
    }
    /// Hex sha256 of the `.wasm`.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
    /// Size of the `.wasm` in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
    /// The contract version the component was built against.
    pub fn contract(&self) -> &semver::Version {
        &self.contract
    }
    /// The component's imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }
    /// The component's exports.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }
    /// Whether the connector exports the optional `lookup-api` (many lookups per call).
    pub fn has_batch_lookup(&self) -> bool {
        matches!(&self.pre, PluginPre::Connector(_, Some(_)))
    }
    /// Whether the mapper exports the optional `mapper-batch-api` (records in packed form).
    pub fn has_batch_map(&self) -> bool {
        matches!(&self.pre, PluginPre::Mapper(_, Some(_), _))
    }
    /// Whether the mapper exports the optional `mapper-buffer-api` (records as bytes,
    /// answers as changes).
    pub fn has_buffer_map(&self) -> bool {
        matches!(&self.pre, PluginPre::Mapper(_, _, Some(_)))
    }
}

/// One connection of a connector plugin: identity, settings, grant and credentials.
#[derive(Clone)]
pub struct Connection {
    /// Stable connection id (with the grant's plugin name, keys the storage namespace;
    /// tags logs).
    pub id: String,
    /// Non-secret settings the plugin can read (`config`), e.g. `domain`, `base-url`.
    pub settings: BTreeMap<String, String>,
    /// What the operator grants.
    pub grant: Grant,
    /// Credentials the host injects into matching requests.
    pub credentials: Credentials,
    /// Awaited before each outbound request (shared per app account).
    pub budget: Option<Arc<dyn RequestBudget>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .field("grant", &self.grant)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Why a client could not be made for a plugin.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The plugin is of the other kind.
    #[error("plugin {plugin} is a {actual}, not a {wanted}")]
    WrongKind {
        /// `name version`.
        plugin: String,
        /// Its kind.
        actual: PluginKind,
        /// The kind asked for.
        wanted: PluginKind,
    },
    /// Credentials and auth profile do not fit, or the HTTP client failed.
    #[error("connection {connection} of plugin {plugin}: {source}")]
    Http {
        /// `name version`.
        plugin: String,
        /// The connection id.
        connection: String,
        /// Why the HTTP client could not be set up.
        source: http::HttpSetupError,
    },
    /// The settings do not fit the plugin's declared ones (the first problem; `tandem
    /// config validate` lists them all, with their lines).
    #[error("{scope} of plugin {plugin}: {problem}; `tandem plugin inspect` lists its settings")]
    Settings {
        /// `name version`.
        plugin: String,
        /// `connection NAME` or `mapper use in sync NAME`.
        scope: String,
        /// The first problem.
        problem: settings::SettingProblem,
    },
}

/// The plugin runtime: engines, linkers, compile cache and host services.
///
/// Cheap to clone. Needs a tokio runtime (multi-threaded for concurrent guests).
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engines: Engines,
    connector_linker: Linker<HostState>,
    mapper_linker: Linker<HostState>,
    db: crate::db::Db,
    resolver: Arc<dyn Resolve>,
    clients: http::ClientCache,
    /// Each connection's hourly log budget, shared by all its clients.
    log_budgets: std::sync::Mutex<std::collections::HashMap<String, Arc<log::LogBudget>>>,
    /// Per storage namespace (owner, connection): whether its legacy namespace was moved
    /// in this process (once, not once per run).
    storage_moved: std::sync::Mutex<std::collections::HashMap<(String, String), storage::Moved>>,
    tokens: http::TokenCache,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin runtime: {0}")]
pub struct RuntimeError(String);

impl Runtime {
    /// Builds the engines (and their epoch ticker) and the linkers.
    pub fn new(options: RuntimeOptions) -> Result<Self, RuntimeError> {
        let cache = match options.cache_dir {
            Some(dir) => CompileCache::open(dir).map_err(|e| RuntimeError(e.to_string()))?,
            None => None,
        };
        let engines = Engines::new(cache, options.pool).map_err(|e| RuntimeError(e.to_string()))?;
        let connector_linker = state::connector_linker(engines.engine(PolicyClass::Connector))
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        let mapper_linker = state::mapper_linker(engines.engine(PolicyClass::Mapper))
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                engines,
                connector_linker,
                mapper_linker,
                db: options.db,
                resolver: options.resolver,
                clients: http::ClientCache::default(),
                log_budgets: Default::default(),
                storage_moved: Default::default(),
                tokens: http::TokenCache::default(),
            }),
        })
    }

    /// The allocator the engine of `class` uses (on demand only where the OS refused the
    /// pool's reservation).
    pub fn allocator(&self, class: PolicyClass) -> Allocator {
        self.inner.engines.allocator(class)
    }

    /// Reads, checks, compiles (through the cache) and pre-instantiates a plugin.
    ///
    /// Order: digest pin, component format, contract version, manifest (embedded when
    /// pinned), import
    /// allowlist for the manifest's kind, compile, the same checks on wasmtime's view of
    /// the component, link. Nothing of the plugin runs.
    pub async fn load(
        &self,
        source: PluginSource,
        expected_sha256: Option<&str>,
    ) -> Result<Arc<Plugin>, LoadError> {
        let (label, wasm, sidecar) = read_source(source).await?;
        let fail = |plugin: &str, reason: LoadFailure| LoadError {
            plugin: plugin.to_owned(),
            reason,
        };
        let sha256: [u8; 32] = Sha256::digest(&wasm).into();
        if let Some(expected) = expected_sha256 {
            let actual = hex::encode(sha256);
            if !expected.trim().eq_ignore_ascii_case(&actual) {
                return Err(fail(
                    &label,
                    LoadFailure::Digest {
                        expected: expected.trim().to_owned(),
                        actual,
                    },
                ));
            }
        }
        let scan = manifest::scan_component(&wasm)
            .map_err(|e| fail(&label, LoadFailure::NotComponent(e)))?;
        let sidecar_ref = sidecar.as_ref().map(|(p, t)| (p.as_str(), t.as_str()));
        if let Err(e) = capabilities::check_contract(&scan.imports, &scan.exports) {
            let label = manifest::peek_label(&scan.manifests, sidecar_ref).unwrap_or(label);
            return Err(fail(&label, e.into()));
        }
        // A pin covers the component's bytes only, so a pinned plugin's manifest must be
        // inside them.
        let manifest = if expected_sha256.is_some() {
            manifest::resolve_pinned_manifest(&scan.manifests, sidecar_ref)
        } else {
            manifest::resolve_manifest(&scan.manifests, sidecar_ref)
        }
        .map_err(|e| fail(&label, e.into()))?;
        let label = format!("{} {}", manifest.name, manifest.version);
        let kind = manifest.kind;
        let contract = capabilities::check_interfaces(kind, &scan.imports, &scan.exports)
            .and_then(|contract| {
                capabilities::check_manifest_contract(manifest.contract.as_deref(), &contract)
                    .map(|()| contract)
            })
            .map_err(|e| fail(&label, e.into()))?;

        let class = match kind {
            PluginKind::Connector => PolicyClass::Connector,
            PluginKind::Mapper => PolicyClass::Mapper,
        };
        let size = wasm.len();
        let component = self
            .inner
            .engines
            .compile(class, wasm, sha256)
            .await
            .map_err(|e| fail(&label, e.into()))?;

        // Defence in depth: the same checks on wasmtime's own view of the component.
        let engine = self.inner.engines.engine(class);
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        capabilities::check_interfaces(kind, &imports, &exports)
            .map_err(|e| fail(&label, e.into()))?;

        let link = |e: wasmtime::Error| {
            fail(
                &label,
                LoadFailure::Link(format!("{e:#}").replace('\n', " ")),
            )
        };
        let pre = match kind {
            PluginKind::Connector => {
                let pre = self
                    .inner
                    .connector_linker
                    .instantiate_pre(&component)
                    .map_err(link)?;
                // Optional since 0.1: a component without `lookup-api` gets one `find`
                // per key instead.
                let lookups = bindings::lookup_api::GuestIndices::new(&pre).ok();
                PluginPre::Connector(ConnectorPre::new(pre).map_err(link)?, lookups)
            }
            PluginKind::Mapper => {
                let pre = self
                    .inner
                    .mapper_linker
                    .instantiate_pre(&component)
                    .map_err(link)?;
                // Optional since 0.1: a component without `mapper-buffer-api` gets
                // `map-batch`, and one without that too gets `map`.
                let batch = bindings::mapper_batch_api::GuestIndices::new(&pre).ok();
                let buffer = bindings::mapper_buffer_api::GuestIndices::new(&pre).ok();
                PluginPre::Mapper(MapperPre::new(pre).map_err(link)?, batch, buffer)
            }
        };
        Ok(Arc::new(Plugin {
            manifest,
            label: label.into(),
            sha256,
            size,
            contract,
            imports,
            exports,
            pre,
            slots: self.inner.engines.slots(class).clone(),
        }))
    }

    /// A client for one connection of a connector plugin.
    ///
    /// The effective grant is the manifest's request ∩ `connection.grant`: origins both
    /// allow, storage only if both ask/grant it (the smaller quota), limits lowered by the
    /// manifest. Credentials must fit the manifest's auth profile.
    pub fn connector(
        &self,
        plugin: &Arc<Plugin>,
        connection: Connection,
    ) -> Result<ConnectorClient, ConnectError> {
        self.connector_tapped(plugin, connection, None)
    }

    /// [`connector`](Self::connector) whose requests `tap` records or answers (the
    /// conformance kit's recordings).
    pub(crate) fn connector_tapped(
        &self,
        plugin: &Arc<Plugin>,
        connection: Connection,
        tap: Option<Arc<dyn http::HttpTap>>,
    ) -> Result<ConnectorClient, ConnectError> {
        let PluginPre::Connector(pre, lookups) = &plugin.pre else {
            return Err(ConnectError::WrongKind {
                plugin: plugin.label().to_owned(),
                actual: plugin.kind(),
                wanted: PluginKind::Connector,
            });
        };
        let manifest = &plugin.manifest;
        let mut connection = connection;
        connection.settings = settings::apply_declared(&manifest.settings, &connection.settings)
            .map_err(|problems| ConnectError::Settings {
                plugin: plugin.label().to_owned(),
                scope: format!("connection {}", connection.id),
                problem: problems.into_iter().next().expect("at least one problem"),
            })?;
        let grant = &connection.grant;
        let limits = grant.limits.narrowed(&manifest.limits);
        let policy = EgressPolicy::new(manifest, grant, &connection.settings);
        let http_err = |source| ConnectError::Http {
            plugin: plugin.label().to_owned(),
            connection: connection.id.clone(),
            source,
        };
        let client = self
            .inner
            .clients
            .get(&self.inner.resolver, policy.addresses, limits.http_timeout)
            .map_err(http_err)?;
        let http = http::HttpCtx::new(
            policy,
            manifest.auth.as_ref(),
            &connection.credentials,
            &connection.settings,
            client,
            connection.budget.clone(),
            &limits,
        )
        .map_err(http_err)?
        .share_tokens(&self.inner.tokens)
        .with_tap(tap);
        let quota = match (grant.storage, manifest.storage) {
            (Some(g), Some(m)) => Some(storage::Quota {
                bytes: g.quota_bytes.min(m.quota_bytes),
                keys: g.max_keys,
            }),
            _ => None,
        };
        let connection_id: Arc<str> = connection.id.as_str().into();
        let owner = match &grant.plugin {
            Some(name) => storage::Owner::Operator(name.clone()),
            None => storage::Owner::Digest(plugin.sha256),
        };
        let moved = self
            .inner
            .storage_moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((owner.key(), connection.id.clone()))
            .or_default()
            .clone();
        let conn = ConnectionCtx {
            http,
            storage: storage::StorageCtx::new(
                self.inner.db.clone(),
                &owner,
                manifest.name.as_str().into(),
                connection_id.clone(),
                quota,
            )
            .moved_once_per(moved),
            settings: settings::PluginSettings::new(&connection.settings, &connection.id),
        };
        let hour = self
            .inner
            .log_budgets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(connection.id.clone())
            .or_insert_with(|| {
                Arc::new(log::LogBudget::hourly(
                    plugin.label.clone(),
                    connection_id.clone(),
                    limits.log,
                ))
            })
            .clone();
        let logs = log::LogBudgets::new(
            plugin.label.clone(),
            connection_id.clone(),
            limits.log,
            hour,
        );
        Ok(ConnectorClient {
            plugin: plugin.clone(),
            pre: pre.clone(),
            lookups: lookups.clone(),
            conn: Arc::new(conn),
            connection: connection_id,
            limits,
            logs: Arc::new(logs),
        })
    }

    /// A client for a mapper plugin under `limits` (lowered by the manifest's requests).
    /// `scope` tags its log lines (e.g. the sync's name).
    pub fn mapper(
        &self,
        plugin: &Arc<Plugin>,
        limits: MapperLimits,
        scope: &str,
    ) -> Result<MapperClient, ConnectError> {
        self.mapper_with_settings(plugin, limits, scope, &BTreeMap::new())
    }

    /// [`mapper`](Self::mapper) with the settings of this use of the mapper (a sync's
    /// `mapper-settings.PLUGIN`), checked against the ones it declares, defaults applied.
    pub fn mapper_with_settings(
        &self,
        plugin: &Arc<Plugin>,
        limits: MapperLimits,
        scope: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<MapperClient, ConnectError> {
        let settings =
            settings::apply_declared(&plugin.manifest.settings, settings).map_err(|problems| {
                ConnectError::Settings {
                    plugin: plugin.label().to_owned(),
                    scope: format!("mapper use in {scope}"),
                    problem: problems.into_iter().next().expect("at least one problem"),
                }
            })?;
        let PluginPre::Mapper(pre, batch, buffer) = &plugin.pre else {
            return Err(ConnectError::WrongKind {
                plugin: plugin.label().to_owned(),
                actual: plugin.kind(),
                wanted: PluginKind::Mapper,
            });
        };
        Ok(MapperClient {
            plugin: plugin.clone(),
            pre: pre.clone(),
            batch: batch.clone(),
            buffer: buffer.clone(),
            limits: limits.narrowed(&plugin.manifest.limits),
            scope: scope.into(),
            settings: Arc::new(settings::PluginSettings::new(&settings, scope)),
        })
    }
}

/// (label for messages, bytes, optional sidecar (path, text)).
async fn read_source(
    source: PluginSource,
) -> Result<(String, Arc<[u8]>, Option<(String, String)>), LoadError> {
    match source {
        PluginSource::Bytes {
            name,
            wasm,
            manifest,
        } => Ok((
            name,
            wasm,
            manifest.map(|m| ("the given manifest".to_owned(), m)),
        )),
        PluginSource::Path(path) => {
            let label = path.display().to_string();
            let wasm = tokio::fs::read(&path).await.map_err(|e| LoadError {
                plugin: label.clone(),
                reason: LoadFailure::Read(e.to_string()),
            })?;
            let sidecar_path = manifest::sidecar_path(&path);
            let sidecar = match tokio::fs::read_to_string(&sidecar_path).await {
                Ok(text) => Some((sidecar_path.display().to_string(), text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(LoadError {
                        plugin: label,
                        reason: LoadFailure::Manifest(ManifestError::Read {
                            path: sidecar_path.display().to_string(),
                            message: e.to_string(),
                        }),
                    });
                }
            };
            Ok((label, wasm.into(), sidecar))
        }
    }
}

/// Helpers of the runtime's tests.
#[cfg(test)]
mod tests_support {
    use std::time::Duration;

    use super::*;

    /// Set (to "on-demand") by the fallback test for its child run.
    pub(super) const EXPECT_ALLOCATOR: &str = "TANDEM_TEST_EXPECT_ALLOCATOR";

    pub(super) fn runtime(slots: u32) -> (tempfile::TempDir, Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
        let runtime = Runtime::new(RuntimeOptions {
            pool: PoolOptions { slots },
            ..RuntimeOptions::new(Arc::new(db))
        })
        .unwrap();
        (dir, runtime)
    }

    pub(super) async fn load(runtime: &Runtime, package: &str) -> Arc<Plugin> {
        let path = tandem_plugins::wasm_path(package).unwrap();
        runtime.load(PluginSource::Path(path), None).await.unwrap()
    }

    pub(super) fn connection(id: &str, timeout: Duration) -> Connection {
        let mut grant = Grant::default();
        grant.limits.timeout = timeout;
        Connection {
            id: id.into(),
            settings: Default::default(),
            grant,
            credentials: Credentials::None,
            budget: None,
        }
    }

    pub(super) fn ctx() -> types::MapContext {
        types::MapContext {
            sync: "s".into(),
            source: "a".into(),
            target: "b".into(),
            entity: "contacts".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::tests_support::*;
    use super::*;

    /// Both engines use the allocator they report (the pool, unless the fallback test
    /// says otherwise for its child run) and run plugins with it; every plugin and
    /// fixture this workspace builds fits a pool slot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plugins_run_with_the_allocator_the_engines_report() {
        let expected = match std::env::var(EXPECT_ALLOCATOR).as_deref() {
            Ok("on-demand") => {
                let _ = tracing_subscriber::fmt()
                    .with_writer(std::io::stderr)
                    .try_init();
                Allocator::OnDemand
            }
            _ => Allocator::Pooling,
        };
        let (_dir, runtime) = runtime(DEFAULT_INSTANCE_SLOTS);
        for class in [PolicyClass::Connector, PolicyClass::Mapper] {
            assert_eq!(runtime.allocator(class), expected, "{class}");
        }
        let connector = load(&runtime, "tandem-fixture-hostile").await;
        let client = runtime
            .connector(&connector, connection("c", Duration::from_secs(30)))
            .unwrap();
        assert_eq!(client.describe().await.unwrap().name, "hostile");
        let mapper = load(&runtime, "tandem-fixture-hostile-mapper").await;
        let mapper = runtime
            .mapper(&mapper, MapperLimits::default(), "s")
            .unwrap();
        assert!(mapper.map(&ctx(), &[]).await.unwrap().is_empty());
        if expected == Allocator::Pooling {
            for artifact in tandem_plugins::all() {
                if let Ok(path) = artifact.wasm_path() {
                    // Some fixtures are refused on purpose (no manifest, forbidden
                    // imports); none may be refused by the pool.
                    if let Err(e) = runtime.load(PluginSource::Path(path), None).await {
                        assert!(
                            !matches!(e.reason, LoadFailure::Compile(_)),
                            "{}: {e}",
                            artifact.package
                        );
                    }
                }
            }
        }
    }

    /// Under an address-space limit the pool cannot be reserved: the engines fall back to
    /// on-demand allocation with one warning, and plugins still run. Checked in a child
    /// process (the limit would hit the other tests), running the test above.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_pool_the_os_refuses_falls_back_to_on_demand_allocation() {
        use std::os::unix::process::CommandExt;
        // Enough for the test and one on-demand instance (a 4 GiB reservation), far from
        // the pool's 2 x 1000 x 4 GiB.
        const LIMIT: libc::rlim_t = 64 << 30;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                "runtime::tests::plugins_run_with_the_allocator_the_engines_report",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(EXPECT_ALLOCATOR, "on-demand")
            .env("RUST_LOG", "warn");
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            child.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: LIMIT,
                    rlim_max: LIMIT,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}");
        // One line per engine, saying why and what it means.
        let warnings: Vec<&str> = stdout
            .lines()
            .chain(stderr.lines())
            .filter(|l| l.contains("instances are allocated on demand instead"))
            .collect();
        assert_eq!(warnings.len(), 2, "{stdout}\n{stderr}");
        assert!(
            warnings[0].contains("refused the address space"),
            "{warnings:?}"
        );
    }

    /// A call waits for a free instance slot, and when none frees up within its
    /// wall-time limit it fails as `Busy` (retryable; nothing of the plugin ran); once a
    /// slot is free the same client works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_without_a_free_slot_waits_then_fails_busy() {
        let (_dir, runtime) = runtime(1);
        let plugin = load(&runtime, "tandem-fixture-hostile").await;
        let client = runtime
            .connector(&plugin, connection("busy", Duration::from_millis(200)))
            .unwrap();
        let held = plugin.slots.acquire(Duration::from_secs(5)).await.unwrap();
        let err = client.describe().await.unwrap_err();
        assert!(matches!(err, CallError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("all 1 instance slots"), "{err}");
        assert!(matches!(
            crate::app::convert::call_error(err),
            crate::sync::source::SourceError::Transient(_)
        ));
        // Freed while a call waits: the call proceeds.
        let waiting = tokio::spawn({
            let client = runtime
                .connector(&plugin, connection("busy", Duration::from_secs(30)))
                .unwrap();
            async move { client.describe().await }
        });
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiting.await.unwrap().unwrap().name, "hostile");
        assert_eq!(client.describe().await.unwrap().name, "hostile");
    }

    /// Should the pool itself run out (wasmtime's own count), the call fails as `Busy`,
    /// not as a plugin trap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_pool_is_busy_not_a_trap() {
        let (_dir, runtime) = runtime(1);
        let plugin = load(&runtime, "tandem-fixture-hostile").await;
        let PluginPre::Connector(pre, _) = &plugin.pre else {
            unreachable!("a connector")
        };
        let client = runtime
            .connector(&plugin, connection("full", Duration::from_secs(30)))
            .unwrap();
        // An instance living outside any slot fills the one-instance pool.
        let mut store = client.store();
        let _instance = pre.instantiate_async(&mut store).await.unwrap();
        let mut second = client.store();
        let err = pre.instantiate_async(&mut second).await.err().unwrap();
        let err = client::trap_error(
            &plugin.label,
            "describe",
            &err,
            second.data(),
            &second.data().stderr.clone(),
        );
        assert!(matches!(err, CallError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("component instances"), "{err}");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod regression {
    use std::time::Duration;

    use super::tests_support::*;
    use super::*;

    /// Minor page faults this thread has taken so far.
    fn thread_faults() -> i64 {
        // SAFETY: getrusage fills the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
            0
        );
        usage.ru_minflt
    }

    /// A count, not a time: page faults per fresh instance + `describe`, on one thread
    /// (the current-thread runtime runs every call, fibers included, on this thread).
    #[tokio::test]
    async fn a_fresh_instance_takes_few_page_faults() {
        let (_dir, runtime) = runtime(DEFAULT_INSTANCE_SLOTS);
        let plugin = load(&runtime, "tandem-fixture-hostile").await;
        let client = runtime
            .connector(&plugin, connection("faults", Duration::from_secs(30)))
            .unwrap();
        for _ in 0..20 {
            client.describe().await.unwrap();
        }
        const CALLS: i64 = 200;
        let before = thread_faults();
        for _ in 0..CALLS {
            client.describe().await.unwrap();
        }
        let per_call = (thread_faults() - before) as f64 / CALLS as f64;
        // Measured: 0 with the pool resetting written pages in place, 7 with on-demand
        // allocation (fresh mappings each call), about as many with the pool where the
        // kernel cannot report written pages. The bounds catch a change of regime.
        let bound = if runtime.allocator(PolicyClass::Connector) == Allocator::Pooling
            && engine::dirty_page_scan()
        {
            2.0
        } else {
            50.0
        };
        assert!(
            per_call < bound,
            "{per_call:.1} page faults per call (bound {bound})"
        );
    }
}
