//! Calling plugins: a fresh `Store` and instance per call, limits applied, and every
//! failure turned into a [`CallError`] that names plugin, version, export and cause.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, Trap, UpdateDeadline};

use super::Plugin;
use super::bindings::connector::{Connector, ConnectorPre};
use super::bindings::mapper::{Mapper, MapperPre};
use super::bindings::{mapper_batch_api, mapper_buffer_api};
use super::buffer;
use super::engine::TICK;
use super::limits::{ConnectorLimits, MapperLimits, MemoryLimitExceeded, StderrTail};
use super::log::LogCtx;
use super::packed;
use super::state::{ConnectionCtx, HostState};
use super::text::{clean_account, clean_error, clean_line, clean_lines, clean_plugin_info};
use super::types;

/// How a plugin instance died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// The CPU deadline (epoch budget) was spent.
    Interrupt,
    /// The fuel budget was spent (mappers).
    OutOfFuel,
    /// The memories would have exceeded the memory limit.
    Memory,
    /// The guest passed more bytes to one host call than allowed.
    HostCallData,
    /// The stack overflowed: wasmtime's limit on wasm frames, or the in-memory stack of a
    /// Rust or C guest running below address 0.
    StackOverflow,
    /// `unreachable` executed: a Rust panic or abort (see the stderr tail).
    Unreachable,
    /// Out-of-bounds memory or table access, bad indirect call, integer fault...
    Fault,
    /// The guest called `exit`.
    Exit,
    /// A host function trapped (a host bug or a host limit).
    Host,
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interrupt => "interrupt: CPU deadline reached",
            Self::OutOfFuel => "out of fuel",
            Self::Memory => "memory limit",
            Self::HostCallData => "host-call data limit",
            Self::StackOverflow => "stack overflow",
            Self::Unreachable => "unreachable: panic or abort",
            Self::Fault => "fault",
            Self::Exit => "exit",
            Self::Host => "host",
        })
    }
}

/// Why a plugin call did not return a value. All messages are one line.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin ran fine and returned its typed error (retry decisions go by the case).
    #[error("plugin {plugin}: `{export}` returned {}", describe_plugin_error(.error))]
    Plugin {
        /// `name version`.
        plugin: Arc<str>,
        /// The export called.
        export: &'static str,
        /// The plugin's error.
        error: types::Error,
    },
    /// The instance trapped; it was dropped and the next call gets a fresh one.
    #[error("plugin {plugin}: `{export}` trapped ({kind}): {detail}{}", stderr_suffix(.stderr))]
    Trap {
        /// `name version`.
        plugin: Arc<str>,
        /// The export called.
        export: &'static str,
        /// What kind of trap.
        kind: TrapKind,
        /// wasmtime's description.
        detail: String,
        /// The tail of the guest's stderr (panic messages land here).
        stderr: String,
    },
    /// The call exceeded its wall-time limit and was cancelled.
    #[error("plugin {plugin}: `{export}` did not finish within {limit:?} and was cancelled{}{}", waiting_suffix(.limit, .http_wait), stderr_suffix(.stderr))]
    Timeout {
        /// `name version`.
        plugin: Arc<str>,
        /// The export called.
        export: &'static str,
        /// The time limit the call exceeded.
        limit: Duration,
        /// The tail of the guest's stderr.
        stderr: String,
        /// Set when the app's HTTP answers held the call up (a request was in flight when
        /// the limit struck, or waiting took most of the call): the total wait.
        http_wait: Option<Duration>,
    },
    /// No instance could be made: every slot of the instance pool stayed in use for the
    /// call's whole wall-time limit. Nothing of the plugin ran; the call may be retried.
    #[error(
        "plugin {plugin}: `{export}` was not started: {detail}; it is retried later (raise `[daemon] plugin-instances` if this repeats)"
    )]
    Busy {
        /// `name version`.
        plugin: Arc<str>,
        /// The export that was to be called.
        export: &'static str,
        /// What was full.
        detail: String,
    },
}

