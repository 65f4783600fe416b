//! The simulated accounts' control API (`/_sandbox/…`, see `docs/sandbox.md`), as the
//! conformance kit and the request-economy benchmark use it: fault injection, user edits,
//! credential revocation, the live record ids and the request counters.
//!
//! Everything goes over HTTP, so the same code drives an in-process [`tandem_sandbox::Sandbox`]
//! and one started by `tandem sandbox` in another terminal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
#[cfg(feature = "sandbox")]
use tandem_sandbox::{AccountInfo, AccountKind};

/// Which family of simulated account a control URL belongs to (their control routes differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Freshsales Suite / Classic and Freshmarketer.
    Freshworks,
    /// Google People.
    Google,
}

use super::recording::{RecordedControl, Tape};

/// A control-API call failed (the account is gone, or refused the call; in a replay, the
/// recorded failure or a call the recording does not have).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SandboxApiError(String);

impl SandboxApiError {
    fn new(method: &str, path: &str, reason: &str) -> Self {
        Self(format!("sandbox control {method} {path}: {reason}"))
    }
}

/// A fault the kit injects into the next API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The app's rate-limit reply (429, with the app's own body and headers).
    RateLimited,
    /// A server error (503, the app's own body).
    Unavailable,
    /// A well-formed reply whose JSON body is cut in half.
    Truncated,
}

/// One endpoint's request count, from `GET /_sandbox/counters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointCount {
    /// HTTP method.
    pub method: String,
    /// Route pattern, e.g. `/crm/sales/api/contacts/{id}`.
    pub route: String,
    /// Requests received.
    pub count: u64,
}

/// The control API of one simulated account.
#[derive(Debug, Clone)]
pub struct SandboxControl {
    flavor: Flavor,
    /// The account kind's name (`freshsales`, `google`...).
    kind: String,
    control_url: String,
    api_prefix: String,
    http: reqwest::Client,
    /// Records the kit's calls, or answers them from a recording.
    tape: Option<Arc<Tape>>,
}

impl SandboxControl {
    /// The control API of a running account.
    #[cfg(feature = "sandbox")]
    pub fn for_account(info: &AccountInfo) -> Self {
        Self::for_account_with(info, reqwest::Client::new())
    }

    /// The control API of a running account, through `http`: controls of many accounts
    /// can share one client (each client holds its own TLS roots and connection pool,
    /// about 90 KB, which a bench over thousands of accounts would count as the host's).
    #[cfg(feature = "sandbox")]
    pub fn for_account_with(info: &AccountInfo, http: reqwest::Client) -> Self {
        let flavor = match info.kind {
            AccountKind::GooglePeople => Flavor::Google,
            _ => Flavor::Freshworks,
        };
        let api_prefix = info
            .api_base
            .strip_prefix(&info.base_url)
            .unwrap_or("")
            .to_owned();
        Self {
            flavor,
            kind: info.kind.name().to_owned(),
            control_url: info.control_url.trim_end_matches('/').to_owned(),
            api_prefix,
            http,
            tape: None,
        }
    }

    /// The same control API, its answers to the kit recorded on `tape`.
    pub(crate) fn taped(mut self, tape: Arc<Tape>) -> Self {
        self.tape = Some(tape);
        self
    }

    /// A recorded account's control API, answered by the replaying `tape` (no server).
    pub(crate) fn replayed(recorded: &RecordedControl, tape: Arc<Tape>) -> Self {
        Self {
            flavor: recorded.flavor.into(),
            kind: recorded.kind.clone(),
            control_url: String::new(),
            api_prefix: recorded.api_prefix.clone(),
            http: reqwest::Client::new(),
            tape: Some(tape),
        }
    }

    /// What a recording keeps of this control API.
    pub(crate) fn recorded(&self) -> RecordedControl {
        RecordedControl {
            flavor: self.flavor.into(),
            kind: self.kind.clone(),
            api_prefix: self.api_prefix.clone(),
        }
    }

