//! The packed (columnar) form of records for the optional `mapper-batch-api` export.
//!
//! `mapper-api.map` lowers every id, field name and value as its own string, and each
//! costs the host a call into the guest's allocator; over 1,000 records that was most of
//! a mapper call. Packed, a batch is one string holding every text, each field name once,
//! and flat tables of numbers: a handful of allocations in the guest whatever the size.
//! The guest answers in the same form; [`unpack`] checks every span and index of it and
//! fails only the record that holds a bad one.

use std::collections::HashMap;

use super::bindings::mapper_batch_api::{
    MappedBatch, PackedField, PackedRecord, PackedValue, RecordBatch, Span,
};
use super::types::{Error, Field, Record, Value};

/// The batch is too large for the packed form's 32-bit offsets.
#[derive(Debug)]
pub struct TooLarge;

/// Packs `records`. Field names are stored once each; consecutive records usually list the
/// same names in the same order, so a name is first compared with the one at the same
/// position of the previous record before it is looked up.
pub fn pack(records: &[Record]) -> Result<RecordBatch, TooLarge> {
    let mut batch = RecordBatch {
        text: String::new(),
        names: Vec::new(),
        records: Vec::with_capacity(records.len()),
        fields: Vec::with_capacity(records.iter().map(|r| r.fields.len()).sum()),
        items: Vec::new(),
    };
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let mut previous: Vec<u32> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    for record in records {
        let id = push_text(&mut batch.text, &record.id)?;
        let version = record
            .version
            .as_deref()
            .map(|v| push_text(&mut batch.text, v))
            .transpose()?;
        let updated_at = record
            .updated_at
            .as_deref()
            .map(|v| push_text(&mut batch.text, v))
            .transpose()?;
        let first = u32::try_from(batch.fields.len()).map_err(|_| TooLarge)?;
        current.clear();
        for (position, field) in record.fields.iter().enumerate() {
            let name = match previous.get(position) {
                Some(&i) if names[i as usize] == field.name => i,
                _ => match index.get(field.name.as_str()) {
                    Some(&i) => i,
                    None => {
                        let i = u32::try_from(names.len()).map_err(|_| TooLarge)?;
                        let span = push_text(&mut batch.text, &field.name)?;
                        batch.names.push(span);
                        names.push(&field.name);
                        index.insert(&field.name, i);
                        i
                    }
                },
            };
            current.push(name);
            let value = match &field.value {
                Value::Null => PackedValue::Null,
                Value::Text(t) => PackedValue::Text(push_text(&mut batch.text, t)?),
                Value::Number(n) => PackedValue::Number(*n),
                Value::Boolean(b) => PackedValue::Boolean(*b),
                Value::Texts(items) => {
                    let start = u32::try_from(batch.items.len()).map_err(|_| TooLarge)?;
                    for item in items {
                        let span = push_text(&mut batch.text, item)?;
                        batch.items.push(span);
                    }
                    PackedValue::Texts(Span {
                        start,
                        len: items.len() as u32,
                    })
                }
            };
            batch.fields.push(PackedField { name, value });
        }
        std::mem::swap(&mut previous, &mut current);
        batch.records.push(PackedRecord {
            id,
            version,
            updated_at,
            fields: Span {
                start: first,
                len: u32::try_from(record.fields.len()).map_err(|_| TooLarge)?,
            },
        });
    }
    Ok(batch)
}

fn push_text(text: &mut String, s: &str) -> Result<Span, TooLarge> {
    let start = u32::try_from(text.len()).map_err(|_| TooLarge)?;
    let len = u32::try_from(s.len()).map_err(|_| TooLarge)?;
    start.checked_add(len).ok_or(TooLarge)?;
    text.push_str(s);
    Ok(Span { start, len })
}

/// Unpacks a mapper's answer: one entry per result, in order. A result whose record has a
/// span or index out of range (or off a character boundary) becomes a `fatal` error of
/// that record only.
pub fn unpack(mapped: MappedBatch) -> Vec<Result<Option<Record>, Error>> {
    let batch = &mapped.records;
    // Names are checked once; a bad one fails only the records that use it.
    let names: Vec<Option<&str>> = batch.names.iter().map(|s| text(batch, *s)).collect();
    mapped
        .results
        .iter()
        .map(|result| match result {
            Ok(Some(i)) => record(batch, &names, *i).map(Some).ok_or_else(|| {
                Error::Fatal(format!(
                    "the mapper's packed record {i} is malformed: a span or index is out of range"
                ))
            }),
            Ok(None) => Ok(None),
            Err(e) => Err(e.clone()),
        })
        .collect()
}

fn text(batch: &RecordBatch, span: Span) -> Option<&str> {
    let start = span.start as usize;
    batch.text.get(start..start.checked_add(span.len as usize)?)
}

