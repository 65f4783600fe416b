//! The demo's hands in the simulated apps: their addresses and credentials as the
//! `TANDEM_DEMO_*` variables `examples/demo.toml` reads, and the accounts' control API
//! (`/_sandbox/...`, see `docs/sandbox.md`) to read records and to edit them "as a user in
//! the app".

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tandem_sandbox::common::Clock;
use tandem_sandbox::common::counters::Counters;
use tandem_sandbox::{AccountInfo, AccountKind, Credentials, Sandbox};

/// The three simulated accounts the demo uses, and a client for their control API.
#[derive(Debug, Clone)]
pub struct Apps {
    http: reqwest::Client,
    /// Freshsales Suite.
    pub freshsales: AccountInfo,
    /// Freshmarketer.
    pub freshmarketer: AccountInfo,
    /// Google People.
    pub google: AccountInfo,
    /// The accounts' shared clock (edits "later" move it forward).
    pub clock: Clock,
    counters: [Counters; 3],
}

/// A Freshworks list: id, name, members.
#[derive(Debug, Clone)]
pub struct List {
    /// The list's id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Member contact ids.
    pub members: Vec<u64>,
}

impl Apps {
    /// The accounts of a started sandbox (Freshsales Suite, Freshmarketer, Google).
    pub fn new(sandbox: &Sandbox) -> anyhow::Result<Self> {
        let get = |k: AccountKind| {
            sandbox
                .account(k)
                .cloned()
                .with_context(|| format!("the simulated {k} account did not start"))
        };
        Ok(Apps {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .context("cannot build an HTTP client")?,
            freshsales: get(AccountKind::FreshsalesSuite)?,
            freshmarketer: get(AccountKind::Freshmarketer)?,
            google: get(AccountKind::GooglePeople)?,
            clock: sandbox.clock().clone(),
            counters: [
                AccountKind::FreshsalesSuite,
                AccountKind::Freshmarketer,
                AccountKind::GooglePeople,
            ]
            .map(|k| {
                sandbox
                    .control(k)
                    .map(|c| c.counters.clone())
                    .unwrap_or_default()
            }),
        })
    }

    /// API requests each account has answered so far (Freshsales, Freshmarketer, Google),
    /// control calls excluded.
    pub fn requests(&self) -> [u64; 3] {
        self.counters.each_ref().map(|c| c.snapshot().total)
    }

    /// Requests per endpoint of each account so far (for profiling the demo).
    pub fn endpoint_counts(&self) -> String {
        let mut out = String::new();
        for (name, c) in ["freshsales", "freshmarketer", "google"]
            .iter()
            .zip(&self.counters)
        {
            for e in c.snapshot().endpoints {
                out.push_str(&format!("{name} {} {} {}\n", e.method, e.route, e.count));
            }
        }
        out
    }

