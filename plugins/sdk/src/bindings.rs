//! The wit-bindgen bindings of the `tandem:plugin@0.1.0` worlds (hidden from plugin authors).
//!
//! Each world gets its own bindings: a mapper must not import `http`, `storage` or
//! `config`, and a connector exports `lookup-api` (world `lookups`) only when it asks
//! for it. The mapper and lookups bindings reuse the connector's `types` (and `log`)
//! modules, so a `Record` is one Rust type for every kind of plugin. Each world's import-only type
//! section is linked by the library; its exports are described by the section that the
//! export macro emits in the plugin crate, so a mapper never claims connector exports.
//! World imports a plugin never calls are dropped by `wasm-component-ld`.

/// Bindings of the `connector` world (imports `http`, `storage`, `log`, `config`).
pub mod connector {
    wit_bindgen::generate!({
        path: "wit/0.1.0",
        world: "tandem:plugin/connector@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_connector_world",
        default_bindings_module: "tandem_sdk::__bindings::connector",
        runtime_path: "tandem_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// Bindings of the `mapper` world (imports `log` and `config`).
pub mod mapper {
    wit_bindgen::generate!({
        path: "wit/0.1.0",
        world: "tandem:plugin/mapper@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_mapper_world",
        default_bindings_module: "tandem_sdk::__bindings::mapper",
        runtime_path: "tandem_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "tandem:plugin/types@0.1.0": crate::__bindings::connector::tandem::plugin::types,
            "tandem:plugin/log@0.1.0": crate::__bindings::connector::tandem::plugin::log,
            "tandem:plugin/config@0.1.0": crate::__bindings::connector::tandem::plugin::config,
        },
    });
}

/// Bindings of the `lookups` world: the optional `lookup-api` export of a connector. Its
/// export section joins the connector's when a plugin calls `export_batch_lookup!`.
pub mod lookups {
    wit_bindgen::generate!({
        path: "wit/0.1.0",
        world: "tandem:plugin/lookups@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_lookups_world",
        default_bindings_module: "tandem_sdk::__bindings::lookups",
        runtime_path: "tandem_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "tandem:plugin/types@0.1.0": crate::__bindings::connector::tandem::plugin::types,
        },
    });
}

/// Bindings of the `mapper-batch` world: the optional `mapper-batch-api` export (records
/// in packed form), which `export_mapper!` adds beside `mapper-api`.
pub mod mapper_batch {
    wit_bindgen::generate!({
        path: "wit/0.1.0",
        world: "tandem:plugin/mapper-batch@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_mapper_batch_world",
        default_bindings_module: "tandem_sdk::__bindings::mapper_batch",
        runtime_path: "tandem_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "tandem:plugin/types@0.1.0": crate::__bindings::connector::tandem::plugin::types,
        },
    });
}

/// Bindings of the `mapper-buffer` world: the optional `mapper-buffer-api` export (records
/// as bytes, answers as changes), which `export_mapper!` adds beside the other two.
pub mod mapper_buffer {
    wit_bindgen::generate!({
        path: "wit/0.1.0",
        world: "tandem:plugin/mapper-buffer@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_mapper_buffer_world",
        default_bindings_module: "tandem_sdk::__bindings::mapper_buffer",
        runtime_path: "tandem_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "tandem:plugin/types@0.1.0": crate::__bindings::connector::tandem::plugin::types,
        },
    });
}
