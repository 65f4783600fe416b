//! Guest SDK for Tandem plugins.
//!
//! A Tandem plugin is a WebAssembly component built for `wasm32-wasip2` against the
//! `tandem:plugin@0.1.0` contract (`wit/` at the root of the Tandem repository). This
//! crate hides the generated bindings behind two traits and two macros:
//!
//! - a **connector** (one app's API translated to records) implements [`Connector`] and
//!   calls [`export_connector!`];
//! - a **mapper** (a tenant's field transform; no network, no storage) implements
//!   [`Mapper`] and calls [`export_mapper!`], which exports it both as `map` and as the
//!   packed `map-batch` that the host prefers (the same records, sent as one block of
//!   text and tables of numbers instead of one string per field);
//! - optionally, a connector that can answer many lookups with few requests also
//!   implements [`BatchLookup`] and calls [`export_batch_lookup!`] (the contract's
//!   `lookup-api`; without it the host calls `find` once per key).
//!
//! Both macros also embed the crate's `tandem.toml` manifest (name, kind, requested
//! capabilities, limits) into the component, in a custom section named
//! `tandem-manifest`, so the `.wasm` file is all the host needs.
//!
//! Host services for connectors: [`http`] (typed JSON helpers and the HTTP status to
//! [`Error`] mapping), [`storage`] (per-connection key-value store), [`config`]
//! (non-secret connection settings) and, for both kinds, [`log`] (also the
//! [`trace!`], [`debug!`], [`info!`], [`warn!`] and [`error!`] macros). Helpers:
//! [`timestamp`] (RFC 3339), [`url`] (percent-encoding), [`Error::context`].
//!
//! The crate also compiles for the build machine, so a plugin's pure logic can be unit
//! tested with `cargo test`: there the host calls return an error saying that no host
//! is present (logging goes to stderr), and the export macros expand to nothing.
//!
//! # A mapper
//!
//! ```
//! use tandem_sdk::{Error, MapContext, Mapper, Record, Value};
//!
//! struct LowerCaseEmail;
//!
//! impl Mapper for LowerCaseEmail {
//!     fn map(_ctx: &MapContext, mut record: Record) -> Result<Option<Record>, Error> {
//!         if let Some(email) = record.text("email") {
//!             let lower = email.trim().to_lowercase();
//!             record.set("email", Value::text(lower));
//!         }
//!         Ok(Some(record))
//!     }
//! }
//!
//! // Once per plugin crate; the crate's `tandem.toml` is embedded on wasm32.
//! tandem_sdk::export_mapper!(LowerCaseEmail);
//!
//! # fn main() {
//! let ctx = MapContext::default();
//! let out = LowerCaseEmail::map(&ctx, Record::new("1").with("email", " Ann@Example.COM ")).unwrap();
//! assert_eq!(out.unwrap().text("email"), Some("ann@example.com"));
//! # }
//! ```
//!
//! # A connector
//!
//! See the template plugin (`plugins/template` in the Tandem repository) for a complete
//! connector; its skeleton is:
//!
//! ```
//! use tandem_sdk::{
//!     AccountInfo, Connector, EntityInfo, Error, FieldDef, FieldType, Lookup, Page,
//!     PluginInfo, PullRequest, Record, Write, WriteResult,
//! };
//!
//! struct Contacts;
//!
//! impl Connector for Contacts {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("contacts", env!("CARGO_PKG_VERSION"), "Contacts API")
//!             .entity(EntityInfo::new("contacts", "Contacts"))
//!     }
//!     fn check() -> Result<AccountInfo, Error> {
//!         let base = tandem_sdk::config::require("base-url")?;
//!         Ok(AccountInfo::new(base.clone(), base))
//!     }
//!     fn schema(_entity: &str) -> Result<Vec<FieldDef>, Error> {
//!         Ok(vec![FieldDef::new("email", "Email", FieldType::Email).well_known("email")])
//!     }
//!     fn pull(_req: PullRequest) -> Result<Page, Error> {
//!         Ok(Page::last(Vec::new(), None))
//!     }
//!     fn find(_entity: &str, _query: Lookup) -> Result<Vec<Record>, Error> {
//!         Ok(Vec::new())
//!     }
//!     fn push(_entity: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>, Error> {
//!         Ok(tandem_sdk::push_each(writes, |_op| Err(Error::invalid("read-only connector"))))
//!     }
//! }
//!
//! tandem_sdk::export_connector!(Contacts);
//!
//! # fn main() {
//! assert_eq!(Contacts::describe().entities[0].name, "contacts");
//! # }
//! ```

extern crate self as tandem_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

#[doc(hidden)]
#[path = "bindings.rs"]
pub mod __bindings;

#[doc(hidden)]
#[path = "export.rs"]
pub mod __export;
mod arena;
mod buffer;
pub mod config;
pub mod http;
pub mod log;
mod packed;
pub mod storage;
pub mod timestamp;
pub mod url;
/// The well-known field tags ([`FieldDef::well_known`]), shared with the host.
pub use tandem_well_known as well_known;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod types;

pub use __export::{BatchLookup, Connector, Mapper, find_each, push_each};
pub use types::*;

/// The contract version this SDK builds plugins for (`tandem:plugin@0.1.0`): the folder
/// `wit/<version>/` of this crate that the bindings are generated from. A plugin's
/// component names it in every contract interface it imports and exports, which is where
/// the host reads it; a manifest needs no `contract` line.
pub const CONTRACT_VERSION: &str = "0.1.0";

#[cfg(test)]
mod contract_tests {
    /// The constant names the WIT folder the bindings are generated from, and that folder
    /// declares the same package version.
    #[test]
    fn contract_version_is_the_wit_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("wit")
            .join(super::CONTRACT_VERSION);
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).expect("wit/<CONTRACT_VERSION> exists") {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let package = format!("package tandem:plugin@{};", super::CONTRACT_VERSION);
            assert!(text.starts_with(&package), "{package} expected");
            files += 1;
        }
        assert_eq!(files, 3);
        let bindings = include_str!("bindings.rs");
        let path = format!("path: \"wit/{}\",", super::CONTRACT_VERSION);
        assert_eq!(
            bindings.matches(&path).count(),
            5,
            "bindings generate from {path}"
        );
    }
}
