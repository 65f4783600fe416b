//! Paths and bytes of the plugins built for `wasm32-wasip2` by this crate's build script.
//!
//! The build script builds every workspace package whose `Cargo.toml` carries
//! `[package.metadata.tandem] plugin = true` (first-party connectors, example mappers,
//! test fixtures) with one nested `cargo build --release --target wasm32-wasip2`, in a
//! target directory of its own under `OUT_DIR`. Each artifact is a WebAssembly
//! component (the `wasm32-wasip2` cdylib link emits one directly).
//!
//! A plugin that fails to build does not fail this crate: it is reported here as
//! `Err("plugin X failed to build: <first error>")` (and as a `cargo:warning` at build
//! time, with the full log in `$OUT_DIR/nested-build.log`), never as a stale file from
//! an earlier build. Failures of the build machinery itself (no `cargo`, no
//! `wasm32-wasip2` target and no `rustup` to install it) fail the build.
//!
//! Test fixtures (`fixture = true` as well: the hostile plugins and other packages under
//! `tests/fixtures/`) are built only with this crate's `fixtures` feature, which the test
//! crates enable; without it each reports `plugin X is a test fixture, built only with the
//! `fixtures` feature of tandem-plugins`. So `cargo build --release -p tandem` compiles no
//! attack code.
//!
//! `TANDEM_SKIP_PLUGIN_BUILD=1` skips the nested build (every plugin then reports why it
//! is missing), for quick lints of crates that depend on this one.
//!
//! Packages marked `builtin = true` as well are embedded into the binary:
//! [`builtins`] returns their bytes.
//!
//! ```no_run
//! let path = tandem_plugins::wasm_path("tandem-plugin-template")?;
//! println!("template component at {}", path.display());
//! for artifact in tandem_plugins::all() {
//!     println!("{} builtin={} {:?}", artifact.package, artifact.builtin, artifact.path);
//! }
//! # Ok::<(), tandem_plugins::ArtifactError>(())
//! ```

use std::path::PathBuf;

/// One plugin package of the workspace and the outcome of its build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artifact {
    /// The cargo package name, e.g. `tandem-plugin-freshsales`.
    pub package: &'static str,
    /// Marked `builtin = true`: embedded in the `tandem` binary.
    pub builtin: bool,
    /// Absolute path of the built component (`.wasm`), or the one-line reason it did not
    /// build (`plugin X failed to build: ...`).
    pub path: Result<&'static str, &'static str>,
}

impl Artifact {
    /// The component's path, or why it did not build.
    pub fn wasm_path(&self) -> Result<PathBuf, ArtifactError> {
        self.path
            .map(PathBuf::from)
            .map_err(ArtifactError::NotBuilt)
    }
}

/// Why a plugin's component is not available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// It did not build, or was not built (a test fixture without the `fixtures`
    /// feature): the one-line reason.
    #[error("{0}")]
    NotBuilt(&'static str),
    /// No plugin package has that name.
    #[error(
        "no plugin package named {package}; plugin packages carry `[package.metadata.tandem] plugin = true` (known: {known})"
    )]
    Unknown {
        /// The name asked for.
        package: String,
        /// The plugin packages of the workspace, comma-separated.
        known: String,
    },
}

/// A builtin plugin embedded in the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    /// The cargo package name.
    pub package: &'static str,
    /// The component bytes.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// Every plugin package of the workspace, sorted by package name, built or not.
pub fn all() -> &'static [Artifact] {
    ALL
}

