//! wasmtime engines (one per policy class), the epoch ticker and the on-disk compile cache.
//!
//! * **Connectors** run with epoch interruption: a ticker on its own OS thread bumps the
//!   epoch every [`TICK`]; the per-call deadline callback yields to tokio while the call's
//!   tick budget lasts and interrupts the guest when it is spent.
//! * **Mappers** run with fuel metering instead, so a mapper's budget is counted in
//!   instructions and its outcome does not depend on machine load; NaNs are canonicalised
//!   for the same reason. A mapper yields to tokio every so much fuel, which is where its
//!   wall-time limit strikes: an epoch check at every loop head and function entry as
//!   well would cost a mapper some 3% of its time for a deadline the fuel yields already
//!   give (a mapper's only host calls, `log` and `config`, never block).
//!
//! * **Instances** come from wasmtime's pooling allocator: memory, table, stack and
//!   instance slots are reserved once when the engine is built and reused call after call,
//!   and each memory starts from its module's copy-on-write image (no copying, no `mmap`
//!   per call when a slot last held the same plugin). The pool has [`PoolOptions::slots`]
//!   instances per class, and a call waits for a free slot (`InstanceSlots`) instead of
//!   failing. Where the OS refuses the pool's address-space reservation (`ulimit -v`), the
//!   engine falls back to allocating each instance on demand, with one warning line. The
//!   per-call limits (memory, fuel, epochs) are the same either way: they live in the
//!   store, not in the allocator.
//!
//! Components are compiled per engine (the artifacts are not interchangeable) and cached in
//! the [`CompileCache`] directory under `sha256(wasm)` + `precompile_compatibility_hash` +
//! class. Deserialising an artifact runs its native code, so a cache file is trusted only
//! if its HMAC verifies: keyed by a per-installation secret kept beside (not inside) the
//! cache directory, over the wasm digest, the policy class, the engine's compatibility hash,
//! this host's version and the artifact. An entry copied from another plugin, another
//! class or another installation, or written by anybody without the key, is a miss: it is
//! logged and recompiled, never deserialised. A cache directory or key that others can
//! write is refused when the runtime starts.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{
    Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy, OptLevel,
    PoolingAllocationConfig,
};

/// Interval between epoch increments.
pub const TICK: Duration = Duration::from_millis(10);

/// Magic prefix of a cache file (bump the digit to invalidate every old entry).
const CACHE_MAGIC: &[u8; 8] = b"TANDEMC2";

/// Bytes of the per-installation cache key.
const KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Which sandbox policy a component runs under; each class has its own engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyClass {
    /// Connector plugins: epoch deadline, network through the host.
    Connector,
    /// Mapper plugins: epoch deadline and a deterministic fuel budget.
    Mapper,
}

impl PolicyClass {
    /// Short name used in cache keys and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connector => "connector",
            Self::Mapper => "mapper",
        }
    }
}

impl fmt::Display for PolicyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a component could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// wasmtime refused the component.
    #[error("wasmtime refused the component: {0}")]
    Invalid(String),
    /// The blocking compile task died.
    #[error("compile task failed: {0}")]
    Task(String),
}

/// Plugin instances live at once per policy class, by default.
pub const DEFAULT_INSTANCE_SLOTS: u32 = 1000;

/// Most instance slots a pool may have (`[daemon] plugin-instances`).
pub const MAX_INSTANCE_SLOTS: u32 = 10_000;

/// Per component: the most core instances, memories and tables it may use. A component
/// needing more is refused when it is loaded (wasmtime checks it against the pool), never
/// in the middle of a sync. Rust components built for `wasm32-wasip2` use one memory, two
/// tables and a few core instances; these leave room for other toolchains: the
/// componentize-js and componentize-py components (`tests/suite/polyglot.rs`) load and run
/// within them, their memory held to the same per-plugin limit as any other.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;

/// Per slot: the memories and tables the pool holds. Each memory slot reserves 4 GiB of
/// address space plus guard pages, so the pool counts one memory per instance (what every
/// plugin of this workspace uses), not the per-component maximum: a pool of 1000 slots
/// reserves about 4 TiB per class, 8 TiB for both, of the 128 TiB a Linux process may
/// address. Should instances with two memories fill it first, a call fails as busy and
/// is retried.
const MEMORIES_PER_SLOT: u32 = 1;
const TABLES_PER_SLOT: u32 = 2;

