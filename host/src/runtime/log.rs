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
}

impl LogCtx {
    pub(crate) fn new(plugin: Arc<str>, connection: Arc<str>, max_lines: u32) -> Self {
        Self {
            plugin,
            connection,
            lines_left: max_lines,
            dropped: 0,
        }
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