impl CallError {
    /// The plugin's typed error, if that is what happened.
    pub fn plugin_error(&self) -> Option<&types::Error> {
        match self {
            Self::Plugin { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The trap kind, if the instance trapped.
    pub fn trap_kind(&self) -> Option<TrapKind> {
        match self {
            Self::Trap { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The captured stderr tail (empty for plugin errors).
    pub fn stderr(&self) -> &str {
        match self {
            Self::Trap { stderr, .. } | Self::Timeout { stderr, .. } => stderr,
            Self::Plugin { .. } | Self::Busy { .. } => "",
        }
    }
}

/// `unauthorized: bad key` style text for a plugin error.
pub fn describe_plugin_error(error: &types::Error) -> String {
    use types::Error as E;
    match error {
        E::Unauthorized(m) => format!("unauthorized: {m}"),
        E::Forbidden(m) => format!("forbidden: {m}"),
        E::NotFound(m) => format!("not-found: {m}"),
        E::RateLimited(info) => match info.retry_after_ms {
            Some(ms) => format!("rate-limited (retry after {ms} ms): {}", info.message),
            None => format!("rate-limited: {}", info.message),
        },
        E::Invalid(m) => format!("invalid: {m}"),
        E::Conflict(m) => format!("conflict: {m}"),
        E::CursorExpired(m) => format!("cursor-expired: {m}"),
        E::Transient(m) => format!("transient: {m}"),
        E::Fatal(m) => format!("fatal: {m}"),
    }
    .replace(['\n', '\r'], " ")
}

/// Says who is slow when a call ran out of wall time waiting on the app.
fn waiting_suffix(limit: &Duration, http_wait: &Option<Duration>) -> String {
    match http_wait {
        Some(waited) => format!(
            ": it spent {:.1} s of {:.1} s waiting for the app's HTTP answers; the app answers slowly (not a plugin fault); raise the plugin grant's `limits.timeout` if the app is always this slow",
            waited.as_secs_f64(),
            limit.as_secs_f64()
        ),
        None => String::new(),
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        return String::new();
    }
    let one_line: String = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    let chars: Vec<char> = one_line.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(400)..].iter().collect();
    format!("; stderr: {tail}")
}

/// Turns a wasmtime error from a call into [`CallError::Trap`] (or [`CallError::Busy`]
/// when the instance pool had no room).
pub(super) fn trap_error(
    plugin: &Arc<str>,
    export: &'static str,
    err: &wasmtime::Error,
    state: &HostState,
    stderr: &StderrTail,
) -> CallError {
    // Slots are held per call so this should not happen; if it does, nothing ran and a
    // later try finds room.
    if let Some(full) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::Busy {
            plugin: plugin.clone(),
            export,
            detail: clean_line(&full.to_string()),
        };
    }
    let kind = if state.limiter.exceeded || err.downcast_ref::<MemoryLimitExceeded>().is_some() {
        TrapKind::Memory
    } else if let Some(trap) = err.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt => TrapKind::Interrupt,
            Trap::OutOfFuel => TrapKind::OutOfFuel,
            Trap::StackOverflow => TrapKind::StackOverflow,
            Trap::MemoryOutOfBounds if below_address_zero(err) => TrapKind::StackOverflow,
            Trap::UnreachableCodeReached => TrapKind::Unreachable,
            _ => TrapKind::Fault,
        }
    } else if err.downcast_ref::<wasmtime_wasi::I32Exit>().is_some() {
        TrapKind::Exit
    } else if format!("{err:#}").contains("fuel allocated for hostcalls has been exhausted") {
        // wasmtime's `HostcallFuelExhausted` is private; its message is stable.
        TrapKind::HostCallData
    } else {
        TrapKind::Host
    };
    let detail = match kind {
        TrapKind::Interrupt => "the call used up its CPU time".to_owned(),
        _ => err.root_cause().to_string(),
    };
    CallError::Trap {
        plugin: plugin.clone(),
        export,
        kind,
        detail: clean_line(&detail),
        stderr: clean_lines(&stderr.text()),
    }
}

/// Whether an out-of-bounds trap hit an address just below zero, wrapped around the 32-bit
/// address space: a guest stack that ran off its bottom. Rust (and C) on wasm keep their
/// stack in linear memory, placed first and growing down towards address 0, so a guest
/// stack overflow is not wasmtime's `StackOverflow` (that is the engine's own stack) but
/// an access at the wrapped stack pointer `0xffff_xxxx` plus the instruction's static
/// offset (so slightly past 4 GiB, too). The address comes from wasmtime's `WasmFault`
/// context ("memory fault at wasm address 0x... in linear memory of size 0x..."), whose
/// type is private.
fn below_address_zero(err: &wasmtime::Error) -> bool {
    const PREFIX: &str = "memory fault at wasm address 0x";
    /// Accesses further than this from the 4 GiB wrap are not taken for a stack.
    const REACH: u64 = 16 << 20;
    err.chain().any(|cause| {
        let text = cause.to_string();
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return false;
        };
        let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        u64::from_str_radix(&hex, 16).is_ok_and(|address| address.abs_diff(1 << 32) < REACH)
    })
}

/// Runs `body` (instantiate + call) under the wall-time limit and maps failures.
async fn run<R>(
    plugin: &Arc<str>,
    export: &'static str,
    timeout: Duration,
    mut store: Store<HostState>,
    body: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
) -> Result<(R, Store<HostState>), CallError> {
    let stderr = store.data().stderr.clone();
    let wait = store.data().http_wait.clone();
    let outcome = tokio::select! {
        done = body(&mut store) => Ok(done),
        // Read while the call is still alive: whether a request is in flight right now.
        () = tokio::time::sleep(timeout) => Err(wait.snapshot()),
    };
    match outcome {
        Ok(Ok(value)) => Ok((value, store)),
        Ok(Err(err)) => Err(trap_error(plugin, export, &err, store.data(), &stderr)),
        Err((in_flight, waited)) => Err(CallError::Timeout {
            plugin: plugin.clone(),
            export,
            limit: timeout,
            stderr: clean_lines(&stderr.text()),
            http_wait: (in_flight || waited * 2 >= timeout).then_some(waited),
        }),
    }
}

/// Waits (at most the call's wall-time limit) for an instance slot of the plugin's pool.
/// The caller keeps the permit alive until after the store is dropped.
async fn instance_slot(
    plugin: &Plugin,
    export: &'static str,
    wait: Duration,
) -> Result<tokio::sync::OwnedSemaphorePermit, CallError> {
    plugin
        .slots
        .acquire(wait)
        .await
        .ok_or_else(|| CallError::Busy {
            plugin: plugin.label.clone(),
            export,
            detail: format!(
                "all {} instance slots of its kind stayed in use for {:.1} s",
                plugin.slots.total(),
                wait.as_secs_f64()
            ),
        })
}

/// Installs the epoch deadline: yield to tokio every tick while the budget lasts.
fn install_deadline(store: &mut Store<HostState>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        if state.cpu_ticks_left == 0 {
            state.cpu_exhausted = true;
            Ok(UpdateDeadline::Interrupt)
        } else {
            state.cpu_ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() / TICK.as_millis()).max(1) as u64
}

/// Calls the exports of one connector plugin for one connection.
///
/// Cheap to clone; every call runs in a fresh instance, so calls may run concurrently.
#[derive(Clone)]
pub struct ConnectorClient {
    pub(crate) plugin: Arc<Plugin>,
    pub(crate) pre: ConnectorPre<HostState>,
    /// The optional `lookup-api` export, when the component has it.
    pub(crate) lookups: Option<super::bindings::lookup_api::GuestIndices>,
    pub(crate) conn: Arc<ConnectionCtx>,
    pub(crate) connection: Arc<str>,
    pub(crate) limits: ConnectorLimits,
    /// Log lines and bytes its calls may still write (this client's and the connection's).
    pub(crate) logs: Arc<super::log::LogBudgets>,
}

impl fmt::Debug for ConnectorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorClient")
            .field("plugin", &self.plugin.label())
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl ConnectorClient {
    /// The plugin this client calls.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The effective per-call limits.
    pub fn limits(&self) -> &ConnectorLimits {
        &self.limits
    }

    /// The effective HTTP origins (manifest ∩ operator grant), for display.
    pub fn granted_origins(&self) -> Vec<String> {
        self.conn.http.origins()
    }

    /// The origins credentials are attached to (auth profile ∩ operator's auth origins).
    pub fn auth_origins(&self) -> Vec<String> {
        self.conn.http.auth_origins()
    }

    pub(super) fn store(&self) -> Store<HostState> {
        let log = LogCtx::new(
            self.plugin.label.clone(),
            self.connection.clone(),
            self.limits.log_lines,
        )
        .with_budgets(self.logs.clone());
        let state = HostState::connector(
            self.limits.memory_mib,
            ticks(self.limits.cpu),
            log,
            self.conn.clone(),
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter_async(|s| &mut s.limiter);
        store.set_hostcall_fuel(self.limits.hostcall_bytes);
        install_deadline(&mut store);
        store
    }

    async fn call<R>(
        &self,
        export: &'static str,
        f: impl AsyncFnOnce(&Connector, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let pre = &self.pre;
        let body = async |store: &mut Store<HostState>| {
            let instance = pre.instantiate_async(&mut *store).await?;
            f(&instance, store).await
        };
        // Declared before the store: dropped after it.
        let _slot = instance_slot(&self.plugin, export, self.limits.timeout).await?;
        let (value, _store) = run(
            &self.plugin.label,
            export,
            self.limits.timeout,
            self.store(),
            body,
        )
        .await
        .map_err(|e| self.conn.http.scrubber().call_error(e))?;
        Ok(value)
    }

    fn flatten<T>(
        &self,
        export: &'static str,
        result: Result<Result<T, types::Error>, CallError>,
    ) -> Result<T, CallError> {
        result?.map_err(|error| CallError::Plugin {
            plugin: self.plugin.label.clone(),
            export,
            error: clean_error(self.conn.http.scrubber().plugin_error(self.explain(error))),
        })
    }

    /// A plugin's `unauthorized` after the OAuth2 token endpoint refused the refresh token
    /// says so: the request went out without a token, so the app's 401 means "authorise
    /// again", not "wrong key".
    fn explain(&self, error: types::Error) -> types::Error {
        match (error, self.conn.http.oauth_refusal()) {
            (types::Error::Unauthorized(m), Some(refusal)) => types::Error::Unauthorized(format!(
                "{m}; the OAuth2 token endpoint refused the refresh token: {refusal}; re-authorise: grant the app access again, then store the new refresh token where `connections.{}.credentials.oauth2.refresh-token` points",
                self.connection
            )),
            (error, _) => error,
        }
    }

    /// `describe`: entities, capabilities, rate budget.
    pub async fn describe(&self) -> Result<types::PluginInfo, CallError> {
        self.call("describe", async |g, s| {
            g.tandem_plugin_connector_api().call_describe(s).await
        })
        .await
        .map(clean_plugin_info)
    }

    /// `check`: whether the account and credentials work.
    pub async fn check(&self) -> Result<types::AccountInfo, CallError> {
        let r = self
            .call("check", async |g, s| {
                g.tandem_plugin_connector_api().call_check(s).await
            })
            .await;
        self.flatten("check", r).map(clean_account)
    }

    /// `schema(entity)`: field definitions, custom fields included.
    pub async fn schema(&self, entity: &str) -> Result<Vec<types::FieldDef>, CallError> {
        let r = self
            .call("schema", async |g, s| {
                g.tandem_plugin_connector_api().call_schema(s, entity).await
            })
            .await;
        self.flatten("schema", r)
    }

    /// `containers(entity)`: lists, groups.
    pub async fn containers(&self, entity: &str) -> Result<Vec<types::Container>, CallError> {
        let r = self
            .call("containers", async |g, s| {
                g.tandem_plugin_connector_api()
                    .call_containers(s, entity)
                    .await
            })
            .await;
        self.flatten("containers", r)
    }

    /// `pull(req)`: one page of records and deletions.
    pub async fn pull(&self, req: &types::PullRequest) -> Result<types::Page, CallError> {
        let r = self
            .call("pull", async |g, s| {
                g.tandem_plugin_connector_api().call_pull(s, req).await
            })
            .await;
        self.flatten("pull", r)
    }

    /// `find(entity, query)`: records by email, marker or ids.
    pub async fn find(
        &self,
        entity: &str,
        query: &types::Lookup,
    ) -> Result<Vec<types::Record>, CallError> {
        let r = self
            .call("find", async |g, s| {
                g.tandem_plugin_connector_api()
                    .call_find(s, entity, query)
                    .await
            })
            .await;
        self.flatten("find", r)
    }

    /// Whether the connector exports `lookup-api` ([`Self::find_many`]).
    pub fn has_batch_lookup(&self) -> bool {
        self.lookups.is_some()
    }

    /// `lookup-api.find-many(entity, keys)`: one list of records per key, in order.
    /// `None` when the connector does not export `lookup-api` (a 0.1 connector built
    /// before it existed): the caller then calls [`Self::find`] per key.
    pub async fn find_many(
        &self,
        entity: &str,
        keys: &[types::LookupKey],
    ) -> Option<Result<Vec<Vec<types::Record>>, CallError>> {
        let indices = self.lookups.as_ref()?;
        let _slot = match instance_slot(&self.plugin, "find-many", self.limits.timeout).await {
            Ok(slot) => slot,
            Err(e) => return Some(Err(e)),
        };
        let pre = &self.pre;
        let body = async |store: &mut Store<HostState>| {
            let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
            let guest = indices.load(&mut *store, &instance)?;
            guest.call_find_many(&mut *store, entity, keys).await
        };
        let r = run(
            &self.plugin.label,
            "find-many",
            self.limits.timeout,
            self.store(),
            body,
        )
        .await
        .map(|(value, _store)| value);
        Some(self.flatten("find-many", r))
    }

    /// `push(entity, writes)`: one result per write, in order.
    pub async fn push(
        &self,
        entity: &str,
        writes: &[types::Write],
    ) -> Result<Vec<types::WriteResult>, CallError> {
        let r = self
            .call("push", async |g, s| {
                g.tandem_plugin_connector_api()
                    .call_push(s, entity, writes)
                    .await
            })
            .await;
        let mut results = self.flatten("push", r)?;
        for result in &mut results {
            if let Err(error) = &mut result.outcome {
                *error = clean_error(error.clone());
            }
        }
        Ok(results)
    }
}

/// Calls a mapper plugin. Cheap to clone; every call runs in a fresh instance.
#[derive(Clone)]
pub struct MapperClient {
    pub(crate) plugin: Arc<Plugin>,
    pub(crate) pre: MapperPre<HostState>,
    /// The optional `mapper-batch-api` export, when the component has it (and calls
    /// may use it).
    pub(crate) batch: Option<super::bindings::mapper_batch_api::GuestIndices>,
    /// The optional `mapper-buffer-api` export, likewise.
    pub(crate) buffer: Option<super::bindings::mapper_buffer_api::GuestIndices>,
    pub(crate) limits: MapperLimits,
    pub(crate) scope: Arc<str>,
    /// What the mapper reads through `config` (the sync's mapper-settings, defaults
    /// applied).
    pub(crate) settings: Arc<super::settings::PluginSettings>,
}

impl fmt::Debug for MapperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapperClient")
            .field("plugin", &self.plugin.label())
            .finish_non_exhaustive()
    }
}

/// The shapes of a mapper call, oldest first. Each is an export of the 0.1 contract; the
/// host calls the newest one a mapper has, and all give the same results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapShape {
    /// `mapper-api.map`: one string per id, field name and value.
    Map,
    /// `mapper-batch-api.map-batch`: the batch in columnar form (`runtime/packed.rs`).
    Batch,
    /// `mapper-buffer-api.map-buffer`: the batch as bytes, the answer as changes
    /// (`runtime/buffer.rs`).
    Buffer,
}

