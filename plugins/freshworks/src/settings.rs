//! Connection settings, read from the host's `config` interface (never secrets).
//!
//! | Key               | Meaning                                                                 |
//! |-------------------|-------------------------------------------------------------------------|
//! | `domain`          | Account domain: `acme`, `acme.myfreshworks.com` or `acme.freshsales.io` |
//! | `edition`         | `suite` (default; `https://<domain>.myfreshworks.com/crm/sales/api/`) or `classic` (`https://<domain>.freshsales.io/api/`) |
//! | `base-url`        | API root used instead of `domain` (simulated accounts, proxies)          |
//! | `marker-field`    | Where the engine marker is stored: `external_id` (default) or a `cf_*` text field |
//! | `overlap-seconds` | Look-back of incremental listings (default 120)                          |
//! | `bulk-upsert`     | `true` (default) to create batches through `bulk_upsert`, `false` for one upsert per record |
//! | `bulk-jobs-in-flight` | Most bulk-upsert jobs (of 100 creates each) submitted before the first is done (default 4, 1–4; 1: one job at a time). Jobs in flight add no requests |
//! | `list-batch-size` | Most contact ids per `PUT lists/<id>/add_contacts` / `remove_contacts` (default 100, 1–1000); the API does not document its maximum |
//! | `list-joins-move-updated-at` | `true` (default): a contact that joins a list gets a new `updated_at`, so incremental list listings see it (plus a member-count check); `false`: every incremental run reads a list in full |
//!
//! Parsing is pure ([`Settings::from_pairs`]) so that it is unit tested natively.

use tandem_sdk::Error;
use url::Url;

/// Default look-back of an incremental listing, in seconds. The checkpoint is the
/// server's own `updated_at`, so this covers same-second ties and late index updates,
/// not clock skew.
pub const DEFAULT_OVERLAP_SECS: i64 = 120;

/// Default number of contact ids per list-membership request
/// (`PUT lists/<id>/add_contacts` / `remove_contacts`). The API documents the body
/// `{"ids": [...]}` (docs/freshworks-api.md §6.3) but no maximum, so this is the API's batch size
/// elsewhere (bulk upsert in batches of 100, docs/freshworks-api.md §5.4; `per_page` ≤ 100, §7.1), and the
/// `list-batch-size` setting overrides it (up to [`MAX_LIST_BATCH`]).
pub const DEFAULT_LIST_BATCH: usize = 100;

/// Default number of bulk-upsert jobs in flight at once. The API answers a bulk upsert
/// with a job and processes it asynchronously (docs/freshworks-api.md §3.7) but documents
/// no limit on the jobs an account runs at once, so this is a modest number that cuts the
/// wait of a large load by that factor (each job takes about a second) without adding a
/// request: every job still costs its upsert, its polls and its read-back, and the host
/// paces each request against the account's budget.
pub const DEFAULT_BULK_JOBS_IN_FLIGHT: usize = 4;

/// The largest `bulk-jobs-in-flight` accepted: a push call of contacts carries at most this
/// many bulk batches ([`crate::push::MAX_CALL`] writes), so the setting can only lower it.
pub const MAX_BULK_JOBS_IN_FLIGHT: usize = 4;

/// The largest `list-batch-size` accepted.
pub const MAX_LIST_BATCH: usize = 1000;

/// Which Freshsales product the account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// Freshsales Suite / Freshworks CRM (`*.myfreshworks.com`): contacts, no leads.
    Suite,
    /// Freshsales Classic (`*.freshsales.io`): contacts and leads.
    Classic,
}

impl Edition {
    /// `suite` or `classic`.
    pub fn name(self) -> &'static str {
        match self {
            Edition::Suite => "suite",
            Edition::Classic => "classic",
        }
    }

    fn parse(text: &str) -> Result<Self, Error> {
        match text.trim().to_ascii_lowercase().as_str() {
            "suite" | "crm" | "freshworks" => Ok(Edition::Suite),
            "classic" => Ok(Edition::Classic),
            other => Err(Error::fatal(format!(
                "connection setting `edition` is `{other}`; use `suite` (myfreshworks.com) or `classic` (freshsales.io)"
            ))),
        }
    }
}