/// Largest table a plugin may have or grow to: the same cap as
/// [`MemoryLimiter`](super::limits::MemoryLimiter)'s `table_growing`.
pub(crate) const TABLE_ELEMENTS: usize = 100_000;

/// How instances are allocated: sized by the host, the same for both classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Instances (of one class) live at once. Each slot reserves address space, not
    /// memory: a linear memory of 4 GiB plus guard pages, two tables and an async stack;
    /// memory is committed only as a guest touches it and, when the instance is dropped,
    /// reset to the image (the written pages kept in place, see `pool_config`).
    pub slots: u32,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            slots: DEFAULT_INSTANCE_SLOTS,
        }
    }
}

/// Which allocator an engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// The pooling allocator with copy-on-write memory images.
    Pooling,
    /// Each instance allocated (and its memory mapped) on demand: the OS refused the
    /// pool's reservation.
    OnDemand,
}

/// One engine per policy class, plus the ticker and the cache directory.
pub(crate) struct Engines {
    connector: EngineSlot,
    mapper: EngineSlot,
    cache: Option<Arc<CompileCache>>,
}

struct EngineSlot {
    engine: Engine,
    /// Hex digest of `precompile_compatibility_hash()` for this engine.
    compat: String,
    allocator: Allocator,
    slots: InstanceSlots,
}

/// The instance slots of one engine: a call holds one from before its store is made
/// until after the store (and so its instance) is dropped, so that a call waits for room
/// instead of failing when more calls run than the pool has instances. Cheap to clone.
#[derive(Clone)]
pub(crate) struct InstanceSlots {
    semaphore: Arc<tokio::sync::Semaphore>,
    total: u32,
}

