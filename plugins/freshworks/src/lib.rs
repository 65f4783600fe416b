//! The Freshworks CRM API client and record mapping shared by Tandem's first-party
//! Freshsales and Freshmarketer connectors.
//!
//! Both apps speak the same API (Freshmarketer in the Freshworks bundle *is* the CRM
//! contact API, with marketing lists and subscription states), so the two plugin crates
//! are one line each: [`connector!`] implements `tandem_sdk::Connector` by calling the
//! functions here with the crate's [`App`], and exports it. The connectors translate the API to and from the contract and nothing
//! else: the host owns state, scheduling, merging and credentials (it adds
//! `Authorization: Token token=<key>` to each request; this code never sees the key).
//!
//! Modules, by contract call:
//!
//! - [`settings`]: connection settings (`domain` + `edition`, or `base-url`; the marker
//!   field; the look-back overlap; bulk upsert on/off; ids per list-membership request;
//!   whether list joins move `updated_at`).
//! - [`schema`](mod@schema): field metadata → field definitions with well-known tags.
//! - [`record`]: contact / lead JSON ↔ records, custom fields and consent (pure).
//! - [`pull`](mod@pull) and [`cursor`]: full and incremental listings, deletions, list scope.
//! - [`find`](mod@find): lookups by email, marker and ids, one at a time (`find`) or many per
//!   search (`find-many`, the contract's optional `lookup-api`).
//! - [`push`](mod@push): batched writes with read-back.
//! - [`errors`] and [`api`]: the HTTP client and the HTTP → contract error mapping.
//!
//! # Consent (Freshmarketer and Suite contacts)
//!
//! `subscription_status` is the contract's consent field (well-known `consent`), as text:
//!
//! | `subscription_status` | consent          |
//! |-----------------------|------------------|
//! | 0                     | `unsubscribed`   |
//! | 1                     | `subscribed`     |
//! | 2                     | `not-subscribed` |
//! | 3                     | `spam`           |
//! | 4                     | `bounced`        |
//!
//! A record with `do_not_disturb: true` reads as `unsubscribed` when its status is
//! `subscribed` or `not-subscribed` (DND forbids marketing email); `spam` and `bounced`
//! stay. `do_not_disturb` is also its own field. Writing consent sets
//! `subscription_status` to the code; writing DND sets `do_not_disturb`.
//!
//! Each app tags ONE consent field for the host: Freshsales `do_not_disturb` (`dnd`),
//! Freshmarketer `subscription_status` (`consent`); the other field is described untagged
//! (see [`schema`](mod@schema)). So DND in Freshsales pairs with Unsubscribed in Freshmarketer.

pub mod api;
pub mod cursor;
pub mod errors;
pub mod find;
pub mod meta;
pub mod model;
pub mod pull;
pub mod push;
pub mod record;
pub mod schema;
pub mod settings;

use serde_json::Value as Json;
use tandem_sdk::{AccountInfo, Container, EntityInfo, Error, FieldDef, PluginInfo};

pub use find::{find, find_many};
pub use model::{App, Entity};
pub use pull::pull;
pub use push::push;
pub use settings::{Edition, Settings};

use api::Client;

#[doc(hidden)]
pub use tandem_sdk as __sdk;

