//! The guest side of `mapper-buffer-api` (the layout is documented on the interface in
//! `wit/0.1.0/worlds.wit`): records read from the host's string and byte table, so that
//! a [`crate::Mapper`] sees the same [`Record`]s whichever export the host calls, and an
//! answer that names only what the mapper changed.
//!
//! The input is read once into borrowed views of the host's text (no copy), which serve
//! both to build the mapper's records and to compare its results with, field by field.
//! The host builds the input, so a malformed one is a host bug: reading it panics (the
//! call traps and fails as a whole, as any mapper panic does).

use crate::types::{Error, Field, Record, Value};

/// A `Value` whose texts borrow the input.
#[derive(Clone, Copy)]
enum ValueView<'a> {
    Null,
    Text(&'a str),
    Number(f64),
    Boolean(bool),
    /// A range of [`Input::items`].
    Texts(u32, u32),
}

#[derive(Clone, Copy)]
struct FieldView<'a> {
    /// An index into [`Input::names`].
    name: u32,
    value: ValueView<'a>,
}

struct RecordView<'a> {
    id: &'a str,
    version: Option<&'a str>,
    updated_at: Option<&'a str>,
    /// A range of [`Input::fields`].
    fields: (u32, u32),
}

/// An input batch, read: every text a slice of the host's string.
pub(crate) struct Input<'a> {
    /// The host's string, every text of the batch.
    text: &'a str,
    text_len: usize,
    table_len: usize,
    names: Vec<&'a str>,
    records: Vec<RecordView<'a>>,
    fields: Vec<FieldView<'a>>,
    items: Vec<&'a str>,
}

struct Reader<'a> {
    table: &'a [u8],
    text: &'a str,
}

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self
            .table
            .split_first_chunk::<N>()
            .expect("the host's table ends early");
        self.table = rest;
        *head
    }

    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }

    fn text(&mut self) -> &'a str {
        let len = self.u32() as usize;
        let (head, rest) = self.text.split_at(len);
        self.text = rest;
        head
    }

    fn optional(&mut self) -> Option<&'a str> {
        match self.u8() {
            0 => None,
            _ => Some(self.text()),
        }
    }
}

/// Reads the host's batch.
pub(crate) fn read<'a>(text: &'a str, table: &'a [u8]) -> Input<'a> {
    let mut r = Reader { table, text };
    let names = (0..r.u32()).map(|_| r.text()).collect();
    let n = r.u32() as usize;
    // The host's totals size each table once (they are only capacities: a wrong one
    // costs memory or a copy, never a wrong record).
    let (fields, items) = (r.u32() as usize, r.u32() as usize);
    let mut input = Input {
        text,
        text_len: text.len(),
        table_len: table.len(),
        names,
        records: Vec::with_capacity(n),
        fields: Vec::with_capacity(fields),
        items: Vec::with_capacity(items),
    };
    for _ in 0..n {
        let id = r.text();
        let version = r.optional();
        let updated_at = r.optional();
        let count = r.u32();
        let first = input.fields.len() as u32;
        for _ in 0..count {
            let name = r.u32();
            let value = match r.u8() {
                0 => ValueView::Null,
                1 => ValueView::Text(r.text()),
                2 => ValueView::Number(f64::from_le_bytes(r.bytes())),
                3 => ValueView::Boolean(r.u8() != 0),
                4 => {
                    let start = input.items.len() as u32;
                    let len = r.u32();
                    for _ in 0..len {
                        input.items.push(r.text());
                    }
                    ValueView::Texts(start, len)
                }
                tag => panic!("the host's table has a value of unknown kind {tag}"),
            };
            input.fields.push(FieldView { name, value });
        }
        input.records.push(RecordView {
            id,
            version,
            updated_at,
            fields: (first, count),
        });
    }
    input
}

impl<'a> Input<'a> {
    fn fields_of(&self, record: &RecordView<'a>) -> &[FieldView<'a>] {
        let (start, len) = record.fields;
        &self.fields[start as usize..(start + len) as usize]
    }

