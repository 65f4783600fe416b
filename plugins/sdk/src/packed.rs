//! The guest side of `mapper-batch-api`: records from and to the packed (columnar) form,
//! so that a [`crate::Mapper`] sees the same [`Record`]s whichever export the host calls.
//!
//! The host builds the input, so a bad span in it is a host bug: it panics (the call
//! traps and fails as a whole, as any mapper panic does).

use std::collections::HashMap;

use crate::__bindings::mapper_batch::exports::tandem::plugin::mapper_batch_api::{
    MappedBatch, PackedField, PackedRecord, PackedValue, RecordBatch, Span,
};
use crate::types::{Error, Field, Record, Value};

fn text(batch: &RecordBatch, span: Span) -> &str {
    let start = span.start as usize;
    &batch.text[start..start + span.len as usize]
}

/// The records of a packed batch, in order.
pub(crate) fn unpack(batch: &RecordBatch) -> Vec<Record> {
    let names: Vec<&str> = batch.names.iter().map(|s| text(batch, *s)).collect();
    batch
        .records
        .iter()
        .map(|packed| {
            let start = packed.fields.start as usize;
            let fields = batch.fields[start..start + packed.fields.len as usize]
                .iter()
                .map(|field| Field {
                    name: names[field.name as usize].to_owned(),
                    value: match field.value {
                        PackedValue::Null => Value::Null,
                        PackedValue::Text(span) => Value::Text(text(batch, span).to_owned()),
                        PackedValue::Number(n) => Value::Number(n),
                        PackedValue::Boolean(b) => Value::Boolean(b),
                        PackedValue::Texts(range) => {
                            let start = range.start as usize;
                            Value::Texts(
                                batch.items[start..start + range.len as usize]
                                    .iter()
                                    .map(|s| text(batch, *s).to_owned())
                                    .collect(),
                            )
                        }
                    },
                })
                .collect();
            Record {
                id: text(batch, packed.id).to_owned(),
                version: packed.version.map(|s| text(batch, s).to_owned()),
                updated_at: packed.updated_at.map(|s| text(batch, s).to_owned()),
                fields,
            }
        })
        .collect()
}

/// Builds the packed answer. `capacity` is a guess of the text's size (the input's).
pub(crate) fn pack(results: Vec<Result<Option<Record>, Error>>, capacity: usize) -> MappedBatch {
    let mut packer = Packer {
        batch: RecordBatch {
            text: String::with_capacity(capacity),
            names: Vec::new(),
            records: Vec::with_capacity(results.len()),
            fields: Vec::new(),
            items: Vec::new(),
        },
        index: HashMap::new(),
        previous: Vec::new(),
        current: Vec::new(),
    };
    let results = results
        .into_iter()
        .map(|result| result.map(|kept| kept.map(|record| packer.record(&record))))
        .collect();
    MappedBatch {
        records: packer.batch,
        results,
    }
}

struct Packer {
    batch: RecordBatch,
    index: HashMap<String, u32>,
    /// The name indices of the previous record's fields: records usually list the same
    /// names in the same order, so a name is compared with that one before a lookup.
    previous: Vec<u32>,
    current: Vec<u32>,
}

impl Packer {
    /// Offsets are 32-bit: a guest's memory is at most 4 GiB, so they cannot overflow.
    fn text(&mut self, s: &str) -> Span {
        let start = self.batch.text.len() as u32;
        self.batch.text.push_str(s);
        Span {
            start,
            len: s.len() as u32,
        }
    }

    fn name(&mut self, position: usize, name: &str) -> u32 {
        if let Some(&i) = self.previous.get(position)
            && text(&self.batch, self.batch.names[i as usize]) == name
        {
            return i;
        }
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.batch.names.len() as u32;
        let span = self.text(name);
        self.batch.names.push(span);
        self.index.insert(name.to_owned(), i);
        i
    }

    /// Appends `record`; returns its index in `records`.
    fn record(&mut self, record: &Record) -> u32 {
        let id = self.text(&record.id);
        let version = record.version.as_deref().map(|v| self.text(v));
        let updated_at = record.updated_at.as_deref().map(|v| self.text(v));
        let first = self.batch.fields.len() as u32;
        self.current.clear();
        for (position, field) in record.fields.iter().enumerate() {
            let name = self.name(position, &field.name);
            self.current.push(name);
            let value = match &field.value {
                Value::Null => PackedValue::Null,
                Value::Text(t) => PackedValue::Text(self.text(t)),
                Value::Number(n) => PackedValue::Number(*n),
                Value::Boolean(b) => PackedValue::Boolean(*b),
                Value::Texts(items) => {
                    let start = self.batch.items.len() as u32;
                    for item in items {
                        let span = self.text(item);
                        self.batch.items.push(span);
                    }
                    PackedValue::Texts(Span {
                        start,
                        len: items.len() as u32,
                    })
                }
            };
            self.batch.fields.push(PackedField { name, value });
        }
        std::mem::swap(&mut self.previous, &mut self.current);
        let i = self.batch.records.len() as u32;
        self.batch.records.push(PackedRecord {
            id,
            version,
            updated_at,
            fields: Span {
                start: first,
                len: record.fields.len() as u32,
            },
        });
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        vec![
            Record::new("1")
                .with("email", "a@x.example")
                .with("score", Value::Number(2.5))
                .with("dnd", Value::Boolean(false))
                .with("note", Value::Null)
                .with("tags", Value::texts(["é", ""])),
            Record {
                version: Some("v".into()),
                updated_at: Some("2026-12-07T10:00:00Z".into()),
                ..Record::new("日本")
                    .with("tags", Value::texts(Vec::<String>::new()))
                    .with("email", "😀")
            },
        ]
    }

    #[test]
    fn packed_answers_unpack_to_the_same_records() {
        let input = records();
        let results = vec![
            Ok(Some(input[0].clone())),
            Ok(None),
            Err(Error::invalid("no")),
            Ok(Some(input[1].clone())),
        ];
        let mapped = pack(results, 0);
        assert_eq!(mapped.records.names.len(), 5, "each name once");
        assert_eq!(
            mapped.results,
            vec![
                Ok(Some(0)),
                Ok(None),
                Err(Error::invalid("no")),
                Ok(Some(1))
            ]
        );
        assert_eq!(unpack(&mapped.records), input);
    }
}
