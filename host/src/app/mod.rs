//! The assembled product: from a validated [`Config`] to syncs that run.
//!
//! [`Host`] opens the state file (one `Arc<redb::Database>` shared by the plugins' storage
//! and the sync state), starts the plugin runtime, loads plugins (built in or from a file
//! pinned by sha256) when a sync first needs them, opens connections with their
//! credentials read from the referenced variables or files, and runs `check` on each
//! connection before any sync may use it. Every app account gets one request budget
//! ([`budget`]), shared by all the syncs that use it.
//!
//! - [`convert`]: WIT types <-> the engine's types (the only place they meet);
//! - [`adapter`]: the engine's `Source` over a connector, `Mappers` over mapper plugins;
//! - [`budget`]: per-account rate budgets with priorities and 429 back-off;
//! - [`daemon`]: `tandem run` — the scheduler, its control API ([`control`]) and its
//!   webhook receiver ([`webhook`]);
//! - [`state_file`]: opening the state file, with a clear message when it is locked;
//! - [`report`]: status and logs as serialisable summaries (CLI and control API).

pub mod adapter;
pub mod budget;
pub mod control;
pub mod convert;
pub mod daemon;
pub mod fleet;
pub mod report;
pub mod state_file;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, ConfigError, Env, PluginConfig};
use crate::db::{Db, Pg, PgOptions};
use crate::runtime::types::{AccountInfo, PluginInfo};
use crate::runtime::{
    CallError, ConnectError, LoadError, MapperClient, Plugin, Resolve, Runtime, RuntimeOptions,
    SystemResolver,
};
use crate::sync::model::{Side, SidePair};
use crate::sync::run::{Aborted, Hooks, Point};
use crate::sync::state::{OpStatus, StateError, SyncStatus};
use crate::sync::{Engine, EngineError, RunOptions, RunOutcome, RunReport, SyncPolicy, SyncStore};

pub use adapter::{ConnectorSource, PluginMappers, RetrySettings, RunProgress};
pub use budget::{
    AccountBudget, BudgetSnapshot, Budgets, NoWaitPolicy, Priority, RatePolicy, RequestGate,
    ResetMeaning, Share, Window,
};
pub use state_file::{StateFile, StateFileError};

/// Why the host could not do what was asked. One line each, saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The PostgreSQL state database cannot be used.
    #[error(transparent)]
    Database(#[from] crate::db::PgError),
    /// The state file is locked or cannot be opened.
    #[error(transparent)]
    StateFile(#[from] StateFileError),
    /// The sync state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The plugin runtime could not start.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// A config reference could not be resolved (a missing secret...).
    #[error(transparent)]
    Config(Box<ConfigError>),
    /// A plugin was refused.
    #[error(transparent)]
    Load(Box<LoadError>),
    /// A client could not be made for a plugin.
    #[error(transparent)]
    Connect(Box<ConnectError>),
    /// A name the config does not define.
    #[error("there is no {kind} `{name}` in {file}; defined: {defined}")]
    Unknown {
        /// `sync`, `connection`, `plugin`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The config file.
        file: String,
        /// The names defined.
        defined: String,
    },
    /// A connection's `check` failed: no sync may use it.
    #[error("connection `{connection}` ({plugin}) failed its check: {message}; {hint}")]
    Check {
        /// The connection's name in the config.
        connection: String,
        /// The plugin label.
        plugin: String,
        /// What the plugin said.
        message: String,
        /// What to do.
        hint: String,
    },
    /// A connection's `describe` failed.
    #[error("connection `{connection}`: {source}")]
    Describe {
        /// The connection's name in the config.
        connection: String,
        /// The failed `describe` call.
        source: Box<CallError>,
    },
    /// A run failed.
    #[error(transparent)]
    Engine(Box<EngineError>),
    /// This daemon lost a sync's lease during a run.
    #[error(
        "sync `{0}`: this daemon lost the sync's lease during the run (it could not renew it in time, or another daemon took over); the run stopped before sending more writes, and the owner carries on"
    )]
    LeaseLost(String),
    /// An operator decision cannot be applied.
    #[error("{0}")]
    Resolve(String),
}

impl From<ConfigError> for HostError {
    fn from(e: ConfigError) -> Self {
        HostError::Config(Box::new(e))
    }
}

impl From<LoadError> for HostError {
    fn from(e: LoadError) -> Self {
        HostError::Load(Box::new(e))
    }
}

