//! Typed configuration errors: where (file, line, column, key path), what, and what to do.
//!
//! Every variant displays as ONE line shaped like
//! `tandem.toml:12:5: syncs.crm.direction: unknown value "twoway"; expected one of a-to-b, b-to-a, two-way`,
//! so that `tandem config validate` can print them one per line and editors can jump to them.
//! Secrets never appear in these messages: only the names of variables and files do.

use std::fmt;
use std::path::PathBuf;

/// A position in the config file (1-based line and column, columns in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// The config file as the operator named it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `src`, read from `file`.
    pub fn at(file: &std::path::Path, src: &str, offset: usize) -> Self {
        let offset = offset.min(src.len());
        let before = &src[..floor_char_boundary(src, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A dotted key path such as `syncs.crm.rules[0].if[1].field`.
///
/// Keys that are not TOML bare keys are quoted, so the path can be pasted back into a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyPath(String);

impl KeyPath {
    /// The root (empty) path.
    pub fn root() -> Self {
        KeyPath(String::new())
    }

    /// This path extended with a table key.
    pub fn key(&self, key: &str) -> Self {
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let key = if bare {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        if self.0.is_empty() {
            KeyPath(key)
        } else {
            KeyPath(format!("{}.{key}", self.0))
        }
    }

    /// This path extended with an array index.
    pub fn index(&self, index: usize) -> Self {
        KeyPath(format!("{}[{index}]", self.0))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(top level)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// One problem found in a config file.
///
/// `validate` collects every one of them rather than stopping at the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read the config file: {reason}; pass the right file with --config FILE", file.display())]
    Read {
        /// The file named by the operator.
        file: PathBuf,
        /// The operating system's reason.
        reason: String,
    },

    /// The file is not valid TOML.
    #[error("{at}: invalid TOML: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// The parser's message (one line).
        message: String,
    },

    /// A key this config format does not have (often a typo).
    #[error("{at}: {key}: unknown key{}; expected one of {expected}", suggestion(.did_you_mean))]
    UnknownKey {
        /// Where the key is.
        at: Location,
        /// The full path of the unknown key.
        key: KeyPath,
        /// The closest known key, if one is close.
        did_you_mean: Option<String>,
        /// The keys allowed in this table, comma-separated.
        expected: String,
    },

    /// A value outside a fixed set of choices.
    #[error("{at}: {key}: unknown value {value:?}{}; expected one of {expected}", suggestion(.did_you_mean))]
    UnknownValue {
        /// Where the value is.
        at: Location,
        /// The key holding it.
        key: KeyPath,
        /// The value found.
        value: String,
        /// The closest allowed value, if one is close.
        did_you_mean: Option<String>,
        /// The allowed values, comma-separated.
        expected: String,
    },

    /// A value of the wrong TOML type (a number where text was expected...).
    #[error("{at}: {key}: expected {expected}, found {found}")]
    WrongType {
        /// Where the value is.
        at: Location,
        /// The key holding it.
        key: KeyPath,
        /// What this key takes, for humans (`a string`, `a duration such as "30s"`).
        expected: String,
        /// The TOML type found.
        found: String,
    },

    /// A value of the right type that is still not acceptable (a malformed origin,
    /// a zero interval, two exclusive keys).
    #[error("{at}: {key}: {problem}")]
    Invalid {
        /// Where the value is.
        at: Location,
        /// The key holding it.
        key: KeyPath,
        /// What is wrong and what to write instead.
        problem: String,
    },

    /// A required key is absent.
    #[error("{at}: {key}: missing; {hint}")]
    Missing {
        /// The table that should hold it.
        at: Location,
        /// The full path of the missing key.
        key: KeyPath,
        /// What to write.
        hint: String,
    },

    /// A secret written into the file instead of referenced.
    #[error(
        "{at}: {key}: inline secrets are refused; reference it instead: {{ env = \"VAR\" }} or {{ file = \"path\" }}"
    )]
    InlineSecret {
        /// Where the secret is (its value is never repeated).
        at: Location,
        /// The key holding it.
        key: KeyPath,
    },

    /// A name that refers to nothing defined in the file (a connection's plugin, a
    /// sync's connection, a mapper).
    #[error("{at}: {key}: no {kind} named {name:?}{}; defined: {defined}", suggestion(.did_you_mean))]
    UnknownReference {
        /// Where the reference is.
        at: Location,
        /// The key holding it.
        key: KeyPath,
        /// What kind of thing it names (`plugin`, `connection`).
        kind: &'static str,
        /// The name used.
        name: String,
        /// The closest defined name, if one is close.
        did_you_mean: Option<String>,
        /// The names defined, comma-separated (or `none`).
        defined: String,
    },

    /// A reference to a plugin of the wrong kind (a connector used as a mapper...).
    #[error("{at}: {key}: plugin {name:?} is a {actual}, but a {expected} is needed here")]
    WrongPluginKind {
        /// Where the reference is.
        at: Location,
        /// The key holding it.
        key: KeyPath,
        /// The plugin name.
        name: String,
        /// The kind this position takes.
        expected: crate::runtime::PluginKind,
        /// The plugin's kind.
        actual: crate::runtime::PluginKind,
    },

    /// An environment variable the config references is not set.
    #[error("{at}: {key}: environment variable {var} is not set; export it before running tandem")]
    MissingEnv {
        /// Where the reference is.
        at: Location,
        /// The key holding it.
        key: KeyPath,
        /// The variable's name.
        var: String,
    },

    /// A file the config references is missing, unreadable or empty.
    #[error("{at}: {key}: cannot use {}: {reason}", path.display())]
    File {
        /// Where the reference is.
        at: Location,
        /// The key holding it.
        key: KeyPath,
        /// The file, resolved against the config file's directory.
        path: PathBuf,
        /// What is wrong with it and what to do.
        reason: String,
    },

    /// A plugin file whose SHA-256 differs from its pin.
    #[error(
        "{at}: {key}: sha256 mismatch for {}: the file has {actual}; rebuild the expected file, or pin the new digest if you trust it",
        path.display()
    )]
    Sha256Mismatch {
        /// Where the pin is.
        at: Location,
        /// The `sha256` key.
        key: KeyPath,
        /// The plugin file.
        path: PathBuf,
        /// The file's actual digest (hex).
        actual: String,
    },
}

