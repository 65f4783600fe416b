//! Error mapping: the faults an app answers with must map to the contract's variants. The
//! kit injects them with its own proxy in front of the target's base URL
//! ([`crate::conformance::proxy`]), so they run against any API; a simulated account also
//! revokes the credentials for real through its control API.

use std::time::Duration;

use axum::http::HeaderName;

use crate::conformance::proxy::{FaultProxy, ProxyFault};
use crate::runtime::client::describe_plugin_error;
use crate::runtime::manifest::AuthProfile;
use crate::runtime::types::{EntityInfo, Error as PluginError, PullRequest};
use crate::runtime::{CallError, ConnectorClient, ConnectorLimits};

use super::{Kit, PLUGIN};

/// The wait the kit's 429 asks for.
const RETRY_AFTER_SECS: u32 = 7;
/// How long the timeout check's connection waits for an answer, and how long the proxy
/// holds one back.
const KIT_HTTP_TIMEOUT: Duration = Duration::from_secs(2);
const STALL: Duration = Duration::from_secs(6);

const REVOKED: &str = "error: revoked credentials -> unauthorized";

impl<'a> Kit<'a> {
    /// The faults, injected on the first entity's full listing (and `check`).
    pub(super) async fn error_mapping(&mut self, client: &ConnectorClient, entity: &EntityInfo) {
        let cases = [
            (
                "error: 429 with Retry-After -> rate-limited",
                ProxyFault::RateLimited {
                    retry_after: Some(RETRY_AFTER_SECS),
                },
                "rate-limited",
            ),
            (
                "error: 429 without Retry-After -> rate-limited",
                ProxyFault::RateLimited { retry_after: None },
                "rate-limited",
            ),
            (
                "error: 503 -> transient",
                ProxyFault::Unavailable,
                "transient",
            ),
            (
                "error: truncated JSON -> transient",
                ProxyFault::Truncated,
                "transient",
            ),
            (
                "error: timeout -> transient",
                ProxyFault::Stall(STALL),
                "transient",
            ),
        ];
        let Some(base) = self.target.settings.get("base-url").cloned() else {
            for (name, _, _) in &cases {
                self.skip(
                    PLUGIN,
                    name,
                    "the target has no base-url: give one (--base-url) so that the kit's fault proxy can stand in front of it",
                );
            }
            self.revoked(client, None).await;
            return;
        };
        // A replay has no upstream: the recording holds what the proxy's faults gave
        // the plugin, and the connections get the recorded proxy's base URL again.
        let replaying = self.target.replaying();
        let proxy = if replaying {
            None
        } else {
            match FaultProxy::start(&base).await {
                Ok(p) => Some(p),
                Err(e) => {
                    self.row(PLUGIN, "error mapping", Err(e.to_string()));
                    return;
                }
            }
        };
        let through = match &proxy {
            Some(proxy) => self.target.through(proxy),
            None => self.target.clone(),
        };
        let seen = || match (&proxy, &self.target.tape) {
            (Some(p), _) => p.requests(),
            (None, Some(tape)) => tape.requests(),
            (None, None) => 0,
        };
        let set = |fault: Option<ProxyFault>| {
            if let Some(p) = &proxy {
                p.set(fault);
            }
        };
        let connect = |limits: ConnectorLimits| {
            through.connect_with(
                self.runtime,
                self.plugin,
                "conformance-faults",
                self.target.credentials.clone(),
                limits,
            )
        };
        let (proxied, impatient) = match (
            connect(ConnectorLimits::default()),
            connect(ConnectorLimits {
                http_timeout: KIT_HTTP_TIMEOUT,
                ..ConnectorLimits::default()
            }),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                self.row(PLUGIN, "error mapping", Err(e.to_string()));
                return;
            }
        };
        let request = PullRequest {
            entity: entity.name.clone(),
            container: None,
            cursor: None,
            full: true,
            page_size: entity.max_page_size,
        };
        for (name, fault, wanted) in cases {
            let stall = matches!(fault, ProxyFault::Stall(_));
            let client = if stall { &impatient } else { &proxied };
            let before = seen();
            set(Some(fault.clone()));
            let outcome = client.pull(&request).await;
            set(None);
            if seen() == before {
                self.skip(
                    PLUGIN,
                    name,
                    "the plugin sent no request to its base-url setting, so the kit's fault proxy saw none: run the kit against --sandbox",
                );
                continue;
            }
            let result = match outcome {
                Ok(_) => Err(format!(
                    "pull succeeded although every request to {base} got the fault"
                )),
                Err(e) => expect_variant(&e, wanted).and_then(|d| match &fault {
                    ProxyFault::RateLimited {
                        retry_after: Some(secs),
                    } => expect_retry_after(&e, *secs).map(|()| d),
                    _ => Ok(d),
                }),
            };
            self.row(PLUGIN, name, result.map(|d| format!("pull: {d}")));
        }
        let spoiler = match &proxy {
            Some(p) => Spoiler::Proxy(p),
            None => Spoiler::Recorded,
        };
        self.revoked(&proxied, Some(spoiler)).await;
    }

    /// `check` with revoked credentials: revoked by the simulated account itself, or,
    /// against a plain base URL, spoiled by the proxy on their way (the app then answers
    /// as it does to revoked ones).
    async fn revoked(&mut self, proxied: &ConnectorClient, spoiler: Option<Spoiler<'_>>) {
        let result = if let Some(control) = self.control() {
            let direct = match self.target.connect(
                self.runtime,
                self.plugin,
                "conformance-revoked",
                self.target.credentials.clone(),
            ) {
                Ok(c) => c,
                Err(e) => return self.row(PLUGIN, REVOKED, Err(e.to_string())),
            };
            async {
                control
                    .revoke_credentials()
                    .await
                    .map_err(|e| e.to_string())?;
                let outcome = direct.check().await;
                control
                    .restore_credentials()
                    .await
                    .map_err(|e| e.to_string())?;
                checked_unauthorized(outcome)
            }
            .await
        } else if let Some(spoiler) = spoiler {
            let header = match &self.plugin.manifest().auth {
                Some(AuthProfile::ApiKey { header, .. }) => header.to_ascii_lowercase(),
                Some(_) => "authorization".to_owned(),
                None => {
                    return self.skip(
                        PLUGIN,
                        REVOKED,
                        "the manifest declares no auth profile: the host attaches no credential to spoil",
                    );
                }
            };
            let Ok(header) = HeaderName::try_from(header) else {
                return self.skip(PLUGIN, REVOKED, "the auth header is not a header name");
            };
            if let Spoiler::Proxy(proxy) = spoiler {
                proxy.set(Some(ProxyFault::WrongCredential(header)));
            }
            let outcome = proxied.check().await;
            if let Spoiler::Proxy(proxy) = spoiler {
                proxy.set(None);
            }
            checked_unauthorized(outcome)
        } else {
            return self.skip(
                PLUGIN,
                REVOKED,
                "needs a base-url for the kit's proxy, or --sandbox",
            );
        };
        self.row(PLUGIN, REVOKED, result.map(|d| format!("check: {d}")));
    }
}

/// Who spoils the credentials on their way for the revoked-credentials check.
#[derive(Clone, Copy)]
enum Spoiler<'p> {
    /// The kit's proxy.
    Proxy(&'p FaultProxy),
    /// Nobody: a replay answers with what the app said to the spoiled ones.
    Recorded,
}

fn checked_unauthorized<T>(outcome: Result<T, CallError>) -> Result<String, String> {
    match outcome {
        Ok(_) => Err("check succeeded with revoked credentials".to_owned()),
        Err(e) => expect_variant(&e, "unauthorized"),
    }
}

/// A 429's `Retry-After` reaches the host: the error carries the app's wait.
fn expect_retry_after(error: &CallError, secs: u32) -> Result<(), String> {
    let wanted = u64::from(secs) * 1000;
    match error.plugin_error() {
        Some(PluginError::RateLimited(info)) if info.retry_after_ms == Some(wanted) => Ok(()),
        Some(PluginError::RateLimited(info)) => Err(format!(
            "the app said `Retry-After: {secs}`, the error carries retry-after-ms {:?} (want {wanted})",
            info.retry_after_ms
        )),
        _ => Err("not rate-limited".to_owned()),
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
