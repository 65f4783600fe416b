//! A span-aware walker over a parsed TOML document that collects every error.
//!
//! `serde` stops at the first problem; operators want the whole list. So the document is
//! parsed once into `toml`'s spanned tree ([`DeTable`]) and each section reads its keys
//! through a [`Table`], which remembers which keys were read and reports the rest as
//! unknown (with a "did you mean"), and through [`Item`] accessors, which report a wrong
//! type or value at the value's line and column and return `None` so reading goes on.
//!
//! Fixed sets of values that belong to other modules (the sync engine's enums) are read
//! with their own `serde` impls through [`Item::choice`], so the allowed values are
//! written once, in those types, and still listed in the error.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::env::Env;
use super::error::{ConfigError, KeyPath, Location, closest};

/// A spanned TOML value.
pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// The reader of one config file: its source (for line and column), the environment
/// references are checked against, and the errors found so far (all are reported at once).
pub(crate) struct Reader<'s> {
    pub file: &'s Path,
    pub src: &'s str,
    pub base_dir: &'s Path,
    pub env: &'s Env,
    pub errors: Vec<ConfigError>,
}

impl Reader<'_> {
    pub fn loc(&self, span: &Range<usize>) -> Location {
        Location::at(self.file, self.src, span.start)
    }

    pub fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }
}

/// One value with its key path.
#[derive(Clone)]
pub(crate) struct Item<'a, 'i> {
    pub path: KeyPath,
    pub value: &'a Val<'i>,
}

impl<'a, 'i> Item<'a, 'i> {
    pub fn span(&self) -> Range<usize> {
        self.value.span()
    }

    pub fn loc(&self, cx: &Reader<'_>) -> Location {
        cx.loc(&self.span())
    }

    /// Reports a wrong TOML type; always returns `None` so callers can `return item.wrong_type(..)`.
    pub fn wrong_type<T>(&self, cx: &mut Reader<'_>, expected: &str) -> Option<T> {
        cx.push(ConfigError::WrongType {
            at: self.loc(cx),
            key: self.path.clone(),
            expected: expected.to_owned(),
            found: type_name(self.value.get_ref()).to_owned(),
        });
        None
    }

    /// Reports an unacceptable value; always returns `None`.
    pub fn invalid<T>(&self, cx: &mut Reader<'_>, problem: impl fmt::Display) -> Option<T> {
        cx.push(ConfigError::Invalid {
            at: self.loc(cx),
            key: self.path.clone(),
            problem: problem.to_string(),
        });
        None
    }

    pub fn str(&self, cx: &mut Reader<'_>) -> Option<&'a str> {
        match self.value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => self.wrong_type(cx, "a string"),
        }
    }

    /// A non-empty string (names, ids, URLs).
    pub fn name(&self, cx: &mut Reader<'_>) -> Option<String> {
        let s = self.str(cx)?;
        if s.trim().is_empty() {
            return self.invalid(cx, "must not be empty");
        }
        Some(s.to_owned())
    }