impl From<ConnectError> for HostError {
    fn from(e: ConnectError) -> Self {
        HostError::Connect(Box::new(e))
    }
}

impl From<EngineError> for HostError {
    fn from(e: EngineError) -> Self {
        HostError::Engine(Box::new(e))
    }
}

/// How to open a [`Host`].
#[derive(Clone)]
pub struct HostOptions {
    /// Where `{ env = ... }` references are read.
    pub env: Env,
    /// The compile cache; default: `cache/` beside the state file.
    pub cache_dir: Option<PathBuf>,
    /// Resolves plugin request host names (tests may inject one).
    pub resolver: Arc<dyn Resolve>,
    /// How sources retry on their own.
    pub retry: RetrySettings,
    /// Names this process in the state file's owner note (`tandem run`...).
    pub command: String,
    /// Pace requests by the rate limits connectors declare (`describe`). Off only for
    /// simulated accounts that enforce none (the demo); 429s are honoured either way.
    pub rate_limits: bool,
}

impl std::fmt::Debug for HostOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOptions")
            .field("cache_dir", &self.cache_dir)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl HostOptions {
    /// The process environment, the system resolver, default retries.
    pub fn new(command: &str) -> Self {
        HostOptions {
            env: Env::process(),
            cache_dir: None,
            resolver: Arc::new(SystemResolver),
            retry: RetrySettings::default(),
            command: command.into(),
            rate_limits: true,
        }
    }
}

/// A connection that passed its check.
#[derive(Debug)]
pub struct CheckedConnection {
    /// The connection's name.
    pub name: String,
    /// Its plugin.
    pub plugin: Arc<Plugin>,
    /// What `check` returned.
    pub account: AccountInfo,
    /// What `describe` returned.
    pub info: PluginInfo,
    /// The account's request budget.
    pub budget: Arc<AccountBudget>,
    /// Field definitions read through this connection (forgotten with it).
    pub schemas: Arc<adapter::SchemaCache>,
}

/// A sync ready to run: its policy and both sides.
#[derive(Debug)]
pub struct PreparedSync {
    /// The sync's name.
    pub name: String,
    /// What the engine runs by.
    pub policy: SyncPolicy,
    /// Side A.
    pub a: ConnectorSource,
    /// Side B.
    pub b: ConnectorSource,
    /// The sync's mapper plugins.
    pub mappers: PluginMappers,
    /// The connection names (A, B).
    pub names: (String, String),
    /// Counts of the run, for progress displays.
    pub progress: Arc<RunProgress>,
}

/// The assembled product. See the module documentation.
pub struct Host {
    config: Config,
    env: Env,
    retry: RetrySettings,
    rate_limits: bool,
    // Dropped last: the runtime and the store hold the database.
    store: SyncStore,
    runtime: Runtime,
    plugins: tokio::sync::Mutex<BTreeMap<String, Arc<Plugin>>>,
    /// Checked connections by name; one cell per name, so that syncs starting together
    /// wait for one check instead of each sending its own (a check goes out before the
    /// account, and so its budget, is known).
    connections: tokio::sync::Mutex<BTreeMap<String, ConnectionCell>>,
    budgets: Budgets,
    /// This process's name in a fleet (state on PostgreSQL).
    fleet_id: Option<String>,
    /// The redb file's lock (none on PostgreSQL).
    _state: Option<StateFile>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config.file)
            .finish_non_exhaustive()
    }
}

/// What an operator settles about a sync's records (`tandem sync resolve`); also the
/// JSON body of the control API's `POST /v1/syncs/{name}/resolve`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Resolution {
    /// Link record `a` (side A) and `b` (side B); the next run merges their fields.
    Link {
        /// The record on side A.
        a: String,
        /// The record on side B.
        b: String,
    },
    /// Never match `a` and `b`; they are not reported as ambiguous again.
    KeepApart {
        /// The record on side A.
        a: String,
        /// The record on side B.
        b: String,
    },
    /// Settle the `manual` conflict on `field` of `record` with `side`'s value.
    Take {
        /// The record, by its id on either side (`a:ID`/`b:ID` when ambiguous).
        record: String,
        /// The field (either app's name, or the pair as `status` shows it).
        field: String,
        /// Whose value wins.
        side: crate::sync::model::Side,
    },
    /// Release the quarantined link holding `record`.
    Release {
        /// The record, by its id on either side.
        record: String,
    },
}

