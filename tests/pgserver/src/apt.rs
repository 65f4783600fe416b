//! Installing a missing system package for the tests, so that the README's test command
//! sets up a fresh Debian machine by itself (as `.ci/run` does before it): only as root,
//! only with `apt-get`, once per package set and process, and never when
//! `TANDEM_NO_INSTALL` is set. Anything else leaves the caller's own one-line error.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The outcome of each package set's install in this process.
fn tried() -> &'static Mutex<BTreeMap<String, Result<(), String>>> {
    static TRIED: OnceLock<Mutex<BTreeMap<String, Result<(), String>>>> = OnceLock::new();
    TRIED.get_or_init(Mutex::default)
}

/// Installs `packages` with `apt-get` when allowed; the error says why not (or what
/// failed), for the caller to append to its own message.
pub fn install(packages: &[&str]) -> Result<(), String> {
    let key = packages.join(" ");
    let mut tried = tried().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = tried.get(&key) {
        return r.clone();
    }
    let result = run(packages);
    tried.insert(key, result.clone());
    result
}

fn run(packages: &[&str]) -> Result<(), String> {
    if std::env::var_os("TANDEM_NO_INSTALL").is_some() {
        return Err("TANDEM_NO_INSTALL is set".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root, so not installed automatically".into());
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
    };
    eprintln!(
        "tests: installing the distribution's {} (once; set TANDEM_NO_INSTALL to prevent it)",
        packages.join(", ")
    );
    match apt(&["update", "-qq"]) {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("apt-get update failed ({s})")),
        Err(e) => return Err(format!("apt-get not available ({e})")),
    }
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    match apt(&args) {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "apt-get install {} failed ({s})",
            packages.join(" ")
        )),
        Err(e) => Err(format!("apt-get not available ({e})")),
    }
}
