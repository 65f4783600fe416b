//! Field metadata requests, and the small cache of field types kept in the plugin's
//! storage so that pulls, finds and pushes need not fetch the metadata every call.
//!
//! The cache is refreshed by `schema` and at the start of every full listing. Listings
//! also carry the types in their cursor, so they need no storage; when the host grants
//! none, finds and pushes fetch the metadata once per call.

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

/// Writes the types only when they differ from the cached ones: a read is one statement
/// for the host, a write several, and the metadata rarely changes between listings.
fn store(entity: Entity, types: &FieldTypes) {
    if cached(entity).as_ref() == Some(types) {
        return;
    }
    if let Err(e) = storage::set_json(&key(entity), types) {
        tandem_sdk::log::debug(&format!("cannot cache field types: {}", e.message()));
    }
}
