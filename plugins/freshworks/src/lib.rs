//! freshworks plugin.
