//! Plugin-wide checks: `describe`, and `check` with wrong and restricted credentials.

use std::collections::BTreeSet;

use crate::conformance::NEEDS_SANDBOX;
use crate::runtime::types::{DeleteDetection, PluginInfo};
use crate::runtime::{Credentials, Secret};

use super::errors::expect_variant;
use super::{Kit, PLUGIN};

impl<'a> Kit<'a> {
    /// `describe`: well-formed capabilities, the manifest's name.
    pub(super) fn describe(&self, info: &PluginInfo) -> Result<String, String> {
        let manifest = self.plugin.manifest();
        if info.name != manifest.name {
            return Err(format!(
                "describe names the plugin `{}` but its manifest says `{}`",
                info.name, manifest.name
            ));
        }
        if info.entities.is_empty() {
            return Err("describe lists no entity".to_owned());
        }
        let mut names = BTreeSet::new();
        for e in &info.entities {
            if e.name.trim().is_empty() {
                return Err("an entity has an empty name".to_owned());
            }
            if !names.insert(e.name.as_str()) {
                return Err(format!("entity `{}` is listed twice", e.name));
            }
            if e.max_page_size == 0 || e.max_batch_size == 0 {
                return Err(format!(
                    "entity `{}` has max-page-size {} and max-batch-size {}; both must be at least 1",
                    e.name, e.max_page_size, e.max_batch_size
                ));
            }
        }
        if let Some(limit) = info
            .rate_limits
            .iter()
            .find(|l| l.requests == 0 || l.per_seconds == 0)
        {
            return Err(format!(
                "rate limit {}/{}s: both numbers must be at least 1",
                limit.requests, limit.per_seconds
            ));
        }
        let entities: Vec<String> = info
            .entities
            .iter()
            .map(|e| {
                let mut caps = vec![
                    format!("page {}", e.max_page_size),
                    format!("batch {}", e.max_batch_size),
                ];
                if e.incremental {
                    caps.push("incremental".into());
                }
                if e.deletes == DeleteDetection::Tombstones {
                    caps.push("tombstones".into());
                }
                if e.containers {
                    caps.push("containers".into());
                }
                format!("{} ({})", e.name, caps.join(", "))
            })
            .collect();
        let limits: Vec<String> = info
            .rate_limits
            .iter()
            .map(|l| format!("{}/{}s", l.requests, l.per_seconds))
            .collect();
        Ok(format!(
            "{} {} for {}: {}; rate limits: {}",
            info.name,
            info.version,
            info.app,
            entities.join(", "),
            if limits.is_empty() {
                "none".to_owned()
            } else {
                limits.join(", ")
            }
        ))
    }

    /// `check` with credentials the app refuses must be `unauthorized`.
    pub(super) async fn wrong_credentials(&mut self) {
        const NAME: &str = "check: wrong credentials -> unauthorized";
        let wrong = match &self.target.credentials {
            Credentials::None => {
                self.skip(PLUGIN, NAME, "the connection has no credentials");
                return;
            }
            Credentials::ApiKey(_) => Credentials::ApiKey(Secret::new(WRONG_KEY)),
            Credentials::Basic { user, .. } => Credentials::Basic {
                user: user.clone(),
                password: Secret::new(WRONG_KEY),
            },
            Credentials::OAuth2 {
                client_id,
                client_secret,
                token_url,
                ..
            } => Credentials::OAuth2 {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                refresh_token: Secret::new(WRONG_KEY),
                token_url: token_url.clone(),
            },
        };
        let result = self
            .expect_check(
                "conformance-wrong-credentials",
                wrong,
                "unauthorized",
                "check succeeded with a made-up credential: call the app in `check` and map its 401 to `unauthorized`",
            )
            .await;
        self.row(PLUGIN, NAME, result);
    }

    /// `check` with credentials that lack permission must be `forbidden`.
    pub(super) async fn restricted_credentials(&mut self) {
        const NAME: &str = "check: restricted credentials -> forbidden";
        match (&self.target.restricted_credentials, self.control()) {
            (Some(restricted), _) => {
                let result = self
                    .expect_check(
                        "conformance-restricted",
                        restricted.clone(),
                        "forbidden",
                        "check succeeded with the credentials of a user without API permission",
                    )
                    .await;
                self.row(PLUGIN, NAME, result);
            }
            (None, None) => self.skip(PLUGIN, NAME, NEEDS_SANDBOX),
            (None, Some(control)) => {
                let reason = format!(
                    "the simulated {} account has no restricted credentials",
                    control.kind()
                );
                self.skip(PLUGIN, NAME, &reason);
            }
        }
    }

    async fn expect_check(
        &self,
        id: &str,
        credentials: Credentials,
        wanted: &str,
        if_ok: &str,
    ) -> Result<String, String> {
        let client = self
            .target
            .connect(self.runtime, self.plugin, id, credentials)
            .map_err(|e| e.to_string())?;
        match client.check().await {
            Ok(_) => Err(if_ok.to_owned()),
            Err(e) => expect_variant(&e, wanted),
        }
    }
}

/// A key no app accepts.
const WRONG_KEY: &str = "tandem-conformance-wrong-key-0000000000";