fn range<T>(table: &[T], span: Span) -> Option<&[T]> {
    let start = span.start as usize;
    table.get(start..start.checked_add(span.len as usize)?)
}

fn record(batch: &RecordBatch, names: &[Option<&str>], i: u32) -> Option<Record> {
    let packed = batch.records.get(i as usize)?;
    let owned = |span: Span| text(batch, span).map(str::to_owned);
    // `None` inside when absent; `None` outside when the span is bad.
    let optional = |span: Option<Span>| match span {
        Some(span) => owned(span).map(Some),
        None => Some(None),
    };
    let fields = range(&batch.fields, packed.fields)?
        .iter()
        .map(|field| {
            let name = (*names.get(field.name as usize)?)?.to_owned();
            let value = match field.value {
                PackedValue::Null => Value::Null,
                PackedValue::Text(span) => Value::Text(owned(span)?),
                PackedValue::Number(n) => Value::Number(n),
                PackedValue::Boolean(b) => Value::Boolean(b),
                PackedValue::Texts(span) => Value::Texts(
                    range(&batch.items, span)?
                        .iter()
                        .map(|s| owned(*s))
                        .collect::<Option<_>>()?,
                ),
            };
            Some(Field { name, value })
        })
        .collect::<Option<_>>()?;
    Some(Record {
        id: owned(packed.id)?,
        version: optional(packed.version)?,
        updated_at: optional(packed.updated_at)?,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        let field = |name: &str, value: Value| Field {
            name: name.into(),
            value,
        };
        vec![
            Record {
                id: "1".into(),
                version: Some("\"e1\"".into()),
                updated_at: None,
                fields: vec![
                    field("email", Value::Text("a@x.example".into())),
                    field("score", Value::Number(-1.5)),
                    field("dnd", Value::Boolean(true)),
                    field("note", Value::Null),
                    field("tags", Value::Texts(vec!["ä".into(), String::new()])),
                    field("empty", Value::Texts(vec![])),
                ],
            },
            Record {
                id: "日本".into(),
                version: None,
                updated_at: Some("2026-12-07T10:00:00Z".into()),
                // Other order, a repeated name, a new one.
                fields: vec![
                    field("score", Value::Number(f64::MAX)),
                    field("email", Value::Text(String::new())),
                    field("email", Value::Text("😀".into())),
                    field("first", Value::Text("Ömer".into())),
                ],
            },
            Record {
                id: String::new(),
                version: None,
                updated_at: None,
                fields: vec![],
            },
        ]
    }

    fn all_kept(batch: RecordBatch) -> MappedBatch {
        let results = (0..batch.records.len() as u32)
            .map(|i| Ok(Some(i)))
            .collect();
        MappedBatch {
            records: batch,
            results,
        }
    }

    #[test]
    fn pack_then_unpack_gives_the_records_back_with_each_name_once() {
        let input = records();
        let batch = pack(&input).unwrap();
        assert_eq!(
            batch.names.len(),
            6 + 1,
            "email score dnd note tags empty first"
        );
        let out = unpack(all_kept(batch));
        let expected: Vec<_> = input.into_iter().map(|r| Ok(Some(r))).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn drops_errors_and_bad_spans_are_per_record() {
        let mut batch = pack(&records()).unwrap();
        // Record 2's id now ends in the middle of a multi-byte character.
        let id = batch.records[1].id;
        batch.records[1].id = Span {
            start: id.start,
            len: 1,
        };
        let mapped = MappedBatch {
            records: batch,
            results: vec![
                Ok(None),
                Ok(Some(1)),
                Err(Error::Invalid("no".into())),
                Ok(Some(7)),
                Ok(Some(0)),
            ],
        };
        let out = unpack(mapped);
        assert_eq!(out.len(), 5);
        assert_eq!(out[0], Ok(None));
        assert!(matches!(&out[1], Err(Error::Fatal(m)) if m.contains("malformed")));
        assert_eq!(out[2], Err(Error::Invalid("no".into())));
        assert!(matches!(&out[3], Err(Error::Fatal(_))));
        assert_eq!(out[4], Ok(Some(records()[0].clone())));
    }

    #[test]
    fn out_of_range_name_field_and_item_indices_fail_the_record() {
        let base = pack(&records()).unwrap();
        let mut bad_name = base.clone();
        bad_name.fields[0].name = 99;
        let mut bad_fields = base.clone();
        bad_fields.records[0].fields.len = 1000;
        let mut bad_items = base.clone();
        bad_items.fields[4].value = PackedValue::Texts(Span {
            start: u32::MAX,
            len: 2,
        });
        for batch in [bad_name, bad_fields, bad_items] {
            let out = unpack(all_kept(batch));
            assert!(matches!(&out[0], Err(Error::Fatal(_))), "{:?}", out[0]);
            assert_eq!(out[1], Ok(Some(records()[1].clone())));
        }
    }
}
