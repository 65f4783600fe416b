//! Behaviour switches of the Freshworks simulators.
//!
//! Every behaviour that `docs/freshworks-api.md` §12 lists as uncertain is a field here (the
//! table there names each field and its default); all can be changed at
//! start ([`crate::SandboxOptions::freshworks`]) or at run time with
//! `PUT /_sandbox/switches` (a partial JSON object).

use serde::{Deserialize, Serialize};

/// Shape of the 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnauthorizedBody {
    /// `{"login":"failed","message":"Incorrect or expired API key"}` (default).
    Login,
    /// `{"errors":{"code":401,"message":["Incorrect or expired API key"]}}`.
    Errors,
}

/// Reply of `DELETE /contacts/{id}` (and forget, bulk destroy of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReply {
    /// 200 with the JSON body `true` (default).
    TrueBody,
    /// 200 with an empty body.
    Empty,
    /// 204 No Content.
    NoContent,
}

/// What a plain create does when another live record already has the email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateEmail {
    /// Create the duplicate (default); upsert/lookup then pick the oldest match.
    Allow,
    /// 400 `"Email has already been taken"`.
    Reject,
}

/// What `PUT /contacts/{id}` does on a soft-deleted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftDeletedUpdate {
    /// 404 as if it did not exist (default).
    NotFound,
    /// Update it (it stays in the recycle bin).
    Update,
}

/// Meaning of `X-RateLimit-Reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetHeader {
    /// Seconds until the window resets (default).
    Seconds,
    /// Unix time (seconds) at which the window resets.
    Epoch,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortType {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// Behaviour switches (JSON field names as below; every field optional on input).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Switches {
    /// Rate limits on. [`crate::SandboxOptions::rate_limits_enabled`] sets it at start.
    pub rate_limits: bool,
    /// Requests per clock hour per account (plan: 1000 / 2000 / 5000). Default 1000.
    pub hourly_limit: u32,
    /// Requests per clock minute per account. Default 400.
    pub minute_limit: u32,
    /// Send `Retry-After` on 429 (docs/freshworks-api.md §8.2: Freshsales does not).
    /// Default false.
    pub send_retry_after: bool,
    /// Send `X-RateLimit-*` on successful replies too. Default true.
    pub rate_headers_on_success: bool,
    /// `X-RateLimit-Reset` as seconds-until-reset (default) or Unix time.
    pub reset_header: ResetHeader,
    /// Accept `Authorization: Token <key>` besides `Token token=<key>`. Default true.
    pub accept_bare_token: bool,
    /// 401 body shape. Default `login`.
    pub unauthorized_body: UnauthorizedBody,
    /// Status of a successful `POST /contacts`: 200 (default) or 201.
    pub create_status: u16,
    /// Status of an upsert that inserted: 200 (default) or 201. Updates always answer 200.
    pub upsert_insert_status: u16,
    /// Reply of deletes. Default `true_body` (200 + `true`).
    pub delete_reply: DeleteReply,
    /// Duplicate email on plain create. Default `allow`.
    pub duplicate_email: DuplicateEmail,
    /// Update of a soft-deleted record. Default `not_found`.
    pub update_soft_deleted: SoftDeletedUpdate,
    /// Reject unknown `cf_*` keys with 400. Default true.
    pub strict_custom_fields: bool,
    /// Fields required on create and update (API names). Default none.
    pub required_fields: Vec<String>,
    /// Sort field when the request names none. Default `updated_at`.
    pub default_sort: String,
    /// Sort direction when the request names none. Default `desc`.
    pub default_sort_type: SortType,
    /// Order records with equal sort keys arbitrarily (seeded shuffle per request) instead of
    /// by id. Default false.
    pub shuffle_ties: bool,
    /// List membership changes (through the API or by a user, control API) bump
    /// `updated_at`. Default true (an assumption, unverified:
    /// docs/freshworks-api.md §3.2).
    pub list_change_bumps_updated_at: bool,
    /// Bulk upsert jobs complete this many seconds (sandbox clock) after submission. Default 1.
    pub bulk_job_delay_secs: u64,
    /// Most items one bulk upsert accepts. Default 100.
    pub bulk_max_items: usize,
    /// Email matching in upsert, lookup and filtered search ignores case. Default true.
    pub email_case_insensitive: bool,
    /// Offer the `do_not_disturb` field (docs/freshworks-api.md §3.5: seen in Classic
    /// payloads only; on by default everywhere because the sync's DND rules need it).
    /// Default true.
    pub do_not_disturb_field: bool,
    /// Override of the account time zone offset, e.g. `"+02:00"` or `"Z"`. Default none
    /// (Suite `-06:00`, Classic `+05:30`, Freshmarketer `Z`).
    pub utc_offset: Option<String>,
    /// Answers of writes (create, update, upsert) embed the contact's `sales_accounts`
    /// even without `include=sales_accounts`. docs/freshworks-api.md §3.6 shows them embedded in
    /// write answers only with that include. Default false.
    pub sales_accounts_on_write: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            rate_limits: true,
            hourly_limit: 1000,
            minute_limit: 400,
            send_retry_after: false,
            rate_headers_on_success: true,
            reset_header: ResetHeader::Seconds,
            accept_bare_token: true,
            unauthorized_body: UnauthorizedBody::Login,
            create_status: 200,
            upsert_insert_status: 200,
            delete_reply: DeleteReply::TrueBody,
            duplicate_email: DuplicateEmail::Allow,
            update_soft_deleted: SoftDeletedUpdate::NotFound,
            strict_custom_fields: true,
            required_fields: Vec::new(),
            default_sort: "updated_at".to_owned(),
            default_sort_type: SortType::Desc,
            shuffle_ties: false,
            list_change_bumps_updated_at: true,
            bulk_job_delay_secs: 1,
            bulk_max_items: 100,
            email_case_insensitive: true,
            do_not_disturb_field: true,
            utc_offset: None,
            sales_accounts_on_write: false,
        }
    }
}