    /// `live`, unless a replaying tape has the recorded answer to `call`; a recording
    /// tape keeps the answer.
    async fn taped_call<T, F>(&self, call: String, live: F) -> Result<T, SandboxApiError>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, SandboxApiError>>,
    {
        let Some(tape) = &self.tape else {
            return live.await;
        };
        if let Some(answer) = tape.control_answer(&call) {
            return answer.map_err(SandboxApiError).and_then(|json| {
                serde_json::from_value(json).map_err(|e| {
                    SandboxApiError(format!(
                        "replay: the recorded answer to control call `{call}` is unusable: {e}"
                    ))
                })
            });
        }
        let outcome = live.await;
        tape.control_record(
            &call,
            match &outcome {
                Ok(value) => serde_json::to_value(value).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        );
        outcome
    }

    /// The account family.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The account kind's name (`freshsales`, `google`...).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Path prefix of the API tree (`/crm/sales/api`, `/api`, `/v1`): faults are aimed
    /// there so that they never hit the OAuth token endpoint.
    pub fn api_prefix(&self) -> &str {
        &self.api_prefix
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Json>,
    ) -> Result<Json, SandboxApiError> {
        let fail = |reason: String| SandboxApiError::new(method, path, &reason);
        let url = format!("{}{path}", self.control_url);
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| fail(e.to_string()))?;
        let mut request = self.http.request(m, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!(
                "{status}: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        if text.trim().is_empty() {
            return Ok(Json::Null);
        }
        serde_json::from_str(&text).map_err(|e| fail(format!("answer is not JSON: {e}")))
    }

    /// Removes every armed fault rule.
    pub async fn clear_faults(&self) -> Result<(), SandboxApiError> {
        self.call("DELETE", "/faults", None).await.map(drop)
    }

    /// Makes the next API request fail with `fault`.
    pub async fn inject(&self, fault: Fault) -> Result<(), SandboxApiError> {
        let prefix = self.api_prefix.clone();
        match (fault, self.flavor) {
            (Fault::RateLimited | Fault::Unavailable, Flavor::Google) => {
                let status = if fault == Fault::RateLimited {
                    429
                } else {
                    503
                };
                let rule = json!({"status": status, "count": 1, "path_prefix": prefix});
                self.call("POST", "/google-faults", Some(rule))
                    .await
                    .map(drop)
            }
            (Fault::RateLimited, Flavor::Freshworks) => {
                let rule = json!({"path_prefix": prefix, "count": 1, "fault": {
                    "kind": "status", "status": 429,
                    "body": r#"{"errors":{"code":429,"message":["Too many requests"]}}"#,
                    "headers": {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset": "30"}}});
                self.call("POST", "/faults", Some(rule)).await.map(drop)
            }
            (Fault::Unavailable, Flavor::Freshworks) => {
                let rule = json!({"path_prefix": prefix, "count": 1, "fault": {
                    "kind": "status", "status": 503,
                    "body": r#"{"errors":{"code":503,"message":["Service Unavailable"]}}"#}});
                self.call("POST", "/faults", Some(rule)).await.map(drop)
            }
            (Fault::Truncated, _) => {
                let rule = json!({"path_prefix": prefix, "count": 1,
                                  "fault": {"kind": "truncate"}});
                self.call("POST", "/faults", Some(rule)).await.map(drop)
            }
        }
    }

    /// Sets a record's first name as a user would in the app (moves its version).
    pub async fn user_edit_first_name(
        &self,
        entity: &str,
        id: &str,
        first_name: &str,
    ) -> Result<(), SandboxApiError> {
        let call = format!("user-edit {entity} {id} first-name={first_name}");
        self.taped_call(call, self.user_edit_live(entity, id, first_name))
            .await
    }

    async fn user_edit_live(
        &self,
        entity: &str,
        id: &str,
        first_name: &str,
    ) -> Result<(), SandboxApiError> {
        match self.flavor {
            Flavor::Freshworks => {
                let path = format!("/records/{entity}/{id}");
                let body = json!({"first_name": first_name});
                self.call("PATCH", &path, Some(body)).await.map(drop)
            }
            Flavor::Google => {
                let path = format!("/people/{}", id.trim_start_matches("people/"));
                let body = json!({"names": [{"givenName": first_name}]});
                self.call("PATCH", &path, Some(body)).await.map(drop)
            }
        }
    }

    /// Deletes a record as a user would in the app (recycle bin / tombstone).
    pub async fn user_delete(&self, entity: &str, id: &str) -> Result<(), SandboxApiError> {
        let call = format!("user-delete {entity} {id}");
        self.taped_call(call, self.user_delete_live(entity, id))
            .await
    }

    async fn user_delete_live(&self, entity: &str, id: &str) -> Result<(), SandboxApiError> {
        let path = match self.flavor {
            Flavor::Freshworks => format!("/records/{entity}/{id}"),
            Flavor::Google => format!("/people/{}", id.trim_start_matches("people/")),
        };
        self.call("DELETE", &path, None).await.map(drop)
    }

    /// Makes every credential of the account answer 401. Freshworks keys come back with
    /// [`restore_credentials`](Self::restore_credentials); a revoked Google refresh token
    /// stays revoked until the account is reset.
    pub async fn revoke_credentials(&self) -> Result<(), SandboxApiError> {
        self.taped_call("revoke-credentials".into(), self.revoke_live())
            .await
    }

    async fn revoke_live(&self) -> Result<(), SandboxApiError> {
        match self.flavor {
            Flavor::Freshworks => self.call("POST", "/auth/revoke", None).await.map(drop),
            Flavor::Google => self
                .call("POST", "/tokens/revoke", Some(json!({})))
                .await
                .map(drop),
        }
    }

    /// Undoes [`revoke_credentials`](Self::revoke_credentials) where the account can
    /// (Freshworks); `false` when it cannot (Google).
    pub async fn restore_credentials(&self) -> Result<bool, SandboxApiError> {
        self.taped_call("restore-credentials".into(), self.restore_live())
            .await
    }

    async fn restore_live(&self) -> Result<bool, SandboxApiError> {
        match self.flavor {
            Flavor::Freshworks => self.call("POST", "/auth/restore", None).await.map(|_| true),
            Flavor::Google => Ok(false),
        }
    }

    /// The entities the account serves (`contacts`, and `leads` on Classic).
    pub async fn entities(&self) -> Result<Vec<String>, SandboxApiError> {
        self.taped_call("entities".into(), self.entities_live())
            .await
    }

    async fn entities_live(&self) -> Result<Vec<String>, SandboxApiError> {
        match self.flavor {
            Flavor::Google => Ok(vec!["contacts".to_owned()]),
            Flavor::Freshworks => {
                let info = self.call("GET", "/info", None).await?;
                Ok(info
                    .get("entities")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str().map(|s| plural(s).to_owned()))
                    .collect())
            }
        }
    }

    /// The ids of the live (not deleted) records of `entity`, as the connectors name them
    /// (Freshworks numeric ids, Google `people/c…`).
    pub async fn live_ids(&self, entity: &str) -> Result<BTreeSet<String>, SandboxApiError> {
        self.taped_call(format!("live-ids {entity}"), self.live_ids_live(entity))
            .await
    }

    async fn live_ids_live(&self, entity: &str) -> Result<BTreeSet<String>, SandboxApiError> {
        match self.flavor {
            Flavor::Freshworks => {
                let body = self
                    .call("GET", &format!("/records/{entity}"), None)
                    .await?;
                Ok(body
                    .get(entity)
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|r| !r.get("is_deleted").and_then(Json::as_bool).unwrap_or(false))
                    .filter_map(|r| match r.get("id")? {
                        Json::Number(n) => Some(n.to_string()),
                        Json::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect())
            }
            Flavor::Google => {
                let body = self.call("GET", "/state", None).await?;
                Ok(body
                    .get("people")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|p| !p.get("deleted").and_then(Json::as_bool).unwrap_or(false))
                    .filter_map(|p| p.get("resourceName")?.as_str().map(str::to_owned))
                    .collect())
            }
        }
    }

    /// Requests counted per endpoint since the last [`clear_counters`](Self::clear_counters).
    pub async fn counters(&self) -> Result<Vec<EndpointCount>, SandboxApiError> {
        let body = self.call("GET", "/counters", None).await?;
        Ok(body
            .get("endpoints")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .map(|e| EndpointCount {
                method: e["method"].as_str().unwrap_or_default().to_owned(),
                route: e["route"].as_str().unwrap_or_default().to_owned(),
                count: e["count"].as_u64().unwrap_or(0),
            })
            .collect())
    }

    /// Requests to the API tree per endpoint (`METHOD route` → count), the OAuth token
    /// endpoint left out (it is the host's call, not the plugin's).
    pub async fn api_requests(&self) -> Result<BTreeMap<String, u64>, SandboxApiError> {
        Ok(self
            .counters()
            .await?
            .into_iter()
            .filter(|e| e.route != "/token" && e.count > 0)
            .map(|e| (format!("{} {}", e.method, e.route), e.count))
            .collect())
    }

    /// Resets the request counters.
    pub async fn clear_counters(&self) -> Result<(), SandboxApiError> {
        self.call("DELETE", "/counters", None).await.map(drop)
    }
}

/// `contact` → `contacts` (the control API's `info` names entities in the singular).
fn plural(entity: &str) -> &str {
    match entity {
        "contact" => "contacts",
        "lead" => "leads",
        other => other,
    }
}
