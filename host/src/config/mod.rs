//! The operator's config file (TOML): parse with spans, validate, resolve references.
//!
//! A config declares `[state]`, `[daemon]`, `[plugins.NAME]`, `[connections.NAME]` and
//! `[syncs.NAME]`; `examples/demo.toml` documents every key. Reading happens in two
//! passes, and both collect every problem instead of stopping at the first:
//!
//! 1. [`parse_str`] reads the document (`reader` walks `toml`'s spanned tree): unknown
//!    keys, wrong types and bad values, each with file, line, column and key path.
//! 2. [`check`] looks outside the document: names referring to each other (connection ->
//!    plugin, sync -> connections, mappers -> mapper plugins), built-in plugin names,
//!    plugin files and their sha256 pins, and whether every referenced secret exists
//!    (without ever printing it).
//!
//! [`load`] runs both; [`validate_file`] is `load` with the process environment and the
//! plugins built into this binary, which is what `tandem config validate` runs. The
//! `resolve` module turns a checked config into the runtime's types
//! ([`Config::connection`], [`PluginConfig::runtime_source`], [`GrantConfig::to_grant`]).
//!
//! Secrets are never read into a [`Config`]: credentials stay [`SecretRef`]s (a variable
//! name or a file) until a connection is opened. Non-secret settings may be taken from the
//! environment with `{ env = "VAR" }`, resolved while parsing.

mod connections;
mod daemon;
mod env;
mod error;
mod plugins;
pub mod rate_limit;
mod reader;
mod resolve;
mod syncs;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use connections::{ConnectionConfig, CredentialsConfig, DEFAULT_WEBHOOK_HEADER, WebhookConfig};
pub use daemon::{
    DEFAULT_LISTEN, DEFAULT_STATE_CACHE, DEFAULT_STATE_PATH, DEFAULT_WEBHOOK_LISTEN, DaemonConfig,
    FleetConfig, PostgresConfig, StateConfig, WebhooksConfig,
};
pub use env::{Env, SecretRef, SecretSource};
pub use error::{ConfigError, KeyPath, Location};
pub use plugins::{GrantConfig, LimitOverrides, PluginConfig, PluginSource};
pub use resolve::{BuiltinPlugin, builtin_plugins, validate_file};
pub use syncs::{DEFAULT_FULL_EVERY, DEFAULT_INTERVAL, SyncConfig};
pub use validate::{Catalog, Inspect, Inspected, check};

pub use crate::runtime::PluginKind;

use reader::{Reader, Table};

/// The default config file name, looked up in the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "tandem.toml";

/// A parsed config. Relative paths in it are already resolved against [`Config::base_dir`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, as named by the operator.
    pub file: PathBuf,
    /// The directory relative paths are resolved against (the file's directory).
    pub base_dir: PathBuf,
    /// `[state]`.
    pub state: StateConfig,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[plugins.NAME]`, by name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// `[connections.NAME]`, by name.
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// `[syncs.NAME]`, by name.
    pub syncs: BTreeMap<String, SyncConfig>,
}

const TOP_KEYS: &[&str] = &["state", "daemon", "plugins", "connections", "syncs"];

/// Parses config text (pass 1). `file` is used in messages and to resolve relative paths.
///
/// Every error is returned, sorted by position.
pub fn parse_str(file: &Path, src: &str, env: &Env) -> Result<Config, Vec<ConfigError>> {
    let mut parsed = parse_partial(file, src, env)?;
    if parsed.errors.is_empty() {
        Ok(parsed.config)
    } else {
        sort(&mut parsed.errors);
        Err(parsed.errors)
    }
}

/// Reads and parses a file, then checks what it refers to (both passes). Every error of
/// both passes is returned, sorted by position.
pub fn load(file: &Path, env: &Env, catalog: &Catalog) -> Result<Config, Vec<ConfigError>> {
    let src = std::fs::read_to_string(file).map_err(|e| {
        vec![ConfigError::Read {
            file: file.to_path_buf(),
            reason: env::io_reason(&e),
        }]
    })?;
    load_str(file, &src, env, catalog)
}

/// [`load`] for text already read; `file` is used in messages and to resolve relative paths.
pub fn load_str(
    file: &Path,
    src: &str,
    env: &Env,
    catalog: &Catalog,
) -> Result<Config, Vec<ConfigError>> {
    let mut parsed = parse_partial(file, src, env)?;
    let defined = validate::Defined {
        plugins: parsed.plugin_names,
        connections: parsed.connection_names,
    };
    let more = validate::check_defined(&parsed.config, &defined, env, catalog);
    parsed.errors.extend(more);
    if parsed.errors.is_empty() {
        Ok(parsed.config)
    } else {
        sort(&mut parsed.errors);
        Err(parsed.errors)
    }
}

/// A config read as far as possible: entries with errors are left out of `config` but
/// their names are kept, so pass 2 does not report references to them as undefined.
struct Partial {
    config: Config,
    plugin_names: Vec<String>,
    connection_names: Vec<String>,
    errors: Vec<ConfigError>,
}

/// Pass 1. `Err` only for syntax errors, after which nothing else is read.
fn parse_partial(file: &Path, src: &str, env: &Env) -> Result<Partial, Vec<ConfigError>> {
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(src);
    if !syntax.is_empty() {
        // Reading a half-parsed document would only add confusing follow-up errors.
        let mut errors: Vec<ConfigError> = syntax
            .iter()
            .map(|e| ConfigError::Syntax {
                at: Location::at(file, src, e.span().map_or(0, |s| s.start)),
                message: e.message().trim().replace('\n', " "),
            })
            .collect();
        sort(&mut errors);
        return Err(errors);
    }
    let base_dir = base_dir_of(file);
    let mut cx = Reader {
        file,
        src,
        base_dir: &base_dir,
        env,
        errors: Vec::new(),
    };
    let mut root = Table::root(&doc, TOP_KEYS);
    let state = root
        .get("state")
        .and_then(|i| daemon::read_state(&mut cx, i));
    let daemon = root
        .get("daemon")
        .and_then(|i| daemon::read_daemon(&mut cx, i));
    let plugins_item = root.get("plugins");
    let plugin_names = reader::names(plugins_item.as_ref());
    let plugins = plugins_item.map(|i| plugins::read_plugins(&mut cx, i));
    let connections_item = root.get("connections");
    let connection_names = reader::names(connections_item.as_ref());
    let connections = connections_item.map(|i| connections::read_connections(&mut cx, i));
    let syncs = root.get("syncs").map(|i| syncs::read_syncs(&mut cx, i));
    root.finish(&mut cx);
    let errors = cx.errors;
    Ok(Partial {
        config: Config {
            file: file.to_path_buf(),
            state: state.unwrap_or_else(|| StateConfig::default_in(&base_dir)),
            daemon: daemon.unwrap_or_default(),
            base_dir,
            plugins: by_name(plugins, |p| &p.name),
            connections: by_name(connections, |c| &c.name),
            syncs: by_name(syncs, |s| &s.name),
        },
        plugin_names,
        connection_names,
        errors,
    })
}

fn base_dir_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn by_name<T>(items: Option<Vec<T>>, name: impl Fn(&T) -> &String) -> BTreeMap<String, T> {
    items
        .unwrap_or_default()
        .into_iter()
        .map(|t| (name(&t).clone(), t))
        .collect()
}

fn sort(errors: &mut [ConfigError]) {
    errors.sort_by(|a, b| a.location().cmp(&b.location()));
}
