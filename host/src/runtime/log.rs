//! The `log` host interface: plugin log lines into `tracing`, tagged with plugin and
//! connection, truncated to [`MAX_LINE`] bytes, control characters stripped, and capped
//! at a number of lines per call.

use std::sync::Arc;

use super::bindings::log::{Host, Level};
use super::bindings::types;
use super::state::HostState;

/// Longest message kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_LINE: usize = 1024;

/// Logging context of one call.
pub(crate) struct LogCtx {
    plugin: Arc<str>,
    connection: Arc<str>,
    lines_left: u32,
    dropped: u32,
    /// Budgets shared with other calls (none: only the per-call cap).
    shared: Option<Arc<LogBudgets>>,
}

impl LogCtx {
    pub(crate) fn new(plugin: Arc<str>, connection: Arc<str>, max_lines: u32) -> Self {
        Self {
            plugin,
            connection,
            lines_left: max_lines,
            dropped: 0,
            shared: None,
        }
    }

    /// Also spends `budgets` (shared with the other calls of the run and connection).
    pub(crate) fn with_budgets(mut self, budgets: Arc<LogBudgets>) -> Self {
        self.shared = Some(budgets);
        self
    }

    /// Whether a line of `bytes` fits the shared budgets (taken if so, else counted as
    /// dropped).
    fn shared_allows(&self, bytes: usize) -> bool {
        self.shared.as_ref().is_none_or(|b| b.take(bytes as u64))
    }
}

/// How much a connector may log across calls. The per-call cap alone let a plugin
/// write hundreds of MB in seconds by making many calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Lines kept per run (per connection and sync run; in tests: per client).
    pub run_lines: u64,
    /// Bytes (message and fields) kept per run.
    pub run_bytes: u64,
    /// Lines kept per connection per hour, across runs and syncs.
    pub hour_lines: u64,
    /// Bytes kept per connection per hour.
    pub hour_bytes: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            run_lines: 10_000,
            run_bytes: 2 << 20,
            hour_lines: 50_000,
            hour_bytes: 10 << 20,
        }
    }
}

/// The budgets one client's calls spend: its own (the run's) and its connection's hourly
/// one (shared by every client of the connection).
#[derive(Debug)]
pub(crate) struct LogBudgets {
    run: LogBudget,
    hour: Arc<LogBudget>,
}

impl LogBudgets {
    pub(crate) fn new(
        plugin: Arc<str>,
        connection: Arc<str>,
        limits: LogLimits,
        hour: Arc<LogBudget>,
    ) -> Self {
        LogBudgets {
            run: LogBudget::new(
                plugin,
                connection,
                "run",
                limits.run_lines,
                limits.run_bytes,
                None,
            ),
            hour,
        }
    }

    fn take(&self, bytes: u64) -> bool {
        let mut run = self.run.tally();
        let mut hour = self.hour.tally();
        let fits = self.run.fits(&run, bytes) && self.hour.fits(&hour, bytes);
        for t in [&mut *run, &mut *hour] {
            t.count(fits, bytes);
        }
        fits
    }
}

/// One budget of lines and bytes, optionally renewed every `window`. When it is dropped
/// (the run ended) or renewed, one summary line says what it dropped.
#[derive(Debug)]
pub(crate) struct LogBudget {
    plugin: Arc<str>,
    connection: Arc<str>,
    scope: &'static str,
    lines: u64,
    bytes: u64,
    window: Option<std::time::Duration>,
    tally: std::sync::Mutex<Tally>,
}

#[derive(Debug)]
struct Tally {
    since: std::time::Instant,
    lines: u64,
    bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            since: std::time::Instant::now(),
            lines: 0,
            bytes: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    fn count(&mut self, kept: bool, bytes: u64) {
        if kept {
            self.lines += 1;
            self.bytes += bytes;
        } else {
            self.dropped_lines += 1;
            self.dropped_bytes += bytes;
        }
    }
}

impl LogBudget {
    pub(crate) fn new(
        plugin: Arc<str>,
        connection: Arc<str>,
        scope: &'static str,
        lines: u64,
        bytes: u64,
        window: Option<std::time::Duration>,
    ) -> Self {
        LogBudget {
            plugin,
            connection,
            scope,
            lines,
            bytes,
            window,
            tally: std::sync::Mutex::new(Tally::new()),
        }
    }

    /// A connection's budget per hour.
    pub(crate) fn hourly(plugin: Arc<str>, connection: Arc<str>, limits: LogLimits) -> Self {
        let hour = std::time::Duration::from_secs(3600);
        Self::new(
            plugin,
            connection,
            "hour",
            limits.hour_lines,
            limits.hour_bytes,
            Some(hour),
        )
    }

    /// The tally, renewed (with its summary) when its window is over.
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        if self.window.is_some_and(|w| t.since.elapsed() >= w) {
            self.summary(&t);
            *t = Tally::new();
        }
        t
    }

    fn fits(&self, t: &Tally, bytes: u64) -> bool {
        t.lines < self.lines && t.bytes + bytes <= self.bytes
    }

    fn summary(&self, t: &Tally) {
        if t.dropped_lines > 0 {
            tracing::warn!(
                plugin = %self.plugin,
                connection = %self.connection,
                dropped_lines = t.dropped_lines,
                dropped_bytes = t.dropped_bytes,
                "plugin log lines dropped: the connection's log budget per {} ({} lines, {} bytes) was spent",
                self.scope,
                self.lines,
                self.bytes
            );
        }
    }
}

impl Drop for LogBudget {
    fn drop(&mut self) {
        let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        self.summary(&t);
    }
}

impl Drop for LogCtx {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                plugin = %self.plugin,
                connection = %self.connection,
                dropped = self.dropped,
                "plugin log lines dropped (per-call limit)"
            );
        }
    }
}

/// Removes control and invisible characters (ANSI escapes, newlines, bidi overrides,
/// zero-width and line separators: [`super::text::is_hidden`]) and truncates to `max`
/// bytes.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars().filter(|&c| !super::text::is_hidden(c)) {
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

impl types::Host for HostState {}

impl Host for HostState {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        // No secret of the connection reaches the log, however the plugin got it.
        let message = self.scrubbed(message);
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .map(|(k, v)| (self.scrubbed(k), self.scrubbed(v)))
            .collect();
        let ctx = &mut self.log;
        if ctx.lines_left == 0 {
            ctx.dropped += 1;
            return Ok(());
        }
        ctx.lines_left -= 1;
        let message = sanitize(&message, MAX_LINE);
        let fields = sanitize(&super::text::quote_fields(&fields), MAX_LINE);
        if !ctx.shared_allows(message.len() + fields.len()) {
            return Ok(());
        }
        let (plugin, connection) = (&*ctx.plugin, &*ctx.connection);
        macro_rules! emit {
            ($lvl:expr) => {
                tracing::event!(target: "tandem::plugin", $lvl, plugin, connection, fields = %fields, "{message}")
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error => emit!(tracing::Level::ERROR),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_control_characters_and_truncates() {
        assert_eq!(
            sanitize("a\x1b[31mred\x1b[0m\nnext\tline\r", 100),
            "a[31mred[0mnextline"
        );
        let long = "é".repeat(600); // 1200 bytes
        let cut = sanitize(&long, MAX_LINE);
        assert!(cut.len() <= MAX_LINE + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(cut.chars().filter(|&c| c == 'é').count(), MAX_LINE / 2);
    }
}
