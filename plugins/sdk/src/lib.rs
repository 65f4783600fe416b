//! Guest SDK for Tandem plugins.

wit_bindgen::generate!({
    path: "../../wit",
    world: "connector",
    pub_export_macro: true,
    default_bindings_module: "tandem_sdk::bindings",
});
