//! The plugin traits, their adapters to the generated bindings, and the export macros.

use std::marker::PhantomData;

use crate::__bindings::connector::exports::tandem::plugin::connector_api;
use crate::__bindings::lookups::exports::tandem::plugin::lookup_api;
use crate::__bindings::mapper::exports::tandem::plugin::mapper_api;
use crate::__bindings::mapper_batch::exports::tandem::plugin::mapper_batch_api;
use crate::__bindings::mapper_buffer::exports::tandem::plugin::mapper_buffer_api;
use crate::types::{
    AccountInfo, Container, Error, FieldDef, Lookup, MapContext, Op, Page, PluginInfo, PullRequest,
    Record, Write, WriteResult,
};

/// A connector: one app's API translated to records.
///
/// Every call runs in a fresh instance: keep nothing in memory between calls (use
/// [`crate::storage`] for what must survive). The host owns cursors, links, baselines,
/// scheduling and credentials; credentials are attached by the host to outbound requests,
/// so a connector never handles secrets.
///
/// Export the implementation with [`crate::export_connector!`].
pub trait Connector {
    /// Describes the connector: entities, capabilities, rate budget. Must not call the
    /// network. The host calls it once per connection, with that connection's settings
    /// readable through [`crate::config`], so capabilities may depend on them.
    fn describe() -> PluginInfo;

    /// Checks that the configured account and credentials work.
    fn check() -> Result<AccountInfo, Error>;

    /// The fields of an entity, custom fields included.
    fn schema(entity: &str) -> Result<Vec<FieldDef>, Error>;

    /// The containers (lists, groups) of an entity. Default: none.
    fn containers(entity: &str) -> Result<Vec<Container>, Error> {
        let _ = entity;
        Ok(Vec::new())
    }

    /// Lists one page of records (and deletions) after `req.cursor`.
    fn pull(req: PullRequest) -> Result<Page, Error>;

    /// Finds records by email, marker or ids.
    fn find(entity: &str, query: Lookup) -> Result<Vec<Record>, Error>;

    /// Applies writes in order: one result per write, in the same order; a failing write
    /// does not stop the others. [`push_each`] helps when the app has no batch endpoint.
    fn push(entity: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>, Error>;
}

/// Optional: many lookups in one call (the contract's `lookup-api`, world `lookups`).
///
/// Before it creates records the host looks up every e-mail address of the records it
/// may create, and after an interrupted run the marker of every create it may have
/// sent. Without this trait that is one [`Connector::find`] call per key, each with its
/// own requests; with it the host sends up to 1,000 keys per call, so that the app can
/// answer them with a few requests: a search for 100 values at once, one listing of the
/// account for all of them. Export the implementation with
/// [`crate::export_batch_lookup!`], beside [`crate::export_connector!`].
///
/// The answer must hold one entry per key, in order, each exactly what `find` returns
/// for that key; fail the whole call (as `find` would) rather than leave a key out.
/// [`find_each`] answers the kinds of keys the app cannot batch one at a time.
pub trait BatchLookup: Connector {
    /// The records of each key of `keys`, in order.
    fn find_many(entity: &str, keys: Vec<Lookup>) -> Result<Vec<Vec<Record>>, Error>;
}

/// Answers `keys` with [`Connector::find`], one key at a time (for the keys an app
/// cannot batch). Stops at the first error, as the whole call then fails.
///
/// ```
/// use tandem_sdk::{Error, Lookup, Record};
///
/// let keys = vec![Lookup::Email("a@x.example".into()), Lookup::Ids(vec!["7".into()])];
/// let found = tandem_sdk::find_each("contacts", keys, |_, key| match key {
///     Lookup::Ids(ids) => Ok(ids.into_iter().map(Record::new).collect()),
///     _ => Ok(Vec::new()),
/// })
/// .unwrap();
/// assert_eq!(found.len(), 2);
/// assert_eq!(found[1][0].id, "7");
/// ```
pub fn find_each(
    entity: &str,
    keys: Vec<Lookup>,
    mut find: impl FnMut(&str, Lookup) -> Result<Vec<Record>, Error>,
) -> Result<Vec<Vec<Record>>, Error> {
    keys.into_iter().map(|key| find(entity, key)).collect()
}

/// A mapper: a tenant's field transform. Pure: no network, no storage; runs under a fuel
/// budget, so the same input always gives the same output.
///
/// Export the implementation with [`crate::export_mapper!`].
pub trait Mapper {
    /// Transforms one record: `Some(record)` to pass it on (changed or not), `None` to
    /// drop it from this sync run, or an error that fails that record only.
    fn map(ctx: &MapContext, record: Record) -> Result<Option<Record>, Error>;