    pub fn bool(&self, cx: &mut Reader<'_>) -> Option<bool> {
        match self.value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => self.wrong_type(cx, "true or false"),
        }
    }

    pub fn u64(&self, cx: &mut Reader<'_>) -> Option<u64> {
        match self.value.get_ref() {
            DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => self.invalid(cx, "expected a whole number of 0 or more"),
            },
            _ => self.wrong_type(cx, "a whole number"),
        }
    }

    /// A number, integer or float.
    pub fn f64(&self, cx: &mut Reader<'_>) -> Option<f64> {
        match self.value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse().ok(),
            _ => self.wrong_type(cx, "a number"),
        }
    }

    /// A table; `known` lists the keys it may hold (empty for a map of names).
    pub fn table(
        &self,
        cx: &mut Reader<'_>,
        known: &'static [&'static str],
    ) -> Option<Table<'a, 'i>> {
        match self.value.get_ref() {
            DeValue::Table(t) => Some(Table {
                path: self.path.clone(),
                span: self.span(),
                table: t,
                known,
                used: Vec::new(),
            }),
            _ => self.wrong_type(cx, "a table"),
        }
    }

    pub fn array(&self, cx: &mut Reader<'_>) -> Option<Vec<Item<'a, 'i>>> {
        match self.value.get_ref() {
            DeValue::Array(a) => Some(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| Item {
                        path: self.path.index(i),
                        value: v,
                    })
                    .collect(),
            ),
            _ => self.wrong_type(cx, "an array"),
        }
    }

    /// A list of strings; a single string is accepted as a list of one.
    pub fn strings(&self, cx: &mut Reader<'_>) -> Option<Vec<(String, Item<'a, 'i>)>> {
        if let DeValue::String(s) = self.value.get_ref() {
            return Some(vec![(s.to_string(), self.clone())]);
        }
        let items = self.array(cx)?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match item.name(cx) {
                Some(s) => out.push((s, item)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A string out of a fixed set given by `T`'s `serde` impl (a unit-variant enum).
    pub fn choice<T: DeserializeOwned>(&self, cx: &mut Reader<'_>) -> Option<T> {
        let s = self.str(cx)?;
        match T::deserialize(s.into_deserializer()) {
            Ok(v) => Some(v),
            Err(ChoiceError { expected }) => {
                let expected = expected.unwrap_or(&[]);
                self.unknown_value(cx, s, expected.iter().copied())
            }
        }
    }

    /// A string out of `allowed`.
    pub fn one_of<'s>(&self, cx: &mut Reader<'_>, allowed: &[&'s str]) -> Option<&'s str> {
        let s = self.str(cx)?;
        match allowed.iter().find(|a| **a == s) {
            Some(a) => Some(a),
            None => self.unknown_value(cx, s, allowed.iter().copied()),
        }
    }

    pub fn unknown_value<'s, T>(
        &self,
        cx: &mut Reader<'_>,
        value: &str,
        allowed: impl Iterator<Item = &'s str> + Clone,
    ) -> Option<T> {
        cx.push(ConfigError::UnknownValue {
            at: self.loc(cx),
            key: self.path.clone(),
            value: value.to_owned(),
            did_you_mean: closest(value, allowed.clone()),
            expected: join(allowed),
        });
        None
    }

    /// A duration written as `"500ms"`, `"30s"`, `"5m"`, `"1h"` or `"1d"`.
    pub fn duration(&self, cx: &mut Reader<'_>) -> Option<Duration> {
        const EXPECTED: &str = "a duration such as \"30s\", \"5m\" or \"1h\"";
        let Some(s) = (match self.value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => None,
        }) else {
            return self.wrong_type(cx, EXPECTED);
        };
        match parse_duration(s) {
            Some(d) => Some(d),
            None => self.invalid(
                cx,
                format!("cannot read {s:?} as a duration; write {EXPECTED}"),
            ),
        }
    }

    /// A size in bytes: a whole number, or `"512KiB"`, `"64MiB"`, `"1GiB"` (also kB/MB/GB).
    pub fn size(&self, cx: &mut Reader<'_>) -> Option<u64> {
        const EXPECTED: &str = "a size such as \"64MiB\" or a number of bytes";
        match self.value.get_ref() {
            DeValue::Integer(_) => self.u64(cx),
            DeValue::String(s) => match parse_size(s) {
                Some(n) => Some(n),
                None => self.invalid(cx, format!("cannot read {s:?} as a size; write {EXPECTED}")),
            },
            _ => self.wrong_type(cx, EXPECTED),
        }
    }

    /// A non-secret value that may come from the environment: a string, number or boolean
    /// as written, or `{ env = "VAR" }` / `{ env = "VAR", default = "..." }`.
    pub fn interpolated(&self, cx: &mut Reader<'_>) -> Option<String> {
        match self.value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Integer(i) => Some(
                i64::from_str_radix(i.as_str(), i.radix())
                    .map_or_else(|_| i.as_str().to_owned(), |n| n.to_string()),
            ),
            DeValue::Float(f) => Some(f.as_str().to_owned()),
            DeValue::Boolean(b) => Some(b.to_string()),
            DeValue::Table(_) => {
                let mut t = self.table(cx, &["env", "default"])?;
                let var = t.require(cx, "env", "write { env = \"VAR\" }")?;
                let default = t.get("default");
                t.finish(cx);
                let name = var.name(cx)?;
                let default = match default {
                    Some(d) => Some(d.str(cx)?.to_owned()),
                    None => None,
                };
                match cx.env.var(&name).or(default) {
                    Some(v) => Some(v),
                    None => {
                        cx.push(ConfigError::MissingEnv {
                            at: self.loc(cx),
                            key: self.path.clone(),
                            var: name,
                        });
                        None
                    }
                }
            }
            _ => self.wrong_type(cx, "a string or { env = \"VAR\" }"),
        }
    }
}

