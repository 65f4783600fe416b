//! Credentials of a connection. They stay in the host: the `http` module attaches them to
//! outbound requests that match the plugin's auth profile; plugins never see them.

use std::fmt;

/// A secret value. `Debug` and `Display` print `[redacted]`; only the host's HTTP layer
/// reads the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    /// The value, for the HTTP layer only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// Whether a plugin's manifest may choose the token endpoint the host sends the refresh
/// token and client secret to, when the operator's credentials name none: only an https
/// URL on an origin the operator granted explicitly (`granted`; a `*` grant approves
/// nothing, since it means "whatever the plugin asks for"). `manifest_url` is the
/// manifest's `token-url` (`setting:K` reads connection setting K). The error is one line
/// saying how to approve one.
pub fn approve_manifest_token_url(
    manifest_url: &str,
    settings: &std::collections::BTreeMap<String, String>,
    granted: impl Fn(&url::Url) -> bool,
) -> Result<url::Url, String> {
    let text = match manifest_url.strip_prefix("setting:") {
        Some(key) => settings.get(key).cloned().ok_or_else(|| {
            format!(
                "the plugin takes its OAuth2 token endpoint from setting `{key}`, which this connection does not set; name the endpoint in the credentials (token-url)"
            )
        })?,
        None => manifest_url.to_owned(),
    };
    let url = url::Url::parse(text.trim())
        .map_err(|e| format!("the plugin's OAuth2 token endpoint `{text}` is not a URL: {e}"))?;
    if url.scheme() != "https" || !granted(&url) {
        return Err(format!(
            "the plugin's manifest sends the refresh token and client secret to {}, which the operator did not approve; name the token endpoint in the connection's credentials (token-url = \"https://…\") or grant its origin explicitly over https",
            url.origin().ascii_serialization()
        ));
    }
    Ok(url)
}

/// The credentials the operator configured for a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// None: requests go out without credentials.
    #[default]
    None,
    /// An API key, placed into the header named by the manifest's `api-key` profile, or
    /// sent as `Bearer KEY` by its `bearer` profile.
    ApiKey(Secret),
    /// HTTP Basic: the host encodes `user:password` itself (the operator never does).
    Basic {
        /// The user name; `None`: the manifest's fixed one.
        user: Option<String>,
        /// The password or API key.
        password: Secret,
    },
    /// OAuth2 refresh-token grant; the host obtains and refreshes the bearer token.
    OAuth2 {
        /// The OAuth client id (not secret, but kept out of the plugin anyway).
        client_id: String,
        /// The OAuth client secret.
        client_secret: Secret,
        /// The long-lived refresh token.
        refresh_token: Secret,
        /// The token endpoint the operator approved (e.g. a simulated account's); `None`:
        /// the manifest's, only when [`approve_manifest_token_url`] accepts it.
        token_url: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_everywhere() {
        let creds = Credentials::OAuth2 {
            client_id: "id".into(),
            client_secret: Secret::new("s3cr3t-client"),
            refresh_token: Secret::new("r3fr3sh"),
            token_url: None,
        };
        let debug = format!("{creds:?} {:?} {}", Secret::new("k3y"), Secret::new("k3y"));
        for leaked in ["s3cr3t-client", "r3fr3sh", "k3y"] {
            assert!(!debug.contains(leaked), "{debug}");
        }
        assert!(debug.contains("[redacted]"));
        assert_eq!(Secret::new("k3y").expose(), "k3y");
    }

    #[test]
    fn a_manifest_token_url_needs_https_and_an_explicit_grant() {
        let settings = [("token".to_owned(), "https://auth.example/t".to_owned())].into();
        let granted = |u: &url::Url| u.host_str() == Some("auth.example");
        assert!(
            approve_manifest_token_url("https://auth.example/token", &settings, granted).is_ok()
        );
        assert!(approve_manifest_token_url("setting:token", &settings, granted).is_ok());
        let err = approve_manifest_token_url("https://evil.example/token", &settings, granted)
            .unwrap_err();
        assert!(
            err.contains("https://evil.example") && err.contains("token-url"),
            "{err}"
        );
        assert!(
            approve_manifest_token_url("http://auth.example/token", &settings, granted).is_err()
        );
        let err = approve_manifest_token_url("setting:nope", &settings, granted).unwrap_err();
        assert!(err.contains("setting `nope`"), "{err}");
    }
}
