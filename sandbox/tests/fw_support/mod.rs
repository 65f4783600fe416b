//! Helpers shared by the Freshworks and framework wire tests: a sandbox with the three
//! Freshworks accounts on 127.0.0.1 and a small reqwest wrapper.

#![allow(dead_code)]

use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{Value, json};
use tandem_sandbox::{AccountInfo, AccountKind, Credentials, Sandbox, SandboxOptions, Sizes};
use time::macros::datetime;

/// A running sandbox with Suite (130 contacts), Classic (30 leads + 10 contacts) and
/// Freshmarketer (40 contacts) on a manual clock.
pub struct Env {
    pub sandbox: Sandbox,
    pub http: Client,
}

/// One reply, read fully.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Assert the Freshworks error envelope with `code` and return its messages.
    pub fn errors(&self, code: u16) -> Vec<String> {
        assert_eq!(self.status, code, "{}", self.text);
        assert!(
            self.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{:?}",
            self.headers
        );
        assert_eq!(self.body["errors"]["code"], code, "{}", self.text);
        self.body["errors"]["message"]
            .as_array()
            .unwrap_or_else(|| panic!("no message array: {}", self.text))
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect()
    }
}

pub async fn env() -> Env {
    env_with(SandboxOptions::default()).await
}

pub async fn env_with(mut o: SandboxOptions) -> Env {
    o.seed = 11;
    o.sizes = Sizes {
        freshsales: 130,
        freshsales_classic: 30,
        freshmarketer: 40,
        google: 0,
    };
    o.kinds = vec![
        AccountKind::FreshsalesSuite,
        AccountKind::FreshsalesClassic,
        AccountKind::Freshmarketer,
    ];
    o.start_time = Some(datetime!(2024-05-01 12:00 UTC));
    let sandbox = Sandbox::start(o).await.expect("sandbox starts");
    let http = Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    Env { sandbox, http }
}

impl Env {
    pub fn account(&self, kind: AccountKind) -> &AccountInfo {
        self.sandbox.account(kind).expect("account started")
    }

    pub fn key(&self, kind: AccountKind) -> String {
        match &self.account(kind).credentials {
            Credentials::ApiKey { api_key, .. } => api_key.clone(),
            other => panic!("not an API key account: {other:?}"),
        }
    }

    pub fn restricted_key(&self, kind: AccountKind) -> String {
        match &self.account(kind).credentials {
            Credentials::ApiKey {
                restricted_api_key, ..
            } => restricted_api_key.clone(),
            other => panic!("not an API key account: {other:?}"),
        }
    }

    /// Raw request: `url` absolute, `auth` the whole Authorization header value.
    pub async fn raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self.http.request(method, url);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    /// Authenticated API call; `path` is relative to the account's API base.
    pub async fn api(
        &self,
        kind: AccountKind,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let url = format!("{}{}", self.account(kind).api_base, path);
        let auth = format!("Token token={}", self.key(kind));
        self.raw(method, &url, &[("authorization", &auth)], body)
            .await
    }

    pub async fn get(&self, kind: AccountKind, path: &str) -> Resp {
        self.api(kind, Method::GET, path, None).await
    }

    /// Control call; `path` is relative to `/_sandbox`.
    pub async fn ctl(
        &self,
        kind: AccountKind,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let url = format!("{}{}", self.account(kind).control_url, path);
        self.raw(method, &url, &[], body).await
    }

    pub async fn switches(&self, kind: AccountKind, patch: Value) {
        let r = self.ctl(kind, Method::PUT, "/switches", Some(patch)).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    pub async fn advance(&self, kind: AccountKind, seconds: u64) {
        let r = self
            .ctl(
                kind,
                Method::POST,
                "/clock/advance",
                Some(json!({"seconds": seconds})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    /// Id of the "All Contacts"/"All Leads" view.
    pub async fn all_view(&self, kind: AccountKind, plural: &str) -> u64 {
        let r = self.get(kind, &format!("/{plural}/filters")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["filters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"].as_str().unwrap().starts_with("All "))
            .and_then(|f| f["id"].as_u64())
            .expect("an All view")
    }

    /// Create a contact through the API and return it.
    pub async fn create_contact(&self, kind: AccountKind, fields: Value) -> Value {
        let r = self
            .api(
                kind,
                Method::POST,
                "/contacts",
                Some(json!({"contact": fields})),
            )
            .await;
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
        r.body["contact"].clone()
    }
}
