//! Tandem's first-party Freshsales connector (Freshsales Suite / Freshworks CRM and
//! Freshsales Classic).
//!
//! A thin plugin: it maps the contract's calls onto the shared Freshworks client and
//! mapping in `tandem-freshworks` (see that crate for the field mapping, cursors,
//! request counts and error mapping).
//!
//! - **Entities:** `contacts`; `leads` on Classic (on Suite, leads are contacts in the
//!   lifecycle stage "Lead").
//! - **Settings:** `domain` + `edition` (`suite`: `https://<domain>.myfreshworks.com/crm/sales/api/`,
//!   `classic`: `https://<domain>.freshsales.io/api/`), or `base-url`; optional
//!   `marker-field` (default `external_id`), `overlap-seconds` (default 120),
//!   `bulk-upsert` (default `true`).
//! - **Credentials:** the API key, attached by the host as
//!   `Authorization: Token token=<key>` (manifest `[auth]`).
//! - **Pull:** full listings through the "All Contacts" / "All Leads" view at 100 per
//!   page; incremental listings by `updated_at` with a look-back overlap; deletions from
//!   the recycle bin (`deleted` filter) as tombstones.
//! - **Push:** upserts keyed by email (bulk upsert for batches of contacts), updates,
//!   deletes (bulk destroy), DND (`do_not_disturb`) and consent (`subscription_status`)
//!   as field updates; every write returns the stored record.

use tandem_freshworks::App;
use tandem_sdk::{
    AccountInfo, Connector, Container, Error, FieldDef, Lookup, Page, PluginInfo, PullRequest,
    Record, Write, WriteResult,
};

/// The Freshsales connector.
pub struct Freshsales;

const APP: App = App::Freshsales;

impl Connector for Freshsales {
    fn describe() -> PluginInfo {
        tandem_freshworks::describe(APP)
    }

    fn check() -> Result<AccountInfo, Error> {
        tandem_freshworks::check(APP)
    }

    fn schema(entity: &str) -> Result<Vec<FieldDef>, Error> {
        tandem_freshworks::schema(APP, entity)
    }

    fn containers(entity: &str) -> Result<Vec<Container>, Error> {
        tandem_freshworks::containers(APP, entity)
    }

    fn pull(req: PullRequest) -> Result<Page, Error> {
        tandem_freshworks::pull(APP, req)
    }

    fn find(entity: &str, query: Lookup) -> Result<Vec<Record>, Error> {
        tandem_freshworks::find(APP, entity, query)
    }

    fn push(entity: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>, Error> {
        tandem_freshworks::push(APP, entity, writes)
    }
}

tandem_sdk::export_connector!(Freshsales);

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded manifest and `describe` name the same plugin, and the manifest asks
    /// for exactly the Freshworks origins and the API-key profile.
    #[test]
    fn manifest_matches_describe() {
        let manifest: toml::Table = include_str!("../tandem.toml").parse().unwrap();
        let info = Freshsales::describe();
        assert_eq!(manifest["name"].as_str(), Some(info.name.as_str()));
        assert_eq!(
            manifest["version"].as_str(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            manifest["contract"].as_str(),
            Some(tandem_sdk::CONTRACT_VERSION)
        );
        let origins: Vec<&str> = manifest["http"]["origins"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.as_str())
            .collect();
        assert_eq!(
            origins,
            [
                "https://*.myfreshworks.com",
                "https://*.freshsales.io",
                "setting:base-url"
            ]
        );
        assert_eq!(manifest["auth"]["kind"].as_str(), Some("api-key"));
        assert_eq!(
            manifest["auth"]["template"].as_str(),
            Some("Token token={secret}")
        );
    }
}
