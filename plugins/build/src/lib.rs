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
//! Packages marked `builtin = true` as well are embedded into the binary:
//! [`builtins`] returns their bytes.
//!
//! ```no_run
//! let path = tandem_plugins::wasm_path("tandem-plugin-template")?;
//! println!("template component at {}", path.display());
//! for artifact in tandem_plugins::all() {
//!     println!("{} builtin={} {:?}", artifact.package, artifact.builtin, artifact.path);
//! }
//! # Ok::<(), String>(())
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
    pub fn wasm_path(&self) -> Result<PathBuf, String> {
        self.path.map(PathBuf::from).map_err(str::to_owned)
    }
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
pub fn wasm_path(package: &str) -> Result<PathBuf, String> {
    match ALL.iter().find(|a| a.package == package) {
        Some(artifact) => artifact.wasm_path(),
        None => Err(format!(
            "no plugin package named {package}; plugin packages carry `[package.metadata.tandem] plugin = true` (known: {})",
            ALL.iter().map(|a| a.package).collect::<Vec<_>>().join(", ")
        )),
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

    #[test]
    fn unknown_package_is_an_error_naming_the_known_ones() {
        let err = wasm_path("no-such-plugin").unwrap_err();
        assert!(
            err.contains("no plugin package named no-such-plugin"),
            "{err}"
        );
    }

    #[test]
    fn built_artifacts_exist_and_are_components() {
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
    fn builtins_are_the_built_builtin_packages() {
        let builtins = builtins();
        for builtin in &builtins {
            let artifact = all().iter().find(|a| a.package == builtin.package).unwrap();
            assert!(artifact.builtin);
            let on_disk = std::fs::read(artifact.path.unwrap()).unwrap();
            assert_eq!(on_disk, builtin.wasm);
        }
    }
}