/// The path of the component built from `package`.
///
/// Errors: the package is not a plugin of this workspace, or it failed to build (the
/// message carries the first compiler error).
pub fn wasm_path(package: &str) -> Result<PathBuf, ArtifactError> {
    match ALL.iter().find(|a| a.package == package) {
        Some(artifact) => artifact.wasm_path(),
        None => Err(ArtifactError::Unknown {
            package: package.to_owned(),
            known: ALL.iter().map(|a| a.package).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// The builtin plugins (`builtin = true`) that built, with their bytes embedded.
///
/// A builtin plugin that failed to build is missing here; [`wasm_path`] tells why.
pub fn builtins() -> Vec<Builtin> {
    BUILTINS.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmparser::{Parser, Payload};

    /// Top-level component imports and the embedded manifest, if any.
    fn inspect(bytes: &[u8]) -> (Vec<String>, Option<String>) {
        let mut imports = Vec::new();
        let mut manifest = None;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.expect("valid wasm") {
                Payload::ComponentImportSection(reader) => {
                    for import in reader {
                        imports.push(import.expect("valid import").name.name.to_owned());
                    }
                }
                Payload::CustomSection(section) if section.name() == "tandem-manifest" => {
                    manifest = Some(String::from_utf8(section.data().to_vec()).expect("UTF-8"));
                }
                _ => {}
            }
        }
        (imports, manifest)
    }

    #[test]
    fn unknown_package_is_an_error_naming_the_known_ones() {
        let err = wasm_path("no-such-plugin").unwrap_err().to_string();
        assert!(
            err.contains("no plugin package named no-such-plugin"),
            "{err}"
        );
        assert!(err.contains("tandem-plugin-template"), "{err}");
    }

    #[test]
    fn test_fixtures_are_built_only_with_the_fixtures_feature() {
        let hostile = all()
            .iter()
            .find(|a| a.package == "tandem-fixture-hostile")
            .expect("the hostile fixture is a plugin package");
        assert!(!hostile.builtin);
        if cfg!(feature = "fixtures") {
            assert!(hostile.path.is_ok(), "{:?}", hostile.path);
        } else {
            let err = wasm_path("tandem-fixture-hostile").unwrap_err().to_string();
            assert!(
                err.contains("is a test fixture, built only with the `fixtures` feature"),
                "{err}"
            );
        }
        // A first-party connector is built either way.
        assert!(wasm_path("tandem-plugin-freshsales").is_ok());
    }

    #[test]
    fn every_built_artifact_is_a_component() {
        for artifact in all() {
            if let Ok(path) = artifact.path {
                let bytes = std::fs::read(path).expect("artifact file exists");
                // Component layer header: magic, version 0x0d, layer 1.
                assert_eq!(
                    &bytes[..8],
                    b"\0asm\x0d\0\x01\0",
                    "{path} is not a component"
                );
            }
        }
    }

    #[test]
    fn template_connector_embeds_its_manifest_and_imports_only_what_it_uses() {
        let bytes = std::fs::read(wasm_path("tandem-plugin-template").unwrap()).unwrap();
        let (imports, manifest) = inspect(&bytes);
        let manifest = manifest.expect("tandem-manifest section survives wasm-component-ld");
        assert!(manifest.contains("name = \"template\""), "{manifest}");
        assert!(manifest.contains("kind = \"connector\""), "{manifest}");
        assert!(
            imports.iter().any(|i| i == "tandem:plugin/http@0.1.0"),
            "{imports:?}"
        );
        assert!(
            imports.iter().any(|i| i == "tandem:plugin/config@0.1.0"),
            "{imports:?}"
        );
        // It never touches storage, so the world import is dropped.
        assert!(
            !imports
                .iter()
                .any(|i| i.starts_with("tandem:plugin/storage")),
            "{imports:?}"
        );
        assert!(
            !imports
                .iter()
                .any(|i| i.starts_with("wasi:filesystem") || i.starts_with("wasi:sockets")),
            "{imports:?}"
        );
    }

    #[test]
    fn normalize_mapper_is_builtin_and_imports_only_mapper_interfaces() {
        let artifact = all()
            .iter()
            .find(|a| a.package == "tandem-mapper-normalize")
            .expect("the normalize mapper is a plugin package");
        assert!(artifact.builtin);
        let builtin = builtins()
            .into_iter()
            .find(|b| b.package == "tandem-mapper-normalize")
            .expect("normalize is embedded");
        assert_eq!(std::fs::read(artifact.path.unwrap()).unwrap(), builtin.wasm);

        let (imports, manifest) = inspect(builtin.wasm);
        assert!(
            manifest
                .expect("manifest embedded")
                .contains("kind = \"mapper\"")
        );
        // `config` is allowed: a mapper reads the settings its sync gives it.
        assert!(
            imports
                .iter()
                .any(|i| i.starts_with("tandem:plugin/config")),
            "normalize reads default-country-code: {imports:?}"
        );
        for denied in ["http", "storage"] {
            let prefix = format!("tandem:plugin/{denied}");
            assert!(
                !imports.iter().any(|i| i.starts_with(&prefix)),
                "{imports:?}"
            );
        }
    }
}
