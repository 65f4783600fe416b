//! The HTTP client: JSON requests to the account's API root through the host.
//!
//! Credentials are not handled here: the host adds `Authorization: Token token=<key>`
//! to every request that matches the manifest's `[auth]` profile.

use serde_json::Value as Json;
use tandem_sdk::Error;
use tandem_sdk::http::{self, Method, Request};

use crate::errors;
use crate::settings::Settings;

/// One account's API.
#[derive(Debug, Clone)]
pub struct Client {
    settings: Settings,
}

impl Client {
    /// A client for these settings.
    pub fn new(settings: Settings) -> Self {
        Client { settings }
    }

    /// The connection settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `GET path` (relative to the API root, query included) and decode the JSON answer.
    pub fn get(&self, path: &str) -> Result<Json, Error> {
        self.call(Method::Get, path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Json) -> Result<Json, Error> {
        self.call(Method::Post, path, Some(body))
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Json) -> Result<Json, Error> {
        self.call(Method::Put, path, Some(body))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Json, Error> {
        self.call(Method::Delete, path, None)
    }

    /// Sends one request. A 2xx answer with an empty body decodes as `null`; a body that
    /// is not JSON (truncated, HTML) is a transient error; other statuses map through
    /// [`errors::status_error`].
    pub fn call(&self, method: Method, path: &str, body: Option<&Json>) -> Result<Json, Error> {
        let what = format!(
            "{} {}",
            method_name(method),
            path.split('?').next().unwrap_or(path)
        );
        let mut headers = vec![("accept".to_owned(), "application/json".to_owned())];
        let body = body.map(|json| {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
            serde_json::to_vec(json).unwrap_or_default()
        });
        let request = Request {
            method,
            url: self.settings.url(path),
            headers,
            body,
            timeout_ms: None,
        };
        let response = http::send(&request).map_err(|e| Error::from(e).context(&what))?;
        if let Some(error) =
            errors::status_error(response.status, &response.headers, &response.body)
        {
            return Err(error.context(&what));
        }
        if response.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Json::Null);
        }
        response.json().map_err(|e| e.context(&what))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tandem_sdk::http::{HttpError, Response};
    use tandem_sdk::testing;

    fn client() -> Client {
        let settings =
            Settings::from_pairs(&[("base-url".into(), "http://127.0.0.1:9/crm/sales/api".into())])
                .unwrap();
        Client::new(settings)
    }

    fn answer(status: u16, body: &[u8]) {
        let body = body.to_vec();
        testing::reset();
        testing::mock_http(move |_| {
            Ok(Response {
                status,
                headers: vec![],
                body: body.clone(),
            })
        });
    }

    #[test]
    fn json_requests_and_answers() {
        testing::reset();
        testing::mock_http(|req| {
            assert_eq!(req.url, "http://127.0.0.1:9/crm/sales/api/contacts/upsert");
            assert_eq!(req.method, Method::Post);
            assert!(
                req.headers
                    .iter()
                    .any(|(k, v)| k == "content-type" && v == "application/json")
            );
            assert!(
                !req.headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            );
            let sent: Json = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
            assert_eq!(sent, json!({"contact": {"first_name": "Ann"}}));
            Ok(testing::json_response(200, &json!({"contact": {"id": 1}})))
        });
        let got = client()
            .post(
                "contacts/upsert",
                &json!({"contact": {"first_name": "Ann"}}),
            )
            .unwrap();
        assert_eq!(got, json!({"contact": {"id": 1}}));
    }

    /// Transport and body failures, by case: (status, body or transport error, expected case).
    #[test]
    fn answers_to_results() {
        answer(204, b"");
        assert_eq!(client().delete("contacts/1").unwrap(), Json::Null);
        answer(200, b"true");
        assert_eq!(client().delete("contacts/1").unwrap(), Json::Bool(true));
        answer(200, br#"{"contacts":[{"id":1"#);
        let err = client().get("contacts/view/1?page=1").unwrap_err();
        assert!(
            matches!(&err, Error::Transient(m) if m.starts_with("GET contacts/view/1: ") && m.contains("truncated")),
            "{err:?}"
        );
        answer(200, b"<html>maintenance</html>");
        assert!(matches!(
            client().get("contacts/1"),
            Err(Error::Transient(_))
        ));
        answer(
            401,
            br#"{"login":"failed","message":"Incorrect or expired API key"}"#,
        );
        assert_eq!(
            client().get("contacts/filters").unwrap_err(),
            Error::unauthorized("GET contacts/filters: HTTP 401: Incorrect or expired API key")
        );
        testing::reset();
        testing::mock_http(|_| Err(HttpError::Timeout));
        assert!(matches!(
            client().get("contacts/1"),
            Err(Error::Transient(_))
        ));
        testing::reset();
        testing::mock_http(|_| Err(HttpError::Denied("origin not granted".into())));
        assert!(
            matches!(client().get("contacts/1"), Err(Error::Fatal(m)) if m.contains("origin not granted"))
        );
    }
}
