//! freshsales plugin.