    /// The variables `examples/demo.toml` reads: each account's address, and the
    /// simulated Google's OAuth client id and token endpoint (none of them secret; the
    /// credentials go to files, see [`super::run_demo`]).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            (
                "TANDEM_DEMO_FRESHSALES_URL",
                self.freshsales.api_base.clone(),
            ),
            (
                "TANDEM_DEMO_FRESHMARKETER_URL",
                self.freshmarketer.api_base.clone(),
            ),
            ("TANDEM_DEMO_GOOGLE_URL", self.google.base_url.clone()),
        ];
        if let Credentials::OAuth2 {
            token_url,
            client_id,
            ..
        } = &self.google.credentials
        {
            vars.push(("TANDEM_DEMO_GOOGLE_CLIENT_ID", client_id.clone()));
            vars.push(("TANDEM_DEMO_GOOGLE_TOKEN_URL", token_url.clone()));
        }
        vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    async fn call(
        &self,
        account: &AccountInfo,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", account.control_url);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("simulated {} account: {method} {path}", account.name))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "simulated {} account: {method} {path} answered {status}: {}",
                account.name,
                text.trim()
            );
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Every contact of a Freshworks account (deleted ones included), by id.
    pub async fn contacts(&self, account: &AccountInfo) -> anyhow::Result<BTreeMap<u64, Value>> {
        let v = self
            .call(account, reqwest::Method::GET, "/records/contacts", None)
            .await?;
        Ok(v["contacts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["id"].as_u64()?, c.clone())))
            .collect())
    }

    /// One contact of a Freshworks account (deleted ones included).
    pub async fn contact(&self, account: &AccountInfo, id: u64) -> anyhow::Result<Value> {
        let v = self
            .call(
                account,
                reqwest::Method::GET,
                &format!("/records/contacts/{id}"),
                None,
            )
            .await?;
        Ok(v["contact"].clone())
    }

    /// The lists of a Freshworks account with their members.
    pub async fn lists(&self, account: &AccountInfo) -> anyhow::Result<Vec<List>> {
        let v = self
            .call(account, reqwest::Method::GET, "/state", None)
            .await?;
        Ok(v["lists"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| List {
                id: l["id"].as_u64().unwrap_or_default(),
                name: l["name"].as_str().unwrap_or_default().to_string(),
                members: l["contact_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .collect(),
            })
            .collect())
    }

    /// Edits a contact's fields as a user in the app (moves `updated_at`).
    pub async fn edit(&self, account: &AccountInfo, id: u64, fields: Value) -> anyhow::Result<()> {
        self.call(
            account,
            reqwest::Method::PATCH,
            &format!("/records/contacts/{id}"),
            Some(fields),
        )
        .await
        .map(drop)
    }

    /// Creates a contact as a user in the app; returns its id.
    pub async fn create(&self, account: &AccountInfo, fields: Value) -> anyhow::Result<u64> {
        let v = self
            .call(
                account,
                reqwest::Method::POST,
                "/records/contacts",
                Some(fields),
            )
            .await?;
        v["contact"]["id"]
            .as_u64()
            .with_context(|| format!("the simulated {} account returned no id", account.name))
    }

    /// Adds contacts to a list as a user in the app.
    pub async fn add_to_list(
        &self,
        account: &AccountInfo,
        list: u64,
        ids: &[u64],
    ) -> anyhow::Result<()> {
        self.call(
            account,
            reqwest::Method::PUT,
            &format!("/lists/{list}/members"),
            Some(json!({ "add": ids })),
        )
        .await
        .map(drop)
    }

    /// Sets DND or the subscription status as the contact would in the app.
    pub async fn consent(
        &self,
        account: &AccountInfo,
        id: u64,
        consent: Value,
    ) -> anyhow::Result<()> {
        self.call(
            account,
            reqwest::Method::POST,
            &format!("/records/contacts/{id}/consent"),
            Some(consent),
        )
        .await
        .map(drop)
    }

    /// Deletes a contact as a user (to the recycle bin).
    pub async fn delete(&self, account: &AccountInfo, id: u64) -> anyhow::Result<()> {
        self.call(
            account,
            reqwest::Method::DELETE,
            &format!("/records/contacts/{id}"),
            None,
        )
        .await
        .map(drop)
    }

    /// The Google account's people (deleted included) and contact groups.
    pub async fn google_state(&self) -> anyhow::Result<Value> {
        self.call(&self.google, reqwest::Method::GET, "/state", None)
            .await
    }
}

/// `First Last <email>` of a Freshworks contact rendered by the control API.
pub fn label(c: &Value) -> String {
    let name = c["display_name"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "{} {}",
                c["first_name"].as_str().unwrap_or_default(),
                c["last_name"].as_str().unwrap_or_default()
            )
        });
    let name = name.trim().to_string();
    match c["email"].as_str() {
        Some(e) if !e.is_empty() => format!("{name} <{e}>"),
        _ => format!("{name} (no email)"),
    }
}

/// The consent body of a contact unsubscribing from every email.
pub fn unsubscribed() -> Value {
    json!({"subscription_status": 0, "unsubscription_reason": "Not interested any more"})
}
