//! The plugin runtime: wasmtime engines, plugin loading and limits, and one module
//! per host interface of the WIT contract (`http`, `storage`, `log`, `config`).
