//! Request counters per endpoint: method + route pattern (e.g. `GET /crm/sales/api/contacts/{id}`),
//! with a tally of reply statuses per endpoint.
//!
//! The middleware runs after routing (installed with `Router::layer`), so axum's
//! [`MatchedPath`] names the route pattern; requests that match no route are counted under
//! [`UNMATCHED`]. Every request to the API paths is counted, including faulted, rate-limited and
//! rejected ones; the control API is not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

/// Route label for requests that matched no route.
pub const UNMATCHED: &str = "<unmatched>";

/// One endpoint's tally.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EndpointCount {
    /// HTTP method.
    pub method: String,
    /// Route pattern, or [`UNMATCHED`].
    pub route: String,
    /// Requests received.
    pub count: u64,
    /// Replies by status code.
    pub statuses: BTreeMap<u16, u64>,
}

/// Snapshot returned by `GET /_sandbox/counters`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// All requests counted.
    pub total: u64,
    /// Per endpoint, sorted by route then method.
    pub endpoints: Vec<EndpointCount>,
}

impl CountersSnapshot {
    /// The count for `method` + `route` (0 if never hit).
    pub fn get(&self, method: &str, route: &str) -> u64 {
        self.endpoints
            .iter()
            .find(|e| e.method == method && e.route == route)
            .map_or(0, |e| e.count)
    }
}

/// Shared counters of one account (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    inner: Arc<Mutex<BTreeMap<(String, String), EndpointCount>>>,
}

impl Counters {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one request and its reply status.
    pub fn record(&self, method: &str, route: &str, status: u16) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = g
            .entry((route.to_owned(), method.to_owned()))
            .or_insert_with(|| EndpointCount {
                method: method.to_owned(),
                route: route.to_owned(),
                ..EndpointCount::default()
            });
        e.count += 1;
        *e.statuses.entry(status).or_default() += 1;
    }

    /// A copy of the current counts.
    pub fn snapshot(&self) -> CountersSnapshot {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let endpoints: Vec<EndpointCount> = g.values().cloned().collect();
        CountersSnapshot {
            total: endpoints.iter().map(|e| e.count).sum(),
            endpoints,
        }
    }

    /// Forget all counts.
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The middleware: `axum::middleware::from_fn_with_state(counters, count_middleware)`.
pub async fn count_middleware(
    State(counters): State<Counters>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    counters.record(&method, &route, resp.status().as_u16());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_endpoint_and_status() {
        let c = Counters::new();
        c.record("GET", "/a/{id}", 200);
        c.record("GET", "/a/{id}", 404);
        c.record("POST", "/a", 201);
        let s = c.snapshot();
        assert_eq!(s.total, 3);
        assert_eq!(s.get("GET", "/a/{id}"), 2);
        assert_eq!(s.get("POST", "/a"), 1);
        assert_eq!(s.get("DELETE", "/a"), 0);
        let e = s.endpoints.iter().find(|e| e.method == "GET").unwrap();
        assert_eq!(e.statuses.get(&404), Some(&1));
        c.clear();
        assert_eq!(c.snapshot().total, 0);
    }
}
