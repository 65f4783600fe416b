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

/// The credentials the operator configured for a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// None: requests go out without credentials.
    #[default]
    None,
    /// An API key, placed into the header named by the manifest's `api-key` profile.
    ApiKey(Secret),
    /// OAuth2 refresh-token grant; the host obtains and refreshes the bearer token.
    OAuth2 {
        /// The OAuth client id (not secret, but kept out of the plugin anyway).
        client_id: String,
        /// The OAuth client secret.
        client_secret: Secret,
        /// The long-lived refresh token.
        refresh_token: Secret,
        /// Overrides the manifest's token endpoint (e.g. a simulated account's).
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
}
