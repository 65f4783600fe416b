//! freshmarketer plugin.
