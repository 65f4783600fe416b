//! The WIT `config` host interface: a connection's non-secret settings (account domain,
//! base URL, edition). Credentials live in [`super::Credentials`] and never pass through here;
//! as a second line of defence, settings whose names look like secrets are withheld.

use std::collections::BTreeMap;

use super::bindings::config::Host;
use super::state::HostState;

/// The settings a plugin may read.
pub(crate) struct PluginSettings {
    visible: BTreeMap<String, String>,
}

impl PluginSettings {
    /// Keeps every setting except those named like secrets.
    pub(crate) fn new(settings: &BTreeMap<String, String>, connection: &str) -> Self {
        let visible = settings
            .iter()
            .filter(|(k, _)| {
                let secret = looks_secret(k);
                if secret {
                    tracing::warn!(%connection, setting = %k, "setting looks like a secret; withheld from the plugin (put credentials in the connection's credentials)");
                }
                !secret
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self { visible }
    }
}

/// Whether a setting name suggests a credential.
pub fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('_', "-");
    [
        "password",
        "secret",
        "api-key",
        "apikey",
        "access-token",
        "refresh-token",
        "bearer",
    ]
    .iter()
    .any(|needle| k.contains(needle))
        || k == "token"
        || k == "key"
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.conn()?.settings.visible.get(&key).cloned())
    }

    async fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        let conn = self.conn()?;
        Ok(conn
            .settings
            .visible
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_like_settings_are_withheld() {
        let settings: BTreeMap<String, String> = [
            ("domain", "acme.myfreshworks.com"),
            ("base-url", "http://127.0.0.1:1"),
            ("token-url", "http://127.0.0.1:2/token"),
            ("api_key", "k"),
            ("client-secret", "s"),
            ("refresh-token", "r"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let visible = PluginSettings::new(&settings, "c");
        let keys: Vec<_> = visible.visible.keys().map(String::as_str).collect();
        assert_eq!(keys, ["base-url", "domain", "token-url"]);
    }
}