/// The resolved settings of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// API root without trailing slash, e.g. `https://acme.myfreshworks.com/crm/sales/api`.
    pub base: String,
    /// Suite or Classic.
    pub edition: Edition,
    /// Host (and port) of the API: the account identity shared by every connector of
    /// the same Freshworks account (one rate budget).
    pub host: String,
    /// Field holding the engine marker: `external_id` or a `cf_*` field.
    pub marker_field: String,
    /// Look-back of incremental listings, in seconds.
    pub overlap_secs: i64,
    /// Use `bulk_upsert` for batches of creates.
    pub bulk_upsert: bool,
    /// Most bulk-upsert jobs in flight at once (1: one at a time).
    pub bulk_jobs_in_flight: usize,
    /// Most contact ids per list-membership request.
    pub list_batch: usize,
    /// A contact joining a list moves its `updated_at` (the documented assumption; not
    /// verified against the live API).
    pub list_joins_move_updated_at: bool,
}

impl Settings {
    /// Reads the settings of the current connection from the host.
    pub fn load() -> Result<Self, Error> {
        Self::from_pairs(&tandem_sdk::config::all())
    }

    /// Resolves settings from `(key, value)` pairs.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, Error> {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let edition = get("edition").map(Edition::parse).transpose()?;
        let (base, edition) = match (get("base-url"), get("domain")) {
            (Some(base), _) => from_base_url(base, edition)?,
            (None, Some(domain)) => from_domain(domain, edition)?,
            (None, None) => {
                return Err(Error::fatal(
                    "connection setting `domain` is not set; set `domain` (and `edition`) or `base-url`",
                ));
            }
        };
        let host = match base.port() {
            Some(port) => format!("{}:{port}", base.host_str().unwrap_or_default()),
            None => base.host_str().unwrap_or_default().to_owned(),
        };
        let marker_field = get("marker-field").unwrap_or("external_id").to_owned();
        if !valid_marker_field(&marker_field) {
            return Err(Error::fatal(format!(
                "connection setting `marker-field` is `{marker_field}`; use `external_id` or a custom text field such as `cf_tandem_id`"
            )));
        }
        let overlap_secs = match get("overlap-seconds") {
            None => DEFAULT_OVERLAP_SECS,
            Some(text) => text.parse::<i64>().ok().filter(|s| (0..=86_400).contains(s)).ok_or_else(|| {
                Error::fatal(format!(
                    "connection setting `overlap-seconds` is `{text}`; use a number of seconds from 0 to 86400"
                ))
            })?,
        };
        let bulk_upsert = flag(get("bulk-upsert"), "bulk-upsert", true)?;
        let list_joins_move_updated_at = flag(
            get("list-joins-move-updated-at"),
            "list-joins-move-updated-at",
            true,
        )?;
        let bulk_jobs_in_flight = match get("bulk-jobs-in-flight") {
            None => DEFAULT_BULK_JOBS_IN_FLIGHT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_BULK_JOBS_IN_FLIGHT).contains(n))
                .ok_or_else(|| {
                    Error::fatal(format!(
                        "connection setting `bulk-jobs-in-flight` is `{text}`; use a number of jobs from 1 to {MAX_BULK_JOBS_IN_FLIGHT}"
                    ))
                })?,
        };
        let list_batch = match get("list-batch-size") {
            None => DEFAULT_LIST_BATCH,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIST_BATCH).contains(n))
                .ok_or_else(|| {
                    Error::fatal(format!(
                        "connection setting `list-batch-size` is `{text}`; use a number of contact ids from 1 to {MAX_LIST_BATCH}"
                    ))
                })?,
        };
        Ok(Settings {
            base: base.as_str().trim_end_matches('/').to_owned(),
            edition,
            host,
            marker_field,
            overlap_secs,
            bulk_upsert,
            bulk_jobs_in_flight,
            list_batch,
            list_joins_move_updated_at,
        })
    }

    /// The absolute URL of an API path (`contacts/view/1?page=2`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// A human description of the account, e.g. `acme.myfreshworks.com (Suite)`.
    pub fn display_name(&self) -> String {
        let edition = match self.edition {
            Edition::Suite => "Suite",
            Edition::Classic => "Classic",
        };
        format!("{} ({edition})", self.host)
    }
}

