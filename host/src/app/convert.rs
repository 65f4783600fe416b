//! The one place where the runtime's WIT types and the sync engine's types meet.
//!
//! The engine keeps its own plain types (`sync::source`, `sync::model`) so that the
//! planner and its tests never depend on wasmtime; the adapters in [`super::adapter`]
//! convert here, in both directions, and nowhere else.

use crate::runtime::types as wit;
use crate::runtime::{CallError, TrapKind};
use crate::sync::model::{Record, Value};
use crate::sync::source::{
    Choice, Container, EntityInfo, FieldDef, FieldType, Lookup, MapContext, Page, PullRequest,
    SourceError, Write, WriteOp, WriteResult,
};

/// A WIT value as the engine's value.
pub fn value_from_wit(v: wit::Value) -> Value {
    match v {
        wit::Value::Null => Value::Null,
        wit::Value::Text(s) => Value::Text(s),
        wit::Value::Number(n) => Value::Number(n),
        wit::Value::Boolean(b) => Value::Bool(b),
        wit::Value::Texts(v) => Value::Texts(v),
    }
}

/// The engine's value as a WIT value.
pub fn value_to_wit(v: Value) -> wit::Value {
    match v {
        Value::Null => wit::Value::Null,
        Value::Text(s) => wit::Value::Text(s),
        Value::Number(n) => wit::Value::Number(n),
        Value::Bool(b) => wit::Value::Boolean(b),
        Value::Texts(v) => wit::Value::Texts(v),
    }
}

fn fields_to_wit(fields: Vec<(String, Value)>) -> Vec<wit::Field> {
    fields
        .into_iter()
        .map(|(name, value)| wit::Field {
            name,
            value: value_to_wit(value),
        })
        .collect()
}

/// A WIT record as the engine's record. A field listed twice keeps its last value.
pub fn record_from_wit(r: wit::Record) -> Record {
    Record {
        id: r.id,
        version: r.version,
        updated_at: r.updated_at,
        fields: r
            .fields
            .into_iter()
            .map(|f| (f.name, value_from_wit(f.value)))
            .collect(),
    }
}

/// The engine's record as a WIT record (fields in name order).
pub fn record_to_wit(r: Record) -> wit::Record {
    wit::Record {
        id: r.id,
        version: r.version,
        updated_at: r.updated_at,
        fields: fields_to_wit(r.fields.into_iter().collect()),
    }
}

fn field_type_from_wit(t: wit::FieldType) -> FieldType {
    match t {
        wit::FieldType::Text => FieldType::Text,
        wit::FieldType::LongText => FieldType::LongText,
        wit::FieldType::Number => FieldType::Number,
        wit::FieldType::Boolean => FieldType::Boolean,
        wit::FieldType::Date => FieldType::Date,
        wit::FieldType::Datetime => FieldType::Datetime,
        wit::FieldType::Email => FieldType::Email,
        wit::FieldType::Phone => FieldType::Phone,
        wit::FieldType::Url => FieldType::Url,
        wit::FieldType::Choice => FieldType::Choice,
        wit::FieldType::MultiChoice => FieldType::MultiChoice,
        wit::FieldType::Reference => FieldType::Reference,
    }
}

/// A WIT field definition as the engine's.
pub fn field_def_from_wit(d: wit::FieldDef) -> FieldDef {
    FieldDef {
        name: d.name,
        label: d.label,
        kind: field_type_from_wit(d.kind),
        required: d.required,
        writable: d.writable,
        multi_value: d.multi_value,
        custom: d.custom,
        well_known: d.well_known,
        choices: d
            .choices
            .into_iter()
            .map(|c| Choice {
                value: c.value,
                label: c.label,
            })
            .collect(),
    }
}

/// A WIT entity description as the engine's.
pub fn entity_from_wit(e: &wit::EntityInfo) -> EntityInfo {
    EntityInfo {
        name: e.name.clone(),
        incremental: e.incremental,
        tombstones: matches!(e.deletes, wit::DeleteDetection::Tombstones),
        containers: e.containers,
        max_page_size: e.max_page_size,
        max_batch_size: e.max_batch_size,
    }
}

