//! Percent-encoding of URL components (query values, path segments), with the
//! `percent-encoding` crate.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `text` for use as one query value or one path segment: only the
/// unreserved characters pass, so `&`, `=`, `/`, `+`, `#`, `?` and spaces (`%20`) cannot
/// change the URL's structure.
///
/// ```
/// use tandem_sdk::url::encode;
/// assert_eq!(encode("ann+1@example.com"), "ann%2B1%40example.com");
/// assert_eq!(encode("a b&c/d"), "a%20b%26c%2Fd");
/// assert_eq!(encode("Zoë~_-."), "Zo%C3%AB~_-.");
/// ```
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}
