//! The contract's data types, re-exported from the bindings, with builders and accessors.
//!
//! These are the generated types themselves (no conversion at the boundary), so what a
//! plugin builds is exactly what crosses into the host.

use crate::__bindings::connector::exports::tandem::plugin::connector_api as api;
use crate::__bindings::connector::tandem::plugin::types as t;
use crate::__bindings::mapper::exports::tandem::plugin::mapper_api;

pub use api::{
    CreateOp, Lookup, MembershipOp, Op, Page, PullRequest, UpdateOp, Write, WriteResult,
};
pub use mapper_api::MapContext;
pub use t::{
    AccountInfo, Choice, Container, DeleteDetection, EntityInfo, Error, Field, FieldDef, FieldType,
    PluginInfo, RateLimit, Record, RetryInfo, Value,
};

impl Value {
    /// A text value (also dates and date-times in ISO-8601 form).
    pub fn text(text: impl Into<String>) -> Self {
        Value::Text(text.into())
    }

    /// A multi-valued text field (emails, phones, tags, multi-select choices).
    pub fn texts<I, S>(texts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Value::Texts(texts.into_iter().map(Into::into).collect())
    }

    /// The text, when this is a `text` value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The number, when this is a `number` value.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The flag, when this is a `boolean` value.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The texts, when this is a `texts` value.
    pub fn as_texts(&self) -> Option<&[String]> {
        match self {
            Value::Texts(texts) => Some(texts),
            _ => None,
        }
    }