fn suggestion(did_you_mean: &Option<String>) -> String {
    match did_you_mean {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => String::new(),
    }
}

impl ConfigError {
    /// Where the error is, when it is inside the file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::UnknownValue { at, .. }
            | ConfigError::WrongType { at, .. }
            | ConfigError::Invalid { at, .. }
            | ConfigError::Missing { at, .. }
            | ConfigError::InlineSecret { at, .. }
            | ConfigError::UnknownReference { at, .. }
            | ConfigError::WrongPluginKind { at, .. }
            | ConfigError::MissingEnv { at, .. }
            | ConfigError::File { at, .. }
            | ConfigError::Sha256Mismatch { at, .. } => Some(at),
        }
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let word_l = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (levenshtein(&word_l, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| {
            let len = word.chars().count();
            *d < len && *d <= (c.chars().count().max(len) / 3).max(1)
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment);
/// inputs are short key names, so the quadratic table is fine.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_characters() {
        let src = "a = 1\n[é]\nbé = 2\n";
        let at = Location::at(
            std::path::Path::new("t.toml"),
            src,
            src.find("= 2").unwrap(),
        );
        assert_eq!(at.to_string(), "t.toml:3:4");
    }

    #[test]
    fn key_paths_quote_non_bare_keys() {
        let p = KeyPath::root()
            .key("syncs")
            .key("my sync")
            .key("rules")
            .index(2);
        assert_eq!(p.as_str(), r#"syncs."my sync".rules[2]"#);
    }

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(
            closest("twoway", ["a-to-b", "b-to-a", "two-way"]),
            Some("two-way".into())
        );
        assert_eq!(closest("grnat", ["grant", "path"]), Some("grant".into()));
        assert_eq!(closest("banana", ["grant", "path"]), None);
    }
}
