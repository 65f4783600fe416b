//! wasmtime engines (one per policy class), the epoch ticker and the on-disk compile cache.
//!
//! * **Connectors** run with epoch interruption: a ticker on its own OS thread bumps the
//!   epoch every [`TICK`]; the per-call deadline callback yields to tokio while the call's
//!   tick budget lasts and interrupts the guest when it is spent.
//! * **Mappers** add fuel metering, so a mapper's budget is counted in instructions and its
//!   outcome does not depend on machine load; NaNs are canonicalised for the same reason.
//!
//! Components are compiled per engine (the artifacts are not interchangeable) and cached in
//! `cache_dir` under `sha256(wasm)` + `precompile_compatibility_hash` + class. A cache file
//! carries a checksum of its payload; anything that fails to verify or deserialize is a
//! miss and is recompiled, never an error.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, EngineWeak, OptLevel};

/// Interval between epoch increments.
pub const TICK: Duration = Duration::from_millis(10);

/// Magic prefix of a cache file (bump the digit to invalidate every old entry).
const CACHE_MAGIC: &[u8; 8] = b"TANDEMC1";

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
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The blocking compile task died.
    #[error("compile task failed: {0}")]
    Task(String),
}

/// One engine per policy class, plus the ticker and the cache directory.
pub(crate) struct Engines {
    connector: EngineSlot,
    mapper: EngineSlot,
    cache_dir: Option<PathBuf>,
}

struct EngineSlot {
    engine: Engine,
    /// Hex digest of `precompile_compatibility_hash()` for this engine.
    compat: String,
}

impl Engines {
    /// Builds both engines and starts the epoch ticker thread.
    pub(crate) fn new(cache_dir: Option<PathBuf>) -> Result<Self, CompileError> {
        let connector = EngineSlot::new(engine_config(PolicyClass::Connector))?;
        let mapper = EngineSlot::new(engine_config(PolicyClass::Mapper))?;
        spawn_ticker(vec![connector.engine.weak(), mapper.engine.weak()]);
        Ok(Self {
            connector,
            mapper,
            cache_dir,
        })
    }

    /// The engine of a class.
    pub(crate) fn engine(&self, class: PolicyClass) -> &Engine {
        &self.slot(class).engine
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
        let path = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(cache_file_name(&sha256, &slot.compat, class)));
        tokio::task::spawn_blocking(move || compile_cached(&engine, &wasm, path.as_deref()))
            .await
            .map_err(|e| CompileError::Task(e.to_string()))?
    }
}

impl EngineSlot {
    fn new(config: Config) -> Result<Self, CompileError> {
        let engine = Engine::new(&config).map_err(|e| CompileError::Invalid(e.to_string()))?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = hex::encode(&hasher.0.finalize()[..12]);
        Ok(Self { engine, compat })
    }
}

/// The wasmtime configuration of a policy class.
fn engine_config(class: PolicyClass) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    if class == PolicyClass::Mapper {
        // Same input, same output, whatever the machine load: count instructions and
        // make float results bit-identical across hosts.
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

/// Loads the artifact at `path` if it verifies, else compiles and (re)writes it.
fn compile_cached(
    engine: &Engine,
    wasm: &[u8],
    path: Option<&Path>,
) -> Result<Component, CompileError> {
    if let Some(path) = path {
        match read_artifact(engine, path) {
            Ok(Some(component)) => return Ok(component),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "compile cache entry unusable; recompiling");
            }
        }
    }
    let component =
        Component::new(engine, wasm).map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
    if let Some(path) = path {
        match component.serialize() {
            Ok(bytes) => {
                if let Err(e) = write_artifact(path, &bytes) {
                    tracing::warn!(path = %path.display(), error = %e, "could not write the compile cache");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize a compiled component"),
        }
    }
    Ok(component)
}

/// `Ok(None)`: no entry. `Err`: an entry exists but is corrupt or stale.
fn read_artifact(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let header = CACHE_MAGIC.len() + 32;
    if data.len() < header || &data[..CACHE_MAGIC.len()] != CACHE_MAGIC {
        return Err("bad header".into());
    }
    let (digest, payload) = data[CACHE_MAGIC.len()..].split_at(32);
    if Sha256::digest(payload).as_slice() != digest {
        return Err("checksum mismatch".into());
    }
    // SAFETY: the payload is an artifact this host serialized itself (its checksum matches
    // what `write_artifact` stored), and wasmtime checks that it was produced by a
    // compatible engine configuration before using it.
    let component = unsafe { Component::deserialize(engine, payload) };
    component.map(Some).map_err(|e| format!("{e:#}"))
}

/// Writes `magic + sha256(payload) + payload` to a temp file and renames it into place.
fn write_artifact(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(CACHE_MAGIC)?;
    file.write_all(&Sha256::digest(payload))?;
    file.write_all(payload)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
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

    fn setup() -> (tempfile::TempDir, Engines, [u8; 32]) {
        let dir = tempfile::tempdir().unwrap();
        let engines = Engines::new(Some(dir.path().to_path_buf())).unwrap();
        let sha: [u8; 32] = Sha256::digest(EMPTY_COMPONENT).into();
        (dir, engines, sha)
    }

    fn entry(dir: &Path) -> PathBuf {
        let entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "exactly one cache file: {entries:?}");
        entries[0].clone()
    }

    #[tokio::test]
    async fn cache_entry_written_and_reused() {
        let (dir, engines, sha) = setup();
        engines
            .compile(PolicyClass::Connector, EMPTY_COMPONENT.into(), sha)
            .await
            .unwrap();
        let path = entry(dir.path());
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(&hex::encode(sha)) && name.ends_with("-connector.cwasm"));
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        // A hit must not rewrite the file.
        std::thread::sleep(Duration::from_millis(20));
        engines
            .compile(PolicyClass::Connector, EMPTY_COMPONENT.into(), sha)
            .await
            .unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            written
        );
        assert!(
            read_artifact(engines.engine(PolicyClass::Connector), &path)
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn corrupt_entry_is_a_miss_and_gets_rewritten() {
        let (dir, engines, sha) = setup();
        engines
            .compile(PolicyClass::Mapper, EMPTY_COMPONENT.into(), sha)
            .await
            .unwrap();
        let path = entry(dir.path());
        let good = std::fs::read(&path).unwrap();

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        for bad in [
            flipped,
            good[..good.len() / 2].to_vec(),
            b"garbage".to_vec(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let engine = engines.engine(PolicyClass::Mapper);
            assert!(read_artifact(engine, &path).is_err());
            engines
                .compile(PolicyClass::Mapper, EMPTY_COMPONENT.into(), sha)
                .await
                .expect("a corrupt cache entry must be recompiled, not fail");
            assert_eq!(std::fs::read(&path).unwrap(), good, "entry rewritten");
        }
    }

    #[tokio::test]
    async fn artifact_of_the_other_class_is_refused() {
        let (dir, engines, sha) = setup();
        engines
            .compile(PolicyClass::Connector, EMPTY_COMPONENT.into(), sha)
            .await
            .unwrap();
        // A connector artifact (no fuel) fed to the mapper engine: stale, so a miss.
        let path = entry(dir.path());
        let err = read_artifact(engines.engine(PolicyClass::Mapper), &path).unwrap_err();
        assert!(err.contains("fuel"), "{err}");
    }

    #[tokio::test]
    async fn invalid_wasm_is_an_error() {
        let (_dir, engines, _) = setup();
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