    /// Transforms a batch, in order. Default: [`Mapper::map`] on each record.
    fn map_batch(ctx: &MapContext, records: Vec<Record>) -> Vec<Result<Option<Record>, Error>> {
        records
            .into_iter()
            .map(|record| Self::map(ctx, record))
            .collect()
    }
}

/// Applies writes one at a time: `apply` gets each op and returns the stored record
/// (`None` for deletes and membership changes) or the error of that write only.
///
/// ```
/// use tandem_sdk::{Error, Op, Record, Write};
///
/// let writes = vec![
///     Write { ref_: "w1".into(), op: Op::Delete("42".into()) },
///     Write { ref_: "w2".into(), op: Op::Delete("missing".into()) },
/// ];
/// let results = tandem_sdk::push_each(writes, |op| match op {
///     Op::Delete(id) if id == "42" => Ok(None::<Record>),
///     _ => Err(Error::not_found("no such contact")),
/// });
/// assert_eq!(results[0].ref_, "w1");
/// assert!(results[0].outcome.is_ok());
/// assert!(results[1].outcome.is_err());
/// ```
pub fn push_each(
    writes: Vec<Write>,
    mut apply: impl FnMut(Op) -> Result<Option<Record>, Error>,
) -> Vec<WriteResult> {
    writes
        .into_iter()
        .map(|write| WriteResult {
            ref_: write.ref_,
            outcome: apply(write.op),
        })
        .collect()
}

/// Adapts a [`Connector`] to the generated `connector-api` trait. Used by
/// [`crate::export_connector!`].
#[doc(hidden)]
pub struct ConnectorExport<T>(PhantomData<T>);

impl<T: Connector> connector_api::Guest for ConnectorExport<T> {
    fn describe() -> PluginInfo {
        T::describe()
    }
    fn check() -> Result<AccountInfo, Error> {
        T::check()
    }
    fn schema(entity: String) -> Result<Vec<FieldDef>, Error> {
        T::schema(&entity)
    }
    fn containers(entity: String) -> Result<Vec<Container>, Error> {
        T::containers(&entity)
    }
    fn pull(req: PullRequest) -> Result<Page, Error> {
        T::pull(req)
    }
    fn find(entity: String, query: Lookup) -> Result<Vec<Record>, Error> {
        T::find(&entity, query)
    }
    fn push(entity: String, writes: Vec<Write>) -> Result<Vec<WriteResult>, Error> {
        T::push(&entity, writes)
    }
}

/// Adapts a [`BatchLookup`] to the generated `lookup-api` trait. Used by
/// [`crate::export_batch_lookup!`].
#[doc(hidden)]
pub struct BatchLookupExport<T>(PhantomData<T>);

impl<T: BatchLookup> lookup_api::Guest for BatchLookupExport<T> {
    fn find_many(entity: String, keys: Vec<lookup_api::Key>) -> Result<Vec<Vec<Record>>, Error> {
        let keys = keys
            .into_iter()
            .map(|key| match key {
                lookup_api::Key::Email(email) => Lookup::Email(email),
                lookup_api::Key::Marker(marker) => Lookup::Marker(marker),
                lookup_api::Key::Ids(ids) => Lookup::Ids(ids),
            })
            .collect();
        T::find_many(&entity, keys)
    }
}

/// Adapts a [`Mapper`] to the generated `mapper-api` trait. Used by
/// [`crate::export_mapper!`].
#[doc(hidden)]
pub struct MapperExport<T>(PhantomData<T>);

impl<T: Mapper> mapper_api::Guest for MapperExport<T> {
    fn map(ctx: MapContext, records: Vec<Record>) -> Vec<Result<Option<Record>, Error>> {
        T::map_batch(&ctx, records)
    }
}

/// Adapts a [`Mapper`] to the generated `mapper-batch-api` trait: the records arrive
/// packed, are unpacked into [`Record`]s for [`Mapper::map_batch`], and the answer is
/// packed again. Used by [`crate::export_mapper!`].
#[doc(hidden)]
pub struct MapperBatchExport<T>(PhantomData<T>);

impl<T: Mapper> mapper_batch_api::Guest for MapperBatchExport<T> {
    fn map_batch(
        ctx: mapper_batch_api::MapContext,
        batch: mapper_batch_api::RecordBatch,
    ) -> mapper_batch_api::MappedBatch {
        let ctx = MapContext {
            sync: ctx.sync,
            source: ctx.source,
            target: ctx.target,
            entity: ctx.entity,
        };
        let records = crate::packed::unpack(&batch);
        let capacity = batch.text.len();
        // The packed input is no longer needed: give its memory back before mapping.
        drop(batch);
        crate::packed::pack(T::map_batch(&ctx, records), capacity)
    }
}

/// Adapts a [`Mapper`] to the generated `mapper-buffer-api` trait: the records are read
/// from the host's text and table for [`Mapper::map_batch`], and the answer says what
/// changed. Used by [`crate::export_mapper!`].
#[doc(hidden)]
pub struct MapperBufferExport<T>(PhantomData<T>);

impl<T: Mapper> mapper_buffer_api::Guest for MapperBufferExport<T> {
    fn map_buffer(
        ctx: mapper_buffer_api::MapContext,
        text: String,
        table: Vec<u8>,
    ) -> mapper_buffer_api::MappedBuffer {
        let ctx = MapContext {
            sync: ctx.sync,
            source: ctx.source,
            target: ctx.target,
            entity: ctx.entity,
        };
        // What a call allocates is some five times its input (the records, the mapper's
        // new values, the answer: 4.7 times for the benchmark's normaliser); the arena
        // serves that much, and a little more, by bumping.
        let input_size = text.len() + table.len();
        crate::arena::reserve(input_size.saturating_mul(8).saturating_add(64 * 1024));
        let input = crate::buffer::read(&text, &table);
        let results = T::map_batch(&ctx, input.records());
        let answer = crate::buffer::write(&input, results);
        mapper_buffer_api::MappedBuffer {
            text: answer.text,
            table: answer.table,
            errors: answer.errors,
        }
    }
}

#[doc(hidden)]
pub use crate::__bindings::connector::export_connector_world as __export_connector_world;
#[doc(hidden)]
pub use crate::__bindings::lookups::export_lookups_world as __export_lookups_world;
#[doc(hidden)]
pub use crate::__bindings::mapper::export_mapper_world as __export_mapper_world;
#[doc(hidden)]
pub use crate::__bindings::mapper_batch::export_mapper_batch_world as __export_mapper_batch_world;
#[doc(hidden)]
pub use crate::__bindings::mapper_buffer::export_mapper_buffer_world as __export_mapper_buffer_world;
#[doc(hidden)]
pub use crate::arena::ArenaAllocator;

/// Embeds the calling crate's `tandem.toml` into the `tandem-manifest` custom section.
/// wasm32 only: on other targets plugins are plain libraries for tests.
#[doc(hidden)]
#[macro_export]
macro_rules! __tandem_manifest {
    () => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            const MANIFEST: &[u8] =
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tandem.toml"));
            #[unsafe(link_section = "tandem-manifest")]
            #[used]
            static TANDEM_MANIFEST: [u8; MANIFEST.len()] =
                *include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tandem.toml"));
        };
    };
}