    /// True for `null` (a field the user cleared).
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<i64> for Value {
    /// Numbers travel as `f64`; ids (64-bit) should be sent as text instead.
    fn from(n: i64) -> Self {
        Value::Number(n as f64)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<Vec<String>> for Value {
    fn from(texts: Vec<String>) -> Self {
        Value::Texts(texts)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` becomes `null`.
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

impl Field {
    /// A named field.
    pub fn new(name: impl Into<String>, value: impl Into<Value>) -> Self {
        Field {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl Record {
    /// An empty record with this id.
    pub fn new(id: impl Into<String>) -> Self {
        Record {
            id: id.into(),
            version: None,
            updated_at: None,
            fields: Vec::new(),
        }
    }

    /// Builder: sets a field (replacing a field of the same name).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set(name, value);
        self
    }

    /// Builder: sets the version token.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Builder: sets the last-change time (RFC 3339).
    pub fn with_updated_at(mut self, updated_at: impl Into<String>) -> Self {
        self.updated_at = Some(updated_at.into());
        self
    }

    /// The value of a field, or `None` when the field is absent.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.value)
    }

    /// A mutable reference to a field's value.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.fields
            .iter_mut()
            .find(|f| f.name == name)
            .map(|f| &mut f.value)
    }

    /// The text of a field, when present and a `text` value.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_text)
    }

    /// True when the field is present (even as `null`).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets a field, replacing a field of the same name or appending it.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.fields.iter_mut().find(|f| f.name == name) {
            Some(field) => field.value = value,
            None => self.fields.push(Field { name, value }),
        }
    }

    /// Removes a field (making it absent); returns its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let index = self.fields.iter().position(|f| f.name == name)?;
        Some(self.fields.remove(index).value)
    }
}

impl FieldDef {
    /// A writable, optional, standard field; multi-valued only for `MultiChoice`.
    pub fn new(name: impl Into<String>, label: impl Into<String>, kind: FieldType) -> Self {
        FieldDef {
            name: name.into(),
            label: label.into(),
            kind,
            required: false,
            writable: true,
            multi_value: matches!(kind, FieldType::MultiChoice),
            custom: false,
            well_known: None,
            choices: Vec::new(),
        }
    }

    /// Builder: the app refuses a create without this field.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Builder: the field cannot be written through the API.
    pub fn read_only(mut self) -> Self {
        self.writable = false;
        self
    }

    /// Builder: the value travels as `Value::Texts`.
    pub fn multi_value(mut self) -> Self {
        self.multi_value = true;
        self
    }

    /// Builder: a field the account defined.
    pub fn custom(mut self) -> Self {
        self.custom = true;
        self
    }

    /// Builder: the field's well-known meaning (`email`, `first-name`...; see the
    /// authoring guide for the vocabulary).
    pub fn well_known(mut self, tag: impl Into<String>) -> Self {
        self.well_known = Some(tag.into());
        self
    }

    /// Builder: the allowed values of a choice field, as `(value, label)` pairs.
    pub fn choices<I, V, L>(mut self, choices: I) -> Self
    where
        I: IntoIterator<Item = (V, L)>,
        V: Into<String>,
        L: Into<String>,
    {
        self.choices = choices
            .into_iter()
            .map(|(value, label)| Choice {
                value: value.into(),
                label: label.into(),
            })
            .collect();
        self
    }
}

impl EntityInfo {
    /// A full-listing entity (not incremental, no tombstones, no containers) with
    /// page and batch sizes of 100.
    pub fn new(name: impl Into<String>, label: impl Into<String>) -> Self {
        EntityInfo {
            name: name.into(),
            label: label.into(),
            incremental: false,
            deletes: DeleteDetection::None,
            containers: false,
            max_page_size: 100,
            max_batch_size: 100,
        }
    }

    /// Builder: `pull` with a cursor returns only changes since the cursor.
    pub fn incremental(mut self) -> Self {
        self.incremental = true;
        self
    }

    /// Builder: `pull` reports deleted ids.
    pub fn tombstones(mut self) -> Self {
        self.deletes = DeleteDetection::Tombstones;
        self
    }

    /// Builder: the entity has containers (lists, groups).
    pub fn with_containers(mut self) -> Self {
        self.containers = true;
        self
    }

    /// Builder: the largest page `pull` returns.
    pub fn page_size(mut self, max: u32) -> Self {
        self.max_page_size = max;
        self
    }

    /// Builder: the largest number of writes `push` accepts.
    pub fn batch_size(mut self, max: u32) -> Self {
        self.max_batch_size = max;
        self
    }
}

impl PluginInfo {
    /// A connector description with no entities yet.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        app: impl Into<String>,
    ) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            app: app.into(),
            entities: Vec::new(),
            rate_limits: Vec::new(),
        }
    }

    /// Builder: adds an entity.
    pub fn entity(mut self, entity: EntityInfo) -> Self {
        self.entities.push(entity);
        self
    }

    /// Builder: adds a request budget of the app (`requests` per `per_seconds`).
    pub fn rate_limit(mut self, requests: u32, per_seconds: u32) -> Self {
        self.rate_limits.push(RateLimit {
            requests,
            per_seconds,
        });
        self
    }
}

impl AccountInfo {
    /// A stable account id and a human description.
    pub fn new(account_id: impl Into<String>, display_name: impl Into<String>) -> Self {
        AccountInfo {
            account_id: account_id.into(),
            display_name: display_name.into(),
        }
    }
}

impl Container {
    /// A container (list, group).
    pub fn new(id: impl Into<String>, name: impl Into<String>, member_count: Option<u64>) -> Self {
        Container {
            id: id.into(),
            name: name.into(),
            member_count,
        }
    }
}

impl Page {
    /// The last page of a listing; `checkpoint` is the cursor for the next incremental run.
    pub fn last(records: Vec<Record>, checkpoint: Option<String>) -> Self {
        Page {
            records,
            deleted: Vec::new(),
            next_cursor: checkpoint,
            more: false,
        }
    }

    /// A page with more to come: call `pull` again with `cursor`.
    pub fn more(records: Vec<Record>, cursor: impl Into<String>) -> Self {
        Page {
            records,
            deleted: Vec::new(),
            next_cursor: Some(cursor.into()),
            more: true,
        }
    }

    /// Builder: ids deleted since the cursor.
    pub fn with_deleted(mut self, deleted: Vec<String>) -> Self {
        self.deleted = deleted;
        self
    }
}

impl MapContext {
    /// The context of a mapper call (used by tests; the host builds the real one).
    pub fn new(
        sync: impl Into<String>,
        source: impl Into<String>,
        target: impl Into<String>,
        entity: impl Into<String>,
    ) -> Self {
        MapContext {
            sync: sync.into(),
            source: source.into(),
            target: target.into(),
            entity: entity.into(),
        }
    }
}

impl Default for MapContext {
    /// An empty context, for tests.
    fn default() -> Self {
        MapContext::new("", "", "", "")
    }
}

impl Error {
    /// The same error, its message prefixed with what was being done
    /// (`GET contacts/7: not found: ...`); the case (and so the host's retry decision)
    /// is kept.
    ///
    /// ```
    /// use tandem_sdk::Error;
    /// let e = Error::not_found("no contact 7").context("GET contacts/7");
    /// assert_eq!(e, Error::NotFound("GET contacts/7: no contact 7".into()));
    /// ```
    pub fn context(self, what: &str) -> Self {
        let prefix = |m: String| format!("{what}: {m}");
        match self {
            Error::Unauthorized(m) => Error::Unauthorized(prefix(m)),
            Error::Forbidden(m) => Error::Forbidden(prefix(m)),
            Error::NotFound(m) => Error::NotFound(prefix(m)),
            Error::Invalid(m) => Error::Invalid(prefix(m)),
            Error::Conflict(m) => Error::Conflict(prefix(m)),
            Error::CursorExpired(m) => Error::CursorExpired(prefix(m)),
            Error::Transient(m) => Error::Transient(prefix(m)),
            Error::Fatal(m) => Error::Fatal(prefix(m)),
            Error::RateLimited(mut info) => {
                info.message = prefix(info.message);
                Error::RateLimited(info)
            }
        }
    }

    /// The credentials are missing, wrong or expired.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Error::Unauthorized(message.into())
    }

    /// The credentials lack a permission.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden(message.into())
    }

    /// The record or container does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }

    /// The app refused the call for now; `retry_after_ms` when it said how long to wait.
    pub fn rate_limited(retry_after_ms: Option<u64>, message: impl Into<String>) -> Self {
        Error::RateLimited(RetryInfo {
            retry_after_ms,
            message: message.into(),
        })
    }

    /// The app refused the input; retrying will not help.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// The record changed since the given version.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict(message.into())
    }

    /// The incremental cursor is no longer valid: the host will run a full listing.
    pub fn cursor_expired(message: impl Into<String>) -> Self {
        Error::CursorExpired(message.into())
    }

    /// A passing failure; the host retries later.
    pub fn transient(message: impl Into<String>) -> Self {
        Error::Transient(message.into())
    }

    /// Anything else; the call should not be retried as is.
    pub fn fatal(message: impl Into<String>) -> Self {
        Error::Fatal(message.into())
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        match self {
            Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::NotFound(m)
            | Error::Invalid(m)
            | Error::Conflict(m)
            | Error::CursorExpired(m)
            | Error::Transient(m)
            | Error::Fatal(m) => m,
            Error::RateLimited(info) => &info.message,
        }
    }

    /// True when the host may retry the call later (rate-limited, transient).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::RateLimited(_) | Error::Transient(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_builder_sets_replaces_and_removes_fields() {
        let mut record = Record::new("7")
            .with("email", "a@example.com")
            .with("score", 3.0)
            .with("dnd", false)
            .with("email", "b@example.com")
            .with_version("v2");
        assert_eq!(record.fields.len(), 3);
        assert_eq!(record.text("email"), Some("b@example.com"));
        assert_eq!(record.get("score").and_then(Value::as_number), Some(3.0));
        assert_eq!(record.get("dnd").and_then(Value::as_bool), Some(false));
        assert_eq!(record.version.as_deref(), Some("v2"));
        assert!(!record.has("phone"));
        assert_eq!(record.remove("score"), Some(Value::Number(3.0)));
        assert!(!record.has("score"));
        assert_eq!(record.remove("score"), None);
    }

