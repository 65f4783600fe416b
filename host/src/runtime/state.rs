//! The data of one `Store` (one call), and the linkers of both worlds.
//!
//! Every call gets a fresh [`HostState`]: an empty WASI context (no env, no args, no
//! preopens, stdin closed, stdout discarded, stderr into a bounded tail, no network), the
//! memory limiter, the CPU tick budget and, for connectors, the connection's host services.
//!
//! Linked WASI: io, clocks, random, cli, and — because the TypeScript (componentize-js)
//! and Python (componentize-py) toolchains import them whatever the plugin does —
//! `wasi:filesystem` and `wasi:sockets` as **empty** implementations: no directory is
//! preopened, so no file descriptor can ever exist; TCP, UDP and name lookup are disabled
//! and every socket address is refused. Anything else (`wasi:http` above all) is not
//! linked, so a component importing it cannot even be pre-instantiated (the import check
//! refuses it earlier, with a message).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings;
use super::http::HttpCtx;
use super::limits::{MemoryLimiter, StderrTail};
use super::log::LogCtx;
use super::storage::StorageCtx;

/// Bytes of guest stderr kept per call (its tail goes into trap errors).
pub(crate) const STDERR_TAIL_BYTES: usize = 4096;

/// Host services of one connection, shared by all its calls.
pub(crate) struct ConnectionCtx {
    pub(crate) http: HttpCtx,
    pub(crate) storage: StorageCtx,
    pub(crate) settings: super::settings::PluginSettings,
}

/// The data of one store: one call of one plugin.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stderr: StderrTail,
    /// Epoch ticks the guest may still run before it is interrupted.
    pub(crate) cpu_ticks_left: u64,
    /// Set when the deadline callback interrupted the guest.
    pub(crate) cpu_exhausted: bool,
    pub(crate) log: LogCtx,
    pub(crate) conn: Option<Arc<ConnectionCtx>>,
    /// A mapper's settings (from the sync that uses it); a connector's are its
    /// connection's.
    pub(crate) mapper_settings: Option<Arc<super::settings::PluginSettings>>,
    /// Time this call spent waiting on the app's HTTP answers.
    pub(crate) http_wait: HttpWait,
}

/// How long one call waited on the app's HTTP answers, shared with the code that runs the
/// call, so that a call cut by its wall-time limit can tell a slow app (waiting on an
/// answer) from a slow plugin (running).
#[derive(Clone, Default)]
pub(crate) struct HttpWait(Arc<std::sync::Mutex<WaitState>>);

#[derive(Default)]
struct WaitState {
    /// Since when a request is in flight, if one is.
    since: Option<std::time::Instant>,
    /// Requests finished so far: their total wait.
    done: Duration,
}

impl HttpWait {
    fn lock(&self) -> std::sync::MutexGuard<'_, WaitState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a request in flight until the guard is dropped (also when the call is cut).
    pub(crate) fn start(&self) -> HttpWaitGuard {
        self.lock().since = Some(std::time::Instant::now());
        HttpWaitGuard(self.clone())
    }

    /// (a request is in flight now, total wait so far).
    pub(crate) fn snapshot(&self) -> (bool, Duration) {
        let state = self.lock();
        let current = state.since.map(|t| t.elapsed()).unwrap_or_default();
        (state.since.is_some(), state.done + current)
    }
}

/// See [`HttpWait::start`].
pub(crate) struct HttpWaitGuard(HttpWait);

impl Drop for HttpWaitGuard {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if let Some(since) = state.since.take() {
            state.done += since.elapsed();
        }
    }
}

impl HostState {
    /// State for a connector call.
    pub(crate) fn connector(
        memory_mib: u32,
        cpu_ticks: u64,
        log: LogCtx,
        conn: Arc<ConnectionCtx>,
    ) -> Self {
        let stderr = StderrTail::new(STDERR_TAIL_BYTES);
        let wasi = deny_all(&mut WasiCtx::builder())
            .stderr(stderr.clone())
            .build();
        Self::new(wasi, stderr, memory_mib, cpu_ticks, log, Some(conn))
    }

    /// State for a mapper call: clocks and randomness are fixed, so that the same input
    /// always gives the same output.
    pub(crate) fn mapper(
        memory_mib: u32,
        log: LogCtx,
        settings: Arc<super::settings::PluginSettings>,
    ) -> Self {
        let stderr = StderrTail::new(STDERR_TAIL_BYTES);
        let wasi = deny_all(&mut WasiCtx::builder())
            .stderr(stderr.clone())
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(wasmtime_wasi::Deterministic::new(
                DETERMINISTIC_BYTES.to_vec(),
            ))
            .insecure_random(wasmtime_wasi::Deterministic::new(
                DETERMINISTIC_BYTES.to_vec(),
            ))
            .insecure_random_seed(0x7a6e_6465_6d00)
            .build();
        // No CPU ticks: the mapper engine has no epoch deadline; fuel bounds its CPU.
        let mut state = Self::new(wasi, stderr, memory_mib, 0, log, None);
        state.mapper_settings = Some(settings);
        state
    }

    fn new(
        wasi: WasiCtx,
        stderr: StderrTail,
        memory_mib: u32,
        cpu_ticks: u64,
        log: LogCtx,
        conn: Option<Arc<ConnectionCtx>>,
    ) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_mib),
            stderr,
            cpu_ticks_left: cpu_ticks,
            cpu_exhausted: false,
            log,
            conn,
            mapper_settings: None,
            http_wait: HttpWait::default(),
        }
    }

    /// The connection services; a trap if called from a mapper (a host bug: mappers
    /// cannot link these interfaces).
    pub(crate) fn conn(&self) -> wasmtime::Result<Arc<ConnectionCtx>> {
        self.conn.clone().ok_or_else(|| {
            wasmtime::format_err!("connector host interface used outside a connection")
        })
    }
}

/// The WASI context's network switches, all off, spelled out rather than left to the
/// library's defaults: no TCP, no UDP, no name lookup, and every socket address refused.
/// (No preopens, environment or arguments are added anywhere: a builder starts without.)
fn deny_all(builder: &mut wasmtime_wasi::WasiCtxBuilder) -> &mut wasmtime_wasi::WasiCtxBuilder {
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
}

const DETERMINISTIC_BYTES: [u8; 16] = *b"tandem-mapper-rn";

/// A clock stopped at 2000-01-01T00:00:00Z (monotonic: 0).
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(946_684_800)
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_io::IoView for HostState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// Links the WASI interfaces a plugin may import: io, clocks, random, cli
/// environment/exit/std streams/terminal, and the empty filesystem and sockets (see the
/// module's comment: over this module's WASI context they can reach nothing).
fn add_harmless_wasi(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets};
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
    type T = HostState;
    wasmtime_wasi_io::add_to_linker_async(l)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    let network = sockets::network::LinkOptions::default();
    sockets::network::add_to_linker::<T, WasiSockets>(l, &network, T::sockets)?;
    sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    Ok(())
}

/// The linker of the connector world.
pub(crate) fn connector_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    add_harmless_wasi(&mut linker)?;
    bindings::connector::Connector::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// The linker of the mapper world (only `log` from the contract).
pub(crate) fn mapper_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    add_harmless_wasi(&mut linker)?;
    bindings::mapper::Mapper::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    // `config` since 0.1 (added to the world additively: older mappers do not import it).
    Ok(linker)
}
