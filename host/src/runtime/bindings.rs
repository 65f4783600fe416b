//! Host-side bindings generated from the WIT contract in `wit/` (`tandem:plugin@0.1.0`).
//!
//! Two worlds, one set of types: the mapper bindings reuse the connector bindings'
//! `types` and `log` modules, so a `Record` is the same Rust type in both.

/// Bindings of the `connector` world.
pub mod connector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "connector",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

/// Bindings of the `mapper` world (types shared with [`connector`]).
pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mapper",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "tandem:plugin/types": super::connector::tandem::plugin::types,
            "tandem:plugin/log": super::connector::tandem::plugin::log,
        },
    });
}

pub use connector::exports::tandem::plugin::connector_api;
pub use connector::tandem::plugin::{config, http, log, storage, types};
pub use mapper::exports::tandem::plugin::mapper_api;
