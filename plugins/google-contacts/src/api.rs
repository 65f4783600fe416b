//! The People API calls this connector makes, through the host's HTTP (which attaches
//! the OAuth2 bearer; the connector never sees it).
//!
//! Every read sends the same [`PERSON_FIELDS`] and `sources=READ_SOURCE_TYPE_CONTACT`,
//! so etags are comparable between calls (docs/google-people-api.md §2.3) and profile data never enters a record
//! (docs/google-people-api.md §2.2). Writes are sent one request at a time (§7.3).

use serde_json::{Value as Json, json};
use tandem_sdk::http::{self, Method};
use tandem_sdk::{Error, config};
use url::form_urlencoded;

use crate::error;
use crate::mapping::PERSON_FIELDS;

/// The real API's origin; the `base-url` setting replaces it (simulated accounts).
pub const DEFAULT_BASE: &str = "https://people.googleapis.com";
/// Only CONTACT-sourced data can be written; read nothing else.
pub const SOURCES: &str = "READ_SOURCE_TYPE_CONTACT";
/// `getBatchGet` / `batchCreateContacts` / `batchUpdateContacts` limit (docs/google-people-api.md §3.2, §4.4).
pub const MAX_BATCH: usize = 200;
/// `batchDeleteContacts` limit (docs/google-people-api.md §4.4).
pub const MAX_BATCH_DELETE: usize = 500;
/// `members:modify` limit, adds and removes together (docs/google-people-api.md §5.2).
pub const MAX_MEMBERS_MODIFY: usize = 1000;

/// Per-item outcomes of a batch read or write: (requested name, person or its error).
pub type PersonResults = Vec<(String, Result<Json, Error>)>;

/// The API root for this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    base: String,
}

impl Api {
    /// From the `base-url` setting, or the real API when it is not set. A trailing `/v1`
    /// is tolerated (it is added to every path here).
    pub fn from_config() -> Result<Api, Error> {
        let base = match config::get("base-url").filter(|v| !v.trim().is_empty()) {
            Some(_) => config::require_url("base-url")?,
            None => DEFAULT_BASE.to_owned(),
        };
        Ok(Api::new(&base))
    }

    /// An API root (`https://people.googleapis.com`).
    pub fn new(base: &str) -> Api {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        Api {
            base: base.to_owned(),
        }
    }

    /// `{base}/v1/{path}?{query}`; repeated keys repeat (`resourceNames=a&resourceNames=b`).
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}/v1/{path}", self.base);
        if !query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            url.push('?');
            url.push_str(&q.finish());
        }
        url
    }

    /// Sends a request and decodes the JSON answer; errors per [`crate::error`].
    pub fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Json>,
    ) -> Result<Json, Error> {
        let mut request = http::request(method, self.url(path, query));
        if let Some(body) = body {
            request = request.json(body);
        }
        let what = format!("{} /v1/{path}", method_name(method));
        let response =
            http::send(request.as_request()).map_err(|e| Error::from(e).context(&what))?;
        if !(200..300).contains(&response.status) {
            let retry = http::retry_after_ms(&response.headers, now_unix_secs());
            return Err(error::from_reply(response.status, &response.body, retry).context(&what));
        }
        if response.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        response.json::<Json>().map_err(|e| e.context(&what))
    }

    /// `GET`.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Json, Error> {
        self.call(Method::Get, path, query, None)
    }

    /// `POST` with a JSON body.
    pub fn post(&self, path: &str, query: &[(&str, &str)], body: &Json) -> Result<Json, Error> {
        self.call(Method::Post, path, query, Some(body))
    }

    /// One page of `people.connections.list` with the fixed mask (docs/google-people-api.md §3.1).
    pub fn list_connections(
        &self,
        mask: &str,
        size: u32,
        sync: Option<&str>,
        page: Option<&str>,
        request_sync: bool,
    ) -> Result<Json, Error> {
        let size = size.to_string();
        let mut query = vec![
            ("personFields", mask),
            ("pageSize", size.as_str()),
            ("sources", SOURCES),
        ];
        if request_sync {
            // Sync tokens come only from listings that ask for them; ask on incremental
            // calls too (docs/google-people-api.md §10 #3).
            query.push(("requestSyncToken", "true"));
        }
        if let Some(sync) = sync {
            query.push(("syncToken", sync));
        }
        if let Some(page) = page {
            query.push(("pageToken", page));
        }
        self.get("people/me/connections", &query)
    }

    /// `people.getBatchGet` for at most [`MAX_BATCH`] names: `(requested name, person
    /// or error)` for each.
    pub fn batch_get(&self, names: &[String]) -> Result<PersonResults, Error> {
        let mut query: Vec<(&str, &str)> =
            vec![("personFields", PERSON_FIELDS), ("sources", SOURCES)];
        query.extend(names.iter().map(|n| ("resourceNames", n.as_str())));
        let reply = self.get("people:batchGet", &query)?;
        Ok(person_responses(reply.get("responses")))
    }
}

/// `[{requestedResourceName, person, status}]` of a batch reply.
pub fn person_responses(list: Option<&Json>) -> PersonResults {
    list.and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|item| {
            let name = item
                .get("requestedResourceName")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            (name, person_response(item))
        })
        .collect()
}

/// The person of one `PersonResponse`, or its error.
pub fn person_response(item: &Json) -> Result<Json, Error> {
    let status = item
        .get("status")
        .cloned()
        .and_then(|s| serde_json::from_value::<error::Status>(s).ok())
        .unwrap_or_default();
    if let Some(err) = error::from_rpc_status(&status) {
        return Err(err);
    }
    // `httpStatusCode` is deprecated but still sent; trust it when `status` is empty.
    if let Some(code) = item.get("httpStatusCode").and_then(Json::as_u64)
        && code >= 400
    {
        let code = u16::try_from(code).unwrap_or(500);
        return Err(error::from_reply(code, b"", None));
    }
    match item.get("person") {
        Some(person) if person.is_object() => Ok(person.clone()),
        _ => Err(Error::transient(
            "the batch reply has no person for this item",
        )),
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_tokens_and_repeat_keys() {
        let api = Api::new("http://127.0.0.1:9/v1/");
        assert_eq!(
            api.url(
                "people:batchGet",
                &[
                    ("resourceNames", "people/c1"),
                    ("resourceNames", "people/c2"),
                    ("syncToken", "a+b/c=")
                ]
            ),
            "http://127.0.0.1:9/v1/people:batchGet?resourceNames=people%2Fc1&resourceNames=people%2Fc2&syncToken=a%2Bb%2Fc%3D"
        );
        assert_eq!(
            Api::new(DEFAULT_BASE).url("contactGroups", &[]),
            "https://people.googleapis.com/v1/contactGroups"
        );
    }

    #[test]
    fn batch_items_carry_their_own_errors() {
        let reply = json!({"responses": [
            {"requestedResourceName": "people/c1", "person": {"resourceName": "people/c1"}, "httpStatusCode": 200, "status": {}},
            {"requestedResourceName": "people/c2", "httpStatusCode": 404, "status": {"code": 5, "message": "Requested entity was not found."}},
            {"requestedResourceName": "people/c3", "httpStatusCode": 400},
            {"requestedResourceName": "people/c4", "status": {}}
        ]});
        let items = person_responses(reply.get("responses"));
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].1.as_ref().unwrap()["resourceName"], "people/c1");
        assert!(matches!(items[1].1, Err(Error::NotFound(_))));
        assert!(matches!(items[2].1, Err(Error::Invalid(_))));
        assert!(matches!(items[3].1, Err(Error::Transient(_))));
    }
}
