//! Workflow webhooks (docs/freshworks-api.md §11.3): an admin's workflow "on record
//! created / updated → Trigger Webhook" that POSTs JSON of selected fields to a URL,
//! with custom headers (the way a shared secret travels). There is no delete trigger.
//!
//! Configured through the control API (`/_sandbox/workflows`, see [`super::control`]).
//! After every request to the account (API or control) the watched entity's records are
//! compared with what the workflows saw last: a record that is new fires `create`, one
//! whose content changed fires `update` (deleted records fire nothing). Comparing state
//! rather than hooking each write path catches every change — user edits, API writes,
//! bulk jobs, consent and list changes — the way the app's own triggers would.
//!
//! `skip_api_user` emulates the workflow condition "Updated by is not the integration
//! user", which keeps a sync's own writes from echoing back as webhooks (sync-rules §7).
//! Deliveries are asynchronous (like the app's), time out after 5 s, are not retried,
//! and the last 200 are kept with their outcome for tests to read.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Account;
use super::fields::Entity;
use super::render;
use super::store::Store;

/// Deliveries kept for the control API.
const KEPT: usize = 200;

/// What fires a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A record was created.
    Create,
    /// A record was updated.
    Update,
}

/// One workflow, as configured (`POST /_sandbox/workflows`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Assigned by the sandbox.
    #[serde(default)]
    pub id: u64,
    /// A label.
    #[serde(default)]
    pub name: String,
    /// `contacts` or `leads`.
    #[serde(default = "contacts")]
    pub entity: String,
    /// What fires it. Default: create and update.
    #[serde(default = "both")]
    pub on: Vec<Trigger>,
    /// The callback URL.
    pub url: String,
    /// `POST` (default) or `PUT`.
    #[serde(default = "post")]
    pub method: String,
    /// Custom headers sent with each call (a shared secret, for instance).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The record fields put in the JSON body (API names, as the API renders them).
    #[serde(default = "default_fields")]
    pub fields: Vec<String>,
    /// Do not fire for changes made with the API key's user (the condition "Updated by
    /// is not the integration user"). Default false: every change fires.
    #[serde(default)]
    pub skip_api_user: bool,
}

fn contacts() -> String {
    "contacts".into()
}
fn both() -> Vec<Trigger> {
    vec![Trigger::Create, Trigger::Update]
}
fn post() -> String {
    "POST".into()
}
fn default_fields() -> Vec<String> {
    ["id", "email", "first_name", "last_name", "updated_at"]
        .map(String::from)
        .to_vec()
}

/// One call made (or tried).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The id of the workflow that fired.
    pub workflow: u64,
    /// `create` or `update`.
    pub trigger: Trigger,
    /// The id of the record that triggered it.
    pub record_id: u64,
    /// The JSON sent.
    pub body: Value,
    /// The callback's status, once answered.
    pub status: Option<u16>,
    /// Why the call failed (no answer).
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    list: Vec<Workflow>,
    /// Per (entity, id): a fingerprint of the record as the workflows last saw it.
    seen: BTreeMap<(Entity, u64), u64>,
    deliveries: VecDeque<Delivery>,
}

/// The workflows of one account.
#[derive(Debug)]
pub struct Workflows {
    inner: Arc<Mutex<Inner>>,
    client: reqwest::Client,
}

