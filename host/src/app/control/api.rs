//! The control API's wire format: its paths, queries, bodies and answers, shared by the
//! server (`server.rs`) and the client ([`super::client`]) so that the two cannot
//! drift. `docs/control-api.md` is the public contract; the tests below pin the examples
//! it shows.

use serde::{Deserialize, Serialize};

use crate::app::BudgetSnapshot;
use crate::app::report::{RunLog, SyncSummary};

/// Every sync: `GET`.
pub const SYNCS: &str = "/v1/syncs";
/// One sync: `GET`.
pub const SYNC: &str = "/v1/syncs/{name}";
/// Pause a sync: `POST`.
pub const PAUSE: &str = "/v1/syncs/{name}/pause";
/// Resume a sync: `POST`.
pub const RESUME: &str = "/v1/syncs/{name}/resume";
/// Trigger a run, or run and wait ([`RunQuery`]): `POST`.
pub const RUN: &str = "/v1/syncs/{name}/run";
/// A sync's run logs ([`LogsQuery`]): `GET`.
pub const LOGS: &str = "/v1/syncs/{name}/logs";
/// Wipe a sync's state: `POST`.
pub const DISCONNECT: &str = "/v1/syncs/{name}/disconnect";
/// Settle what waits for the operator (body: [`crate::app::Resolution`]): `POST`.
pub const RESOLVE: &str = "/v1/syncs/{name}/resolve";
/// Every account budget: `GET`.
pub const BUDGETS: &str = "/v1/budgets";
/// A dry run of the next run ([`PlanQuery`]; answer [`Preview`]): `POST`, since it
/// reads both apps and spends their request budgets.
pub const PLAN: &str = "/v1/syncs/{name}/plan";
/// The linked pairs of a person and what the sync wrote to them ([`PersonQuery`];
/// answer [`Person`]): `GET`.
pub const PERSON: &str = "/v1/syncs/{name}/person";
/// Every connection's plugin, grants and budget ([`Connections`]): `GET`.
pub const CONNECTIONS: &str = "/v1/connections";

/// `pattern` (one of the paths above) for sync `name`.
pub fn path(pattern: &str, name: &str) -> String {
    pattern.replace("{name}", name)
}

/// The query of [`RUN`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    /// Run now and answer with the [`crate::app::report::RunSummary`]; without it the
    /// run is only scheduled ([`Triggered`]).
    #[serde(default)]
    pub wait: bool,
    /// List everything again.
    #[serde(default)]
    pub full: bool,
    /// Run past a breaker halt.
    #[serde(default)]
    pub force: bool,
}

impl RunQuery {
    /// As a query string (`?wait=…&full=…&force=…`).
    pub fn to_query(&self) -> String {
        format!(
            "?wait={}&full={}&force={}",
            self.wait, self.full, self.force
        )
    }
}

/// The query of [`LOGS`]: run `run`, or the last `runs` runs (default 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsQuery {
    /// Only this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    /// How many of the latest runs (ignored with `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
}

impl LogsQuery {
    /// Run `run` if given, else the last `runs`.
    pub fn new(run: Option<u64>, runs: usize) -> Self {
        match run {
            Some(id) => LogsQuery {
                run: Some(id),
                runs: None,
            },
            None => LogsQuery {
                run: None,
                runs: Some(runs),
            },
        }
    }

    /// How many of the latest runs are asked for.
    pub fn latest(&self) -> usize {
        self.runs.unwrap_or(1)
    }

    /// As a query string (`?run=ID` or `?runs=N`).
    pub fn to_query(&self) -> String {
        match self.run {
            Some(id) => format!("?run={id}"),
            None => format!("?runs={}", self.latest()),
        }
    }
}

/// The answer to [`SYNCS`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncList {
    /// In name order.
    pub syncs: Vec<SyncSummary>,
}

/// The answer to [`PAUSE`] and [`RESUME`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChanged {
    /// The sync.
    pub sync: String,
    /// `paused` or `active`.
    pub status: String,
}

/// The answer to [`RUN`] without `wait` (`202`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triggered {
    /// The sync.
    pub sync: String,
    /// Always true: a run is scheduled.
    pub triggered: bool,
}

/// The answer to [`LOGS`]; also what `tandem sync logs --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    /// The sync.
    pub sync: String,
    /// The runs asked for, oldest first.
    pub runs: Vec<RunLog>,
}

/// The answer to [`DISCONNECT`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnected {
    /// The sync.
    pub sync: String,
    /// State and log rows wiped.
    pub wiped: usize,
    /// Always `paused`.
    pub status: String,
}

