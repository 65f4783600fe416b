//! Field metadata requests, and the small cache of field types kept in the plugin's
//! storage so that pulls, finds and pushes need not fetch the metadata every call.
//!
//! The cache is refreshed by `schema` and at the start of every full listing. Listings
//! also carry the types in their cursor, so they need no storage; when the host grants
//! none, finds and pushes fetch the metadata once per call. Each storage call is a
//! statement in the host's database, so a run that finds nothing new makes none: an
//! incremental listing reads the cache only once a page has records to convert, and a
//! full listing whose cursor says the cache already holds the types it fetched neither
//! reads nor writes it.

use serde_json::Value as Json;
use tandem_sdk::{Error, storage};

use crate::api::Client;
use crate::model::Entity;
use crate::record::FieldTypes;
use crate::schema;

fn key(entity: Entity) -> String {
    format!("field-types/{}", entity.plural())
}

/// `GET settings/<entity>/fields`, and refresh the cached field types.
pub fn fetch(client: &Client, entity: Entity) -> Result<Json, Error> {
    let metadata = client.get(&format!("settings/{}/fields", entity.plural()))?;
    store(entity, &schema::field_types(entity, &metadata));
    Ok(metadata)
}

/// The field types: from the cache, else from the metadata.
pub fn types(client: &Client, entity: Entity) -> Result<FieldTypes, Error> {
    match cached(entity) {
        Some(types) => Ok(types),
        None => fetch(client, entity).map(|m| schema::field_types(entity, &m)),
    }
}

/// `GET settings/<entity>/fields`: the types, cached.
pub fn types_fetched(client: &Client, entity: Entity) -> Result<FieldTypes, Error> {
    fetch(client, entity).map(|m| schema::field_types(entity, &m))
}

/// The cached field types, if the storage has them.
pub fn cached(entity: Entity) -> Option<FieldTypes> {
    match storage::get_json::<FieldTypes>(&key(entity)) {
        Ok(types) => types,
        Err(e) => {
            tandem_sdk::log::debug(&format!("no field-type cache: {}", e.message()));
            None
        }
    }
}

/// `GET settings/<entity>/fields` for a full listing, caching the types unless `known`
/// (what the cursor says the cache holds) already equals them. Returns the types and
/// whether the cache holds them now.
pub fn refresh(
    client: &Client,
    entity: Entity,
    known: Option<&FieldTypes>,
) -> Result<(FieldTypes, bool), Error> {
    let metadata = client.get(&format!("settings/{}/fields", entity.plural()))?;
    let types = schema::field_types(entity, &metadata);
    if known == Some(&types) {
        return Ok((types, true));
    }
    let stored = store(entity, &types);
    Ok((types, stored))
}

/// Writes the types only when they differ from the cached ones: a read is one statement
/// for the host, a write several, and the metadata rarely changes between listings.
/// Whether the cache holds them afterwards.
fn store(entity: Entity, types: &FieldTypes) -> bool {
    if cached(entity).as_ref() == Some(types) {
        return true;
    }
    match storage::set_json(&key(entity), types) {
        Ok(()) => true,
        Err(e) => {
            tandem_sdk::log::debug(&format!("cannot cache field types: {}", e.message()));
            false
        }
    }
}
