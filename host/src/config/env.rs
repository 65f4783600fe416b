//! Environment lookups, secret references and `{ env = "VAR" }` interpolation.
//!
//! The config never holds a secret: credentials are kept as [`SecretRef`]s (a variable
//! name or a file path) and read only when a connection is opened. Non-secret settings may
//! be interpolated from the environment at load time, which is how the demo points
//! connections at the simulated accounts' ports.
//!
//! Lookups go through [`Env`] rather than `std::env` directly so that the demo and tests
//! can supply variables without mutating the process environment (which is `unsafe` and
//! racy in a multi-threaded program).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, KeyPath, Location};

/// Where `{ env = "VAR" }` references are looked up: explicit overrides first, then
/// (optionally) the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    overrides: BTreeMap<String, String>,
    process: bool,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Env {
            overrides: BTreeMap::new(),
            process: true,
        }
    }

    /// No variables at all (tests add their own with [`Env::with`]).
    pub fn empty() -> Self {
        Env::default()
    }

    /// Adds or replaces a variable; overrides win over the process environment.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.insert(name.into(), value.into());
        self
    }

    /// The value of `name`, if set (and valid UTF-8).
    pub fn var(&self, name: &str) -> Option<String> {
        if let Some(v) = self.overrides.get(name) {
            return Some(v.clone());
        }
        if self.process {
            return std::env::var(name).ok();
        }
        None
    }
}

/// Where a secret is kept. The value itself is read only by [`SecretRef::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's name.
    Env(String),
    /// A file (resolved against the config file's directory); its content, without
    /// the trailing newline, is the secret.
    File(PathBuf),
}

/// A reference to a secret, with where it was written in the config (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Where the secret is kept.
    pub source: SecretSource,
    /// Where the reference is in the config file.
    pub at: Location,
    /// The key holding the reference.
    pub key: KeyPath,
}

impl SecretRef {
    /// Reads the secret. The error names the variable or file, never the value.
    ///
    /// Callers wrap the result into the runtime's redacting secret type straight away.
    #[expect(
        clippy::result_large_err,
        reason = "a cold path, once per connection opened"
    )]
    pub fn read(&self, env: &Env) -> Result<String, ConfigError> {
        match &self.source {
            SecretSource::Env(var) => match env.var(var) {
                Some(v) if !v.trim().is_empty() => Ok(v),
                Some(_) => Err(ConfigError::Invalid {
                    at: self.at.clone(),
                    key: self.key.clone(),
                    problem: format!("environment variable {var} is empty; set it to the secret"),
                }),
                None => Err(ConfigError::MissingEnv {
                    at: self.at.clone(),
                    key: self.key.clone(),
                    var: var.clone(),
                }),
            },
            SecretSource::File(path) => {
                let file_err = |reason: String| ConfigError::File {
                    at: self.at.clone(),
                    key: self.key.clone(),
                    path: path.clone(),
                    reason,
                };
                let text = std::fs::read_to_string(path).map_err(|e| {
                    file_err(format!(
                        "{}; create it with the secret as its only content",
                        io_reason(&e)
                    ))
                })?;
                let secret = text.trim_end_matches(['\n', '\r']);
                if secret.trim().is_empty() {
                    return Err(file_err(
                        "the file is empty; write the secret into it".into(),
                    ));
                }
                Ok(secret.to_owned())
            }
        }
    }

    /// Checks that the secret can be read, without keeping it.
    #[expect(
        clippy::result_large_err,
        reason = "a cold path, once per reference checked"
    )]
    pub fn check(&self, env: &Env) -> Result<(), ConfigError> {
        self.read(env).map(drop)
    }
}

/// A short reason for an I/O error, without the OS's error code noise.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// `path` resolved against `base` unless it is absolute.
pub(crate) fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