/// A WIT container as the engine's.
pub fn container_from_wit(c: wit::Container) -> Container {
    Container {
        id: c.id,
        name: c.name,
        member_count: c.member_count,
    }
}

/// The engine's pull request as WIT's.
pub fn pull_to_wit(r: PullRequest) -> wit::PullRequest {
    wit::PullRequest {
        entity: r.entity,
        container: r.container,
        cursor: r.cursor,
        full: r.full,
        page_size: r.page_size,
    }
}

/// A WIT page as the engine's.
pub fn page_from_wit(p: wit::Page) -> Page {
    Page {
        records: p.records.into_iter().map(record_from_wit).collect(),
        deleted: p.deleted,
        next_cursor: p.next_cursor,
        more: p.more,
    }
}

/// The engine's lookup as WIT's.
pub fn lookup_to_wit(l: Lookup) -> wit::Lookup {
    match l {
        Lookup::Email(e) => wit::Lookup::Email(e),
        Lookup::Marker(m) => wit::Lookup::Marker(m),
        Lookup::Ids(ids) => wit::Lookup::Ids(ids),
    }
}

/// The engine's lookup as a key of `lookup-api.find-many`.
pub fn lookup_to_key(l: Lookup) -> wit::LookupKey {
    match l {
        Lookup::Email(e) => wit::LookupKey::Email(e),
        Lookup::Marker(m) => wit::LookupKey::Marker(m),
        Lookup::Ids(ids) => wit::LookupKey::Ids(ids),
    }
}

/// The engine's write as WIT's.
pub fn write_to_wit(w: Write) -> wit::Write {
    let op = match w.op {
        WriteOp::Create {
            fields,
            marker,
            containers,
        } => wit::Op::Create(wit::CreateOp {
            fields: fields_to_wit(fields),
            marker,
            containers,
        }),
        WriteOp::Update {
            id,
            if_version,
            fields,
        } => wit::Op::Update(wit::UpdateOp {
            id,
            if_version,
            fields: fields_to_wit(fields),
        }),
        WriteOp::Delete(id) => wit::Op::Delete(id),
        WriteOp::AddToContainer { container, ids } => {
            wit::Op::AddToContainer(wit::MembershipOp { container, ids })
        }
        WriteOp::RemoveFromContainer { container, ids } => {
            wit::Op::RemoveFromContainer(wit::MembershipOp { container, ids })
        }
    };
    wit::Write {
        ref_: w.reference,
        op,
    }
}

/// A WIT write result as the engine's.
pub fn write_result_from_wit(r: wit::WriteResult) -> WriteResult {
    WriteResult {
        reference: r.ref_,
        outcome: r
            .outcome
            .map(|o| o.map(record_from_wit))
            .map_err(error_from_wit),
    }
}

/// A plugin's typed error as the engine's.
pub fn error_from_wit(e: wit::Error) -> SourceError {
    match e {
        wit::Error::Unauthorized(m) => SourceError::Unauthorized(m),
        wit::Error::Forbidden(m) => SourceError::Forbidden(m),
        wit::Error::NotFound(m) => SourceError::NotFound(m),
        wit::Error::RateLimited(info) => SourceError::RateLimited {
            retry_after_ms: info.retry_after_ms,
            message: info.message,
        },
        wit::Error::Invalid(m) => SourceError::Invalid(m),
        wit::Error::Conflict(m) => SourceError::Conflict(m),
        wit::Error::CursorExpired(m) => SourceError::CursorExpired(m),
        wit::Error::Transient(m) => SourceError::Transient(m),
        wit::Error::Fatal(m) => SourceError::Fatal(m),
    }
}