/// Result of a `map` call: one entry per input record.
pub type MapResults = Vec<Result<Option<types::Record>, types::Error>>;

/// Yield to tokio after this much fuel (some 0.1 ms of a mapper's work), so a mapper never
/// monopolises a worker, and its wall-time limit strikes within that much of its end.
const FUEL_YIELD_INTERVAL: u64 = 1_000_000;

impl MapperClient {
    /// The plugin this client calls.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The effective per-call limits.
    pub fn limits(&self) -> &MapperLimits {
        &self.limits
    }

    /// Which export calls go through: the newest shape the mapper exports.
    pub fn shape(&self) -> MapShape {
        if self.buffer.is_some() {
            MapShape::Buffer
        } else if self.batch.is_some() {
            MapShape::Batch
        } else {
            MapShape::Map
        }
    }

    /// This client calling the mapper through `shape` even when it exports a newer one,
    /// for comparing the shapes (all must give the same results); `None` when the mapper
    /// lacks that export.
    pub fn with_shape(&self, shape: MapShape) -> Option<MapperClient> {
        let mut client = self.clone();
        match shape {
            MapShape::Map => {
                client.batch = None;
                client.buffer = None;
            }
            MapShape::Batch => {
                client.batch.as_ref()?;
                client.buffer = None;
            }
            MapShape::Buffer => {
                client.buffer.as_ref()?;
            }
        }
        Some(client)
    }