impl InstanceSlots {
    fn new(total: u32) -> Self {
        Self {
            semaphore: Arc::new(tokio::sync::Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits up to `wait` for a free slot; `None` if every slot stayed in use.
    pub(crate) async fn acquire(
        &self,
        wait: Duration,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        // The usual case, a free slot, without arming a timer.
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return Some(permit);
        }
        let acquire = self.semaphore.clone().acquire_owned();
        match tokio::time::timeout(wait, acquire).await {
            Ok(Ok(permit)) => Some(permit),
            // The semaphore is never closed; a timeout means every slot stayed busy.
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Slots of the pool.
    pub(crate) fn total(&self) -> u32 {
        self.total
    }
}

impl Engines {
    /// Builds both engines and starts the epoch ticker thread.
    pub(crate) fn new(
        cache: Option<CompileCache>,
        pool: PoolOptions,
    ) -> Result<Self, CompileError> {
        let connector = EngineSlot::new(PolicyClass::Connector, pool)?;
        let mapper = EngineSlot::new(PolicyClass::Mapper, pool)?;
        // Only connectors have epoch deadlines (mappers count fuel).
        spawn_ticker(vec![connector.engine.weak()]);
        Ok(Self {
            connector,
            mapper,
            cache: cache.map(Arc::new),
        })
    }

    /// The engine of a class.
    pub(crate) fn engine(&self, class: PolicyClass) -> &Engine {
        &self.slot(class).engine
    }

    /// The allocator the engine of a class uses.
    pub(crate) fn allocator(&self, class: PolicyClass) -> Allocator {
        self.slot(class).allocator
    }

    /// The instance slots of a class.
    pub(crate) fn slots(&self, class: PolicyClass) -> &InstanceSlots {
        &self.slot(class).slots
    }

    fn slot(&self, class: PolicyClass) -> &EngineSlot {
        match class {
            PolicyClass::Connector => &self.connector,
            PolicyClass::Mapper => &self.mapper,
        }
    }

    /// Compiles `wasm` for `class`, through the on-disk cache, on a blocking thread.
    pub(crate) async fn compile(
        &self,
        class: PolicyClass,
        wasm: Arc<[u8]>,
        sha256: [u8; 32],
    ) -> Result<Component, CompileError> {
        let slot = self.slot(class);
        let engine = slot.engine.clone();
        let entry = self.cache.as_ref().map(|cache| Entry {
            cache: cache.clone(),
            path: cache
                .dir
                .join(cache_file_name(&sha256, &slot.compat, class)),
            binding: binding(&sha256, &slot.compat, class),
        });
        tokio::task::spawn_blocking(move || compile_cached(&engine, &wasm, entry.as_ref()))
            .await
            .map_err(|e| CompileError::Task(e.to_string()))?
    }
}

impl EngineSlot {
    fn new(class: PolicyClass, pool: PoolOptions) -> Result<Self, CompileError> {
        let (engine, allocator) = build_engine(class, pool)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = hex::encode(&hasher.0.finalize()[..12]);
        Ok(Self {
            engine,
            compat,
            allocator,
            slots: InstanceSlots::new(pool.slots.max(1)),
        })
    }
}

/// The engine of `class` with the pooling allocator, or, where the OS refuses the pool's
/// address-space reservation, with the on-demand allocator and one warning.
fn build_engine(
    class: PolicyClass,
    pool: PoolOptions,
) -> Result<(Engine, Allocator), CompileError> {
    let mut config = engine_config(class);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(pool)));
    match Engine::new(&config) {
        Ok(engine) => Ok((engine, Allocator::Pooling)),
        Err(e) => {
            tracing::warn!(
                class = %class,
                slots = pool.slots,
                error = %format!("{e:#}").replace('\n', " "),
                "the OS refused the address space for the pool of {} {class} instances (raise `ulimit -v` or lower `[daemon] plugin-instances`); instances are allocated on demand instead: same limits, slower to start",
                pool.slots
            );
            let engine = Engine::new(&engine_config(class))
                .map_err(|e| CompileError::Invalid(e.to_string()))?;
            Ok((engine, Allocator::OnDemand))
        }
    }
}

/// The pool of one engine: `slots` component instances, each with its core instances,
/// stack, and (see [`MEMORIES_PER_SLOT`]) memory and tables.
fn pool_config(pool: PoolOptions) -> PoolingAllocationConfig {
    let slots = pool.slots.max(1);
    let mut config = PoolingAllocationConfig::new();
    config
        .total_component_instances(slots)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        // Never fewer than one component may use, so that any component that loads can
        // run when it is alone.
        .total_memories(
            slots
                .saturating_mul(MEMORIES_PER_SLOT)
                .max(MEMORIES_PER_COMPONENT),
        )
        .total_tables(
            slots
                .saturating_mul(TABLES_PER_SLOT)
                .max(TABLES_PER_COMPONENT),
        )
        .total_stacks(slots)
        .max_memories_per_module(MEMORIES_PER_COMPONENT)
        .max_tables_per_module(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        // A wasm32 memory can never exceed 4 GiB; the plugin's own (smaller) limit is
        // enforced exactly by the store's limiter, as with the on-demand allocator.
        .max_memory_size(1 << 32);
    // The slots ever used are as many as were ever in use at once (a slot last used by
    // another plugin is taken before a fresh one): what slots keep resident between
    // calls (below) then grows with the peak of concurrent calls, not with the pool.
    config.max_unused_warm_slots(0);
    if dirty_page_scan() {
        // Reset the pages a call wrote by copying them back from the image instead of
        // releasing them, so the next call in the slot takes no page faults there (about
        // ten faults and three `madvise` calls per call otherwise). The kernel reports
        // which pages were written (`PAGEMAP_SCAN`): only those are copied and kept, at
        // most this much per slot. Without the scan wasmtime would rewrite, and keep
        // resident, the whole region after every call (2 MiB per slot ever used).
        config
            .pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT);
    }
    config
}

/// Bytes at the start of a slot's memory reset in place rather than released: a Rust
/// plugin's stack (the first MiB), static data and the start of its heap.
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;
/// Bytes of each table slot reset in place (a Rust plugin's tables hold a few hundred
/// entries).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Whether the kernel can report which pages a call wrote (`PAGEMAP_SCAN`, Linux 6.7 and
/// later, asked of the kernel by wasmtime itself).
pub(crate) fn dirty_page_scan() -> bool {
    PoolingAllocationConfig::is_pagemap_scan_available()
}

/// The wasmtime configuration of a policy class.
fn engine_config(class: PolicyClass) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.cranelift_opt_level(OptLevel::Speed);
    if std::env::var_os("TANDEM_PERF_MAP").is_some() {
        // `perf` can then name the plugins' compiled functions (docs/performance.md §7).
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if class == PolicyClass::Connector {
        config.epoch_interruption(true);
    } else {
        // Same input, same output, whatever the machine load: count instructions and
        // make float results bit-identical across hosts. Fuel also bounds the CPU a call
        // takes, and its yields let the wall-time limit strike (no epoch checks needed).
        config.consume_fuel(true);
        config.cranelift_nan_canonicalization(true);
        config.relaxed_simd_deterministic(true);
    }
    config
}

/// Bumps every live engine's epoch each [`TICK`]; exits once all engines are gone.
///
/// A dedicated OS thread, never a tokio task: a task would starve behind spinning guests.
fn spawn_ticker(engines: Vec<EngineWeak>) {
    let spawned = std::thread::Builder::new()
        .name("tandem-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                let mut alive = false;
                for weak in &engines {
                    if let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        alive = true;
                    }
                }
                if !alive {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        // Without a ticker no deadline ever fires; wall-time timeouts still hold.
        tracing::error!(error = %e, "could not start the epoch ticker thread");
    }
}

fn cache_file_name(sha256: &[u8; 32], compat: &str, class: PolicyClass) -> String {
    format!("{}-{compat}-{class}.cwasm", hex::encode(sha256))
}

/// Why the compile cache cannot be used safely. Refused when the runtime starts.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory (or the key) may be written by someone else, who could then plant
    /// native code that this process would run.
    #[error(
        "compile cache {path} is writable by group or others (mode {mode:o}); run `chmod go-w {path}` or remove it (it is rebuilt)"
    )]
    DirectoryOpen {
        /// The compile cache directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file may be read or written by others.
    #[error(
        "compile cache key {path} is accessible to group or others (mode {mode:o}); run `chmod 600 {path}` or remove it (a new key is made and the cache rebuilt)"
    )]
    KeyOpen {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The directory or key belongs to another user.
    #[error(
        "compile cache {path} belongs to another user (uid {owner}); remove it or choose another state directory"
    )]
    Owner {
        /// The directory or key file.
        path: String,
        /// Its owner.
        owner: u32,
    },
    /// The key file is not a regular file of the right size.
    #[error(
        "compile cache key {path} is not a {KEY_BYTES}-byte regular file; remove it (a new key is made and the cache rebuilt)"
    )]
    KeyInvalid {
        /// The key file.
        path: String,
    },
    /// Reading or creating the key failed.
    #[error("compile cache key {path}: {message}")]
    KeyIo {
        /// The key file.
        path: String,
        /// What failed.
        message: String,
    },
}

