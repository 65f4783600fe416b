//! Builds the TypeScript and Python plugins of the repository (the templates in
//! `plugins/template-ts` and `plugins/template-py`, the hostile fixtures in
//! `tests/polyglot/hostile-ts` and `hostile-py`) with the Bytecode Alliance toolchains, the
//! way their guides tell an author to: `npm ci` + `npm run build` (componentize-js), and
//! `pip install --require-hashes` into a virtual environment + `componentize-py`.
//!
//! Each component is cached under `target/polyglot/` by the sha256 of everything that goes
//! into it (sources, manifest, lockfiles, the SDK, `wit/`), so a rerun with nothing changed
//! costs a hash; the tools come from the public registries pinned by
//! `plugins/template-ts/package-lock.json` and `plugins/sdk-py/requirements.txt`.
//! Missing `node`/`npm`/`python3` fail the test with one line saying what to install.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("polyglot")
}

/// The TypeScript template's component.
pub fn template_ts() -> PathBuf {
    npm_component("plugins/template-ts", "dist/template-ts.wasm")
}

/// The hostile TypeScript fixture's component.
pub fn hostile_ts() -> PathBuf {
    npm_component("tests/polyglot/hostile-ts", "dist/hostile-ts.wasm")
}

/// The Python template's component.
pub fn template_py() -> PathBuf {
    py_component("plugins/template-py", "app", "template-py")
}

/// The hostile Python fixture's component.
pub fn hostile_py() -> PathBuf {
    py_component("tests/polyglot/hostile-py", "app", "hostile-py")
}

/// Builds `what` once per process (tests run in parallel threads).
fn once(key: &str, build: impl FnOnce() -> PathBuf) -> PathBuf {
    static CELLS: OnceLock<Mutex<HashMap<String, Arc<OnceLock<PathBuf>>>>> = OnceLock::new();
    let cell = CELLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.to_owned())
        .or_default()
        .clone();
    cell.get_or_init(build).clone()
}

/// sha256 over the paths and contents of every file under `inputs` (directories
/// recursively, `node_modules`, `dist` and `__pycache__` left out).
fn digest(inputs: &[PathBuf]) -> String {
    fn walk(path: &Path, files: &mut Vec<PathBuf>) {
        if path.is_dir() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if matches!(name, "node_modules" | "dist" | "__pycache__" | "types") {
                return;
            }
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
                .map(|e| e.expect("dir entry").path())
                .collect();
            entries.sort();
            for entry in entries {
                walk(&entry, files);
            }
        } else if path.is_file() {
            files.push(path.to_path_buf());
        }
    }
    let mut files = Vec::new();
    for input in inputs {
        walk(input, &mut files);
    }
    let mut hash = Sha256::new();
    let root = root();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap_or(&file);
        hash.update(rel.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&file).expect("read input"));
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..12])
}

fn require_tool(tool: &str, what: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{tool}` not found: {what} (.ci/run installs it; see plugins/README-{}.md)",
        if tool == "python3" {
            "python"
        } else {
            "typescript"
        }
    );
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies `built` into the cache as `name` (atomically: a rename).
fn store(built: &Path, cached: &Path) {
    std::fs::create_dir_all(cached.parent().expect("cache dir")).expect("create cache dir");
    let tmp = cached.with_extension("tmp");
    std::fs::copy(built, &tmp).expect("copy component");
    std::fs::rename(&tmp, cached).expect("rename component");
}

/// `npm ci` + `npm run build` in `dir` (relative to the root), cached.
fn npm_component(dir: &str, output: &str) -> PathBuf {
    once(dir, || {
        let root = root();
        let project = root.join(dir);
        let hash = digest(&[
            project.clone(),
            root.join("plugins/sdk-ts"),
            root.join("wit"),
        ]);
        let name = Path::new(output).file_stem().expect("output name");
        let cached = cache_dir().join(format!("{}-{hash}.wasm", name.to_string_lossy()));
        if cached.is_file() {
            return cached;
        }
        require_tool("node", "Node.js 20 or later builds the TypeScript plugins");
        require_tool("npm", "npm builds the TypeScript plugins");
        let npm = |args: &[&str]| {
            let mut cmd = Command::new("npm");
            cmd.args(args)
                .arg("--no-audit")
                .arg("--no-fund")
                .current_dir(&project);
            cmd
        };
        run(&mut npm(&["ci"]), &format!("npm ci in {dir}"));
        run(
            &mut npm(&["run", "build"]),
            &format!("npm run build in {dir}"),
        );
        store(&project.join(output), &cached);
        cached
    })
}

/// The virtual environment with componentize-py (pinned with hashes), created once.
fn python_venv() -> PathBuf {
    once("python-venv", || {
        let root = root();
        let requirements = root.join("plugins/sdk-py/requirements.txt");
        let hash = digest(std::slice::from_ref(&requirements));
        let venv = cache_dir().join(format!("venv-{hash}"));
        let tool = venv.join("bin/componentize-py");
        if tool.is_file() {
            return venv;
        }
        require_tool("python3", "Python 3.10 or later builds the Python plugins");
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        );
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--require-hashes", "-r"])
                .arg(&requirements),
            "pip install -r plugins/sdk-py/requirements.txt",
        );
        venv
    })
}

/// `componentize-py componentize` of module `module` in `dir`, manifest embedded, cached.
fn py_component(dir: &str, module: &str, name: &str) -> PathBuf {
    once(dir, || {
        let root = root();
        let project = root.join(dir);
        let sdk = root.join("plugins/sdk-py");
        let hash = digest(&[project.clone(), sdk.clone(), root.join("wit")]);
        let cached = cache_dir().join(format!("{name}-{hash}.wasm"));
        if cached.is_file() {
            return cached;
        }
        let venv = python_venv();
        let work = tempfile::tempdir().expect("temp dir");
        let out = work.path().join(format!("{name}.wasm"));
        run(
            Command::new(venv.join("bin/componentize-py"))
                .arg("--wit-path")
                .arg(root.join("wit"))
                .args(["--world", "connector", "componentize", module, "-p"])
                .arg(&project)
                .arg("-p")
                .arg(&sdk)
                .arg("-o")
                .arg(&out),
            &format!("componentize-py in {dir}"),
        );
        run(
            Command::new(venv.join("bin/python"))
                .arg(sdk.join("tandem_sdk/embed_manifest.py"))
                .arg(&out)
                .arg(project.join("tandem.toml")),
            &format!("embed the manifest of {dir}"),
        );
        store(&out, &cached);
        cached
    })
}
