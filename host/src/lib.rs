//! Tandem: a contact-sync engine whose connectors are sandboxed WebAssembly plugins.
//!
//! See `ARCHITECTURE.md` at the repository root for the codemap and invariants.

pub mod allocator;
pub mod app;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod db;
pub mod runtime;
pub mod sync;