/// A failed plugin call as the engine's error. A wall-time timeout or a CPU deadline
/// may pass (a busy machine), and so does a full instance pool: transient. Any other
/// trap is the plugin's bug: fatal.
pub fn call_error(e: CallError) -> SourceError {
    match e {
        CallError::Plugin { error, .. } => error_from_wit(error),
        e @ (CallError::Timeout { .. } | CallError::Busy { .. }) => {
            SourceError::Transient(e.to_string())
        }
        e @ CallError::Trap {
            kind: TrapKind::Interrupt,
            ..
        } => SourceError::Transient(e.to_string()),
        e => SourceError::Fatal(e.to_string()),
    }
}

/// A failed mapper call as the engine's error. A mapper does no I/O, so whatever stops it
/// stops it again on the same records: running out of its CPU deadline (epoch interrupt)
/// or its wall time is fatal, exactly like running out of fuel, and is never retried as
/// if the machine had been busy. Only a full instance pool (nothing ran) is transient.
pub fn mapper_call_error(e: CallError) -> SourceError {
    match e {
        CallError::Plugin { error, .. } => error_from_wit(error),
        e @ CallError::Busy { .. } => SourceError::Transient(e.to_string()),
        e => SourceError::Fatal(e.to_string()),
    }
}

/// The engine's mapper context as WIT's.
pub fn map_context_to_wit(c: &MapContext) -> wit::MapContext {
    wit::MapContext {
        sync: c.sync.clone(),
        source: c.source.clone(),
        target: c.target.clone(),
        entity: c.entity.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapper's timeout or CPU deadline is as fatal as its fuel running out; a
    /// connector's is passing.
    #[test]
    fn a_mapper_timeout_is_fatal_like_its_fuel() {
        let trap = |kind| CallError::Trap {
            plugin: "m 1".into(),
            export: "map",
            kind,
            detail: "x".into(),
            stderr: String::new(),
        };
        let timeout = || CallError::Timeout {
            plugin: "m 1".into(),
            export: "map",
            limit: std::time::Duration::from_secs(1),
            stderr: String::new(),
            http_wait: None,
        };
        for e in [
            trap(TrapKind::Interrupt),
            trap(TrapKind::OutOfFuel),
            timeout(),
        ] {
            let shown = e.to_string();
            assert_eq!(mapper_call_error(e), SourceError::Fatal(shown));
        }
        assert!(call_error(trap(TrapKind::Interrupt)).is_retryable());
        assert!(call_error(timeout()).is_retryable());
    }

    #[test]
    fn values_round_trip_and_null_stays_distinct_from_absent() {
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Number(2.5),
            Value::Text("x".into()),
            Value::Texts(vec!["a".into(), "b".into()]),
        ];
        for v in values {
            assert_eq!(value_from_wit(value_to_wit(v.clone())), v);
        }
        let mut r = Record {
            id: "7".into(),
            version: Some("v1".into()),
            updated_at: Some("2024-05-01T10:00:00Z".into()),
            ..Record::default()
        };
        r.fields
            .insert("email".into(), Value::Text("a@b.example".into()));
        r.fields.insert("phone".into(), Value::Null);
        let back = record_from_wit(record_to_wit(r.clone()));
        assert_eq!(back, r);
        assert!(!back.fields.contains_key("mobile"));
    }

    #[test]
    fn writes_keep_their_reference_and_shape() {
        let w = Write {
            reference: "op-1".into(),
            op: WriteOp::RemoveFromContainer {
                container: "L1".into(),
                ids: vec!["9".into()],
            },
        };
        let wit = write_to_wit(w);
        assert_eq!(wit.ref_, "op-1");
        assert!(matches!(
            wit.op,
            wit::Op::RemoveFromContainer(wit::MembershipOp { ref container, ref ids })
                if container == "L1" && ids == &["9".to_string()]
        ));
        let r = write_result_from_wit(wit::WriteResult {
            ref_: "op-1".into(),
            outcome: Err(wit::Error::RateLimited(wit::RetryInfo {
                retry_after_ms: Some(1500),
                message: "slow down".into(),
            })),
        });
        assert_eq!(
            r.outcome,
            Err(SourceError::RateLimited {
                retry_after_ms: Some(1500),
                message: "slow down".into()
            })
        );
    }
}