    #[test]
    fn absent_and_null_are_different() {
        let record = Record::new("1").with("phone", Value::Null);
        assert!(record.has("phone"));
        assert!(record.get("phone").unwrap().is_null());
        assert_eq!(record.text("phone"), None);
        assert_eq!(record.get("mobile"), None);
        assert_eq!(Value::from(None::<String>), Value::Null);
        assert_eq!(Value::from(Some("x")), Value::text("x"));
    }

    #[test]
    fn value_accessors_only_match_their_own_case() {
        let texts = Value::texts(["a", "b"]);
        assert_eq!(
            texts.as_texts(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        assert_eq!(texts.as_text(), None);
        assert_eq!(Value::text("1").as_number(), None);
        assert_eq!(Value::from(2_i64), Value::Number(2.0));
        assert_eq!(Value::Number(1.0).as_bool(), None);
    }

    #[test]
    fn field_def_builder() {
        let def = FieldDef::new("cf_tags", "Tags", FieldType::MultiChoice)
            .custom()
            .well_known("tags")
            .choices([("a", "Alpha"), ("b", "Beta")]);
        assert!(def.multi_value && def.custom && def.writable && !def.required);
        assert_eq!(def.well_known.as_deref(), Some("tags"));
        assert_eq!(def.choices[1].label, "Beta");
        assert!(
            !FieldDef::new("id", "Id", FieldType::Text)
                .read_only()
                .writable
        );
    }

    #[test]
    fn error_helpers() {
        let err = Error::rate_limited(Some(1500), "slow down");
        assert!(err.is_retryable());
        assert_eq!(err.message(), "slow down");
        assert!(!Error::invalid("bad").is_retryable());
        assert_eq!(Error::not_found("gone"), Error::NotFound("gone".into()));
    }
}