impl Default for Workflows {
    fn default() -> Self {
        Workflows {
            inner: Arc::default(),
            // Callbacks are local in tests: never through a proxy from the environment.
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
        }
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn fingerprint(r: &super::store::Record) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_vec(r).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Fingerprints of the live records of `entities`.
fn fingerprints(s: &Store, entities: &[Entity]) -> BTreeMap<(Entity, u64), u64> {
    s.records()
        .values()
        .filter(|r| !r.deleted && entities.contains(&r.entity))
        .map(|r| ((r.entity, r.id), fingerprint(r)))
        .collect()
}

/// Why a workflow is refused (the control API answers 400 with the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The account does not serve that entity.
    #[error("this account has no entity {0:?}")]
    Entity(String),
    /// The URL does not parse (the parser's reason).
    #[error("url: {0}")]
    Url(String),
    /// The URL is not http(s).
    #[error("url must be http(s)")]
    Scheme,
    /// Neither POST nor PUT.
    #[error("method must be POST or PUT")]
    Method,
    /// A header name that HTTP does not allow.
    #[error("bad header name {0:?}")]
    HeaderName(String),
    /// A header value that HTTP does not allow (the header is named).
    #[error("bad value for header {0:?}")]
    HeaderValue(String),
    /// No trigger.
    #[error("on must name create, update or both")]
    NoTrigger,
}

impl Workflows {
    /// Adds a workflow (checked against `acct`); returns it with its id. The records as
    /// they are now are the starting point: only later changes fire it.
    pub fn add(&self, acct: &Account, mut w: Workflow) -> Result<Workflow, WorkflowError> {
        let entity = Entity::parse(&w.entity)
            .filter(|e| acct.flavor.entities().contains(e))
            .ok_or_else(|| WorkflowError::Entity(w.entity.clone()))?;
        let url = url::Url::parse(&w.url).map_err(|e| WorkflowError::Url(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WorkflowError::Scheme);
        }
        w.method = w.method.to_ascii_uppercase();
        if !matches!(w.method.as_str(), "POST" | "PUT") {
            return Err(WorkflowError::Method);
        }
        for (k, v) in &w.headers {
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| WorkflowError::HeaderName(k.clone()))?;
            reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| WorkflowError::HeaderValue(k.clone()))?;
        }
        if w.on.is_empty() {
            return Err(WorkflowError::NoTrigger);
        }
        let mut inner = lock(&self.inner);
        let mut watched = entities(&inner.list);
        if !watched.contains(&entity) {
            watched.push(entity);
            let now = acct.with_store(|s, _, _| fingerprints(s, &[entity]));
            inner.seen.extend(now);
        }
        inner.next_id += 1;
        w.id = inner.next_id;
        inner.list.push(w.clone());
        Ok(w)
    }

    /// Removes one workflow; false when there was none with that id.
    pub fn remove(&self, id: u64) -> bool {
        let mut inner = lock(&self.inner);
        let before = inner.list.len();
        inner.list.retain(|w| w.id != id);
        before != inner.list.len()
    }

    /// Removes every workflow and forgets the deliveries.
    pub fn clear(&self) {
        *lock(&self.inner) = Inner::default();
    }

    /// The workflows and the recent deliveries, oldest first.
    pub fn describe(&self) -> Value {
        let inner = lock(&self.inner);
        json!({"workflows": inner.list, "deliveries": inner.deliveries})
    }

    /// Compares the watched records with what was seen last and fires the workflows.
    fn fire(&self, acct: &Account) {
        let mut inner = lock(&self.inner);
        if inner.list.is_empty() {
            return;
        }
        let watched = entities(&inner.list);
        let calls = acct.with_store(|s, sw, _| {
            let now = fingerprints(s, &watched);
            let api_user = s.refs.user_ids()[0];
            let ctx = acct.ctx(sw);
            let mut calls = Vec::new();
            for (key, print) in &now {
                let trigger = match inner.seen.get(key) {
                    None => Trigger::Create,
                    Some(p) if p != print => Trigger::Update,
                    Some(_) => continue,
                };
                let Some(rec) = s.get(key.0, key.1) else {
                    continue;
                };
                let by = match trigger {
                    Trigger::Create => rec.creater_id,
                    Trigger::Update => rec.updater_id,
                };
                let rendered = render::record(s, &ctx, rec, true);
                for w in &inner.list {
                    if Entity::parse(&w.entity) != Some(key.0)
                        || !w.on.contains(&trigger)
                        || (w.skip_api_user && by == api_user)
                    {
                        continue;
                    }
                    let mut body = Map::new();
                    for f in &w.fields {
                        body.insert(f.clone(), rendered.get(f).cloned().unwrap_or(Value::Null));
                    }
                    calls.push((w.clone(), trigger, rec.id, Value::Object(body)));
                }
            }
            inner.seen = now;
            calls
        });
        drop(inner);
        for (w, trigger, record_id, body) in calls {
            self.deliver(w, trigger, record_id, body);
        }
    }

    fn deliver(&self, w: Workflow, trigger: Trigger, record_id: u64, body: Value) {
        let method = if w.method == "PUT" {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let mut req = self
            .client
            .request(method, &w.url)
            .timeout(Duration::from_secs(5))
            .json(&body);
        for (k, v) in &w.headers {
            req = req.header(k, v);
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let (status, error) = match req.send().await {
                Ok(r) => (Some(r.status().as_u16()), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let mut i = lock(&inner);
            i.deliveries.push_back(Delivery {
                workflow: w.id,
                trigger,
                record_id,
                body,
                status,
                error,
            });
            while i.deliveries.len() > KEPT {
                i.deliveries.pop_front();
            }
        });
    }
}

fn entities(list: &[Workflow]) -> Vec<Entity> {
    let mut out: Vec<Entity> = list
        .iter()
        .filter_map(|w| Entity::parse(&w.entity))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Middleware over the whole account (API and control): fires workflows after each
/// request that may have changed something.
pub async fn after_request(State(acct): State<Arc<Account>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    acct.workflows.fire(&acct);
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use serde_json::{Value, json};

    use crate::AccountKind;
    use crate::common::Clock;
    use crate::freshworks::{SeedParams, Switches, start_account};

    type Calls = Arc<std::sync::Mutex<Vec<(Option<String>, Value)>>>;

    /// A callback server recording each call's secret header and body.
    async fn receiver() -> (String, Calls) {
        let calls: Calls = Arc::default();
        let c = calls.clone();
        let app = Router::new().route(
            "/hook",
            post(move |h: HeaderMap, body: axum::Json<Value>| async move {
                let secret = h
                    .get("x-secret")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                c.lock().unwrap().push((secret, body.0));
                "ok"
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (format!("http://{addr}/hook"), calls)
    }

    async fn wait_calls(calls: &Calls, n: usize) -> Vec<(Option<String>, Value)> {
        for _ in 0..200 {
            if calls.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        calls.lock().unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workflows_call_back_on_create_and_update_but_not_delete_nor_api_writes() {
        let sw = Switches {
            rate_limits: false,
            ..Switches::default()
        };
        let (started, _acct) = start_account(
            AccountKind::FreshsalesSuite,
            Clock::manual(time::macros::datetime!(2024-05-01 12:00 UTC)),
            SeedParams { seed: 7, count: 5 },
            sw,
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let ctl = started.info.control_url.clone();
        let api = started.info.api_base.clone();
        let key = match &started.info.credentials {
            crate::Credentials::ApiKey { api_key, .. } => api_key.clone(),
            other => panic!("{other:?}"),
        };
        let (url, calls) = receiver().await;
        let http = reqwest::Client::new();
        let bad = http
            .post(format!("{ctl}/workflows"))
            .json(&json!({"url": url, "method": "DELETE"}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let w: Value = http
            .post(format!("{ctl}/workflows"))
            .json(&json!({"url": url, "headers": {"X-Secret": "s3"},
                          "fields": ["id", "email", "job_title"], "skip_api_user": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(w["id"], json!(1), "{w}");
        // A user creates a contact, then edits it.
        let created: Value = http
            .post(format!("{ctl}/records/contacts"))
            .json(&json!({"first_name": "Ada", "email": "ada@example.com"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["contact"]["id"].as_u64().unwrap();
        http.patch(format!("{ctl}/records/contacts/{id}"))
            .json(&json!({"job_title": "CTO"}))
            .send()
            .await
            .unwrap();
        let got = wait_calls(&calls, 2).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got.iter()
                .all(|(secret, _)| secret.as_deref() == Some("s3"))
        );
        // Calls go out asynchronously: their order is not fixed.
        let bodies: Vec<&Value> = got.iter().map(|(_, b)| b).collect();
        assert!(
            bodies.contains(&&json!({"id": id, "email": "ada@example.com", "job_title": null})),
            "{bodies:?}"
        );
        assert!(
            bodies.contains(&&json!({"id": id, "email": "ada@example.com", "job_title": "CTO"})),
            "{bodies:?}"
        );
        // The API key's user writes (skipped by the condition), then a user deletes: no call.
        let r = http
            .put(format!("{api}/contacts/{id}"))
            .header("Authorization", format!("Token token={key}"))
            .json(&json!({"contact": {"job_title": "CEO"}}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        http.delete(format!("{ctl}/records/contacts/{id}"))
            .send()
            .await
            .unwrap();
        // A last user edit elsewhere proves the account is still calling back.
        http.post(format!("{ctl}/records/contacts"))
            .json(&json!({"first_name": "Grace", "email": "grace@example.com"}))
            .send()
            .await
            .unwrap();
        let got = wait_calls(&calls, 3).await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got.iter()
                .any(|(_, b)| b["email"] == json!("grace@example.com"))
        );
        assert!(
            got.iter().all(|(_, b)| b["job_title"] != json!("CEO")),
            "{got:?}"
        );
        // A delivery is logged once its call has been answered, which may be just after
        // the receiver saw it: wait for the third entry (a bound, not a measurement).
        let mut state = Value::Null;
        for _ in 0..100 {
            state = http
                .get(format!("{ctl}/workflows"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if state["deliveries"].as_array().is_some_and(|d| d.len() >= 3) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut triggers: Vec<&str> = state["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["trigger"].as_str().unwrap())
            .collect();
        triggers.sort();
        assert_eq!(triggers, ["create", "create", "update"]);
        assert!(
            state["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["status"] == json!(200))
        );
    }
}
