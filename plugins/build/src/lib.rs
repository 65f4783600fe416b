//! Paths and bytes of the plugins built for `wasm32-wasip2` by this crate's build script.
