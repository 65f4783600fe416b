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
//!   With the setting `default-country-code` (a sync's
//!   `[syncs.NAME.mapper-settings.normalize]`), a national number (no `+` or `00`) gets
//!   that calling code after dropping one leading trunk `0`: with `33`,
//!   `01 23 45 67 89` becomes `+33123456789`. One build serves every region.
//!
//! Records are never dropped, and nothing fails but a `default-country-code` outside
//! 1-999 (every record then fails with the reason): a value it cannot improve passes as is.

use tandem_sdk::{Error, MapContext, Mapper, Record, Value};

/// The normalising mapper.
pub struct Normalize;

tandem_sdk::export_mapper!(Normalize);

impl Mapper for Normalize {
    fn map(_ctx: &MapContext, record: Record) -> Result<Option<Record>, Error> {
        Ok(Some(tidy(record, country_code()?)))
    }

    /// Reads the setting once per batch, not once per record.
    fn map_batch(_ctx: &MapContext, records: Vec<Record>) -> Vec<Result<Option<Record>, Error>> {
        match country_code() {
            Ok(code) => records
                .into_iter()
                .map(|r| Ok(Some(tidy(r, code))))
                .collect(),
            Err(e) => records.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

/// The `default-country-code` setting of this use of the mapper, if set.
fn country_code() -> Result<Option<u16>, Error> {
    let Some(text) = tandem_sdk::config::get("default-country-code") else {
        return Ok(None);
    };
    match text.trim().parse::<u16>() {
        Ok(code) if (1..=999).contains(&code) => Ok(Some(code)),
        _ => Err(Error::fatal(format!(
            "mapper setting `default-country-code` is `{text}`; use a calling code from 1 to 999, such as 33 or 1"
        ))),
    }
}

fn tidy(mut record: Record, country: Option<u16>) -> Record {
    for field in &mut record.fields {
        let kind = kind_of(&field.name);
        match &mut field.value {
            Value::Text(text) => *text = normalize(kind, text, country),
            Value::Texts(texts) => {
                for text in texts.iter_mut() {
                    *text = normalize(kind, text, country);
                }
            }
            Value::Null | Value::Number(_) | Value::Boolean(_) => {}
        }
    }
    record
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

fn normalize(kind: Kind, text: &str, country: Option<u16>) -> String {
    let text = text.trim();
    match kind {
        Kind::Email => text.to_lowercase(),
        Kind::Name => title_case(&collapse_spaces(text)),
        Kind::Phone => phone_in(text, country),
        Kind::Other => text.to_owned(),
    }
}

/// [`phone`], then a national number (digits only, no `+`) gets `+<country>` after
/// dropping one leading trunk `0`.
pub fn phone_in(text: &str, country: Option<u16>) -> String {
    let out = phone(text);
    match country {
        Some(code)
            if !out.starts_with('+')
                && out.chars().all(|c| c.is_ascii_digit())
                && out.len() >= 3 =>
        {
            let national = out.strip_prefix('0').unwrap_or(&out);
            format!("+{code}{national}")
        }
        _ => out,
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
    fn a_default_country_code_completes_national_numbers() {
        assert_eq!(phone_in("01 23 45 67 89", Some(33)), "+33123456789");
        assert_eq!(phone_in("(555) 010 9999", Some(1)), "+15550109999");
        // Already international, too short, or not a number: left as without the setting.
        assert_eq!(phone_in("0044 20 7946 0958", Some(33)), "+442079460958");
        assert_eq!(phone_in("+1 555 010 9999", Some(33)), "+15550109999");
        assert_eq!(phone_in("12", Some(33)), "12");
        assert_eq!(phone_in("555-0100 ext. 12", Some(33)), "555-0100 ext. 12");
        assert_eq!(phone_in("01 23 45 67 89", None), "0123456789");
    }

    #[test]
    fn the_setting_reaches_every_record_of_a_batch() {
        tandem_sdk::testing::reset();
        tandem_sdk::testing::set_config("default-country-code", "33");
        let records = vec![
            Record::new("a").with("mobile", "06 12 34 56 78"),
            Record::new("b").with("phone", "+44 20 7946 0958"),
        ];
        let out = Normalize::map_batch(&MapContext::default(), records);
        let phones: Vec<_> = out
            .iter()
            .map(|r| {
                r.as_ref().unwrap().as_ref().unwrap().fields[0]
                    .value
                    .clone()
            })
            .collect();
        assert_eq!(
            phones,
            [Value::from("+33612345678"), Value::from("+442079460958")]
        );
        // An unusable code fails every record with the reason, not silently.
        tandem_sdk::testing::set_config("default-country-code", "4400");
        let out = Normalize::map_batch(&MapContext::default(), vec![Record::new("a")]);
        let Err(Error::Fatal(m)) = &out[0] else {
            panic!("{out:?}")
        };
        assert!(
            m.contains("default-country-code") && m.contains("4400"),
            "{m}"
        );
        tandem_sdk::testing::reset();
    }

    #[test]
    fn batch_keeps_order_and_count() {
        let records = vec![Record::new("a").with("email", "A@X"), Record::new("b")];
        let out = Normalize::map_batch(&MapContext::default(), records);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].as_ref().unwrap().as_ref().unwrap().id, "b");
    }
}