/// The compile cache: a directory only this user may write, and the installation's MAC key
/// in a file beside it (`<dir>.key`, mode 0600), so that whoever can only drop files into
/// the cache cannot forge an entry.
pub struct CompileCache {
    dir: PathBuf,
    key: [u8; KEY_BYTES],
}

impl fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CompileCache {
    /// Opens (creating, mode 0700) the cache directory and its key (creating it with fresh
    /// random bytes, mode 0600, on first use). `Ok(None)`: the directory cannot be created
    /// (a read-only disk, say): plugins are compiled on every load, with a warning.
    pub fn open(dir: PathBuf) -> Result<Option<Self>, CacheError> {
        if let Err(e) = create_private_dir(&dir) {
            tracing::warn!(path = %dir.display(), error = %e, "cannot create the compile cache; plugins are compiled on every load");
            return Ok(None);
        }
        check_private(&dir, 0o022)?;
        let key_path = Self::key_path(&dir);
        let key = load_or_create_key(&key_path)?;
        Ok(Some(Self { dir, key }))
    }

    /// Where the key of the cache in `dir` lives: `<dir>.key`, outside the directory.
    pub fn key_path(dir: &Path) -> PathBuf {
        let mut name = dir.as_os_str().to_owned();
        name.push(".key");
        PathBuf::from(name)
    }

