//! Error mapping: faults injected through the control API must map to the contract's
//! variants.

use crate::conformance::NEEDS_SANDBOX;
use crate::conformance::sandbox_api::Fault;
use crate::runtime::client::describe_plugin_error;
use crate::runtime::types::{EntityInfo, Error as PluginError, PullRequest};
use crate::runtime::{CallError, ConnectorClient};

use super::{Kit, PLUGIN};

impl<'a> Kit<'a> {
    /// Faults injected through the control API must map to the contract's variants.
    pub(super) async fn error_mapping(&mut self, client: &ConnectorClient, entity: &EntityInfo) {
        let cases = [
            (
                "error: 429 -> rate-limited",
                Fault::RateLimited,
                "rate-limited",
            ),
            ("error: 503 -> transient", Fault::Unavailable, "transient"),
            (
                "error: truncated JSON -> transient",
                Fault::Truncated,
                "transient",
            ),
        ];
        const REVOKED: &str = "error: revoked credentials -> unauthorized";
        let Some(control) = self.control() else {
            for (name, _, _) in cases {
                self.skip(PLUGIN, name, NEEDS_SANDBOX);
            }
            self.skip(PLUGIN, REVOKED, NEEDS_SANDBOX);
            return;
        };
        let request = PullRequest {
            entity: entity.name.clone(),
            container: None,
            cursor: None,
            full: true,
            page_size: entity.max_page_size,
        };
        for (name, fault, wanted) in cases {
            let result = async {
                control.clear_faults().await.map_err(|e| e.to_string())?;
                control.inject(fault).await.map_err(|e| e.to_string())?;
                let outcome = client.pull(&request).await;
                control.clear_faults().await.map_err(|e| e.to_string())?;
                match outcome {
                    Ok(_) => Err(format!(
                        "pull succeeded although its first request to {} got the fault",
                        control.api_prefix()
                    )),
                    Err(e) => expect_variant(&e, wanted),
                }
            }
            .await;
            self.row(PLUGIN, name, result.map(|d| format!("pull: {d}")));
        }
        let result = async {
            control
                .revoke_credentials()
                .await
                .map_err(|e| e.to_string())?;
            let outcome = client.check().await;
            control
                .restore_credentials()
                .await
                .map_err(|e| e.to_string())?;
            match outcome {
                Ok(_) => {
                    Err("check succeeded after the account revoked the credentials".to_owned())
                }
                Err(e) => expect_variant(&e, "unauthorized"),
            }
        }
        .await;
        self.row(PLUGIN, REVOKED, result.map(|d| format!("check: {d}")));
    }
}

/// The name of an error's case, as in the contract.
fn variant(error: &PluginError) -> &'static str {
    match error {
        PluginError::Unauthorized(_) => "unauthorized",
        PluginError::Forbidden(_) => "forbidden",
        PluginError::NotFound(_) => "not-found",
        PluginError::RateLimited(_) => "rate-limited",
        PluginError::Invalid(_) => "invalid",
        PluginError::Conflict(_) => "conflict",
        PluginError::CursorExpired(_) => "cursor-expired",
        PluginError::Transient(_) => "transient",
        PluginError::Fatal(_) => "fatal",
    }
}

/// Pass when the call failed with the `wanted` case; the detail is the plugin's error.
pub(super) fn expect_variant(error: &CallError, wanted: &str) -> Result<String, String> {
    match error.plugin_error() {
        Some(e) if variant(e) == wanted => Ok(describe_plugin_error(e)),
        Some(e) => Err(format!(
            "expected {wanted}, got {}",
            describe_plugin_error(e)
        )),
        None => Err(format!("expected {wanted}, the call failed: {error}")),
    }
}
