//! The byte form of records for the optional `mapper-buffer-api` export (the layout is
//! documented on the interface in `wit/worlds.wit`).
//!
//! A batch crosses into the guest as one string and one byte table: two copies, no call
//! into the guest's allocator per text, no variant or record lowered field by field. The
//! answer names what the mapper changed; everything else is a reference to the input,
//! which the host copies from its own records, as a native transform would clone them.
//! [`decode`] checks every entry and fails only the record whose entry is malformed.

use std::collections::HashMap;

use super::types::{Error, Field, Record, Value};

/// The batch is too large for the layout's 32-bit lengths and counts.
#[derive(Debug)]
pub struct TooLarge;

/// An input batch: the texts and the table that describes them.
pub struct Encoded<'a> {
    pub text: String,
    pub table: Vec<u8>,
    /// The distinct field names, by index (answers refer to them).
    pub names: Vec<&'a str>,
}

fn u32_of(n: usize) -> Result<u32, TooLarge> {
    u32::try_from(n).map_err(|_| TooLarge)
}

struct Writer {
    text: String,
    table: Vec<u8>,
}

impl Writer {
    fn u32(&mut self, n: u32) {
        self.table.extend_from_slice(&n.to_le_bytes());
    }

    fn text(&mut self, s: &str) -> Result<(), TooLarge> {
        self.u32(u32_of(s.len())?);
        self.text.push_str(s);
        Ok(())
    }

    fn optional(&mut self, s: Option<&str>) -> Result<(), TooLarge> {
        match s {
            None => self.table.push(0),
            Some(s) => {
                self.table.push(1);
                self.text(s)?;
            }
        }
        Ok(())
    }
}

/// Encodes `records`. Field names are written once each; consecutive records usually list
/// the same names in the same order, so a name is first compared with the one at the
/// same position of the previous record before it is looked up.
pub fn encode(records: &[Record]) -> Result<Encoded<'_>, TooLarge> {
    let mut names: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut previous: Vec<u32> = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    // Name indices per field, in order: the names table goes first in the table.
    let mut field_names: Vec<u32> =
        Vec::with_capacity(records.iter().map(|r| r.fields.len()).sum());
    for record in records {
        current.clear();
        for (position, field) in record.fields.iter().enumerate() {
            let name = match previous.get(position) {
                Some(&i) if names[i as usize] == field.name => i,
                _ => match index.get(field.name.as_str()) {
                    Some(&i) => i,
                    None => {
                        let i = u32_of(names.len())?;
                        names.push(&field.name);
                        index.insert(&field.name, i);
                        i
                    }
                },
            };
            current.push(name);
            field_names.push(name);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    let text_len: usize = names.iter().map(|n| n.len()).sum::<usize>()
        + records.iter().map(record_text_len).sum::<usize>();
    let mut w = Writer {
        text: String::with_capacity(text_len),
        table: Vec::with_capacity(8 + names.len() * 4 + field_names.len() * 9 + records.len() * 16),
    };
    w.u32(u32_of(names.len())?);
    for name in &names {
        w.text(name)?;
    }
    w.u32(u32_of(records.len())?);
    w.u32(u32_of(field_names.len())?);
    w.u32(u32_of(
        records
            .iter()
            .flat_map(|r| &r.fields)
            .map(|f| match &f.value {
                Value::Texts(items) => items.len(),
                _ => 0,
            })
            .sum(),
    )?);
    let mut field_names = field_names.into_iter();
    for record in records {
        w.text(&record.id)?;
        w.optional(record.version.as_deref())?;
        w.optional(record.updated_at.as_deref())?;
        w.u32(u32_of(record.fields.len())?);
        for field in &record.fields {
            w.u32(field_names.next().unwrap_or_default());
            write_value(&mut w, &field.value)?;
        }
    }
    u32_of(w.text.len())?;
    u32_of(w.table.len())?;
    Ok(Encoded {
        text: w.text,
        table: w.table,
        names,
    })
}

fn record_text_len(record: &Record) -> usize {
    record.id.len()
        + record.version.as_ref().map_or(0, String::len)
        + record.updated_at.as_ref().map_or(0, String::len)
        + record
            .fields
            .iter()
            .map(|f| match &f.value {
                Value::Text(t) => t.len(),
                Value::Texts(items) => items.iter().map(String::len).sum(),
                _ => 0,
            })
            .sum::<usize>()
}

fn write_value(w: &mut Writer, value: &Value) -> Result<(), TooLarge> {
    match value {
        Value::Null => w.table.push(0),
        Value::Text(t) => {
            w.table.push(1);
            w.text(t)?;
        }
        Value::Number(n) => {
            w.table.push(2);
            w.table.extend_from_slice(&n.to_le_bytes());
        }
        Value::Boolean(b) => {
            w.table.push(3);
            w.table.push(u8::from(*b));
        }
        Value::Texts(items) => {
            w.table.push(4);
            w.u32(u32_of(items.len())?);
            for item in items {
                w.text(item)?;
            }
        }
    }
    Ok(())
}

/// Reads one answer entry; `None` at the first byte that is out of range or malformed.
struct Reader<'a> {
    table: &'a [u8],
    text: &'a str,
}

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.table.split_first_chunk::<N>()?;
        self.table = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    /// The next text: `len` bytes of the entry's texts, on character boundaries.
    fn text(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        let head = self.text.get(..len)?;
        self.text = &self.text[len..];
        Some(head)
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.u8()? {
            0 => Value::Null,
            1 => Value::Text(self.text()?.to_owned()),
            2 => Value::Number(f64::from_le_bytes(self.bytes()?)),
            3 => match self.u8()? {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                _ => return None,
            },
            4 => {
                let n = self.u32()? as usize;
                // Each item takes at least its 4-byte length: bound the allocation by it.
                let mut items = Vec::with_capacity(n.min(self.table.len() / 4));
                for _ in 0..n {
                    items.push(self.text()?.to_owned());
                }
                Value::Texts(items)
            }
            _ => return None,
        })
    }
}