/// Defines a first-party Freshworks connector: a unit struct `$name` whose
/// `tandem_sdk::Connector` and `tandem_sdk::BatchLookup` implementations call this crate's
/// functions with `$app`, exported as the plugin's `connector-api` and `lookup-api` (with
/// the crate's `tandem.toml` embedded).
///
/// Each connector crate is one line over this crate:
///
/// ```
/// tandem_freshworks::connector!(
///     /// The Freshsales connector.
///     pub Freshsales,
///     tandem_freshworks::App::Freshsales
/// );
/// # fn main() {}
/// ```
///
/// Under `cfg(test)` it also defines a unit test that the crate's `tandem.toml` names the
/// same plugin and version as `describe`, the contract version of the SDK, exactly the
/// Freshworks origins and the API-key profile (the crate needs `toml` as a
/// dev-dependency).
#[macro_export]
macro_rules! connector {
    ($(#[$meta:meta])* $vis:vis $name:ident, $app:expr $(,)?) => {
        $(#[$meta])*
        $vis struct $name;

        impl $crate::__sdk::Connector for $name {
            fn describe() -> $crate::__sdk::PluginInfo {
                $crate::describe($app)
            }

            fn check() -> ::core::result::Result<$crate::__sdk::AccountInfo, $crate::__sdk::Error> {
                $crate::check($app)
            }

            fn schema(
                entity: &str,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::__sdk::FieldDef>, $crate::__sdk::Error> {
                $crate::schema($app, entity)
            }

            fn containers(
                entity: &str,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::__sdk::Container>, $crate::__sdk::Error> {
                $crate::containers($app, entity)
            }

            fn pull(
                req: $crate::__sdk::PullRequest,
            ) -> ::core::result::Result<$crate::__sdk::Page, $crate::__sdk::Error> {
                $crate::pull($app, req)
            }

            fn find(
                entity: &str,
                query: $crate::__sdk::Lookup,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::__sdk::Record>, $crate::__sdk::Error> {
                $crate::find($app, entity, query)
            }

            fn push(
                entity: &str,
                writes: ::std::vec::Vec<$crate::__sdk::Write>,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::__sdk::WriteResult>, $crate::__sdk::Error> {
                $crate::push($app, entity, writes)
            }
        }

        impl $crate::__sdk::BatchLookup for $name {
            fn find_many(
                entity: &str,
                keys: ::std::vec::Vec<$crate::__sdk::Lookup>,
            ) -> ::core::result::Result<
                ::std::vec::Vec<::std::vec::Vec<$crate::__sdk::Record>>,
                $crate::__sdk::Error,
            > {
                $crate::find_many($app, entity, keys)
            }
        }

        $crate::__sdk::export_connector!($name);
        $crate::__sdk::export_batch_lookup!($name);

        #[cfg(test)]
        mod __tandem_freshworks_manifest {
            /// The embedded manifest and `describe` name the same plugin, and the manifest
            /// asks for exactly the Freshworks origins and the API-key profile.
            #[test]
            fn manifest_matches_describe() {
                let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tandem.toml"));
                let manifest: ::toml::Table = text.parse().unwrap();
                let info = <super::$name as $crate::__sdk::Connector>::describe();
                assert_eq!(manifest["name"].as_str(), Some(info.name.as_str()));
                assert_eq!(manifest["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
                // Optional: the component's interfaces carry the version; a line must agree.
                if let Some(contract) = manifest.get("contract") {
                    assert_eq!(contract.as_str(), Some($crate::__sdk::CONTRACT_VERSION));
                }
                let origins: ::std::vec::Vec<&str> = manifest["http"]["origins"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|o| o.as_str())
                    .collect();
                assert_eq!(origins, $crate::ORIGINS);
                assert_eq!(manifest["auth"]["kind"].as_str(), Some("api-key"));
                assert_eq!(manifest["auth"]["template"].as_str(), Some("Token token={secret}"));
            }
        }
    };
}

/// The origins a Freshworks connector's manifest asks for: Suite and Classic accounts,
/// and the `base-url` setting (a simulated account, a proxy).
pub const ORIGINS: [&str; 3] = [
    "https://*.myfreshworks.com",
    "https://*.freshsales.io",
    "setting:base-url",
];

/// Requests per hour of the smallest paid plan (Blossom / Growth); larger plans allow
/// 2,000 or 5,000. The budget is per account, shared by every key and connector.
pub const HOURLY_LIMIT: u32 = 1000;
/// The per-minute burst cap of every plan.
pub const MINUTE_LIMIT: u32 = 400;

/// What the connector of `app` serves. Needs no network and no settings.
pub fn describe(app: App) -> PluginInfo {
    // A call of contacts carries several bulk batches, so that their jobs share the wait
    // (`bulk-jobs-in-flight`); the host bounds a call's requests once it knows what a
    // write costs, so a call of one-request updates stays short.
    let contacts = EntityInfo::new("contacts", "Contacts")
        .incremental()
        .tombstones()
        .page_size(pull::MAX_PAGE)
        .batch_size(push::MAX_CALL as u32);
    let info = PluginInfo::new(app.name(), env!("CARGO_PKG_VERSION"), app.label())
        .rate_limit(HOURLY_LIMIT, 3600)
        .rate_limit(MINUTE_LIMIT, 60);
    match app {
        App::Freshsales => info.entity(contacts).entity(
            EntityInfo::new("leads", "Leads (Freshsales Classic)")
                .incremental()
                .tombstones()
                .page_size(pull::MAX_PAGE)
                .batch_size(push::MAX_BATCH as u32),
        ),
        App::Freshmarketer => info.entity(contacts.with_containers()),
    }
}

/// Checks the settings and the credentials with `GET contacts/filters`, and that a
/// custom marker field exists.
pub fn check(app: App) -> Result<AccountInfo, Error> {
    let settings = Settings::load()?;
    let client = Client::new(settings.clone());
    client.get("contacts/filters")?;
    if settings.marker_field.starts_with("cf_") {
        let metadata = meta::fetch(&client, Entity::Contacts)?;
        if !schema::lists_field(&metadata, &settings.marker_field) {
            return Err(Error::fatal(format!(
                "the marker field `{}` does not exist in {}; create it as a text custom field or set marker-field = external_id",
                settings.marker_field,
                app.label()
            )));
        }
    }
    Ok(AccountInfo::new(
        format!("freshworks:{}", settings.host),
        settings.display_name(),
    ))
}

/// The fields of an entity from `GET settings/<entity>/fields`.
pub fn schema(app: App, entity: &str) -> Result<Vec<FieldDef>, Error> {
    let settings = Settings::load()?;
    let entity = app.entity(entity, settings.edition)?;
    let client = Client::new(settings.clone());
    let metadata = meta::fetch(&client, entity)?;
    Ok(schema::field_defs(
        app,
        entity,
        &metadata,
        &settings.marker_field,
    ))
}

/// Freshmarketer lists (`GET lists`, every page); none for Freshsales.
pub fn containers(app: App, entity: &str) -> Result<Vec<Container>, Error> {
    let settings = Settings::load()?;
    let entity = app.entity(entity, settings.edition)?;
    if !app.has_lists() || entity != Entity::Contacts {
        return Ok(Vec::new());
    }
    let client = Client::new(settings);
    let mut lists = Vec::new();
    // Bounded: 1,000 pages of 100 lists.
    for page in 1..=1000_u32 {
        let body = client.get(&format!("lists?page={page}&per_page={}", pull::MAX_PAGE))?;
        let listing = pull::Listing::parse(body, "lists")?;
        lists.extend(listing.items.iter().filter_map(container));
        let last = listing.items.len() < pull::MAX_PAGE as usize
            || listing.total_pages.is_some_and(|t| u64::from(page) >= t);
        if last {
            break;
        }
    }
    Ok(lists)
}

/// A list object as a container (member count when the app reports one).
pub fn container(list: &Json) -> Option<Container> {
    let id = match list.get("id")? {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.clone(),
        _ => return None,
    };
    let name = list
        .get("name")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned();
    let count = ["contacts_count", "count", "members_count", "total_contacts"]
        .iter()
        .find_map(|k| list.get(*k).and_then(Json::as_u64));
    Some(Container::new(id, name, count))
}