/// Exports a [`Connector`] implementation as the plugin's `connector-api`, and embeds
/// the crate's `tandem.toml` (next to its `Cargo.toml`) in the component.
///
/// Use it once, in the plugin crate's `lib.rs` (crate type `cdylib`), with a type:
///
/// ```
/// use tandem_sdk::{AccountInfo, Connector, Error, FieldDef, Lookup, Page, PluginInfo};
/// use tandem_sdk::{PullRequest, Record, Write, WriteResult};
///
/// struct MyConnector;
///
/// impl Connector for MyConnector {
///     fn describe() -> PluginInfo { PluginInfo::new("mine", "0.1.0", "My app") }
///     fn check() -> Result<AccountInfo, Error> { Ok(AccountInfo::new("me", "Me")) }
///     fn schema(_: &str) -> Result<Vec<FieldDef>, Error> { Ok(vec![]) }
///     fn pull(_: PullRequest) -> Result<Page, Error> { Ok(Page::last(vec![], None)) }
///     fn find(_: &str, _: Lookup) -> Result<Vec<Record>, Error> { Ok(vec![]) }
///     fn push(_: &str, w: Vec<Write>) -> Result<Vec<WriteResult>, Error> {
///         Ok(tandem_sdk::push_each(w, |_| Err(Error::invalid("read-only"))))
///     }
/// }
///
/// tandem_sdk::export_connector!(MyConnector);
/// # fn main() {}
/// ```
///
/// On targets other than wasm32 it expands to nothing, so the crate also builds (and
/// unit tests) as an ordinary library.
#[macro_export]
macro_rules! export_connector {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __TandemConnectorExport = $crate::__export::ConnectorExport<$ty>;
            $crate::__export::__export_connector_world!(
                __TandemConnectorExport with_types_in $crate::__bindings::connector
            );
        };
        $crate::__tandem_manifest!();
    };
}

