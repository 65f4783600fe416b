//! `people.get` and `people.getBatchGet`, and the authenticated user's own profile.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::google::error::ApiError;
use crate::google::person;
use crate::google::person::{FieldMask, PERSON_FIELDS, PersonData, RenderMeta, RenderOpts};

use super::{MAX_BATCH_GET, Store};

impl Store {
    /// Render `people/me`.
    fn render_profile(&self, mask: &FieldMask) -> Value {
        let mut data = PersonData::default();
        data.fields.insert(
            "names".into(),
            vec![json!({"givenName": self.profile.given_name, "familyName": self.profile.family_name})],
        );
        data.fields.insert(
            "emailAddresses".into(),
            vec![json!({"value": self.profile.email})],
        );
        let rn = format!("people/{}", self.profile.account_id);
        let raw = self.source_etag(&rn, 1);
        let meta = RenderMeta {
            resource_name: &rn,
            source_id: &self.profile.account_id,
            source_etag: raw,
            update_time: OffsetDateTime::UNIX_EPOCH,
            etag_varies_by_mask: self.settings.etag_varies_by_mask,
            source_type: "PROFILE",
        };
        person::render(&data, meta, mask, RenderOpts::default())
    }

    /// `people.get` (docs/google-people-api.md §3.2). `people/me` is the account owner's profile.
    pub fn get_person(&self, rn: &str, person_fields: Option<&str>) -> Result<Value, ApiError> {
        let mask = FieldMask::parse(person_fields, &PERSON_FIELDS, "personFields", "people/get")?;
        if rn == "people/me" || rn == format!("people/{}", self.profile.account_id) {
            return Ok(self.render_profile(&mask));
        }
        let c = self.live(rn).ok_or_else(ApiError::not_found)?;
        Ok(self.render(c, &mask, RenderOpts::default()))
    }

    /// `people.getBatchGet` (docs/google-people-api.md §3.2): ≤200 names, a status per item.
    pub fn batch_get(
        &self,
        names: &[String],
        person_fields: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mask = FieldMask::parse(
            person_fields,
            &PERSON_FIELDS,
            "personFields",
            "people/getBatchGet",
        )?;
        if names.is_empty() {
            return Err(ApiError::invalid_argument(
                "resourceNames must contain at least one resource name.",
            ));
        }
        if names.len() > MAX_BATCH_GET {
            return Err(ApiError::invalid_argument(format!(
                "Too many resource names: {} were given, the maximum is {MAX_BATCH_GET}.",
                names.len()
            )));
        }
        let responses: Vec<Value> = names
            .iter()
            .map(|rn| {
                let result = if !rn.starts_with("people/") {
                    Err(ApiError::invalid_argument(format!(
                        "Resource name \"{rn}\" is not a valid person resource name."
                    )))
                } else if rn == "people/me" {
                    Ok(self.render_profile(&mask))
                } else {
                    self.live(rn)
                        .map(|c| self.render(c, &mask, RenderOpts::default()))
                        .ok_or_else(ApiError::not_found)
                };
                person_response(rn, result)
            })
            .collect();
        Ok(json!({ "responses": responses }))
    }
}

/// A PersonResponse entry: `{requestedResourceName, httpStatusCode, person?, status}`.
pub(super) fn person_response(rn: &str, result: Result<Value, ApiError>) -> Value {
    match result {
        Ok(person) => json!({
            "requestedResourceName": rn,
            "httpStatusCode": 200,
            "person": person,
            "status": {}
        }),
        Err(e) => json!({
            "requestedResourceName": rn,
            "httpStatusCode": e.http.as_u16(),
            "status": e.rpc_status()
        }),
    }
}