/// The current time in Unix seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Host {
    /// Opens the state file and starts the runtime. Nothing is loaded or contacted yet.
    pub fn open(config: Config, options: HostOptions) -> Result<Self, HostError> {
        let (state, backend) = match &config.state.postgres {
            None => {
                let state = StateFile::open_with_cache(
                    &config.state.path,
                    &options.command,
                    config.state.cache_size,
                )?;
                let db = Db::Redb(state.database().clone());
                (Some(state), db)
            }
            Some(pc) => {
                let opts = PgOptions {
                    url: pc.url.read(&options.env)?,
                    tls: pc.tls,
                    ca_file: pc.ca_file.clone(),
                    pool_size: pc.pool_size,
                };
                (None, Db::Postgres(Pg::connect(&opts)?))
            }
        };
        let store = SyncStore::open(backend.clone())?;
        // This process's name in a fleet (leases, run records, budget grants).
        let fleet_id = backend.postgres().map(|_| {
            config
                .daemon
                .fleet
                .id
                .clone()
                .unwrap_or_else(fleet::default_id)
        });
        // A fleet shares each account's budget through the database.
        let budgets = match (&fleet_id, store.db().postgres()) {
            (Some(id), Some(pg)) => Budgets::shared(pg.clone(), id.clone()),
            _ => Budgets::default(),
        };
        let cache_dir = options
            .cache_dir
            .clone()
            .or_else(|| config.state.path.parent().map(|d| d.join("cache")));
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir,
            db: backend,
            resolver: options.resolver.clone(),
            pool: crate::runtime::PoolOptions {
                slots: config.daemon.plugin_instances,
            },
        })?;
        Ok(Host {
            config,
            env: options.env,
            retry: options.retry,
            rate_limits: options.rate_limits,
            store,
            runtime,
            plugins: Default::default(),
            connections: Default::default(),
            // A fleet shares each account's budget through the database.
            budgets,
            fleet_id,
            _state: state,
        })
    }

    /// The config the host was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where `{ env = ... }` references are read.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// This process's name in a fleet, when the state is on PostgreSQL.
    pub fn fleet_id(&self) -> Option<&str> {
        self.fleet_id.as_deref()
    }

    /// The sync state store.
    pub fn store(&self) -> &SyncStore {
        &self.store
    }

    /// The plugin runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Every account budget.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    fn unknown(&self, kind: &'static str, name: &str, defined: Vec<&String>) -> HostError {
        HostError::Unknown {
            kind,
            name: name.into(),
            file: self.config.file.display().to_string(),
            defined: if defined.is_empty() {
                "none".into()
            } else {
                defined
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }
    }

    /// The config of sync `name`.
    pub fn sync_config(&self, name: &str) -> Result<&crate::config::SyncConfig, HostError> {
        self.config
            .syncs
            .get(name)
            .ok_or_else(|| self.unknown("sync", name, self.config.syncs.keys().collect()))
    }

    /// Loads plugin `name` (once): built in, or a file checked against its sha256 pin.
    pub async fn plugin(&self, name: &str) -> Result<Arc<Plugin>, HostError> {
        let mut plugins = self.plugins.lock().await;
        if let Some(p) = plugins.get(name) {
            return Ok(p.clone());
        }
        let cfg: &PluginConfig =
            self.config.plugins.get(name).ok_or_else(|| {
                self.unknown("plugin", name, self.config.plugins.keys().collect())
            })?;
        let (source, pin) = cfg.runtime_source()?;
        let plugin = self.runtime.load(source, pin.as_deref()).await?;
        plugins.insert(name.into(), plugin.clone());
        Ok(plugin)
    }

    /// Connection `name`, checked once: credentials read, `describe` and `check` called,
    /// and the account's budget found or created from the connector's rate limits.
    /// Callers asking at once share one check; a failed check is tried again by the next.
    pub async fn connection(&self, name: &str) -> Result<Arc<CheckedConnection>, HostError> {
        let cell = self
            .connections
            .lock()
            .await
            .entry(name.into())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.check_connection(name))
            .await
            .cloned()
    }

    async fn check_connection(&self, name: &str) -> Result<Arc<CheckedConnection>, HostError> {
        let conn_cfg = self.config.connections.get(name).ok_or_else(|| {
            self.unknown("connection", name, self.config.connections.keys().collect())
        })?;
        let plugin = self.plugin(&conn_cfg.plugin).await?;
        let mut connection = self.config.connection(name, &self.env)?;
        let gate = Arc::new(RequestGate::unpaused());
        connection.budget = Some(gate.clone());
        let client = self.runtime.connector(&plugin, connection)?;
        let info = client
            .describe()
            .await
            .map_err(|source| HostError::Describe {
                connection: name.into(),
                source: Box::new(source),
            })?;
        let account = check_with_retries(&client)
            .await
            .map_err(|e| check_error(name, &plugin, e))?;
        let windows: Vec<Window> = info
            .rate_limits
            .iter()
            .filter(|_| self.rate_limits)
            .map(|r| Window {
                requests: r.requests,
                period: Duration::from_secs(u64::from(r.per_seconds)),
            })
            .collect();
        // The operator's limits (the account's plan) replace the connector's defaults.
        let operator: Option<Vec<Window>> =
            conn_cfg.rate_windows.clone().filter(|_| self.rate_limits);
        // The account id is what the plugin says about itself: keyed alone, a plugin
        // could claim another connection's account and spend or block its budget. The
        // operator's plugin name (which the plugin cannot choose) scopes it.
        let budget = self.budgets.account_with(
            &budget_key(&conn_cfg.plugin, &account.account_id),
            &windows,
            conn_cfg.rate_limit,
            operator.as_deref(),
        );
        tracing::info!(connection = name, account = %account.display_name, "connection checked");
        Ok(Arc::new(CheckedConnection {
            name: name.into(),
            plugin,
            account,
            info,
            budget,
            schemas: Arc::default(),
        }))
    }

    async fn source(
        &self,
        name: &str,
        side: Side,
        paused: &watch::Receiver<bool>,
        progress: &Arc<RunProgress>,
    ) -> Result<ConnectorSource, HostError> {
        let checked = self.connection(name).await?;
        let mut connection = self.config.connection(name, &self.env)?;
        let gate = Arc::new(RequestGate::new(paused.clone()));
        gate.bind(checked.budget.clone());
        connection.budget = Some(gate.clone());
        let client = self.runtime.connector(&checked.plugin, connection)?;
        Ok(
            ConnectorSource::new(client, side, &checked.info.entities, gate, self.retry)
                .with_progress(progress.clone())
                .with_schemas(checked.schemas.clone()),
        )
    }

    /// Sync `name` ready to run: both connections checked, mappers loaded. Requests of
    /// the run wait while `paused` is true.
    pub async fn prepare(
        &self,
        name: &str,
        paused: watch::Receiver<bool>,
    ) -> Result<PreparedSync, HostError> {
        let cfg = self.sync_config(name)?;
        let progress = Arc::new(RunProgress::default());
        let a = self.source(&cfg.a, Side::A, &paused, &progress).await?;
        let b = self.source(&cfg.b, Side::B, &paused, &progress).await?;
        let mut mappers = BTreeMap::new();
        for m in &cfg.policy.mappers {
            let plugin = self.plugin(m).await?;
            let limits = self
                .config
                .plugins
                .get(m)
                .map(PluginConfig::mapper_limits)
                .unwrap_or_default();
            let settings = cfg.mapper_settings.get(m).cloned().unwrap_or_default();
            let client: MapperClient = self
                .runtime
                .mapper_with_settings(&plugin, limits, name, &settings)?;
            mappers.insert(m.clone(), client);
        }
        Ok(PreparedSync {
            name: name.into(),
            policy: cfg.policy.clone(),
            a,
            b,
            mappers: PluginMappers::new(mappers),
            names: (cfg.a.clone(), cfg.b.clone()),
            progress,
        })
    }

    /// Runs a prepared sync once (a dry run with `opts.dry_run`).
    pub async fn run_prepared(
        &self,
        p: &PreparedSync,
        opts: RunOptions,
    ) -> Result<RunReport, HostError> {
        self.run_leased(p, opts, None).await
    }

    /// Runs a prepared sync once under a fleet lease: every commit is fenced by the
    /// lease's epoch, and the run stops before its next step once this daemon may no
    /// longer hold the lease (docs/fleet.md §3).
    pub async fn run_leased(
        &self,
        p: &PreparedSync,
        opts: RunOptions,
        lease: Option<&RunLease>,
    ) -> Result<RunReport, HostError> {
        let store = self.run_store(&p.name, lease)?;
        self.run_in(&store, p, opts, lease).await
    }

    /// The store a run of `name` uses: fenced by its lease, with the run's view of the
    /// sync's small tables read now, in one statement ([`SyncStore::for_run`]).
    pub fn run_store(&self, name: &str, lease: Option<&RunLease>) -> Result<SyncStore, HostError> {
        let store = match lease {
            Some(l) => self.store.fenced(l.fence.clone()),
            None => self.store.clone(),
        };
        Ok(store.for_run(name)?)
    }

    /// Runs a prepared sync once on `store` (from [`Host::run_store`]).
    pub async fn run_in(
        &self,
        store: &SyncStore,
        p: &PreparedSync,
        mut opts: RunOptions,
        lease: Option<&RunLease>,
    ) -> Result<RunReport, HostError> {
        if opts.now == 0 {
            opts.now = unix_now();
        }
        let initial = store.cursor(&p.name, 0, Side::A)?.is_none()
            || store.cursor(&p.name, 0, Side::B)?.is_none();
        p.a.set_initial(initial || opts.full);
        p.b.set_initial(initial || opts.full);
        let hooks = ProgressHooks {
            store,
            sync: &p.name,
            progress: &p.progress,
            lease,
        };
        let engine = Engine::new(&p.policy, store, SidePair::new(&p.a, &p.b), &p.mappers)
            .with_names(&p.names.0, &p.names.1)
            .with_hooks(&hooks);
        match engine.run(opts).await {
            Ok(report) => Ok(report),
            Err(crate::sync::EngineError::Aborted(_)) if lease.is_some() => {
                Err(HostError::LeaseLost(p.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Prepares and runs sync `name` once. A paused sync is not even prepared: no
    /// request goes out (connections are checked only when a sync may run).
    pub async fn run_sync(&self, name: &str, opts: RunOptions) -> Result<RunReport, HostError> {
        // One read of the sync's state serves the pause check and the run.
        let store = self.run_store(name, None)?;
        if let Some(r) = self.paused_in(&store, name)? {
            return Ok(r);
        }
        let (_tx, rx) = watch::channel(false);
        let p = self.prepare(name, rx).await?;
        self.run_in(&store, &p, opts, None).await
    }

    /// The report of a run of a paused sync, if `name` is paused.
    pub fn paused_report(&self, name: &str) -> Result<Option<RunReport>, HostError> {
        self.paused_in(&self.store, name)
    }

    /// [`Host::paused_report`], read through `store` (a run's, with its view).
    pub fn paused_in(&self, store: &SyncStore, name: &str) -> Result<Option<RunReport>, HostError> {
        self.sync_config(name)?;
        if store.status(name)? != SyncStatus::Paused {
            return Ok(None);
        }
        Ok(Some(RunReport {
            sync: name.into(),
            run: None,
            outcome: RunOutcome::Paused,
            plan: Default::default(),
            counters: Default::default(),
            failures: Vec::new(),
            requests: None,
        }))
    }

    /// Pauses sync `name`: its runs read and write nothing until resumed.
    pub fn pause(&self, name: &str) -> Result<(), HostError> {
        self.sync_config(name)?;
        self.store.set_status(name, &SyncStatus::Paused)?;
        Ok(())
    }

    /// Resumes sync `name` (also clears a breaker halt).
    pub fn resume(&self, name: &str) -> Result<(), HostError> {
        self.sync_config(name)?;
        self.store.set_status(name, &SyncStatus::Active)?;
        Ok(())
    }

    /// Disconnects sync `name`: wipes its state and logs, and leaves it paused so that
    /// nothing runs until the operator resumes it (which starts a fresh initial sync).
    /// Returns the number of rows wiped.
    pub fn disconnect(&self, name: &str) -> Result<usize, HostError> {
        self.sync_config(name)?;
        let n = self.store.disconnect(name)?;
        self.store.set_status(name, &SyncStatus::Paused)?;
        Ok(n)
    }

    /// Carries out one operator resolution (`tandem sync resolve`, or the control API's
    /// `POST /v1/syncs/{name}/resolve`) and says what happens next, in one line.
    pub fn apply_resolution(&self, name: &str, r: &Resolution) -> Result<String, HostError> {
        use crate::sync::baseline::Decision;
        Ok(match r {
            Resolution::Link { a, b } | Resolution::KeepApart { a, b } => {
                let decision = if matches!(r, Resolution::Link { .. }) {
                    Decision::Link
                } else {
                    Decision::KeepApart
                };
                self.resolve(name, a, b, decision)?;
                match decision {
                    Decision::Link => format!(
                        "sync `{name}`: A:{a} and B:{b} will be linked and their fields merged on the next run (`tandem sync run {name}`)"
                    ),
                    Decision::KeepApart => format!(
                        "sync `{name}`: A:{a} and B:{b} are kept apart: never matched again; the next run applies it"
                    ),
                }
            }
            Resolution::Take {
                record,
                field,
                side,
            } => {
                let key = self.take(name, record, field, *side)?;
                format!(
                    "sync `{name}`: `{key}` of {record} takes side {side}'s value; the next run writes it to the other side (`tandem sync run {name}`)"
                )
            }
            Resolution::Release { record } => {
                let why = self.release(name, record)?;
                format!(
                    "sync `{name}`: {record} released from quarantine ({why}); the next run syncs it again"
                )
            }
        })
    }

    /// Records the operator's decision about records `a` (side A) and `b`
    /// (side B) of sync `name` (`tandem sync resolve`): link them, or keep
    /// them apart. The entity pair is the one of the pending ambiguity naming
    /// both (or the sync's only one). The next run lists everything again so
    /// that the decision applies at once. Returns the entity pair index.
    pub fn resolve(
        &self,
        name: &str,
        a: &str,
        b: &str,
        decision: crate::sync::baseline::Decision,
    ) -> Result<usize, HostError> {
        use crate::sync::baseline::Decision;
        use crate::sync::model::Side;
        let cfg = self.sync_config(name)?;
        let pending = self.store.pending_ambiguities(name)?;
        let names = |p: &crate::sync::state::PendingAmbiguity| {
            p.a.iter().any(|x| x == a) && p.b.iter().any(|y| y == b)
        };
        let entity = match pending.iter().find(|p| names(p)) {
            Some(p) => p.entity,
            None if cfg.policy.entities.len() == 1 => 0,
            None => {
                return Err(HostError::Resolve(format!(
                    "no pending ambiguity of sync `{name}` names A:{a} and B:{b}, and the sync has several entity pairs; `tandem sync status {name}` lists the ambiguities to resolve"
                )));
            }
        };
        let pair = &cfg.policy.entities[entity];
        if decision == Decision::Link {
            for (side, id, entity_name) in [(Side::A, a, &pair.a), (Side::B, b, &pair.b)] {
                if let Some(l) = self
                    .store
                    .links_for(name, [(side, entity_name.as_str(), id)])?
                    .first()
                {
                    let ids = |s: Side| l.id(s).unwrap_or("-").to_string();
                    return Err(HostError::Resolve(format!(
                        "{side}:{id} is already linked (A:{} with B:{}); only unlinked records can be linked by hand",
                        ids(Side::A),
                        ids(Side::B)
                    )));
                }
            }
        }
        self.store.write(name, |t| {
            t.put_decision(entity, a, b, decision)?;
            let rest: Vec<_> = t
                .pending_ambiguities()?
                .into_iter()
                .filter(|p| !(p.entity == entity && names(p)))
                .collect();
            t.set_pending_ambiguities(&rest)?;
            t.set_rescan(true)
        })?;
        Ok(entity)
    }

    /// Settles the open `manual` conflict on `field` of the link holding
    /// `record` (`ID`, `a:ID` or `b:ID`) with `side`'s value: the next run
    /// writes it to the other side. Returns the pair key.
    pub fn take(
        &self,
        name: &str,
        record: &str,
        field: &str,
        side: crate::sync::model::Side,
    ) -> Result<String, HostError> {
        self.review_link(name, record, |l| crate::sync::plan::take(l, field, side))
    }

    /// Releases the quarantined link holding `record`; returns why it was quarantined.
    pub fn release(&self, name: &str, record: &str) -> Result<String, HostError> {
        self.review_link(name, record, crate::sync::plan::release)
    }

    /// Finds the link holding `record`, edits it with `f` and stores it.
    fn review_link<T>(
        &self,
        name: &str,
        record: &str,
        f: impl FnOnce(&mut crate::sync::baseline::Link) -> Result<T, crate::sync::plan::ReviewError>,
    ) -> Result<T, HostError> {
        use crate::sync::model::Side;
        let cfg = self.sync_config(name)?;
        let (only, id) = match record.split_once(':') {
            Some(("a", id)) => (Some(Side::A), id),
            Some(("b", id)) => (Some(Side::B), id),
            _ => (None, record),
        };
        let hits: Vec<_> = self
            .store
            .links(name)?
            .into_iter()
            .filter(|l| {
                Side::BOTH
                    .into_iter()
                    .any(|s| only.is_none_or(|o| o == s) && l.id(s) == Some(id))
            })
            .collect();
        let mut link = match hits.len() {
            1 => hits.into_iter().next().expect("one"),
            0 => {
                return Err(HostError::Resolve(format!(
                    "sync `{name}` has no link holding record {record}; `tandem sync status {name}` lists what waits for you"
                )));
            }
            _ => {
                return Err(HostError::Resolve(format!(
                    "record id {record} is linked on both sides of sync `{name}`: write a:{id} or b:{id}"
                )));
            }
        };
        let out = f(&mut link).map_err(|e| HostError::Resolve(format!("sync `{name}`: {e}")))?;
        let pair = &cfg.policy.entities[link.entity];
        self.store.write(name, |t| {
            t.put_link(&link, (pair.a.as_str(), pair.b.as_str()))
        })?;
        Ok(out)
    }

    /// Status of every sync (or one).
    pub fn status(&self, only: Option<&str>) -> Result<Vec<report::SyncSummary>, HostError> {
        if let Some(name) = only {
            self.sync_config(name)?;
        }
        let mut out = Vec::new();
        for (name, cfg) in &self.config.syncs {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            out.push(report::summary(&self.store, cfg)?);
        }
        if let Some(pg) = self.store.db().postgres() {
            let leases = fleet::leases(pg)?;
            for s in &mut out {
                if let Some(l) = leases.get(&s.name) {
                    s.owner = l.owner.clone();
                    s.lease_age_secs = l.age_secs.map(|a| a.max(0.0) as u64);
                    s.lease_expired = l.owner.is_some() && l.expired;
                }
            }
        }
        Ok(out)
    }

    /// The logs of sync `name`: the last `runs` runs, or run `run`.
    pub fn logs(
        &self,
        name: &str,
        run: Option<u64>,
        runs: usize,
    ) -> Result<Vec<report::RunLog>, HostError> {
        let cfg = self.sync_config(name)?;
        Ok(report::logs(&self.store, cfg, run, runs)?)
    }
}

/// A connection checked once, or being checked.
type ConnectionCell = Arc<tokio::sync::OnceCell<Arc<CheckedConnection>>>;

/// The budget of an account as one plugin reports it: `PLUGIN/ACCOUNT-ID`, with the
/// operator's name for the plugin (`[plugins.NAME]`).
pub fn budget_key(plugin: &str, account_id: &str) -> String {
    format!("{plugin}/{account_id}")
}

/// `check`, tried again (a few times, briefly) when the app is rate limited or a failure
/// may pass, so that one 429 or 503 at start-up does not stop a sync.
async fn check_with_retries(
    client: &crate::runtime::ConnectorClient,
) -> Result<AccountInfo, CallError> {
    use crate::runtime::types::Error as E;
    const ATTEMPTS: u32 = 4;
    let mut attempt = 0;
    loop {
        let err = match client.check().await {
            Ok(a) => return Ok(a),
            Err(e) => e,
        };
        attempt += 1;
        let wait = match err.plugin_error() {
            _ if attempt >= ATTEMPTS => return Err(err),
            Some(E::RateLimited(info)) => info
                .retry_after_ms
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(1) * 2u32.pow(attempt - 1))
                .min(Duration::from_secs(30)),
            Some(E::Transient(_)) => Duration::from_millis(250) * 2u32.pow(attempt - 1),
            _ => return Err(err),
        };
        tracing::info!(wait_ms = wait.as_millis() as u64, error = %err, "check failed; trying again");
        tokio::time::sleep(wait).await;
    }
}

/// Which settings a check failure points at, named from the plugin's own manifest (a
/// third-party connector has no `domain` or `edition`): its URL settings when the account
/// did not answer (`address`), else every declared setting; a plugin that declares none
/// gets the connection's settings table.
fn settings_to_check(connection: &str, plugin: &Plugin, address: bool) -> String {
    settings_named_by(connection, plugin.manifest(), address)
}

fn settings_named_by(
    connection: &str,
    manifest: &crate::runtime::Manifest,
    address: bool,
) -> String {
    use crate::runtime::manifest::SettingType;
    let declared = &manifest.settings;
    let urls: Vec<&str> = declared
        .iter()
        .filter(|(_, s)| s.kind == SettingType::Url)
        .map(|(k, _)| k.as_str())
        .collect();
    let names: Vec<&str> = if address && !urls.is_empty() {
        urls
    } else {
        declared.keys().map(String::as_str).collect()
    };
    if names.is_empty() {
        format!("the settings of [connections.{connection}]")
    } else {
        format!(
            "the settings of [connections.{connection}] ({}; `tandem plugin inspect` describes them)",
            names.join(", ")
        )
    }
}

/// A check failure as one line with a hint.
fn check_error(connection: &str, plugin: &Plugin, e: CallError) -> HostError {
    use crate::runtime::types::Error as E;
    let hint = match e.plugin_error() {
        Some(E::Unauthorized(m)) if m.contains("refused the refresh token") => {
            "the app's authorisation was withdrawn or has expired; the message says how to re-authorise".to_owned()
        }
        Some(E::Unauthorized(_)) => {
            "the credentials were refused: check the API key or token its [connections] entry references".to_owned()
        }
        Some(E::Forbidden(_)) => {
            "the credentials lack a permission: use an administrator's key".to_owned()
        }
        Some(E::Transient(_)) => format!(
            "the account did not answer: check {} and the network",
            settings_to_check(connection, plugin, true)
        ),
        Some(E::RateLimited(_)) => "the account is rate limited: try again later".to_owned(),
        Some(E::Invalid(_) | E::NotFound(_) | E::Fatal(_)) => {
            format!("check {}", settings_to_check(connection, plugin, false))
        }
        _ => "run `tandem plugin check` on the plugin and report the message to its author"
            .to_owned(),
    };
    let message = match &e {
        CallError::Plugin { error, .. } => crate::runtime::client::describe_plugin_error(error),
        other => other.to_string(),
    };
    HostError::Check {
        connection: connection.into(),
        plugin: plugin.label().into(),
        message,
        hint,
    }
}

/// Sets the progress total once the plan is recorded.
struct ProgressHooks<'a> {
    store: &'a SyncStore,
    sync: &'a str,
    progress: &'a RunProgress,
    lease: Option<&'a RunLease>,
}

/// A fleet lease a run holds: its fence, and the daemon's view of whether it still holds it.
#[derive(Debug, Clone)]
pub struct RunLease {
    /// Checked by every commit of the run.
    pub fence: crate::sync::state::Fence,
    /// Checked before every step of the run.
    pub fleet: Arc<fleet::Fleet>,
}

impl Hooks for ProgressHooks<'_> {
    fn at(&self, point: Point) -> Result<(), Aborted> {
        if let Some(l) = self.lease
            && !l.fleet.still_holds(&l.fence)
        {
            tracing::warn!(
                sync = self.sync,
                epoch = l.fence.epoch,
                ?point,
                "lease lost: stopping the run before it writes more"
            );
            return Err(Aborted);
        }
        if point == Point::Recorded {
            let planned = self
                .store
                .outbox(self.sync)
                .map(|o| o.iter().filter(|e| e.status == OpStatus::Planned).count())
                .unwrap_or(0);
            self.progress.set_planned(planned as u64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::settings_named_by;
    use crate::runtime::Manifest;

    const HEAD: &str =
        "name = \"mc\"\nversion = \"0.1.0\"\nkind = \"connector\"\ncontract = \"0.1.0\"\n";

    /// A third-party connector's check failure names its own settings, never
    /// Freshworks' `domain` or `edition`.
    #[test]
    fn check_hints_name_the_plugins_own_settings() {
        let declared = Manifest::parse(&format!(
            "{HEAD}[settings.server]\ntype = \"url\"\n[settings.list-id]\ntype = \"string\"\n"
        ))
        .unwrap();
        assert_eq!(
            settings_named_by("crm", &declared, true),
            "the settings of [connections.crm] (server; `tandem plugin inspect` describes them)"
        );
        assert_eq!(
            settings_named_by("crm", &declared, false),
            "the settings of [connections.crm] (list-id, server; `tandem plugin inspect` describes them)"
        );
        let bare = Manifest::parse(HEAD).unwrap();
        for address in [true, false] {
            let hint = settings_named_by("crm", &bare, address);
            assert_eq!(hint, "the settings of [connections.crm]");
        }
    }
}