/// The answer to [`RESOLVE`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// The sync.
    pub sync: String,
    /// What the next run does, in one line.
    pub message: String,
}

/// The answer to [`BUDGETS`] (served only; no client reads it).
#[derive(Clone, Debug, Serialize)]
pub struct Budgets {
    /// One per app account.
    pub budgets: Vec<BudgetSnapshot>,
}

/// The query of [`PLAN`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanQuery {
    /// List everything again.
    #[serde(default)]
    pub full: bool,
}

/// The answer to [`PLAN`]: what the next run would do, written nowhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// The sync.
    pub sync: String,
    /// `dry-run`, or `paused` (nothing was read).
    pub outcome: String,
    /// The breaker would halt the run: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
    /// Writes the breaker would withhold.
    pub withheld: usize,
    /// The writes, in the order the run would send them.
    pub ops: Vec<PreviewOp>,
    /// Records left alone, with the reason.
    pub skips: Vec<PreviewNote>,
    /// Fields both sides changed, and what was decided.
    pub conflicts: Vec<PreviewNote>,
    /// Ambiguous matches it would report.
    pub ambiguous: Vec<PreviewNote>,
    /// New links between records not linked yet.
    pub links: usize,
}

/// One planned write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewOp {
    /// The side written: `a` or `b`.
    pub side: String,
    /// `create`, `update`, `delete`, `add-to-list`, `remove-from-list`.
    pub kind: String,
    /// The target entity.
    pub entity: String,
    /// The link.
    pub link: String,
    /// Why.
    pub reason: String,
}

/// A record and what the plan says of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewNote {
    /// The record (`a:ID`, `b:ID`), link or e-mail concerned.
    pub subject: String,
    /// What and why.
    pub detail: String,
}

/// The query of [`PERSON`]: an e-mail or a record id (`ID`, `a:ID` or `b:ID`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonQuery {
    /// What to look for.
    pub q: String,
}

/// The answer to [`PERSON`]: the links that match, at most [`PERSON_LIMIT`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// The sync.
    pub sync: String,
    /// The matching links.
    pub links: Vec<PersonLink>,
}

/// Links shown at most by [`PERSON`].
pub const PERSON_LIMIT: usize = 20;

/// One linked pair, its fields as last synced and its history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PersonLink {
    /// The link's id.
    pub link: String,
    /// Its records (`a:ID`, `b:ID`).
    pub records: Vec<String>,
    /// `linked`, `detached`, `quarantined`…
    pub state: String,
    /// The e-mail it was matched on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Each field pair and the value both sides agreed on last.
    pub fields: Vec<(String, serde_json::Value)>,
    /// Every logged event of the link, oldest first: what the sync wrote, which side
    /// won and why.
    pub history: Vec<crate::sync::state::Event>,
}

/// The answer to [`CONNECTIONS`].
#[derive(Clone, Debug, Serialize)]
pub struct Connections {
    /// In name order.
    pub connections: Vec<ConnectionInfo>,
    /// One per app account.
    pub budgets: Vec<BudgetSnapshot>,
}

/// One connection: its plugin and what the operator granted it. No settings values,
/// no credentials.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionInfo {
    /// The connection.
    pub name: String,
    /// The plugin entry (`[plugins.NAME]`).
    pub plugin: String,
    /// The plugin's own name and version, once loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The SHA-256 of its component, once loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it could not be loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `builtin` or `file`.
    pub source: String,
    /// The HTTP origins granted.
    pub origins: Vec<String>,
    /// Loopback addresses granted.
    pub loopback: bool,
    /// Private networks granted.
    pub private_networks: bool,
}