/// A table being read: remembers which keys were looked at.
pub(crate) struct Table<'a, 'i> {
    pub path: KeyPath,
    pub span: Range<usize>,
    table: &'a DeTable<'i>,
    known: &'static [&'static str],
    used: Vec<&'a str>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// The top-level table of a document.
    pub fn root(table: &'a Spanned<DeTable<'i>>, known: &'static [&'static str]) -> Self {
        Table {
            path: KeyPath::root(),
            span: 0..0,
            table: table.get_ref(),
            known,
            used: Vec::new(),
        }
    }

    pub fn loc(&self, cx: &Reader<'_>) -> Location {
        cx.loc(&self.span)
    }

    pub fn get(&mut self, key: &str) -> Option<Item<'a, 'i>> {
        debug_assert!(
            self.known.contains(&key),
            "{key} is not in the known keys of {}",
            self.path
        );
        let (k, v) = self.table.get_key_value(key)?;
        self.used.push(k.get_ref().as_ref());
        Some(Item {
            path: self.path.key(key),
            value: v,
        })
    }

    /// A key that must be present; reports `Missing` (with `hint`) at the table otherwise.
    pub fn require(&mut self, cx: &mut Reader<'_>, key: &str, hint: &str) -> Option<Item<'a, 'i>> {
        let item = self.get(key);
        if item.is_none() {
            cx.push(ConfigError::Missing {
                at: self.loc(cx),
                key: self.path.key(key),
                hint: hint.to_owned(),
            });
        }
        item
    }

    /// Every entry, for tables that map names to values (`[plugins.NAME]`, `settings`).
    pub fn entries(&mut self) -> Vec<(&'a str, Item<'a, 'i>)> {
        self.table
            .iter()
            .map(|(k, v)| {
                let name: &'a str = k.get_ref().as_ref();
                self.used.push(name);
                (
                    name,
                    Item {
                        path: self.path.key(name),
                        value: v,
                    },
                )
            })
            .collect()
    }

    /// Reports every key that was not read as unknown.
    pub fn finish(self, cx: &mut Reader<'_>) {
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref().as_ref();
            if self.used.contains(&name) {
                continue;
            }
            cx.push(ConfigError::UnknownKey {
                at: cx.loc(&k.span()),
                key: self.path.key(name),
                did_you_mean: closest(name, self.known.iter().copied()),
                expected: join(self.known.iter().copied()),
            });
        }
    }
}

/// The keys of a table item (the names defined in a section), or none.
pub(crate) fn names(item: Option<&Item<'_, '_>>) -> Vec<String> {
    match item.map(|i| i.value.get_ref()) {
        Some(DeValue::Table(t)) => t.keys().map(|k| k.get_ref().to_string()).collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn join<'s>(items: impl Iterator<Item = &'s str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Parses `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"` (one number, one unit).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n.checked_mul(1_000)?,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Parses `"64MiB"`, `"512 KiB"`, `"1GB"`, `"100B"`.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A `serde` error that keeps the list of allowed variants of an enum.
#[derive(Debug)]
struct ChoiceError {
    expected: Option<&'static [&'static str]>,
}

impl fmt::Display for ChoiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown value")
    }
}

impl std::error::Error for ChoiceError {}

impl serde::de::Error for ChoiceError {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        ChoiceError { expected: None }
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        ChoiceError {
            expected: Some(expected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("five s"), None);
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("1 GB"), Some(1_000_000_000));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("12 parsecs"), None);
    }
}
