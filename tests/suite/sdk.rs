//! The guest SDK stands alone: it carries its own copy of the contract, and the template
//! connector builds outside the repository the way an outside author builds it
//! (plugins/README.md, "Your own plugin crate").

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (this crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `.wit` files of `dir`, by name.
fn wit_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "wit"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The SDK's packaged contract (`plugins/sdk/wit/<version>/`) is the repository's `wit/`,
/// byte for byte: a change to the contract must be copied into the SDK.
#[test]
fn the_sdk_carries_an_identical_copy_of_the_contract() {
    let contract = wit_files(&root().join("wit"));
    assert!(!contract.is_empty());
    let copy = wit_files(&root().join("plugins/sdk/wit/0.1.0"));
    let names = |files: &[(String, Vec<u8>)]| -> Vec<String> {
        files.iter().map(|(n, _)| n.clone()).collect()
    };
    assert_eq!(names(&copy), names(&contract), "the same files");
    for ((name, ours), (_, theirs)) in copy.iter().zip(&contract) {
        assert!(
            ours == theirs,
            "plugins/sdk/wit/0.1.0/{name} differs from wit/{name}: copy wit/*.wit into plugins/sdk/wit/0.1.0/"
        );
    }
    let lib = std::fs::read_to_string(root().join("plugins/sdk/src/lib.rs")).unwrap();
    assert!(lib.contains("pub const CONTRACT_VERSION: &str = \"0.1.0\";"));
}

/// A `cargo` for a nested build: the environment of this test's own build removed.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// What `cargo package` would publish of the SDK holds the contract and nothing outside
/// the crate.
#[test]
fn the_sdk_packages_with_its_contract() {
    let out = cargo()
        .current_dir(root())
        .args([
            "package",
            "-p",
            "tandem-sdk",
            "--no-verify",
            "--allow-dirty",
            "--list",
            "--offline",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo package --list failed: {stderr}"
    );
    let list = String::from_utf8_lossy(&out.stdout);
    for file in [
        "wit/0.1.0/host.wit",
        "wit/0.1.0/types.wit",
        "wit/0.1.0/worlds.wit",
    ] {
        assert!(
            list.lines().any(|l| l == file),
            "{file} missing from:\n{list}"
        );
    }
    assert!(
        !list.contains(".."),
        "a packaged path leaves the crate:\n{list}"
    );
}

/// A copy of `plugins/template`, outside the workspace and with its `tandem-sdk` line
/// pointing at the SDK by path, builds to a component. Offline, from the registry cache
/// the workspace's build filled, with the workspace's lock file; the target directory
/// stays under `target/` so that later runs are incremental.
#[test]
fn the_template_builds_outside_the_repository() {
    let root = root();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("my-connector");
    copy_dir(&root.join("plugins/template"), &copy);
    std::fs::copy(root.join("Cargo.lock"), copy.join("Cargo.lock")).unwrap();
    std::fs::copy(
        root.join("rust-toolchain.toml"),
        copy.join("rust-toolchain.toml"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(copy.join("Cargo.toml")).unwrap();
    assert!(
        !manifest.contains(".workspace"),
        "the template inherits from the workspace:\n{manifest}"
    );
    let sdk = root.join("plugins/sdk");
    let line = "tandem-sdk = { path = \"../sdk\", version = \"0.1.0\" }";
    assert!(manifest.contains(line), "the template's SDK line changed");
    let manifest = manifest.replace(
        line,
        &format!("tandem-sdk = {{ path = {:?} }}", sdk.display().to_string()),
    );
    std::fs::write(copy.join("Cargo.toml"), manifest).unwrap();

    let target = root.join("target/template-copy");
    let out = cargo()
        .current_dir(&copy)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--release",
            "--offline",
            "--target",
            "wasm32-wasip2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the copied template does not build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target.join("wasm32-wasip2/release/tandem_plugin_template.wasm");
    let bytes = std::fs::read(&wasm).unwrap();
    // A component (layer 1), not a core module (layer 0).
    assert_eq!(&bytes[..4], b"\0asm");
    assert_eq!(
        &bytes[6..8],
        &[1, 0],
        "{} is not a component",
        wasm.display()
    );
    // The manifest travels inside it.
    let needle = b"name = \"template\"";
    assert!(bytes.windows(needle.len()).any(|w| w == needle));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}
