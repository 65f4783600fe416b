//! Shared helpers for the end-to-end suites.

pub mod browser;
pub mod e2e;
pub mod host;
pub mod polyglot;
pub mod template_api;