    fn mac(&self, binding: &[u8]) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes a key of any size");
        mac.update(binding);
        mac
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Refuses `path` if it belongs to another user or has any of the `forbidden` mode bits.
#[cfg(unix)]
fn check_private(path: &Path, forbidden: u32) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| CacheError::KeyIo {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(CacheError::Owner {
            path: path.display().to_string(),
            owner: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & forbidden != 0 {
        let path = path.display().to_string();
        return Err(if meta.is_dir() {
            CacheError::DirectoryOpen { path, mode }
        } else {
            CacheError::KeyOpen { path, mode }
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _forbidden: u32) -> Result<(), CacheError> {
    Ok(())
}

/// Reads the key at `path`, or creates it (0600, random) if there is none.
fn load_or_create_key(path: &Path) -> Result<[u8; KEY_BYTES], CacheError> {
    let io = |e: std::io::Error| CacheError::KeyIo {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    for _ in 0..2 {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                if !meta.is_file() || meta.len() != KEY_BYTES as u64 {
                    return Err(CacheError::KeyInvalid {
                        path: path.display().to_string(),
                    });
                }
                check_private(path, 0o077)?;
                let bytes = std::fs::read(path).map_err(io)?;
                return bytes.try_into().map_err(|_| CacheError::KeyInvalid {
                    path: path.display().to_string(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        // A temp file is created with mode 0600; linking it into place never replaces a
        // key another process made meanwhile (then that one is read on the next round).
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        file.write_all(&key).map_err(io)?;
        file.as_file().sync_all().map_err(io)?;
        match file.persist_noclobber(path) {
            Ok(_) => {
                tracing::info!(path = %path.display(), "created the compile cache key");
                return Ok(key);
            }
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(e.error)),
        }
    }
    Err(CacheError::KeyInvalid {
        path: path.display().to_string(),
    })
}

/// What an artifact is bound to besides its bytes: the plugin's wasm digest, the engine's
/// compatibility hash, the policy class and this host's version.
fn binding(sha256: &[u8; 32], compat: &str, class: PolicyClass) -> Vec<u8> {
    let mut out = b"tandem compile cache\0".to_vec();
    for part in [
        env!("CARGO_PKG_VERSION").as_bytes(),
        class.as_str().as_bytes(),
        compat.as_bytes(),
        sha256.as_slice(),
    ] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// One cache entry: where it lives and what it must be bound to.
struct Entry {
    cache: Arc<CompileCache>,
    path: PathBuf,
    binding: Vec<u8>,
}

/// Loads the artifact of `entry` if it verifies, else compiles and (re)writes it.
fn compile_cached(
    engine: &Engine,
    wasm: &[u8],
    entry: Option<&Entry>,
) -> Result<Component, CompileError> {
    if let Some(entry) = entry {
        match read_artifact(engine, entry) {
            Ok(Some(component)) => return Ok(component),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(path = %entry.path.display(), %reason, "compile cache entry refused; recompiling");
            }
        }
    }
    let component =
        Component::new(engine, wasm).map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
    if let Some(entry) = entry {
        match component.serialize() {
            Ok(bytes) => {
                if let Err(e) = write_artifact(entry, &bytes) {
                    tracing::warn!(path = %entry.path.display(), error = %e, "could not write the compile cache");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize a compiled component"),
        }
    }
    Ok(component)
}

/// `Ok(None)`: no entry. `Err`: an entry exists but is corrupt, stale or not authentic.
fn read_artifact(engine: &Engine, entry: &Entry) -> Result<Option<Component>, String> {
    let data = match std::fs::read(&entry.path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let header = CACHE_MAGIC.len() + 32;
    if data.len() < header || &data[..CACHE_MAGIC.len()] != CACHE_MAGIC {
        return Err("bad header".into());
    }
    let (tag, payload) = data[CACHE_MAGIC.len()..].split_at(32);
    let mut mac = entry.cache.mac(&entry.binding);
    mac.update(payload);
    if mac.verify_slice(tag).is_err() {
        return Err(
            "authentication failed: not written by this installation for this plugin and host"
                .into(),
        );
    }
    // SAFETY: the payload is an artifact this installation serialized itself for exactly
    // this wasm, class, engine and host version (its HMAC, keyed by a secret only this
    // user can read, verifies), and wasmtime checks the engine configuration again.
    let component = unsafe { Component::deserialize(engine, payload) };
    component.map(Some).map_err(|e| format!("{e:#}"))
}

/// Writes `magic + hmac + payload` to a temp file (mode 0600) and renames it into place.
fn write_artifact(entry: &Entry, payload: &[u8]) -> std::io::Result<()> {
    let dir = entry.path.parent().unwrap_or(Path::new("."));
    let mut mac = entry.cache.mac(&entry.binding);
    mac.update(payload);
    let tag = mac.finalize().into_bytes();
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(CACHE_MAGIC)?;
    file.write_all(&tag)?;
    file.write_all(payload)?;
    file.as_file().sync_all()?;
    file.persist(&entry.path).map_err(|e| e.error)?;
    Ok(())
}

/// Feeds `Hash` output into SHA-256, so the key is stable across processes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: the preamble of the component layer.
    const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    /// Another plugin: a component holding one empty core module.
    const OTHER_COMPONENT: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0x01, 0x08, 0x00, 0x61, 0x73, 0x6d, 0x01,
        0x00, 0x00, 0x00,
    ];

    fn sha(wasm: &[u8]) -> [u8; 32] {
        Sha256::digest(wasm).into()
    }

    /// A temp dir holding the cache directory `cache` (and its key `cache.key`).
    fn setup() -> (tempfile::TempDir, Engines, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = CompileCache::open(cache_dir.clone()).unwrap().unwrap();
        (
            dir,
            Engines::new(Some(cache), PoolOptions::default()).unwrap(),
            cache_dir,
        )
    }

    fn entry_of(engines: &Engines, class: PolicyClass, wasm: &[u8]) -> Entry {
        let cache = engines.cache.clone().unwrap();
        let slot = engines.slot(class);
        Entry {
            path: cache
                .dir
                .join(cache_file_name(&sha(wasm), &slot.compat, class)),
            binding: binding(&sha(wasm), &slot.compat, class),
            cache,
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        entries
    }

    async fn compile(engines: &Engines, class: PolicyClass, wasm: &[u8]) -> Component {
        engines
            .compile(class, wasm.into(), sha(wasm))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn cache_entry_written_and_reused() {
        let (_tmp, engines, dir) = setup();
        compile(&engines, PolicyClass::Connector, EMPTY_COMPONENT).await;
        let entry = entry_of(&engines, PolicyClass::Connector, EMPTY_COMPONENT);
        assert_eq!(files(&dir), std::slice::from_ref(&entry.path));
        let name = entry.path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.starts_with(&hex::encode(sha(EMPTY_COMPONENT)))
                && name.ends_with("-connector.cwasm")
        );
        let written = std::fs::metadata(&entry.path).unwrap().modified().unwrap();
        // A hit must not rewrite the file.
        std::thread::sleep(Duration::from_millis(20));
        compile(&engines, PolicyClass::Connector, EMPTY_COMPONENT).await;
        assert_eq!(
            std::fs::metadata(&entry.path).unwrap().modified().unwrap(),
            written
        );
        assert!(
            read_artifact(engines.engine(PolicyClass::Connector), &entry)
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn corrupt_entry_is_a_miss_and_gets_rewritten() {
        let (_tmp, engines, _dir) = setup();
        compile(&engines, PolicyClass::Mapper, EMPTY_COMPONENT).await;
        let entry = entry_of(&engines, PolicyClass::Mapper, EMPTY_COMPONENT);
        let good = std::fs::read(&entry.path).unwrap();

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        for bad in [
            flipped,
            good[..good.len() / 2].to_vec(),
            b"garbage".to_vec(),
        ] {
            std::fs::write(&entry.path, &bad).unwrap();
            let engine = engines.engine(PolicyClass::Mapper);
            assert!(read_artifact(engine, &entry).is_err());
            compile(&engines, PolicyClass::Mapper, EMPTY_COMPONENT).await;
            assert_eq!(std::fs::read(&entry.path).unwrap(), good, "entry rewritten");
        }
    }

    #[tokio::test]
    async fn artifact_of_the_other_class_is_refused() {
        let (_tmp, engines, _dir) = setup();
        compile(&engines, PolicyClass::Connector, EMPTY_COMPONENT).await;
        let connector = entry_of(&engines, PolicyClass::Connector, EMPTY_COMPONENT);
        // A connector artifact (no fuel) planted where the mapper's entry goes.
        let mapper = entry_of(&engines, PolicyClass::Mapper, EMPTY_COMPONENT);
        std::fs::copy(&connector.path, &mapper.path).unwrap();
        let err = read_artifact(engines.engine(PolicyClass::Mapper), &mapper).unwrap_err();
        assert!(err.contains("authentication failed"), "{err}");
    }

    /// The attack: another plugin's artifact (valid, compiled by this very host) copied
    /// over the pinned plugin's entry would run the other plugin's code.
    #[tokio::test]
    async fn another_plugins_artifact_copied_over_an_entry_is_refused_and_recompiled() {
        let (_tmp, engines, _dir) = setup();
        let class = PolicyClass::Connector;
        compile(&engines, class, EMPTY_COMPONENT).await;
        compile(&engines, class, OTHER_COMPONENT).await;
        let pinned = entry_of(&engines, class, EMPTY_COMPONENT);
        let other = entry_of(&engines, class, OTHER_COMPONENT);
        let good = std::fs::read(&pinned.path).unwrap();
        let planted = std::fs::read(&other.path).unwrap();
        assert_ne!(good, planted);
        std::fs::write(&pinned.path, &planted).unwrap();

        let err = read_artifact(engines.engine(class), &pinned).unwrap_err();
        assert!(err.contains("authentication failed"), "{err}");
        // Loading the pinned plugin compiles its own wasm and replaces the planted file.
        compile(&engines, class, EMPTY_COMPONENT).await;
        assert_eq!(std::fs::read(&pinned.path).unwrap(), good);
    }

    #[tokio::test]
    async fn an_entry_from_another_installation_is_refused() {
        let (_tmp_a, a, _) = setup();
        let (_tmp_b, b, _) = setup();
        let class = PolicyClass::Connector;
        compile(&a, class, EMPTY_COMPONENT).await;
        let from = entry_of(&a, class, EMPTY_COMPONENT);
        let to = entry_of(&b, class, EMPTY_COMPONENT);
        std::fs::copy(&from.path, &to.path).unwrap();
        let err = read_artifact(b.engine(class), &to).unwrap_err();
        assert!(err.contains("authentication failed"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn key_is_private_outside_the_directory_and_open_caches_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let first = CompileCache::open(dir.clone()).unwrap().unwrap();
        let key = CompileCache::key_path(&dir);
        assert_eq!(key, tmp.path().join("cache.key"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert!(files(&dir).is_empty(), "the key is not in the cache");
        // The same key on the next start.
        assert_eq!(
            CompileCache::open(dir.clone()).unwrap().unwrap().key,
            first.key
        );

        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&dir, 0o777);
        let err = CompileCache::open(dir.clone()).unwrap_err();
        assert!(
            matches!(err, CacheError::DirectoryOpen { mode: 0o777, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod go-w"), "{err}");
        set(&dir, 0o775);
        assert!(CompileCache::open(dir.clone()).is_err(), "group-writable");
        set(&dir, 0o755);
        assert!(CompileCache::open(dir.clone()).is_ok());

        set(&key, 0o644);
        let err = CompileCache::open(dir.clone()).unwrap_err();
        assert!(
            matches!(err, CacheError::KeyOpen { mode: 0o644, .. }),
            "{err}"
        );
        set(&key, 0o600);
        std::fs::write(&key, b"short").unwrap();
        let err = CompileCache::open(dir.clone()).unwrap_err();
        assert!(matches!(err, CacheError::KeyInvalid { .. }), "{err}");
        std::fs::remove_file(&key).unwrap();
        let renewed = CompileCache::open(dir).unwrap().unwrap();
        assert_ne!(renewed.key, first.key);
    }

    #[tokio::test]
    async fn invalid_wasm_is_an_error() {
        let (_tmp, engines, _) = setup();
        let err = engines
            .compile(
                PolicyClass::Connector,
                b"not wasm".as_slice().into(),
                [0; 32],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CompileError::Invalid(_)), "{err}");
    }
}