/// `base-url`: taken as is; the edition comes from the setting, else from the path
/// (`.../crm/sales/api` is Suite) or the host (`*.freshsales.io` is Classic).
fn from_base_url(text: &str, edition: Option<Edition>) -> Result<(Url, Edition), Error> {
    let url = Url::parse(text).map_err(|e| {
        Error::fatal(format!(
            "connection setting `base-url` is not a URL ({e}): `{text}`"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::fatal(format!(
            "connection setting `base-url` must be an http(s) URL with a host, got `{text}`"
        )));
    }
    let path = url.path().trim_end_matches('/');
    let host = url.host_str().unwrap_or_default();
    let edition = edition.unwrap_or(if path.ends_with("/crm/sales/api") {
        Edition::Suite
    } else if host.ends_with(".freshsales.io") || path == "/api" {
        Edition::Classic
    } else {
        Edition::Suite
    });
    Ok((url, edition))
}

/// `domain` (+ `edition`): `acme` gets the edition's host suffix; a full host keeps it.
fn from_domain(text: &str, edition: Option<Edition>) -> Result<(Url, Edition), Error> {
    let host = text
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !host.starts_with(['.', '-']);
    if !valid {
        return Err(Error::fatal(format!(
            "connection setting `domain` is `{text}`; use the account name, e.g. `acme` for acme.myfreshworks.com"
        )));
    }
    let edition = edition.unwrap_or(if host.ends_with(".freshsales.io") {
        Edition::Classic
    } else {
        Edition::Suite
    });
    let host = if host.contains('.') {
        host
    } else {
        match edition {
            Edition::Suite => format!("{host}.myfreshworks.com"),
            Edition::Classic => format!("{host}.freshsales.io"),
        }
    };
    let path = match edition {
        Edition::Suite => "crm/sales/api",
        Edition::Classic => "api",
    };
    let url = Url::parse(&format!("https://{host}/{path}")).map_err(|e| {
        Error::fatal(format!(
            "connection setting `domain` gives an invalid URL ({e}): `{text}`"
        ))
    })?;
    Ok((url, edition))
}

/// A `true` / `false` setting (`yes`/`no`, `1`/`0`, `on`/`off` too).
fn flag(value: Option<&str>, key: &str, default: bool) -> Result<bool, Error> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "yes" | "1" | "on") => Ok(true),
        Some("false" | "no" | "0" | "off") => Ok(false),
        Some(other) => Err(Error::fatal(format!(
            "connection setting `{key}` is `{other}`; use `true` or `false`"
        ))),
    }
}