/// The mapper's answer, as `map` would have returned it: one entry per input record, in
/// order. An entry that is malformed, or missing, fails its record with a `fatal` error.
pub fn decode(
    input: &[Record],
    names: &[&str],
    text: &str,
    table: &[u8],
    errors: &[Error],
) -> Vec<Result<Option<Record>, Error>> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest_table = table;
    let mut rest_text = text;
    for (i, record) in input.iter().enumerate() {
        let entry = frame(&mut rest_table, &mut rest_text)
            .and_then(|mut reader| entry(&mut reader, record, names, errors));
        out.push(entry.unwrap_or_else(|| {
            Err(Error::Fatal(format!(
                "the mapper's answer for record {i} is malformed: an entry, index or text is out of range"
            )))
        }));
    }
    out
}

/// Splits the next entry off the answer: its table bytes and its texts. Once a frame is
/// out of range, every later record fails too (the rest cannot be found).
fn frame<'a>(table: &mut &'a [u8], text: &mut &'a str) -> Option<Reader<'a>> {
    let mut head = Reader { table, text: "" };
    let table_len = head.u32()? as usize;
    let text_len = head.u32()? as usize;
    let entry_table = head.table.get(..table_len)?;
    let entry_text = text.get(..text_len)?;
    *table = &head.table[table_len..];
    *text = &text[text_len..];
    Some(Reader {
        table: entry_table,
        text: entry_text,
    })
}

fn entry(
    r: &mut Reader<'_>,
    input: &Record,
    names: &[&str],
    errors: &[Error],
) -> Option<Result<Option<Record>, Error>> {
    Some(match r.u8()? {
        0 => Ok(None),
        1 => Err(errors.get(r.u32()? as usize)?.clone()),
        2 => Ok(Some(input.clone())),
        3 => Ok(Some(changed(r, input, names)?)),
        _ => return None,
    })
}

