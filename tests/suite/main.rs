//! End-to-end suites: one test binary, one module per area.

mod conformance;
mod connectors_freshworks;
mod connectors_google;
mod console;
mod control_api;
mod demo;
mod economy;
mod fidelity;
mod fleet;
mod hostile;
mod mappers;
mod polyglot;
mod rate_headers;
mod recording;
mod sdk;
mod state_copy;
mod sync_e2e;
mod sync_faults;
mod tidy;
mod user_errors;
mod webhooks;