fn valid_marker_field(name: &str) -> bool {
    name == "external_id"
        || name.strip_prefix("cf_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// (settings, base, edition, host).
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Edition, &'a str);

    #[test]
    fn base_urls_and_editions() {
        let cases: &[Case] = &[
            (
                &[("domain", "acme")],
                "https://acme.myfreshworks.com/crm/sales/api",
                Edition::Suite,
                "acme.myfreshworks.com",
            ),
            (
                &[("domain", "acme"), ("edition", "suite")],
                "https://acme.myfreshworks.com/crm/sales/api",
                Edition::Suite,
                "acme.myfreshworks.com",
            ),
            (
                &[("domain", "Acme"), ("edition", "Classic")],
                "https://acme.freshsales.io/api",
                Edition::Classic,
                "acme.freshsales.io",
            ),
            (
                &[("domain", "acme.freshsales.io")],
                "https://acme.freshsales.io/api",
                Edition::Classic,
                "acme.freshsales.io",
            ),
            (
                &[("domain", "https://acme.myfreshworks.com/crm/sales")],
                "https://acme.myfreshworks.com/crm/sales/api",
                Edition::Suite,
                "acme.myfreshworks.com",
            ),
            (
                &[("base-url", "http://127.0.0.1:4100/crm/sales/api/")],
                "http://127.0.0.1:4100/crm/sales/api",
                Edition::Suite,
                "127.0.0.1:4100",
            ),
            (
                &[("base-url", "http://127.0.0.1:4101/api")],
                "http://127.0.0.1:4101/api",
                Edition::Classic,
                "127.0.0.1:4101",
            ),
            (
                &[
                    ("base-url", "http://127.0.0.1:4101/api"),
                    ("edition", "suite"),
                ],
                "http://127.0.0.1:4101/api",
                Edition::Suite,
                "127.0.0.1:4101",
            ),
            // base-url wins over domain.
            (
                &[("base-url", "http://localhost:9/x"), ("domain", "acme")],
                "http://localhost:9/x",
                Edition::Suite,
                "localhost:9",
            ),
        ];
        for (input, base, edition, host) in cases {
            let s =
                Settings::from_pairs(&pairs(input)).unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
            assert_eq!(
                (s.base.as_str(), s.edition, s.host.as_str()),
                (*base, *edition, *host),
                "{input:?}"
            );
        }
    }

    #[test]
    fn defaults_and_options() {
        let s = Settings::from_pairs(&pairs(&[("domain", "acme")])).unwrap();
        assert_eq!(s.marker_field, "external_id");
        assert_eq!(s.overlap_secs, DEFAULT_OVERLAP_SECS);
        assert!(s.bulk_upsert);
        assert_eq!(s.list_batch, DEFAULT_LIST_BATCH);
        assert_eq!(s.bulk_jobs_in_flight, DEFAULT_BULK_JOBS_IN_FLIGHT);
        assert!(s.list_joins_move_updated_at);
        assert_eq!(
            s.url("/contacts/5"),
            "https://acme.myfreshworks.com/crm/sales/api/contacts/5"
        );
        assert_eq!(s.display_name(), "acme.myfreshworks.com (Suite)");
        let s = Settings::from_pairs(&pairs(&[
            ("domain", "acme"),
            ("marker-field", "cf_tandem_id"),
            ("overlap-seconds", "30"),
            ("bulk-upsert", "false"),
            ("list-batch-size", "250"),
            ("list-joins-move-updated-at", "false"),
            ("bulk-jobs-in-flight", "1"),
        ]))
        .unwrap();
        assert_eq!(s.bulk_jobs_in_flight, 1);
        assert_eq!(
            (
                s.marker_field.as_str(),
                s.overlap_secs,
                s.bulk_upsert,
                s.list_batch,
                s.list_joins_move_updated_at
            ),
            ("cf_tandem_id", 30, false, 250, false)
        );
    }

    #[test]
    fn bad_settings_are_fatal_one_line_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "`domain` is not set"),
            (&[("domain", "  ")], "`domain` is not set"),
            (&[("domain", "ac me")], "`domain` is `ac me`"),
            (
                &[("domain", "acme"), ("edition", "pro")],
                "`edition` is `pro`",
            ),
            (&[("base-url", "ftp://x")], "must be an http(s) URL"),
            (&[("base-url", "not a url")], "`base-url` is not a URL"),
            (
                &[("domain", "acme"), ("marker-field", "email")],
                "`marker-field` is `email`",
            ),
            (
                &[("domain", "acme"), ("overlap-seconds", "-1")],
                "`overlap-seconds` is `-1`",
            ),
            (
                &[("domain", "acme"), ("bulk-upsert", "maybe")],
                "`bulk-upsert` is `maybe`",
            ),
            (
                &[
                    ("domain", "acme"),
                    ("list-joins-move-updated-at", "sometimes"),
                ],
                "`list-joins-move-updated-at` is `sometimes`",
            ),
            (
                &[("domain", "acme"), ("bulk-jobs-in-flight", "0")],
                "`bulk-jobs-in-flight` is `0`; use a number of jobs from 1 to 4",
            ),
            (
                &[("domain", "acme"), ("bulk-jobs-in-flight", "many")],
                "`bulk-jobs-in-flight` is `many`",
            ),
            (
                &[("domain", "acme"), ("list-batch-size", "0")],
                "`list-batch-size` is `0`",
            ),
            (
                &[("domain", "acme"), ("list-batch-size", "5000")],
                "from 1 to 1000",
            ),
        ];
        for (input, expected) in cases {
            let err = Settings::from_pairs(&pairs(input)).unwrap_err();
            assert!(matches!(err, Error::Fatal(_)), "{input:?}: {err:?}");
            assert!(
                err.message().contains(expected),
                "{input:?}: {}",
                err.message()
            );
            assert!(!err.message().contains('\n'));
        }
    }
}
