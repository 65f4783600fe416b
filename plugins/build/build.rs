//! Builds every workspace package marked `[package.metadata.tandem] plugin = true` for
//! `wasm32-wasip2` with ONE nested cargo invocation, and generates `$OUT_DIR/plugins.rs`.
//!
//! What it relies on: `cargo build --target wasm32-wasip2` of a `cdylib` already yields a
//! component (rustc links it with `wasm-component-ld`, shipped with the target), so no
//! wasm-tools, cargo-component or adapter step is needed; and a nested cargo started from
//! a build script works, provided the points below hold. Why it looks like this:
//! - the nested cargo gets its own target dir under `OUT_DIR`: sharing the outer one
//!   deadlocks under `--release` (the outer cargo holds the profile's `.cargo-lock`, which
//!   the nested one needs for its host-side proc-macros; a debug build happens not to
//!   collide, so the hang shows only in release);
//! - host flags and wrappers (`RUSTFLAGS`, clippy's `RUSTC_WORKSPACE_WRAPPER`...) must not
//!   leak into the wasm build, so they are removed from the child's environment;
//! - the outer cargo's `--locked` / `--offline` do not reach the nested one (and the outer
//!   build never fetches the guest-only crates), so the child always gets `--locked`, and
//!   `--offline` when cargo runs offline;
//! - `--keep-going` + JSON artifact messages: one broken plugin does not hide the others,
//!   and a plugin that failed is reported as an error, never as a stale file from an
//!   earlier build;
//! - cargo hides build-script output on success, so failures are made loud with
//!   `cargo:warning` lines and a full log in `$OUT_DIR/nested-build.log`;
//! - mappers (`kind = "mapper"` in their `tandem.toml`) are built by a second nested cargo,
//!   with LTO and one codegen unit, into a target dir of their own: a mapper's time is
//!   the sync's time per record, and whole-program optimisation (the standard library's
//!   text functions and the allocator inlined into the mapper) takes a fifth off it
//!   (docs/performance.md §2). LTO cannot be set per package, and the connectors, whose
//!   time is spent waiting on their APIs, would take minutes longer to build with it.
//!   Both builds share the target dir: cargo keeps each profile's artifacts apart (the
//!   profile is part of their hash), so neither undoes the other's, and the host-side
//!   proc-macros are built once.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const TARGET: &str = "wasm32-wasip2";

/// Environment variables that must not reach the nested cargo.
const STRIPPED_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    // The outer build's target dir and target triple are not the nested build's.
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
];

/// A plugin package found in the workspace metadata.
struct Plugin {
    package: String,
    id: String,
    dir: PathBuf,
    builtin: bool,
    /// A test fixture (`fixture = true`): built only with this crate's `fixtures` feature.
    fixture: bool,
    /// A mapper (`kind = "mapper"` in its `tandem.toml`): built with LTO.
    mapper: bool,
}

/// What the nested build produced for one plugin.
enum Outcome {
    Built(PathBuf),
    Failed(String),
}

fn main() {
    if let Err(message) = run() {
        // A failure of the build machinery itself (not of one plugin): fail loudly.
        panic!("tandem-plugins: {message}");
    }
}

