//! Per-call limits: the operator's caps, the memory limiter summed over all memories, and
//! the bounded capture of guest stderr.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::streams::{OutputStream, StreamResult};

use super::manifest::LimitsRequest;

const MIB: u64 = 1024 * 1024;

/// Per-call caps for a connector connection. The manifest may ask for less memory or a
/// shorter timeout, never for more. `Default` gives the host defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorLimits {
    /// Linear memory of one instance, all memories together (MiB).
    pub memory_mib: u32,
    /// Wall time of one call, host calls included.
    pub timeout: Duration,
    /// Time the guest may spend running its own code in one call (epoch ticks).
    pub cpu: Duration,
    /// Bytes the guest may pass to the host in one host call.
    pub hostcall_bytes: usize,
    /// Largest HTTP request body.
    pub http_request_bytes: usize,
    /// Largest HTTP response body.
    pub http_response_bytes: usize,
    /// Longest HTTP exchange (per request, redirects included); the guest may shorten it.
    pub http_timeout: Duration,
    /// Most redirects followed for one request.
    pub max_redirects: u32,
    /// Log lines kept per call; the rest are counted and dropped.
    pub log_lines: u32,
    /// Log lines and bytes kept across calls: per run and per connection per hour.
    pub log: super::log::LogLimits,
}

impl Default for ConnectorLimits {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            timeout: Duration::from_secs(30),
            cpu: Duration::from_secs(10),
            hostcall_bytes: 8 * MIB as usize,
            http_request_bytes: 8 * MIB as usize,
            http_response_bytes: 16 * MIB as usize,
            http_timeout: Duration::from_secs(30),
            max_redirects: 5,
            log_lines: 1000,
            log: super::log::LogLimits::default(),
        }
    }
}

impl ConnectorLimits {
    /// These caps lowered by the manifest's requests.
    pub(crate) fn narrowed(&self, request: &LimitsRequest) -> Self {
        let mut out = self.clone();
        if let Some(mib) = request.memory_mib {
            out.memory_mib = out.memory_mib.min(mib);
        }
        if let Some(ms) = request.timeout_ms {
            out.timeout = out.timeout.min(Duration::from_millis(ms));
        }
        out
    }
}

/// Per-call limits for mapper calls. Fuel makes the CPU budget deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapperLimits {
    /// Linear memory of one instance, all memories together (MiB).
    pub memory_mib: u32,
    /// Fuel (roughly, wasm instructions) for one `map` call.
    pub fuel: u64,
    /// Wall time of one call (a backstop; fuel normally stops a runaway mapper first).
    pub timeout: Duration,
    /// Bytes the guest may pass to the host in one host call (log lines).
    pub hostcall_bytes: usize,
    /// Log lines kept per call.
    pub log_lines: u32,
}

impl Default for MapperLimits {
    fn default() -> Self {
        Self {
            memory_mib: 16,
            fuel: 500_000_000,
            timeout: Duration::from_secs(10),
            hostcall_bytes: MIB as usize,
            log_lines: 100,
        }
    }
}

impl MapperLimits {
    /// These caps lowered by the manifest's requests.
    pub(crate) fn narrowed(&self, request: &LimitsRequest) -> Self {
        let mut out = self.clone();
        if let Some(mib) = request.memory_mib {
            out.memory_mib = out.memory_mib.min(mib);
        }
        if let Some(ms) = request.timeout_ms {
            out.timeout = out.timeout.min(Duration::from_millis(ms));
        }
        out
    }
}

/// Raised (as a trap) when the guest's memories would exceed their budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory limit of {limit_bytes} bytes exceeded (growing to {wanted_bytes} bytes)")]
pub struct MemoryLimitExceeded {
    /// The memory budget, in bytes.
    pub limit_bytes: u64,
    /// Total the guest asked for.
    pub wanted_bytes: u64,
}

/// A `ResourceLimiterAsync` that sums every linear memory of the store.
///
/// wasmtime's `StoreLimits::memory_size` applies per memory; a component has several
/// core instances and may have several memories, so the total is tracked here.
pub(crate) struct MemoryLimiter {
    limit: u64,
    used: u64,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit_mib: u32) -> Self {
        Self {
            limit: u64::from(limit_mib) * MIB,
            used: 0,
            exceeded: false,
        }
    }
}

#[async_trait::async_trait]
impl wasmtime::ResourceLimiterAsync for MemoryLimiter {
    async fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current) as u64;
        let wanted = self.used.saturating_add(grow);
        if wanted > self.limit {
            self.exceeded = true;
            // A trap, not a refused grow: a refused grow would surface as a guest abort
            // indistinguishable from a panic.
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit_bytes: self.limit,
                wanted_bytes: wanted,
            }));
        }
        self.used = wanted;
        Ok(true)
    }

    async fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= super::engine::TABLE_ELEMENTS)
    }

    // Components hold several core instances, tables and memories: leave headroom.
    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}

/// Keeps the last `capacity` bytes a guest writes to stderr; never blocks or traps.
#[derive(Clone)]
pub(crate) struct StderrTail {
    capacity: usize,
    buffer: Arc<Mutex<VecDeque<u8>>>,
}

impl StderrTail {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            buffer: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = &bytes[bytes.len().saturating_sub(self.capacity)..];
        let overflow = (buf.len() + bytes.len()).saturating_sub(self.capacity);
        buf.drain(..overflow);
        buf.extend(bytes);
    }

    /// The captured text, lossily decoded, trimmed.
    pub(crate) fn text(&self) -> String {
        let buf = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = buf.as_slices();
        let mut bytes = Vec::with_capacity(buf.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi_io::poll::Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiterAsync;

    #[tokio::test]
    async fn memory_is_summed_over_all_memories() {
        let mut limiter = MemoryLimiter::new(1);
        // Two memories of 512 KiB each fit exactly in 1 MiB...
        assert!(limiter.memory_growing(0, 512 * 1024, None).await.unwrap());
        assert!(limiter.memory_growing(0, 512 * 1024, None).await.unwrap());
        // ...one more page on either does not.
        let err = limiter
            .memory_growing(512 * 1024, 512 * 1024 + 65536, None)
            .await
            .unwrap_err();
        assert!(limiter.exceeded);
        let limit = err.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(limit.limit_bytes, MIB);
        assert_eq!(limit.wanted_bytes, MIB + 65536);
    }

    #[test]
    fn stderr_tail_keeps_the_last_bytes() {
        let tail = StderrTail::new(8);
        tail.push(b"hello ");
        tail.push(b"world!");
        assert_eq!(tail.text(), "o world!");
        tail.push(b"0123456789abc");
        assert_eq!(tail.text(), "56789abc");
    }

    #[test]
    fn manifest_narrows_but_never_widens() {
        let caps = ConnectorLimits::default();
        let narrowed = caps.narrowed(&LimitsRequest {
            memory_mib: Some(1024),
            timeout_ms: Some(1000),
        });
        assert_eq!(narrowed.memory_mib, 64);
        assert_eq!(narrowed.timeout, Duration::from_secs(1));
    }
}
