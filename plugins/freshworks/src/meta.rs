//! Field metadata requests, and the small cache of field types kept in the plugin's
//! storage so that pulls, finds and pushes need not fetch the metadata every call.
//!
//! The cache is refreshed by `schema` and at the start of every full listing. When the
//! host grants no storage the metadata is simply fetched when needed.

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
    match storage::get_json::<FieldTypes>(&key(entity)) {
        Ok(Some(types)) => Ok(types),
        Ok(None) => fetch(client, entity).map(|m| schema::field_types(entity, &m)),
        Err(e) => {
            tandem_sdk::log::debug(&format!(
                "no field-type cache ({}); fetching the metadata",
                e.message()
            ));
            fetch(client, entity).map(|m| schema::field_types(entity, &m))
        }
    }
}

fn store(entity: Entity, types: &FieldTypes) {
    if let Err(e) = storage::set_json(&key(entity), types) {
        tandem_sdk::log::debug(&format!("cannot cache field types: {}", e.message()));
    }
}
