//! Connector-level tests.
