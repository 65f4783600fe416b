//! template plugin.
