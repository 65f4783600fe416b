//! Host-side bindings generated from the WIT contract in `wit/` (`tandem:plugin@0.1.0`).
//!
//! Three worlds, one set of types: the mapper and lookups bindings reuse the connector
//! bindings' `types` (and `log`) modules, so a `Record` is the same Rust type in all.

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

/// Bindings of the `lookups` world: the optional `lookup-api` export of a connector
/// (types shared with [`connector`]). A connector component that lacks it loads and runs
/// as before; see [`super::client::ConnectorClient::find_many`].
pub mod lookups {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "lookups",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "tandem:plugin/types": super::connector::tandem::plugin::types,
        },
    });
}

pub use connector::exports::tandem::plugin::connector_api;
pub use connector::tandem::plugin::{config, http, log, storage, types};
pub use lookups::exports::tandem::plugin::lookup_api;
pub use mapper::exports::tandem::plugin::mapper_api;
