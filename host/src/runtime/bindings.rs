//! Host-side bindings generated from the WIT contract in `wit/` (`tandem:plugin@0.1.0`).
//!
//! Five worlds, one set of types: the mapper, lookups, mapper-batch and mapper-buffer bindings reuse the connector
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
            "tandem:plugin/config": super::connector::tandem::plugin::config,
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

/// Bindings of the `mapper-batch` world: the optional `mapper-batch-api` export of a
/// mapper (types shared with [`connector`]). A mapper component that lacks it loads and
/// runs through `map` as before; see [`super::client::MapperClient::map`].
pub mod mapper_batch {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mapper-batch",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "tandem:plugin/types": super::connector::tandem::plugin::types,
        },
    });
}

/// Bindings of the `mapper-buffer` world: the optional `mapper-buffer-api` export of a
/// mapper (types shared with [`connector`]). A mapper component that lacks it runs
/// through `map-batch` or `map` as before; see [`super::client::MapperClient::map`].
pub mod mapper_buffer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mapper-buffer",
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
pub use mapper_batch::exports::tandem::plugin::mapper_batch_api;
pub use mapper_buffer::exports::tandem::plugin::mapper_buffer_api;
