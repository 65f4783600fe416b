//! End-to-end suites: one test binary, one module per area.

mod connectors_freshworks;
mod connectors_google;
mod conformance;
mod hostile;
