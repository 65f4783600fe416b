//! Tandem's first-party Freshmarketer connector (Freshmarketer in the Freshworks bundle).
//!
//! Freshmarketer's contacts and lists are the Freshworks CRM API
//! (`https://<domain>.myfreshworks.com/crm/sales/api/`), so this plugin is a thin layer
//! over `tandem-freshworks` (see that crate for the field mapping, cursors, request
//! counts and error mapping). The legacy standalone product (`*.freshmarketer.com`,
//! `fm-token` header) is not supported.
//!
//! - **Entity:** `contacts`, with marketing **lists** as containers: `containers` lists
//!   them, `pull` with a container lists one list's members, `push` adds and removes
//!   members (`add-to-container` / `remove-from-container`, and `create-op.containers`).
//!   The API cannot list removals from a list, so they are not reported as deletions.
//! - **Consent:** `subscription_status` is the contract's consent field (well-known
//!   `consent`), as text:
//!
//!   | `subscription_status` | consent          |
//!   |-----------------------|------------------|
//!   | 0 Unsubscribed        | `unsubscribed`   |
//!   | 1 Subscribed          | `subscribed`     |
//!   | 2 Not subscribed      | `not-subscribed` |
//!   | 3 Reported as spam    | `spam`           |
//!   | 4 Bounced             | `bounced`        |
//!
//!   A contact with `do_not_disturb: true` reads as `unsubscribed` when its status is
//!   `subscribed` or `not-subscribed` (DND forbids marketing email); `spam` and
//!   `bounced` stay as they are. `do_not_disturb`, when the account has it, is also its
//!   own field (well-known `dnd`). Writing consent writes the code; a sync never
//!   re-subscribes anybody (the host's rule: consent only tightens).
//! - **Settings:** `domain` (or `base-url`), optional `marker-field`,
//!   `overlap-seconds`, `bulk-upsert`; the API key is attached by the host.

use tandem_freshworks::App;
use tandem_sdk::{
    AccountInfo, Connector, Container, Error, FieldDef, Lookup, Page, PluginInfo, PullRequest,
    Record, Write, WriteResult,
};

/// The Freshmarketer connector.
pub struct Freshmarketer;

const APP: App = App::Freshmarketer;

impl Connector for Freshmarketer {
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

tandem_sdk::export_connector!(Freshmarketer);

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded manifest and `describe` name the same plugin, and the manifest asks
    /// for exactly the Freshworks origins and the API-key profile.
    #[test]
    fn manifest_matches_describe() {
        let manifest: toml::Table = include_str!("../tandem.toml").parse().unwrap();
        let info = Freshmarketer::describe();
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