fn run() -> Result<(), String> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?);
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .map_err(|e| format!("cannot resolve the workspace root: {e}"))?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));

    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=TANDEM_SKIP_PLUGIN_BUILD");

    let plugins = discover(&cargo, &root)?;
    for plugin in &plugins {
        println!(
            "cargo:rerun-if-changed={}",
            plugin.dir.join("Cargo.toml").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            plugin.dir.join("tandem.toml").display()
        );
        // A directory is scanned recursively: this catches edits to a plugin whose last
        // build failed (its dep-info may be missing or stale).
        println!(
            "cargo:rerun-if-changed={}",
            plugin.dir.join("src").display()
        );
    }

    // Test fixtures (hostile plugins among them) are built only for the tests, which
    // enable the `fixtures` feature; an operator's `cargo build -p tandem` leaves them out.
    let with_fixtures = env::var_os("CARGO_FEATURE_FIXTURES").is_some();
    let (plugins, left_out): (Vec<Plugin>, Vec<Plugin>) = plugins
        .into_iter()
        .partition(|p| with_fixtures || !p.fixture);
    let skip = env::var("TANDEM_SKIP_PLUGIN_BUILD").is_ok_and(|v| v == "1");
    let mut outcomes = if plugins.is_empty() {
        BTreeMap::new()
    } else if skip {
        // For quick lints of the host: every plugin reports why it is missing.
        plugins
            .iter()
            .map(|p| {
                let why = format!(
                    "plugin {} was not built: TANDEM_SKIP_PLUGIN_BUILD=1 is set",
                    p.package
                );
                (p.package.clone(), Outcome::Failed(why))
            })
            .collect()
    } else {
        ensure_target()?;
        build(&cargo, &root, &out_dir, &plugins)?
    };
    for fixture in &left_out {
        let why = format!(
            "plugin {} is a test fixture, built only with the `fixtures` feature of tandem-plugins",
            fixture.package
        );
        outcomes.insert(fixture.package.clone(), Outcome::Failed(why));
    }
    let mut plugins = plugins;
    plugins.extend(left_out);
    plugins.sort_by(|a, b| a.package.cmp(&b.package));

    let mut code = String::new();
    generate(&mut code, &plugins, &outcomes);
    let generated = out_dir.join("plugins.rs");
    fs::write(&generated, code)
        .map_err(|e| format!("cannot write {}: {e}", generated.display()))?;
    Ok(())
}

/// Runs a cargo subcommand with the environment cleaned for the nested build.
fn nested_cargo(cargo: &OsString, root: &Path) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root);
    for var in STRIPPED_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Lists the workspace packages marked as plugins (`cargo metadata --no-deps`).
fn discover(cargo: &OsString, root: &Path) -> Result<Vec<Plugin>, String> {
    let output = nested_cargo(cargo, root)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run `cargo metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata --no-deps` failed ({}); run it in {} to see why",
            output.status,
            root.display()
        ));
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cannot parse `cargo metadata` output: {e}"))?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("`cargo metadata` output has no `packages`")?;
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();

    let mut plugins = Vec::new();
    for package in packages {
        let id = package["id"].as_str().unwrap_or_default();
        let tandem = &package["metadata"]["tandem"];
        if !members.contains(id) || tandem["plugin"].as_bool() != Some(true) {
            continue;
        }
        let name = package["name"].as_str().ok_or("a package has no name")?;
        let has_cdylib = package["targets"].as_array().is_some_and(|targets| {
            targets.iter().any(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
            })
        });
        if !has_cdylib {
            return Err(format!(
                "plugin package `{name}` has no cdylib target; add `[lib] crate-type = [\"cdylib\", \"rlib\"]` to its Cargo.toml"
            ));
        }
        let manifest_path = package["manifest_path"]
            .as_str()
            .ok_or("a package has no manifest_path")?;
        plugins.push(Plugin {
            package: name.to_owned(),
            id: id.to_owned(),
            dir: Path::new(manifest_path)
                .parent()
                .unwrap_or(Path::new("."))
                .to_owned(),
            builtin: tandem["builtin"].as_bool() == Some(true),
            fixture: tandem["fixture"].as_bool() == Some(true),
            mapper: is_mapper(Path::new(manifest_path)),
        });
    }
    plugins.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(plugins)
}

/// Whether the plugin next to this `Cargo.toml` is a mapper (its `tandem.toml` says
/// `kind = "mapper"`). A missing or unreadable manifest is not one: the host refuses such
/// a plugin when it loads it, with the reason.
fn is_mapper(cargo_toml: &Path) -> bool {
    let manifest = cargo_toml.with_file_name("tandem.toml");
    fs::read_to_string(manifest)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|table| table.get("kind").and_then(toml::Value::as_str) == Some("mapper"))
}

/// Makes sure the `wasm32-wasip2` standard library is installed, installing it with rustup
/// when it is missing.
fn ensure_target() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let installed = || {
        Command::new(&rustc)
            .args(["--print", "target-libdir", "--target", TARGET])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .is_some_and(|dir| dir.is_dir())
    };
    if installed() {
        return Ok(());
    }
    println!("cargo:warning=tandem-plugins: installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() && installed() => Ok(()),
        Ok(s) => Err(format!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed ({s}); install it by hand and rebuild"
        )),
        Err(e) => Err(format!(
            "the {TARGET} target is missing and rustup could not be run ({e}); run `rustup target add {TARGET}` and rebuild"
        )),
    }
}

