//! Structured logging into the host's log, tagged by the host with the plugin and the
//! connection (connectors and mappers). The host truncates long messages and strips
//! control characters. Never log secrets (a plugin has none) or whole records.
//!
//! ```
//! tandem_sdk::log::info("pulled a page");
//! tandem_sdk::log::log(tandem_sdk::log::Level::Warn, "skipped a record", &[("id", "42")]);
//! tandem_sdk::info!("pulled {} records", 100);
//! ```

pub use crate::__bindings::connector::tandem::plugin::log::Level;

/// Writes one log line with structured fields.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    #[cfg(target_arch = "wasm32")]
    crate::__bindings::connector::tandem::plugin::log::log(level, message, &fields);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::log(level, message, &fields);
}

/// Logs at `trace`.
pub fn trace(message: &str) {
    log(Level::Trace, message, &[]);
}

/// Logs at `debug`.
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}

/// Logs at `info`.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Logs at `warn`.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Logs at `error`.
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}

/// Logs a formatted message at `trace`: `tandem_sdk::trace!("x = {x}")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::trace(&::std::format!($($arg)*)) };
}

/// Logs a formatted message at `debug`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}

/// Logs a formatted message at `info`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}

/// Logs a formatted message at `warn`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}

/// Logs a formatted message at `error`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}
