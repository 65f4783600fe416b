//! Example tenant mapper: tidies contact fields before they reach the other app.
//!
//! By field name (case and `_`/`.` ignored), for every record:
//! - every text value (and each item of a multi-value) is trimmed;
//! - names (`first_name`, `last_name`, `full_name`, `names.givenName`, `display_name`,
//!   `name`...) are title-cased when written all in one case (`ANN-MARIE o'neil` ->
//!   `Ann-Marie O'Neil`); mixed case (`McDonald`) is left as the person wrote it;
//! - emails (any field whose name contains `email`) are lower-cased;
//! - phones (names containing `phone` or `mobile`, and `work_number`) keep a leading `+`
//!   and their digits (`00` becomes `+`); a value with letters (`ext. 12`) is only trimmed.
//!
//! Records are never dropped and nothing fails: a value it cannot improve passes as is.

use tandem_sdk::{Error, MapContext, Mapper, Record, Value};

/// The normalising mapper.
pub struct Normalize;

tandem_sdk::export_mapper!(Normalize);

impl Mapper for Normalize {
    fn map(_ctx: &MapContext, mut record: Record) -> Result<Option<Record>, Error> {
        for field in &mut record.fields {
            let kind = kind_of(&field.name);
            match &mut field.value {
                Value::Text(text) => *text = normalize(kind, text),
                Value::Texts(texts) => {
                    for text in texts.iter_mut() {
                        *text = normalize(kind, text);
                    }
                }
                Value::Null | Value::Number(_) | Value::Boolean(_) => {}
            }
        }
        Ok(Some(record))
    }
}

/// What a field holds, judged from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Name,
    Email,
    Phone,
    Other,
}

fn kind_of(field: &str) -> Kind {
    let key: String = field
        .chars()
        .filter(|c| !matches!(c, '_' | '.' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    const NAMES: [&str; 8] = [
        "firstname",
        "lastname",
        "fullname",
        "middlename",
        "givenname",
        "familyname",
        "displayname",
        "nickname",
    ];
    if key.contains("email") {
        Kind::Email
    } else if key.contains("phone") || key.contains("mobile") || key == "worknumber" {
        Kind::Phone
    } else if key == "name" || NAMES.iter().any(|n| key.ends_with(n)) {
        Kind::Name
    } else {
        Kind::Other
    }
}

fn normalize(kind: Kind, text: &str) -> String {
    let text = text.trim();
    match kind {
        Kind::Email => text.to_lowercase(),
        Kind::Name => title_case(&collapse_spaces(text)),
        Kind::Phone => phone(text),
        Kind::Other => text.to_owned(),
    }
}

fn collapse_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Title-cases a name written in one case; a mixed-case name is kept.
pub fn title_case(name: &str) -> String {
    let has_lower = name.chars().any(char::is_lowercase);
    let has_upper = name.chars().any(char::is_uppercase);
    if has_lower && has_upper {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len());
    let mut word_start = true;
    for c in name.chars() {
        if word_start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        // A new word starts after a space, a hyphen or an apostrophe (O'Neil).
        word_start = matches!(c, ' ' | '-' | '\'' | '’');
    }
    out
}

/// Normalises a phone number to `+` and digits; leaves values with letters alone.
pub fn phone(text: &str) -> String {
    if text.chars().any(char::is_alphabetic) {
        return text.to_owned();
    }
    let plus = text.starts_with('+');
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 3 {
        return text.to_owned();
    }
    match digits.strip_prefix("00") {
        Some(rest) if !plus => format!("+{rest}"),
        _ if plus => format!("+{digits}"),
        _ => digits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(record: Record) -> Record {
        Normalize::map(&MapContext::default(), record)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn tidies_a_contact() {
        let out = map(Record::new("1")
            .with("first_name", "  ANN-MARIE ")
            .with("last_name", "o'neil")
            .with("names.familyName", "McDonald")
            .with("email", " Ann@Example.COM ")
            .with("emailAddresses", Value::texts([" B@X.IO", "c@x.io "]))
            .with("mobile_number", "+1 (555) 010-9999")
            .with("work_number", "0044 20 7946 0958")
            .with("phone", "555-0100 ext. 12")
            .with("company", "  ACME inc ")
            .with("lead_score", 40.0)
            .with("city", Value::Null));
        assert_eq!(out.text("first_name"), Some("Ann-Marie"));
        assert_eq!(out.text("last_name"), Some("O'Neil"));
        assert_eq!(out.text("names.familyName"), Some("McDonald"));
        assert_eq!(out.text("email"), Some("ann@example.com"));
        assert_eq!(
            out.get("emailAddresses"),
            Some(&Value::texts(["b@x.io", "c@x.io"]))
        );
        assert_eq!(out.text("mobile_number"), Some("+15550109999"));
        assert_eq!(out.text("work_number"), Some("+442079460958"));
        assert_eq!(out.text("phone"), Some("555-0100 ext. 12"));
        assert_eq!(out.text("company"), Some("ACME inc"));
        assert_eq!(out.get("lead_score"), Some(&Value::Number(40.0)));
        assert_eq!(out.get("city"), Some(&Value::Null));
    }

    #[test]
    fn field_kinds_by_name() {
        assert_eq!(kind_of("First_Name"), Kind::Name);
        assert_eq!(kind_of("names.givenName"), Kind::Name);
        assert_eq!(kind_of("name"), Kind::Name);
        assert_eq!(kind_of("username"), Kind::Other);
        assert_eq!(kind_of("company_name"), Kind::Other);
        assert_eq!(kind_of("secondary_email"), Kind::Email);
        assert_eq!(kind_of("phoneNumbers"), Kind::Phone);
        assert_eq!(kind_of("account_number"), Kind::Other);
    }

    #[test]
    fn phones() {
        assert_eq!(phone("(555) 010 9999"), "5550109999");
        assert_eq!(phone("+33 1 23 45 67 89"), "+33123456789");
        assert_eq!(phone("12"), "12");
        assert_eq!(phone("call me"), "call me");
    }

    #[test]
    fn batch_keeps_order_and_count() {
        let records = vec![Record::new("a").with("email", "A@X"), Record::new("b")];
        let out = Normalize::map_batch(&MapContext::default(), records);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].as_ref().unwrap().as_ref().unwrap().id, "b");
    }
}