fn changed(r: &mut Reader<'_>, input: &Record, names: &[&str]) -> Option<Record> {
    let id = match r.u8()? {
        0 => input.id.clone(),
        1 => r.text()?.to_owned(),
        _ => return None,
    };
    let mut optional = |kept: &Option<String>| -> Option<Option<String>> {
        Some(match r.u8()? {
            0 => kept.clone(),
            1 => None,
            2 => Some(r.text()?.to_owned()),
            _ => return None,
        })
    };
    let version = optional(&input.version)?;
    let updated_at = optional(&input.updated_at)?;
    let n = r.u32()? as usize;
    // Each field takes at least 5 bytes of the entry: bound the allocation by it.
    let mut fields = Vec::with_capacity(n.min(r.table.len() / 5));
    for _ in 0..n {
        fields.push(match r.u8()? {
            0 => input.fields.get(r.u32()? as usize)?.clone(),
            1 => {
                let name = match r.u32()? {
                    u32::MAX => r.text()?,
                    i => names.get(i as usize)?,
                };
                Field {
                    name: name.to_owned(),
                    value: r.value()?,
                }
            }
            _ => return None,
        });
    }
    Some(Record {
        id,
        version,
        updated_at,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: Value) -> Field {
        Field {
            name: name.into(),
            value,
        }
    }

    fn records() -> Vec<Record> {
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
                ],
            },
            Record {
                id: "日本".into(),
                version: None,
                updated_at: Some("2026-12-07T10:00:00Z".into()),
                fields: vec![
                    field("score", Value::Number(f64::MAX)),
                    field("email", Value::Text("😀".into())),
                    field("email", Value::Text(String::new())),
                ],
            },
        ]
    }

    /// Builds answer entries as a guest would.
    #[derive(Default)]
    struct Answer {
        text: String,
        table: Vec<u8>,
    }

    impl Answer {
        fn entry(&mut self, table: &[u8], text: &str) {
            self.table
                .extend_from_slice(&(table.len() as u32).to_le_bytes());
            self.table
                .extend_from_slice(&(text.len() as u32).to_le_bytes());
            self.table.extend_from_slice(table);
            self.text.push_str(text);
        }
    }

    fn le(n: u32) -> [u8; 4] {
        n.to_le_bytes()
    }

    #[test]
    fn names_are_written_once_and_in_the_layout_of_the_contract() {
        let input = records();
        let encoded = encode(&input).unwrap();
        assert_eq!(encoded.names, ["email", "score", "dnd", "note", "tags"]);
        let t = &encoded.table;
        assert_eq!(&t[..4], &le(5));
        // The texts: names first, then each record's in table order.
        assert!(
            encoded
                .text
                .starts_with("emailscoredndnotetags1\"e1\"a@x.exampleä日本2026-12-07T10:00:00Z😀")
        );
        // Record 1's `score`: name index 1, tag 2, the f64's bytes.
        let score: Vec<u8> = [&le(1)[..], &[2], &(-1.5f64).to_le_bytes()].concat();
        assert!(t.windows(score.len()).any(|w| w == score.as_slice()));
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The example of plugins/README.md §5.2, byte for byte.
    #[test]
    fn the_guides_example_is_the_layout() {
        let input = vec![Record {
            id: "7".into(),
            version: None,
            updated_at: None,
            fields: vec![
                field("email", Value::Text("A@x.io".into())),
                field("score", Value::Number(2.0)),
            ],
        }];
        let encoded = encode(&input).unwrap();
        assert_eq!(encoded.text, "emailscore7A@x.io");
        assert_eq!(
            encoded.table,
            hex(
                "02000000 05000000 05000000 01000000 02000000 00000000 01000000 00 00
                 02000000 00000000 01 06000000 01000000 02 0000000000000040"
            )
        );
        let answer = hex("17000000 06000000 03 00 00 00 02000000
                          01 00000000 01 06000000 00 01000000");
        let out = decode(&input, &encoded.names, "a@x.io", &answer, &[]);
        let mut expected = input[0].clone();
        expected.fields[0].value = Value::Text("a@x.io".into());
        assert_eq!(out, vec![Ok(Some(expected))]);
    }

    #[test]
    fn answers_copy_from_the_input_and_build_what_changed() {
        let input = records();
        let encoded = encode(&input).unwrap();
        let mut answer = Answer::default();
        // Record 0: a new id, version kept, updated-at set, fields: copy 4 (tags), a new
        // value under input name 0 (email), and a new name.
        let mut t = vec![3, 1];
        t.extend(le(1));
        t.extend([0, 2]);
        t.extend(le(4));
        t.extend(le(3));
        t.push(0);
        t.extend(le(4));
        t.push(1);
        t.extend(le(0));
        t.push(1);
        t.extend(le(2));
        t.push(1);
        t.extend(le(u32::MAX));
        t.extend(le(1));
        t.push(2);
        t.extend(0.5f64.to_le_bytes());
        answer.entry(&t, "9dateéx");
        // Record 1: unchanged.
        answer.entry(&[2], "");
        let out = decode(&input, &encoded.names, &answer.text, &answer.table, &[]);
        assert_eq!(
            out[0],
            Ok(Some(Record {
                id: "9".into(),
                version: Some("\"e1\"".into()),
                updated_at: Some("date".into()),
                fields: vec![
                    input[0].fields[4].clone(),
                    field("email", Value::Text("é".into())),
                    field("x", Value::Number(0.5)),
                ],
            }))
        );
        assert_eq!(out[1], Ok(Some(input[1].clone())));
    }

    #[test]
    fn drops_errors_and_malformed_entries_are_per_record() {
        let input = [records(), records()].concat();
        let encoded = encode(&input).unwrap();
        let mut answer = Answer::default();
        answer.entry(&[0], "");
        // A copy of a field the input record does not have.
        let mut t = vec![3, 0, 0, 0];
        t.extend(le(1));
        t.push(0);
        t.extend(le(9));
        answer.entry(&t, "");
        // A text that cuts a character in two.
        let mut t = vec![3, 1];
        t.extend(le(1));
        answer.entry(&t, "ä");
        answer.entry(&[1, 0, 0, 0, 0], "");
        let errors = [Error::Invalid("no".into())];
        let out = decode(&input, &encoded.names, &answer.text, &answer.table, &errors);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], Ok(None));
        assert!(matches!(&out[1], Err(Error::Fatal(m)) if m.contains("record 1 is malformed")));
        assert!(matches!(&out[2], Err(Error::Fatal(m)) if m.contains("record 2")));
        assert_eq!(out[3], Err(Error::Invalid("no".into())));

        // Missing entries, an error index out of range, an entry longer than the table.
        let mut short = Answer::default();
        short.entry(&[1, 5, 0, 0, 0], "");
        short.table.extend(le(100));
        short.table.extend(le(0));
        let out = decode(&input, &encoded.names, &short.text, &short.table, &errors);
        assert_eq!(out.len(), 4);
        assert!(
            out.iter().all(|r| matches!(r, Err(Error::Fatal(_)))),
            "{out:?}"
        );
    }
}