/// Exports a [`BatchLookup`] implementation as the plugin's `lookup-api`: the optional
/// export that lets the host send many lookups per call. Use it beside
/// [`crate::export_connector!`], with the same type:
///
/// ```
/// use tandem_sdk::{AccountInfo, BatchLookup, Connector, Error, FieldDef, Lookup, Page};
/// use tandem_sdk::{PluginInfo, PullRequest, Record, Write, WriteResult};
///
/// struct MyConnector;
///
/// impl Connector for MyConnector {
///     fn describe() -> PluginInfo { PluginInfo::new("mine", "0.1.0", "My app") }
///     fn check() -> Result<AccountInfo, Error> { Ok(AccountInfo::new("me", "Me")) }
///     fn schema(_: &str) -> Result<Vec<FieldDef>, Error> { Ok(vec![]) }
///     fn pull(_: PullRequest) -> Result<Page, Error> { Ok(Page::last(vec![], None)) }
///     fn find(_: &str, _: Lookup) -> Result<Vec<Record>, Error> { Ok(vec![]) }
///     fn push(_: &str, w: Vec<Write>) -> Result<Vec<WriteResult>, Error> {
///         Ok(tandem_sdk::push_each(w, |_| Err(Error::invalid("read-only"))))
///     }
/// }
///
/// impl BatchLookup for MyConnector {
///     fn find_many(entity: &str, keys: Vec<Lookup>) -> Result<Vec<Vec<Record>>, Error> {
///         // A real connector searches for many e-mails per request here.
///         tandem_sdk::find_each(entity, keys, |e, k| Self::find(e, k))
///     }
/// }
///
/// tandem_sdk::export_connector!(MyConnector);
/// tandem_sdk::export_batch_lookup!(MyConnector);
/// # fn main() {}
/// ```
///
/// On targets other than wasm32 it expands to nothing.
#[macro_export]
macro_rules! export_batch_lookup {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __TandemBatchLookupExport = $crate::__export::BatchLookupExport<$ty>;
            $crate::__export::__export_lookups_world!(
                __TandemBatchLookupExport with_types_in $crate::__bindings::lookups
            );
        };
    };
}

/// Exports a [`Mapper`] implementation as the plugin's `mapper-api` and as its twins
/// `mapper-batch-api` and `mapper-buffer-api` (which the host prefers: the records cross
/// the boundary as one text and one byte table, and the answer carries only what the
/// mapper changed), and embeds the crate's `tandem.toml` (next to its `Cargo.toml`) in
/// the component.
///
/// It also installs the SDK's allocator, which serves the records of a `map-buffer` call
/// from a bump arena (plugins/README.md §5.2). A mapper crate with a
/// `#[global_allocator]` of its own writes `export_mapper!(MyMapper, own_allocator)`
/// instead, and keeps it.
///
/// Use it once, in the plugin crate's `lib.rs` (crate type `cdylib`), with a type:
///
/// ```
/// use tandem_sdk::{Error, MapContext, Mapper, Record};
///
/// struct MyMapper;
///
/// impl Mapper for MyMapper {
///     fn map(_ctx: &MapContext, record: Record) -> Result<Option<Record>, Error> {
///         Ok(Some(record))
///     }
/// }
///
/// tandem_sdk::export_mapper!(MyMapper);
/// # fn main() {}
/// ```
///
/// On targets other than wasm32 it expands to nothing, so the crate also builds (and
/// unit tests) as an ordinary library.
#[macro_export]
macro_rules! export_mapper {
    ($ty:ty) => {
        // The records of a `map-buffer` call are allocated from a bump arena: see
        // `export_mapper!(T, own_allocator)` for a mapper with a global allocator of its own.
        #[cfg(target_arch = "wasm32")]
        #[global_allocator]
        static __TANDEM_ALLOCATOR: $crate::__export::ArenaAllocator =
            $crate::__export::ArenaAllocator;
        $crate::export_mapper!($ty, own_allocator);
    };
    ($ty:ty, own_allocator) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __TandemMapperExport = $crate::__export::MapperExport<$ty>;
            $crate::__export::__export_mapper_world!(
                __TandemMapperExport with_types_in $crate::__bindings::mapper
            );
            type __TandemMapperBatchExport = $crate::__export::MapperBatchExport<$ty>;
            $crate::__export::__export_mapper_batch_world!(
                __TandemMapperBatchExport with_types_in $crate::__bindings::mapper_batch
            );
            type __TandemMapperBufferExport = $crate::__export::MapperBufferExport<$ty>;
            $crate::__export::__export_mapper_buffer_world!(
                __TandemMapperBufferExport with_types_in $crate::__bindings::mapper_buffer
            );
        };
        $crate::__tandem_manifest!();
    };
}
