//! Text that comes from a plugin, made safe for terminals and logs where it enters the
//! host: error messages, the stderr tail, the names `describe` and `check` report, log
//! lines and their fields.
//!
//! A plugin could otherwise write escape sequences (ESC, OSC, BEL and the other C0/C1
//! controls) that a terminal obeys, forge extra log lines with line breaks or Unicode line
//! separators, or reorder and hide text with bidirectional overrides, zero-width and tag
//! characters. Record data is not touched here: it belongs to the apps' users.

use super::types;

/// Whether `c` is a control or an invisible formatting character: C0, DEL and C1
/// controls, bidirectional marks, embeddings, overrides and isolates, zero-width
/// characters, line and paragraph separators, the soft hyphen, the byte-order mark,
/// interlinear annotation marks and the invisible tag characters.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// Characters that break a line: they become a space rather than vanish, so that words
/// stay apart.
fn is_break(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// `text` as one line: line breaks become spaces, every other hidden character is dropped.
pub fn clean_line(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            if is_break(c) {
                Some(' ')
            } else if is_hidden(c) {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

/// `text` with its lines kept (`\n`), each cleaned as by [`clean_line`].
pub fn clean_lines(text: &str) -> String {
    text.split(['\n', '\u{2028}', '\u{2029}'])
        .map(clean_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A plugin's typed error with every message cleaned.
pub fn clean_error(error: types::Error) -> types::Error {
    map_message(error, |m| clean_line(&m))
}

/// `error` with its message (whatever its kind) passed through `f`: the one place that
/// knows where each kind keeps its text, for cleaning and scrubbing alike.
pub(crate) fn map_message(error: types::Error, f: impl FnOnce(String) -> String) -> types::Error {
    use types::Error as E;
    match error {
        E::Unauthorized(m) => E::Unauthorized(f(m)),
        E::Forbidden(m) => E::Forbidden(f(m)),
        E::NotFound(m) => E::NotFound(f(m)),
        E::RateLimited(mut info) => {
            info.message = f(info.message);
            E::RateLimited(info)
        }
        E::Invalid(m) => E::Invalid(f(m)),
        E::Conflict(m) => E::Conflict(f(m)),
        E::CursorExpired(m) => E::CursorExpired(f(m)),
        E::Transient(m) => E::Transient(f(m)),
        E::Fatal(m) => E::Fatal(f(m)),
    }
}

/// `describe`'s answer with its names, versions and labels cleaned.
pub fn clean_plugin_info(mut info: types::PluginInfo) -> types::PluginInfo {
    info.name = clean_line(&info.name);
    info.version = clean_line(&info.version);
    info.app = clean_line(&info.app);
    for entity in &mut info.entities {
        entity.name = clean_line(&entity.name);
        entity.label = clean_line(&entity.label);
    }
    info
}

/// `check`'s answer with the account id and name cleaned.
pub fn clean_account(mut account: types::AccountInfo) -> types::AccountInfo {
    account.account_id = clean_line(&account.account_id);
    account.display_name = clean_line(&account.display_name);
    account
}

/// A log line's fields as `key="value"` pairs: values always quoted (quotes and
/// backslashes escaped), keys quoted unless they are plain words, so that no value can
/// pass for another field or for the host's own tags.
pub fn quote_fields(fields: &[(String, String)]) -> String {
    let plain = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    fields
        .iter()
        .map(|(k, v)| {
            let k = clean_line(k);
            let key = if plain(&k) { k } else { quote(&k) };
            format!("{key}={}", quote(&clean_line(v)))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Escape sequences, line forgery and invisible reordering a plugin might try.
    const NASTY: &str = "ok\x1b[2J\x1b]8;;http://evil\x07link\x1b]8;;\x07\u{9b}31m\rforged\nline\u{2028}sep\u{202E}txt\u{200B}zw\u{2066}iso\u{E0041}tag\u{FEFF}end\x00";

    #[test]
    fn every_control_and_invisible_character_goes() {
        let line = clean_line(NASTY);
        assert_eq!(
            line,
            "ok[2J]8;;http://evillink]8;;31m forged line septxtzwisotagend"
        );
        assert!(!line.chars().any(is_hidden), "{line:?}");
        assert_eq!(
            clean_lines("first\x1b[1m\nsecond\u{2028}third\r"),
            "first[1m\nsecond\nthird "
        );
        // Ordinary text, accents and emoji stay as they are.
        assert_eq!(clean_line("Zoë Ünal 👋 – ok"), "Zoë Ünal 👋 – ok");
    }

    #[test]
    fn errors_and_names_are_cleaned() {
        let err = clean_error(types::Error::Fatal("bad\x1b]0;pwned\x07 thing\n".into()));
        assert!(matches!(&err, types::Error::Fatal(m) if m == "bad]0;pwned thing "));
        let account = clean_account(types::AccountInfo {
            account_id: "acme\u{202E}".into(),
            display_name: "Acme\x1b[31m".into(),
        });
        assert_eq!(account.account_id, "acme");
        assert_eq!(account.display_name, "Acme[31m");
    }

    #[test]
    fn fields_are_quoted_so_that_no_value_forges_another() {
        let fields = vec![
            ("id".to_owned(), "42".to_owned()),
            (
                "note".to_owned(),
                "x\" connection=\"victim\nlevel=ERROR".to_owned(),
            ),
            ("we ird=".to_owned(), "a\\b".to_owned()),
        ];
        assert_eq!(
            quote_fields(&fields),
            r#"id="42" note="x\" connection=\"victim level=ERROR" "we ird="="a\\b""#
        );
    }
}
