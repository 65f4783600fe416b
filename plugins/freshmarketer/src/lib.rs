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
//!   `overlap-seconds`, `bulk-upsert`, `bulk-jobs-in-flight` (bulk jobs submitted before the
//!   first is done, default 4), `list-batch-size` (contact ids per list-membership
//!   request, default 100: the API documents no maximum, so lower it if the account refuses
//!   large batches); the API key is attached by the host.
//! - **Requests:** the membership writes of a `push` share requests (per list and
//!   direction, `list-batch-size` ids each); the versions of its checked updates are read
//!   with one search by id per 100.

tandem_freshworks::connector!(
    /// The Freshmarketer connector.
    pub Freshmarketer,
    tandem_freshworks::App::Freshmarketer
);