    /// This client calling the mapper's `map` whatever else it exports.
    pub fn unpacked(&self) -> MapperClient {
        self.with_shape(MapShape::Map)
            .expect("every mapper exports `map`")
    }

    /// `map(ctx, records)`: per record, `Some` to pass it on, `None` to drop it, or an
    /// error for that record only. Through `mapper-buffer-api.map-buffer` or
    /// `mapper-batch-api.map-batch` when the mapper exports them (same results; see
    /// [`MapShape`]).
    pub async fn map(
        &self,
        ctx: &types::MapContext,
        records: &[types::Record],
    ) -> Result<MapResults, CallError> {
        self.map_metered(ctx, records).await.map(|(r, _)| r)
    }

    /// Like [`map`](Self::map), also returning the fuel the call consumed (the same
    /// input always consumes the same fuel).
    pub async fn map_metered(
        &self,
        ctx: &types::MapContext,
        records: &[types::Record],
    ) -> Result<(MapResults, u64), CallError> {
        let log = LogCtx::new(
            self.plugin.label.clone(),
            self.scope.clone(),
            self.limits.log_lines,
        );
        let state = HostState::mapper(self.limits.memory_mib, log, self.settings.clone());
        // Declared before the store: dropped after it.
        let _slot = instance_slot(&self.plugin, "map", self.limits.timeout).await?;
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter_async(|s| &mut s.limiter);
        store.set_hostcall_fuel(self.limits.hostcall_bytes);
        // No epoch deadline (the mapper engine has none, `engine.rs`): the call yields
        // every `FUEL_YIELD_INTERVAL` of fuel, and the wall-time limit (`run`) strikes there.
        let fuel_setup = store
            .set_fuel(self.limits.fuel)
            .and_then(|()| store.fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL)));
        if let Err(err) = fuel_setup {
            return Err(trap_error(
                &self.plugin.label,
                "map",
                &err,
                store.data(),
                &store.data().stderr.clone(),
            ));
        }
        let pre = &self.pre;
        // A batch too large for 32-bit offsets (far beyond any mapper's memory) goes
        // through `map`, which fails on the memory limit as before.
        let encoded = match &self.buffer {
            Some(indices) => buffer::encode(records).ok().map(|e| (indices, e)),
            None => None,
        };
        let packed = match (&encoded, &self.batch) {
            (None, Some(indices)) => packed::pack(records).ok().map(|batch| (indices, batch)),
            _ => None,
        };
        let (results, store) = if let Some((indices, encoded)) = encoded {
            let ctx = mapper_buffer_api::MapContext {
                sync: ctx.sync.clone(),
                source: ctx.source.clone(),
                target: ctx.target.clone(),
                entity: ctx.entity.clone(),
            };
            let body = async |store: &mut Store<HostState>| {
                let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
                let guest = indices.load(&mut *store, &instance)?;
                guest
                    .call_map_buffer(&mut *store, &ctx, &encoded.text, &encoded.table)
                    .await
            };
            let (mapped, store) = run(
                &self.plugin.label,
                "map-buffer",
                self.limits.timeout,
                store,
                body,
            )
            .await?;
            let results = buffer::decode(
                records,
                &encoded.names,
                &mapped.text,
                &mapped.table,
                &mapped.errors,
            );
            (results, store)
        } else if let Some((indices, batch)) = packed {
            let ctx = mapper_batch_api::MapContext {
                sync: ctx.sync.clone(),
                source: ctx.source.clone(),
                target: ctx.target.clone(),
                entity: ctx.entity.clone(),
            };
            let body = async |store: &mut Store<HostState>| {
                let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
                let guest = indices.load(&mut *store, &instance)?;
                guest.call_map_batch(&mut *store, &ctx, &batch).await
            };
            let (mapped, store) = run(
                &self.plugin.label,
                "map-batch",
                self.limits.timeout,
                store,
                body,
            )
            .await?;
            (packed::unpack(mapped), store)
        } else {
            let body = async |store: &mut Store<HostState>| {
                let instance: Mapper = pre.instantiate_async(&mut *store).await?;
                instance
                    .tandem_plugin_mapper_api()
                    .call_map(store, ctx, records)
                    .await
            };
            run(&self.plugin.label, "map", self.limits.timeout, store, body).await?
        };
        let used = self.limits.fuel - store.get_fuel().unwrap_or(0);
        let results = results
            .into_iter()
            .map(|r| r.map_err(clean_error))
            .collect();
        Ok((results, used))
    }
}
