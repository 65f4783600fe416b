//! Non-secret settings chosen by the operator: a connector's connection settings (an
//! account domain, a base URL, an edition), or a mapper's settings for the sync that
//! uses it (`[syncs.NAME.mapper-settings.PLUGIN]`, e.g. a default country code).
//! Settings the manifest declares (`[settings.NAME]`) arrive checked, with their
//! defaults applied. Credentials are never readable here.
//!
//! ```no_run
//! # fn main() -> Result<(), tandem_sdk::Error> {
//! let base = tandem_sdk::config::require_url("base-url")?;
//! let contacts = format!("{base}/contacts");
//! # let _ = contacts;
//! # Ok(())
//! # }
//! ```

use crate::Error;

#[cfg(target_arch = "wasm32")]
use crate::__bindings::connector::tandem::plugin::config as host;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::config as host;

/// One setting, or `None`.
pub fn get(key: &str) -> Option<String> {
    host::get(key)
}

/// Every setting, sorted by key.
pub fn all() -> Vec<(String, String)> {
    host::all()
}

/// A setting that must be present and non-empty.
pub fn require(key: &str) -> Result<String, Error> {
    match get(key) {
        Some(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        _ => Err(Error::fatal(format!(
            "connection setting `{key}` is not set; add it to the connection's settings"
        ))),
    }
}

/// A setting holding an `http(s)` URL, without its trailing `/`.
pub fn require_url(key: &str) -> Result<String, Error> {
    let value = require(key)?;
    if !(value.starts_with("https://") || value.starts_with("http://")) {
        return Err(Error::fatal(format!(
            "connection setting `{key}` must be an http(s) URL, got `{value}`"
        )));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_and_urls() {
        crate::testing::reset();
        crate::testing::set_config("base-url", "https://api.example.com/v1/");
        crate::testing::set_config("blank", "  ");
        crate::testing::set_config("domain", "acme");
        assert_eq!(
            require_url("base-url").unwrap(),
            "https://api.example.com/v1"
        );
        assert!(matches!(require("blank"), Err(Error::Fatal(_))));
        assert!(
            require("missing")
                .unwrap_err()
                .message()
                .contains("`missing` is not set")
        );
        assert!(matches!(require_url("domain"), Err(Error::Fatal(_))));
        assert_eq!(all().len(), 3);
        assert_eq!(all()[0].0, "base-url");
    }
}
