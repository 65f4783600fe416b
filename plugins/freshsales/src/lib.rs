//! Tandem's first-party Freshsales connector (Freshsales Suite / Freshworks CRM and
//! Freshsales Classic).
//!
//! One line: `tandem_freshworks::connector!` maps the contract's calls onto the shared Freshworks client and
//! mapping in `tandem-freshworks` (see that crate for the field mapping, cursors,
//! request counts and error mapping).
//!
//! - **Entities:** `contacts`; `leads` on Classic (on Suite, leads are contacts in the
//!   lifecycle stage "Lead").
//! - **Settings:** `domain` + `edition` (`suite`: `https://<domain>.myfreshworks.com/crm/sales/api/`,
//!   `classic`: `https://<domain>.freshsales.io/api/`), or `base-url`; optional
//!   `marker-field` (default `external_id`), `overlap-seconds` (default 120),
//!   `bulk-upsert` (default `true`), `bulk-jobs-in-flight` (bulk jobs submitted before the
//!   first is done, default 4; they share the wait and add no request).
//! - **Credentials:** the API key, attached by the host as
//!   `Authorization: Token token=<key>` (manifest `[auth]`).
//! - **Pull:** full listings through the "All Contacts" / "All Leads" view at 100 per
//!   page; incremental listings by `updated_at` with a look-back overlap; deletions from
//!   the recycle bin (`deleted` filter) as tombstones.
//! - **Push:** upserts keyed by email (bulk upsert for batches of contacts), updates,
//!   deletes (bulk destroy), DND (`do_not_disturb`) and consent (`subscription_status`)
//!   as field updates; every write returns the stored record. The current versions of
//!   the updates of one call (`if-version`) are read with one filtered search by id per
//!   100, not one `GET` each.

tandem_freshworks::connector!(
    /// The Freshsales connector.
    pub Freshsales,
    tandem_freshworks::App::Freshsales
);