    fn items(&self, start: u32, len: u32) -> &[&'a str] {
        &self.items[start as usize..(start + len) as usize]
    }

    /// The records, owned, as the mapper gets them. With the SDK's arena, their texts
    /// are parts of one copy of the input's text, and their field names parts of one copy
    /// per record of the names its fields have (the same for most records of a batch):
    /// two copies and no allocation per record where each text would take one of each.
    pub(crate) fn records(&self) -> Vec<Record> {
        let Some(copy) = crate::arena::copy(self.text) else {
            return self.records_allocated();
        };
        let mut names = Names::default();
        self.records
            .iter()
            .map(|view| {
                let fields = self.fields_of(view);
                // One copy of this record's field names, whose parts are carved in turn.
                names.set(self, fields);
                let names_text = names.text.as_str();
                let names_copy = crate::arena::copy(names_text);
                let mut name_parts = names.parts(names_text);
                // SAFETY (every `carve` below): each part is a distinct span of the copied
                // text, carved once: the input's texts follow each other in the host's
                // string (`read`), and the names' in `names_text`.
                let mut name = |fallback: &str| match (&names_copy, name_parts.next()) {
                    (Some(copy), Some(part)) => unsafe { copy.carve(part) },
                    _ => fallback.to_owned(),
                };
                Record {
                    id: unsafe { copy.carve(view.id) },
                    version: view.version.map(|v| unsafe { copy.carve(v) }),
                    updated_at: view.updated_at.map(|u| unsafe { copy.carve(u) }),
                    fields: fields
                        .iter()
                        .map(|field| Field {
                            name: name(self.names[field.name as usize]),
                            value: match field.value {
                                ValueView::Null => Value::Null,
                                ValueView::Text(t) => Value::Text(unsafe { copy.carve(t) }),
                                ValueView::Number(n) => Value::Number(n),
                                ValueView::Boolean(b) => Value::Boolean(b),
                                ValueView::Texts(start, len) => Value::Texts(
                                    self.items(start, len)
                                        .iter()
                                        .map(|s| unsafe { copy.carve(s) })
                                        .collect(),
                                ),
                            },
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The records, each text allocated on its own (without the SDK's arena).
    fn records_allocated(&self) -> Vec<Record> {
        self.records
            .iter()
            .map(|view| Record {
                id: view.id.to_owned(),
                version: view.version.map(str::to_owned),
                updated_at: view.updated_at.map(str::to_owned),
                fields: self
                    .fields_of(view)
                    .iter()
                    .map(|field| Field {
                        name: self.names[field.name as usize].to_owned(),
                        value: match field.value {
                            ValueView::Null => Value::Null,
                            ValueView::Text(t) => Value::Text(t.to_owned()),
                            ValueView::Number(n) => Value::Number(n),
                            ValueView::Boolean(b) => Value::Boolean(b),
                            ValueView::Texts(start, len) => Value::Texts(
                                self.items(start, len)
                                    .iter()
                                    .map(|s| (*s).to_owned())
                                    .collect(),
                            ),
                        },
                    })
                    .collect(),
            })
            .collect()
    }

    fn same(&self, field: &Field, view: &FieldView<'_>) -> bool {
        same_text(self.names[view.name as usize], &field.name)
            && match (&field.value, view.value) {
                (Value::Null, ValueView::Null) => true,
                (Value::Text(a), ValueView::Text(b)) => same_text(a, b),
                // Bit for bit: -0.0 is not 0.0 here, nor is one NaN another.
                (Value::Number(a), ValueView::Number(b)) => a.to_bits() == b.to_bits(),
                (Value::Boolean(a), ValueView::Boolean(b)) => *a == b,
                (Value::Texts(a), ValueView::Texts(start, len)) => {
                    let b = self.items(start, len);
                    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_text(a, b))
                }
                _ => false,
            }
    }

    /// The input name index of `name`, when it is one (looked up only among a few names:
    /// a name not found is written out, which is as correct).
    fn name_index(&self, name: &str) -> Option<u32> {
        if self.names.len() > 64 {
            return None;
        }
        self.names.iter().position(|n| *n == name).map(|i| i as u32)
    }
}

/// The field names of the record last built, one after the other: the next record with
/// the same names (most of a batch) reuses them.
#[derive(Default)]
struct Names {
    /// Name indices of the fields, in order.
    indices: Vec<u32>,
    text: String,
    /// Where each name ends in `text`.
    ends: Vec<u32>,
}

impl Names {
    /// Makes these the names of `fields`.
    fn set(&mut self, input: &Input<'_>, fields: &[FieldView<'_>]) {
        let same = self.indices.len() == fields.len()
            && self.indices.iter().zip(fields).all(|(i, f)| *i == f.name);
        if !same {
            self.indices.clear();
            self.text.clear();
            self.ends.clear();
            for field in fields {
                self.indices.push(field.name);
                self.text.push_str(input.names[field.name as usize]);
                self.ends.push(self.text.len() as u32);
            }
        }
    }

    /// `text` (this `text`) cut into the names.
    fn parts<'t>(&self, text: &'t str) -> impl Iterator<Item = &'t str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(move |(start, end)| &text[start as usize..end as usize])
    }
}

/// `a == b`, eight bytes at a time: the C library's `memcmp` that `==` calls compares a
/// byte per loop turn, and comparing every result with its input is most of what an
/// answer costs.
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or_default());
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or_default());
    if n >= 8 {
        // Whole words, then the last eight bytes (overlapping the last word).
        let mut i = 0;
        while i + 8 <= n {
            if word(a, i) != word(b, i) {
                return false;
            }
            i += 8;
        }
        word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// The answer: its texts, its table and the errors it refers to.
pub(crate) struct Answer {
    pub text: String,
    pub table: Vec<u8>,
    pub errors: Vec<Error>,
}

impl Answer {
    fn u32(&mut self, n: u32) {
        self.table.extend_from_slice(&n.to_le_bytes());
    }

    /// Offsets and lengths are 32-bit: a guest's memory is at most 4 GiB.
    fn text(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.text.push_str(s);
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.table.push(0),
            Value::Text(t) => {
                self.table.push(1);
                self.text(t);
            }
            Value::Number(n) => {
                self.table.push(2);
                self.table.extend_from_slice(&n.to_le_bytes());
            }
            Value::Boolean(b) => {
                self.table.push(3);
                self.table.push(u8::from(*b));
            }
            Value::Texts(items) => {
                self.table.push(4);
                self.u32(items.len() as u32);
                for item in items {
                    self.text(item);
                }
            }
        }
    }

    /// Writes `record` as the changes from `view`; returns whether there were none.
    fn changed(&mut self, input: &Input<'_>, view: &RecordView<'_>, record: &Record) -> bool {
        let inputs = input.fields_of(view);
        let mut same = record.fields.len() == inputs.len();
        self.table.push(3);
        if same_text(&record.id, view.id) {
            self.table.push(0);
        } else {
            same = false;
            self.table.push(1);
            self.text(&record.id);
        }
        for (new, old) in [
            (&record.version, view.version),
            (&record.updated_at, view.updated_at),
        ] {
            match new.as_deref() {
                Some(n) if old.is_some_and(|old| same_text(n, old)) => self.table.push(0),
                None if old.is_none() => self.table.push(0),
                None => {
                    same = false;
                    self.table.push(1);
                }
                Some(text) => {
                    same = false;
                    self.table.push(2);
                    self.text(text);
                }
            }
        }
        self.u32(record.fields.len() as u32);
        // Walk the input's fields beside the result's: a field kept in place, or after
        // one removed, is copied by the host; anything else is written out.
        let mut k = 0;
        for (j, field) in record.fields.iter().enumerate() {
            if let Some(old) = inputs.get(k)
                && input.same(field, old)
            {
                same &= k == j;
                self.table.push(0);
                self.u32(k as u32);
                k += 1;
                continue;
            }
            if let Some(next) = inputs.get(k + 1)
                && input.same(field, next)
            {
                same = false;
                self.table.push(0);
                self.u32(k as u32 + 1);
                k += 2;
                continue;
            }
            same = false;
            self.table.push(1);
            // A changed value of the field in place keeps its name's index.
            match inputs.get(k) {
                Some(old) if same_text(input.names[old.name as usize], &field.name) => {
                    self.u32(old.name);
                    k += 1;
                }
                _ => match input.name_index(&field.name) {
                    Some(i) => self.u32(i),
                    None => {
                        self.u32(u32::MAX);
                        self.text(&field.name);
                    }
                },
            }
            self.value(&field.value);
        }
        same
    }
}

/// Writes the mapper's results (one per input record, in order) as the answer.
pub(crate) fn write(input: &Input<'_>, results: Vec<Result<Option<Record>, Error>>) -> Answer {
    // The answer's two buffers grow in turn, so that neither stays at the arena's top
    // to grow in place: start them at a size that most answers need not outgrow.
    let mut answer = Answer {
        text: String::with_capacity(input.text_len / 2),
        table: Vec::with_capacity(results.len() * 16 + input.table_len / 2),
        errors: Vec::new(),
    };
    // A result beyond the input has no record to answer for (the host ignores it).
    for (result, view) in results.into_iter().zip(&input.records) {
        let start = answer.table.len();
        let text_start = answer.text.len();
        answer.table.extend_from_slice(&[0; 8]);
        match result {
            Ok(None) => answer.table.push(0),
            Err(error) => {
                answer.table.push(1);
                answer.u32(answer.errors.len() as u32);
                answer.errors.push(error);
            }
            Ok(Some(record)) => {
                if answer.changed(input, view, &record) {
                    answer.table.truncate(start + 8);
                    answer.text.truncate(text_start);
                    answer.table.push(2);
                }
                // Not freed: the instance, and its memory, end with the call (every call
                // gets a fresh one), and freeing a record's every string one by one cost
                // a tenth of the call.
                std::mem::forget(record);
            }
        }
        let table_len = (answer.table.len() - start - 8) as u32;
        let text_len = (answer.text.len() - text_start) as u32;
        answer.table[start..start + 4].copy_from_slice(&table_len.to_le_bytes());
        answer.table[start + 4..start + 8].copy_from_slice(&text_len.to_le_bytes());
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's encoding of these records (as `host/src/runtime/buffer.rs` writes it).
    fn encode(records: &[Record]) -> (String, Vec<u8>) {
        let mut names: Vec<String> = Vec::new();
        for r in records {
            for f in &r.fields {
                if !names.contains(&f.name) {
                    names.push(f.name.clone());
                }
            }
        }
        let mut a = Answer {
            text: String::new(),
            table: Vec::new(),
            errors: Vec::new(),
        };
        a.u32(names.len() as u32);
        for n in &names {
            a.text(n);
        }
        a.u32(records.len() as u32);
        a.u32(records.iter().map(|r| r.fields.len() as u32).sum());
        a.u32(0);
        for r in records {
            a.text(&r.id);
            for o in [&r.version, &r.updated_at] {
                match o {
                    None => a.table.push(0),
                    Some(t) => {
                        a.table.push(1);
                        a.text(t);
                    }
                }
            }
            a.u32(r.fields.len() as u32);
            for f in &r.fields {
                a.u32(names.iter().position(|n| *n == f.name).unwrap() as u32);
                a.value(&f.value);
            }
        }
        (a.text, a.table)
    }

    fn records() -> Vec<Record> {
        vec![
            Record::new("1")
                .with("email", "a@x.example")
                .with("score", Value::Number(0.0))
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

    /// Reads `answer` back as the host does, against `input`, for the checks below.
    fn entries(answer: &Answer) -> Vec<(Vec<u8>, String)> {
        let mut out = Vec::new();
        let (mut table, mut text) = (&answer.table[..], &answer.text[..]);
        while !table.is_empty() {
            let n = u32::from_le_bytes(table[..4].try_into().unwrap()) as usize;
            let t = u32::from_le_bytes(table[4..8].try_into().unwrap()) as usize;
            out.push((table[8..8 + n].to_vec(), text[..t].to_owned()));
            table = &table[8 + n..];
            text = &text[t..];
        }
        out
    }

    #[test]
    fn reading_gives_the_records_back() {
        let input = records();
        let (text, table) = encode(&input);
        assert_eq!(read(&text, &table).records(), input);
    }

    #[test]
    fn unchanged_records_and_kept_fields_are_references_to_the_input() {
        let input = records();
        let (text, table) = encode(&input);
        let read = read(&text, &table);
        let mut changed = input[0].clone();
        // -0.0 == 0.0 for f64, but not for the answer.
        changed.fields[1].value = Value::Number(-0.0);
        changed.fields.remove(2);
        changed.fields.push(Field {
            name: "full_name".into(),
            value: Value::text("Ann"),
        });
        let answer = write(
            &read,
            vec![Ok(Some(changed)), Ok(Some(input[1].clone())), Ok(None)],
        );
        let entries = entries(&answer);
        // The third result has no input record: not answered.
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1], (vec![2], String::new()));
        let (t, text) = &entries[0];
        let mut expected = vec![3, 0, 0, 0];
        expected.extend(5u32.to_le_bytes());
        // email copied; score written under its name index 1; dnd removed, note copied
        // from 3; tags copied from 4; full_name written out.
        expected.extend([0, 0, 0, 0, 0]);
        expected.extend([1, 1, 0, 0, 0, 2]);
        expected.extend((-0.0f64).to_le_bytes());
        expected.extend([0, 3, 0, 0, 0]);
        expected.extend([0, 4, 0, 0, 0]);
        expected.extend([1, 255, 255, 255, 255, 9, 0, 0, 0, 1, 3, 0, 0, 0]);
        assert_eq!(t, &expected);
        assert_eq!(text, "full_nameAnn");
    }

    #[test]
    fn drops_errors_and_new_ids_and_versions_are_written() {
        let input = records();
        let (text, table) = encode(&input);
        let read = read(&text, &table);
        let mut second = input[1].clone();
        second.id = "x".into();
        second.version = None;
        second.updated_at = Some("later".into());
        let answer = write(&read, vec![Err(Error::invalid("no")), Ok(Some(second))]);
        assert_eq!(answer.errors, vec![Error::invalid("no")]);
        let entries = entries(&answer);
        assert_eq!(entries[0], (vec![1, 0, 0, 0, 0], String::new()));
        let mut expected = vec![3, 1, 1, 0, 0, 0, 1, 2, 5, 0, 0, 0];
        expected.extend(2u32.to_le_bytes());
        expected.extend([0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(entries[1], (expected, "xlater".to_owned()));
        let answer = write(&read, vec![Ok(None), Ok(None)]);
        assert_eq!(entries_of(&answer), vec![vec![0], vec![0]]);
    }

    #[test]
    fn texts_compare_equal_exactly_when_equal() {
        let texts = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "ä",
            "äb",
            "日本語テキスト",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(same_text(a, b), a == b, "{a:?} {b:?}");
            }
            // One byte differs, at every position.
            for i in 0..a.len() {
                let mut changed = a.as_bytes().to_vec();
                changed[i] ^= 1;
                let changed = String::from_utf8_lossy(&changed).into_owned();
                assert_eq!(same_text(a, &changed), a == changed, "{a:?} at {i}");
            }
        }
    }

    fn entries_of(answer: &Answer) -> Vec<Vec<u8>> {
        entries(answer).into_iter().map(|(t, _)| t).collect()
    }
}
