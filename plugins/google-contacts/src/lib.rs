//! google-contacts plugin.