/// Builds all plugins, mappers with LTO (see the module's documentation), and maps each
/// to its artifact or error.
fn build(
    cargo: &OsString,
    root: &Path,
    out_dir: &Path,
    plugins: &[Plugin],
) -> Result<BTreeMap<String, Outcome>, String> {
    let (mappers, others): (Vec<&Plugin>, Vec<&Plugin>) = plugins.iter().partition(|p| p.mapper);
    let mut outcomes = BTreeMap::new();
    if !others.is_empty() {
        outcomes.extend(build_group(cargo, root, out_dir, &others, Group::Plain)?);
    }
    if !mappers.is_empty() {
        outcomes.extend(build_group(cargo, root, out_dir, &mappers, Group::Mappers)?);
    }
    Ok(outcomes)
}

/// The two nested builds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    /// Connectors and everything else: cargo's `release` profile.
    Plain,
    /// Mappers: `release` with LTO and one codegen unit.
    Mappers,
}

/// Builds `plugins` with one nested cargo and maps each to its artifact or error.
fn build_group(
    cargo: &OsString,
    root: &Path,
    out_dir: &Path,
    plugins: &[&Plugin],
    group: Group,
) -> Result<BTreeMap<String, Outcome>, String> {
    let target_dir = out_dir.join("wasm");
    let log = out_dir.join(match group {
        Group::Plain => "nested-build.log",
        Group::Mappers => "nested-build-mappers.log",
    });
    let mut cmd = nested_cargo(cargo, root);
    if group == Group::Mappers {
        cmd.env("CARGO_PROFILE_RELEASE_LTO", "true")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    }
    cmd.args([
        "build",
        "--release",
        "--target",
        TARGET,
        "--keep-going",
        "--locked",
    ])
    .arg("--message-format=json")
    .env("CARGO_TARGET_DIR", &target_dir)
    // Guests ship without DWARF: smaller components compile faster in the host. The
    // name section stays, so traps still show function names.
    .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
    .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    if env::var("CARGO_NET_OFFLINE").is_ok_and(|v| v == "true") {
        cmd.arg("--offline");
    }
    for plugin in plugins {
        cmd.args(["-p", &plugin.package]);
    }
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run the nested `cargo build`: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The log is for humans: cargo's stderr, then every rendered compiler diagnostic.
    let mut log_text = stderr.to_string();

    let by_id: BTreeMap<&str, &Plugin> = plugins.iter().map(|p| (p.id.as_str(), *p)).collect();
    let mut built: BTreeMap<String, PathBuf> = BTreeMap::new();
    // First error line per package id (plugins and their dependencies).
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut dep_infos = Vec::new();
    let mut local_dirs = BTreeSet::new();
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let package_id = message["package_id"].as_str().unwrap_or_default();
        // Every local (path) package the plugins depend on, built or failed: its sources
        // are watched even when cargo wrote no dep-info (it skips it after a failure).
        if package_id.starts_with("path+")
            && let Some(manifest) = message["manifest_path"].as_str()
            && let Some(dir) = Path::new(manifest).parent()
        {
            local_dirs.insert(dir.to_owned());
        }
        match message["reason"].as_str() {
            Some("compiler-artifact") => {
                let Some(plugin) = by_id.get(package_id) else {
                    continue;
                };
                let wasm = message["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .find(|f| f.ends_with(".wasm"));
                if let Some(wasm) = wasm {
                    let wasm = PathBuf::from(wasm);
                    dep_infos.push(wasm.with_extension("d"));
                    built.insert(plugin.package.clone(), wasm);
                }
            }
            Some("compiler-message") => {
                if let Some(rendered) = message["message"]["rendered"].as_str() {
                    log_text.push_str(rendered);
                }
                if message["message"]["level"] != "error" {
                    continue;
                }
                if !errors.iter().any(|(id, _)| id == package_id) {
                    errors.push((package_id.to_owned(), first_error(&message["message"])));
                }
            }
            _ => {}
        }
    }

    // Best effort: the log only helps a human; the outcomes below carry the errors.
    let _ = fs::write(&log, log_text);

    for dep_info in &dep_infos {
        emit_dep_info(dep_info, root);
    }
    for dir in &local_dirs {
        for watched in ["Cargo.toml", "build.rs", "src"] {
            let path = dir.join(watched);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }

    // Cargo's own errors (lockfile, resolution, a failed build script) are not JSON.
    let cargo_error = stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .map(|l| l.trim_start_matches("error:").trim().to_owned());

    let mut outcomes = BTreeMap::new();
    for plugin in plugins {
        let outcome = match built.remove(&plugin.package) {
            Some(path) if path.is_file() => Outcome::Built(path),
            _ => {
                let reason = errors
                    .iter()
                    .find(|(id, _)| *id == plugin.id)
                    .map(|(_, e)| e.clone())
                    .or_else(|| {
                        errors
                            .iter()
                            .find(|(id, _)| !by_id.contains_key(id.as_str()))
                            .map(|(id, e)| format!("dependency {} failed: {e}", package_name(id)))
                    })
                    .or_else(|| cargo_error.clone())
                    .unwrap_or_else(|| format!("nested cargo exited with {}", output.status));
                let message = format!("plugin {} failed to build: {reason}", plugin.package);
                println!(
                    "cargo:warning={message} (full log: {}; rebuild with `cargo build --release --target {TARGET} -p {}`)",
                    log.display(),
                    plugin.package
                );
                Outcome::Failed(message)
            }
        };
        outcomes.insert(plugin.package.clone(), outcome);
    }
    Ok(outcomes)
}

/// `mismatched types at src/lib.rs:2:18` from a rustc JSON diagnostic.
fn first_error(diagnostic: &Value) -> String {
    let text = diagnostic["message"].as_str().unwrap_or("error");
    let text = text.lines().next().unwrap_or(text);
    let primary = diagnostic["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|span| span["is_primary"] == true);
    match primary {
        Some(span) => format!(
            "{text} at {}:{}:{}",
            span["file_name"].as_str().unwrap_or("?"),
            span["line_start"],
            span["column_start"]
        ),
        None => text.to_owned(),
    }
}

/// `path+file:///x/y#name@0.1.0` -> `name`.
fn package_name(id: &str) -> &str {
    let tail = id.rsplit('#').next().unwrap_or(id);
    tail.split('@').next().unwrap_or(tail)
}

/// Emits `rerun-if-changed` for the workspace files listed in a dep-info file. Files
/// outside the workspace (registry sources, the standard library) never change in place.
fn emit_dep_info(dep_info: &Path, root: &Path) {
    let Ok(text) = fs::read_to_string(dep_info) else {
        return;
    };
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        // Paths are space-separated; spaces inside paths are escaped as `\ `.
        let mut current = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    current.push(' ');
                    chars.next();
                }
                ' ' => {
                    if !current.is_empty() {
                        seen.insert(std::mem::take(&mut current));
                    }
                }
                c => current.push(c),
            }
        }
        if !current.is_empty() {
            seen.insert(current);
        }
    }
    for path in seen {
        if Path::new(&path).starts_with(root) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// Writes the generated Rust source that `src/lib.rs` includes.
fn generate(code: &mut String, plugins: &[Plugin], outcomes: &BTreeMap<String, Outcome>) {
    code.push_str("// @generated by plugins/build/build.rs\n\n");
    code.push_str("/// Every plugin package of the workspace, sorted by package name.\n");
    code.push_str("static ALL: &[Artifact] = &[\n");
    for plugin in plugins {
        let path = match outcomes.get(&plugin.package) {
            Some(Outcome::Built(path)) => format!("Ok({:?})", path.display().to_string()),
            Some(Outcome::Failed(message)) => format!("Err({message:?})"),
            None => format!(
                "Err({:?})",
                format!("plugin {} was not built", plugin.package)
            ),
        };
        let _ = writeln!(
            code,
            "    Artifact {{ package: {:?}, builtin: {}, path: {path} }},",
            plugin.package, plugin.builtin
        );
    }
    code.push_str("];\n\n");
    code.push_str("/// The builtin plugins that built, with their bytes.\n");
    code.push_str("static BUILTINS: &[Builtin] = &[\n");
    for plugin in plugins.iter().filter(|p| p.builtin) {
        if let Some(Outcome::Built(path)) = outcomes.get(&plugin.package) {
            let _ = writeln!(
                code,
                "    Builtin {{ package: {:?}, wasm: include_bytes!({:?}) }},",
                plugin.package,
                path.display().to_string()
            );
        }
    }
    code.push_str("];\n");
}