/// Why a switches patch is refused (the control API answers 400 with the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchesError {
    /// The patch is not a JSON object.
    #[error("switches must be a JSON object")]
    NotAnObject,
    /// A key no switch has (typos must not pass silently).
    #[error("unknown switch `{0}`")]
    Unknown(String),
    /// A value of the wrong type (serde's message).
    #[error("{0}")]
    Value(String),
    /// A create status other than 200 or 201.
    #[error("create_status and upsert_insert_status must be 200 or 201")]
    CreateStatus,
    /// `utc_offset` is not an offset.
    #[error("utc_offset {0:?} is not like +05:30 or Z")]
    UtcOffset(String),
}

impl Switches {
    /// Apply a partial JSON object of switches on top of these. Unknown keys are an error so
    /// that typos do not pass silently.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<Switches, SwitchesError> {
        let mut base =
            serde_json::to_value(self).map_err(|e| SwitchesError::Value(e.to_string()))?;
        let (Some(obj), Some(p)) = (base.as_object_mut(), patch.as_object()) else {
            return Err(SwitchesError::NotAnObject);
        };
        for (k, v) in p {
            if !obj.contains_key(k) {
                return Err(SwitchesError::Unknown(k.clone()));
            }
            obj.insert(k.clone(), v.clone());
        }
        let s: Switches =
            serde_json::from_value(base).map_err(|e| SwitchesError::Value(e.to_string()))?;
        if ![200, 201].contains(&s.create_status) || ![200, 201].contains(&s.upsert_insert_status) {
            return Err(SwitchesError::CreateStatus);
        }
        if let Some(o) = &s.utc_offset {
            parse_offset(o).ok_or_else(|| SwitchesError::UtcOffset(o.clone()))?;
        }
        Ok(s)
    }
}

/// Parse `Z`, `+05:30`, `-06:00`.
pub fn parse_offset(s: &str) -> Option<time::UtcOffset> {
    if s == "Z" || s == "z" {
        return Some(time::UtcOffset::UTC);
    }
    let fmt = time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    time::UtcOffset::parse(s, &fmt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patches_known_keys_and_rejects_unknown() {
        let s = Switches::default();
        let m = s
            .merged(&serde_json::json!({"create_status": 201, "delete_reply": "no_content"}))
            .unwrap();
        assert_eq!(m.create_status, 201);
        assert_eq!(m.delete_reply, DeleteReply::NoContent);
        assert!(s.merged(&serde_json::json!({"nope": 1})).is_err());
        assert!(
            s.merged(&serde_json::json!({"create_status": 204}))
                .is_err()
        );
        assert!(s.merged(&serde_json::json!({"utc_offset": "+25"})).is_err());
        assert_eq!(parse_offset("+05:30"), Some(time::macros::offset!(+05:30)));
    }
}