/// Every error answer: one line saying what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The line.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::*;
    use crate::app::Resolution;
    use crate::app::report::RunSummary;

    /// `doc` parses as `T` and serialises back to the same JSON.
    fn round_trips<T: Serialize + DeserializeOwned>(doc: Value) {
        let typed: T =
            serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
        assert_eq!(serde_json::to_value(&typed).unwrap(), doc);
    }

    fn counters(created: u64, updated: u64, linked: u64, conflicts: u64) -> Value {
        json!({"created": created, "updated": updated, "removed": 0, "linked": linked,
               "skipped": 0, "failed": 0, "parked": 0, "conflicts": conflicts})
    }

    fn last_run() -> Value {
        json!({
            "id": 3, "kind": "incremental", "started_at": 1714564800, "ended_at": 1714564803,
            "outcome": "ok", "message": null,
            "counters": {
                "a-to-b": {"created": 2, "updated": 5, "removed": 0, "linked": 0, "skipped": 1,
                           "failed": 0, "parked": 0, "conflicts": 0},
                "b-to-a": counters(0, 1, 0, 0),
                "both": counters(0, 0, 0, 1)
            }
        })
    }

    /// The examples of docs/control-api.md, with the parts it elides (`…`) filled in.
    #[test]
    fn the_documented_examples_round_trip() {
        round_trips::<SyncSummary>(json!({
            "name": "sales-marketing", "a": "freshsales", "b": "freshmarketer",
            "direction": "two-way", "interval_secs": 30,
            "status": "halted", "reason": "too many deletions",
            "last_run": last_run(),
            "links": 1843, "retrying": 0, "parked": 0,
            "attention": [
                {"link": "0/a/16000000007", "records": ["a:16000000007", "b:17000000210"],
                 "kind": "conflict", "field": "job_title~job_title",
                 "detail": "A \"VP\" / B \"Head\" (was \"Manager\")",
                 "hint": "tandem sync resolve sales-marketing --field job_title~job_title --take a|b a:16000000007"}
            ],
            "running": false, "last_error": "the read failed", "next_run_at": 1714564830
        }));
        round_trips::<RunSummary>(json!({
            "sync": "sales-marketing", "run": 4, "outcome": "completed",
            "counters": {"a-to-b": counters(1, 0, 0, 0)},
            "failures": [["op-id", "invalid: Email is invalid"]]
        }));
        round_trips::<RunSummary>(json!({
            "sync": "s", "run": null, "outcome": "halted: too many deletions",
            "counters": {}, "failures": []
        }));
        round_trips::<Logs>(json!({"sync": "sales-marketing", "runs": [{
        "run": last_run(),
        "events": [
            {"run": 4, "seq": 1, "direction": "a-to-b", "action": "created", "entity": "contacts",
             "records": ["a:16000000042", "b:17000000311"], "link": "0/a/16000000042",
             "reason": "new in A"},
            {"run": 4, "seq": 2, "direction": "both", "action": "conflict", "entity": "contacts",
             "records": [], "link": "0/a/16000000007",
             "reason": "job_title: A \"VP\" / B \"Head\": A changed most recently"}
        ]}]}));
        round_trips::<SyncList>(json!({"syncs": []}));
        round_trips::<StatusChanged>(json!({"sync": "s", "status": "paused"}));
        round_trips::<StatusChanged>(json!({"sync": "s", "status": "active"}));
        round_trips::<Triggered>(json!({"sync": "s", "triggered": true}));
        round_trips::<Disconnected>(json!({"sync": "s", "wiped": 12, "status": "paused"}));
        round_trips::<Resolved>(json!({"sync": "s", "message": "the next run links them"}));
        round_trips::<ErrorReply>(json!({"error": "no such endpoint; see docs/control-api.md"}));
        for body in [
            json!({"link": {"a": "1701", "b": "880123"}}),
            json!({"keep-apart": {"a": "1701", "b": "880124"}}),
            json!({"take": {"record": "a:1701", "field": "job_title", "side": "b"}}),
            json!({"release": {"record": "1701"}}),
        ] {
            round_trips::<Resolution>(body);
        }
    }

    /// The client's query strings are what the server's extractor reads.
    #[test]
    fn queries_read_back_as_sent() {
        use axum::extract::Query;
        let read = |q: String| -> axum::http::Uri { format!("{RUN}{q}").parse().unwrap() };
        for q in [
            RunQuery::default(),
            RunQuery {
                wait: true,
                full: true,
                force: false,
            },
            RunQuery {
                wait: true,
                full: false,
                force: true,
            },
        ] {
            let Query(back) = Query::<RunQuery>::try_from_uri(&read(q.to_query())).unwrap();
            assert_eq!(back, q);
        }
        assert_eq!(
            RunQuery {
                wait: true,
                full: false,
                force: true
            }
            .to_query(),
            "?wait=true&full=false&force=true"
        );
        for (q, text) in [
            (LogsQuery::new(Some(3), 5), "?run=3"),
            (LogsQuery::new(None, 5), "?runs=5"),
        ] {
            assert_eq!(q.to_query(), text);
            let Query(back) = Query::<LogsQuery>::try_from_uri(&read(q.to_query())).unwrap();
            assert_eq!(back, q);
        }
        // Without a query the server answers the last run.
        let Query(none) = Query::<LogsQuery>::try_from_uri(&read(String::new())).unwrap();
        assert_eq!(none.latest(), 1);
        assert_eq!(path(PAUSE, "s"), "/v1/syncs/s/pause");
    }
}
