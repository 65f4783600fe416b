//! The errors an operator meets, through the real `tandem` binary: a bad config, a missing
//! credential, an unreachable account, a wrong API key, a plugin file that is missing or
//! built for another contract version, and a state file another process holds. Each must
//! be ONE line on stderr that says what to do, with a non-zero exit code.
//!
//! The binary is built by `cargo build -p tandem --bin tandem` into this test binary's
//! own target directory and profile (a no-op when `cargo test --workspace` built it
//! already), so the tests always run the current code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use tandem_sandbox::{AccountKind, Credentials, Sandbox, SandboxOptions, Sizes};

/// The `tandem` binary of this build.
pub(crate) fn tandem() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // <target>/<profile>/deps/suite-<hash>
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("a target directory");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a profile directory");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build", "--quiet", "--locked", "-p", "tandem", "--bin", "tandem",
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "`cargo build -p tandem` failed");
        profile_dir.join(format!("tandem{}", std::env::consts::EXE_SUFFIX))
    })
}

/// Runs `tandem ARGS` in `dir` with `vars` set (and nothing inherited that could change
/// the outcome), waiting for it in a blocking thread.
async fn run(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(tandem());
    cmd.current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TANDEM_CRM_KEY")
        .env_remove("TANDEM_MKT_KEY");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("tandem runs"))
        .await
        .expect("the runner thread")
}

/// Asserts a failure with exactly one line on stderr containing every one of `needles`;
/// returns that line.
fn one_line_error(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure, got {:?}; stderr: {stderr}",
        out.status
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    for n in needles {
        assert!(line.contains(n), "`{n}` missing from: {line}");
    }
    line.to_string()
}

/// A Freshsales <-> Freshmarketer config. `crm_url`/`mkt_url` are the accounts' API
/// bases; `crm_plugin` replaces the Freshsales plugin's source lines.
struct Cfg {
    crm_url: String,
    mkt_url: String,
    crm_plugin: String,
    direction: &'static str,
}

impl Default for Cfg {
    fn default() -> Self {
        Cfg {
            crm_url: "http://127.0.0.1:9/crm/sales/api".into(),
            mkt_url: "http://127.0.0.1:9/crm/sales/api".into(),
            crm_plugin: "builtin = \"freshsales\"".into(),
            direction: "two-way",
        }
    }
}

impl Cfg {
    fn write(&self, dir: &Path) -> PathBuf {
        let text = format!(
            r#"[state]
path = "state/state.redb"

[plugins.freshsales]
{crm_plugin}

[plugins.freshsales.grant]
http = ["setting:base-url"]
loopback = true

[plugins.freshmarketer]
builtin = "freshmarketer"

[plugins.freshmarketer.grant]
http = ["setting:base-url"]
loopback = true

[connections.crm]
plugin = "freshsales"

[connections.crm.settings]
base-url = "{crm_url}"

[connections.crm.credentials]
api-key = {{ env = "TANDEM_CRM_KEY" }}

[connections.mkt]
plugin = "freshmarketer"

[connections.mkt.settings]
base-url = "{mkt_url}"

[connections.mkt.credentials]
api-key = {{ env = "TANDEM_MKT_KEY" }}

[syncs.crm-mkt]
a = "crm"
b = "mkt"
entities = "contacts"
direction = "{direction}"
"#,
            crm_plugin = self.crm_plugin,
            crm_url = self.crm_url,
            mkt_url = self.mkt_url,
            direction = self.direction,
        );
        let file = dir.join("tandem.toml");
        std::fs::write(&file, text).unwrap();
        file
    }
}

const KEYS: [(&str, &str); 2] = [("TANDEM_CRM_KEY", "k1"), ("TANDEM_MKT_KEY", "k2")];

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_value_is_one_line_with_its_position_and_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    Cfg {
        direction: "twoway",
        ..Cfg::default()
    }
    .write(dir.path());
    let out = run(dir.path(), &["sync", "status"], &KEYS).await;
    one_line_error(
        &out,
        &["tandem.toml:40:", "syncs.crm-mkt.direction", "two-way"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_credential_names_the_variable_to_set() {
    let dir = tempfile::tempdir().unwrap();
    Cfg::default().write(dir.path());
    let out = run(
        dir.path(),
        &["sync", "plan", "crm-mkt"],
        &[("TANDEM_MKT_KEY", "k2")],
    )
    .await;
    one_line_error(
        &out,
        &["connections.crm.credentials.api-key", "TANDEM_CRM_KEY"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_account_says_to_check_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    Cfg {
        crm_url: format!("http://127.0.0.1:{port}/crm/sales/api"),
        ..Cfg::default()
    }
    .write(dir.path());
    let out = run(dir.path(), &["sync", "plan", "crm-mkt"], &KEYS).await;
    one_line_error(&out, &["connection `crm`", "base-url"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_says_the_credentials_were_refused() {
    let sandbox = Sandbox::start(SandboxOptions {
        kinds: vec![AccountKind::FreshsalesSuite, AccountKind::Freshmarketer],
        sizes: Sizes {
            freshsales: 5,
            freshsales_classic: 0,
            freshmarketer: 5,
            google: 0,
        },
        rate_limits_enabled: false,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let fs = sandbox.account(AccountKind::FreshsalesSuite).unwrap();
    let fm = sandbox.account(AccountKind::Freshmarketer).unwrap();
    let Credentials::ApiKey { api_key, .. } = &fm.credentials else {
        panic!("Freshworks accounts take API keys");
    };
    let dir = tempfile::tempdir().unwrap();
    Cfg {
        crm_url: fs.api_base.clone(),
        mkt_url: fm.api_base.clone(),
        ..Cfg::default()
    }
    .write(dir.path());
    let out = run(
        dir.path(),
        &["sync", "plan", "crm-mkt"],
        &[
            ("TANDEM_CRM_KEY", "not-the-key-of-this-account"),
            ("TANDEM_MKT_KEY", api_key),
        ],
    )
    .await;
    let line = one_line_error(&out, &["connection `crm`", "API key"]);
    assert!(!line.contains("not-the-key-of-this-account"), "{line}");
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_plugin_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    Cfg {
        crm_plugin: format!("path = \"missing.wasm\"\nsha256 = \"{}\"", "0".repeat(64)),
        ..Cfg::default()
    }
    .write(dir.path());
    let out = run(dir.path(), &["sync", "plan", "crm-mkt"], &KEYS).await;
    one_line_error(&out, &["plugins.freshsales", "missing.wasm"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_for_another_contract_names_the_supported_range() {
    let wasm = tandem_plugins::wasm_path("tandem-fixture-wrong-major").unwrap();
    let pin = hex::encode(Sha256::digest(std::fs::read(&wasm).unwrap()));
    let dir = tempfile::tempdir().unwrap();
    Cfg {
        crm_plugin: format!(
            "path = {:?}\nsha256 = \"{pin}\"",
            wasm.display().to_string()
        ),
        ..Cfg::default()
    }
    .write(dir.path());
    let out = run(dir.path(), &["sync", "plan", "crm-mkt"], &KEYS).await;
    one_line_error(&out, &["tandem:plugin@9.0.0", ">=0.1.0, <0.2.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_held_by_another_process_says_to_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    Cfg::default().write(dir.path());
    let state = dir.path().join("state/state.redb");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    // This test process holds the file, as a running daemon would.
    let held = redb::Database::create(&state).unwrap();
    let out = run(dir.path(), &["sync", "status"], &KEYS).await;
    one_line_error(&out, &["state.redb", "in use", "stop that process"]);
    drop(held);
    let out = run(dir.path(), &["sync", "status"], &KEYS).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
