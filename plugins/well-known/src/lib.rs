//! The well-known field tags of the plugin contract: a connector tags a field with one
//! (`field-def.well-known` in `wit/types.wit`) to say what it means, and the host pairs
//! fields of two apps by these tags. Defined once here and used by the host, its
//! conformance kit and the guest SDK (`tandem_sdk::well_known`), so that no side spells
//! a tag its own way. No dependencies: it builds for the host and for `wasm32-wasip2`.
#![no_std]

/// The primary e-mail address (the match key).
pub const EMAIL: &str = "email";
/// Every e-mail address of the record.
pub const EMAILS: &str = "emails";
/// Given name.
pub const FIRST_NAME: &str = "first-name";
/// Family name.
pub const LAST_NAME: &str = "last-name";
/// The whole name in one field.
pub const FULL_NAME: &str = "full-name";
/// The work phone.
pub const PHONE: &str = "phone";
/// The mobile phone.
pub const MOBILE: &str = "mobile";
/// Every phone number of the record.
pub const PHONES: &str = "phones";
/// The company's name.
pub const COMPANY: &str = "company";
/// Job title.
pub const JOB_TITLE: &str = "job-title";
/// Street address.
pub const ADDRESS: &str = "address";
/// City.
pub const CITY: &str = "city";
/// State or region.
pub const STATE: &str = "state";
/// Postal code.
pub const ZIP: &str = "zip";
/// Country.
pub const COUNTRY: &str = "country";
/// Web site.
pub const WEBSITE: &str = "website";
/// Lead score.
pub const LEAD_SCORE: &str = "lead-score";
/// The owning user.
pub const OWNER: &str = "owner";
/// Marketing medium.
pub const MEDIUM: &str = "medium";
/// Marketing source.
pub const SOURCE: &str = "source";
/// Seniority or decision power.
pub const AUTHORITY: &str = "authority";
/// Do not disturb: a boolean opt-out (consent).
pub const DND: &str = "dnd";
/// Subscription status (consent).
pub const CONSENT: &str = "consent";
/// Lifecycle stage.
pub const LIFECYCLE_STAGE: &str = "lifecycle-stage";
/// Tags.
pub const TAGS: &str = "tags";
/// Notes.
pub const NOTES: &str = "notes";
/// Birthday.
pub const BIRTHDAY: &str = "birthday";
/// When the record was created.
pub const CREATED_AT: &str = "created-at";
/// When the record last changed.
pub const UPDATED_AT: &str = "updated-at";
/// The field holding the engine's marker (idempotent creates).
pub const MARKER: &str = "marker";

/// The whole vocabulary, in the order `wit/types.wit` lists it.
pub const ALL: &[&str] = &[
    EMAIL,
    EMAILS,
    FIRST_NAME,
    LAST_NAME,
    FULL_NAME,
    PHONE,
    MOBILE,
    PHONES,
    COMPANY,
    JOB_TITLE,
    ADDRESS,
    CITY,
    STATE,
    ZIP,
    COUNTRY,
    WEBSITE,
    LEAD_SCORE,
    OWNER,
    MEDIUM,
    SOURCE,
    AUTHORITY,
    DND,
    CONSENT,
    LIFECYCLE_STAGE,
    TAGS,
    NOTES,
    BIRTHDAY,
    CREATED_AT,
    UPDATED_AT,
    MARKER,
];

/// Whether `tag` is in the vocabulary (the host ignores other tags).
pub fn is_known(tag: &str) -> bool {
    ALL.contains(&tag)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// The list is the contract's: the one `wit/types.wit` documents, in its order.
    #[test]
    fn the_vocabulary_is_the_one_the_contract_documents() {
        let wit = include_str!("../../../wit/types.wit");
        let start = wit
            .find("Vocabulary")
            .expect("types.wit lists the vocabulary");
        let end = start + wit[start..].find("well-known:").expect("before the field");
        let documented: Vec<&str> = wit[start..end]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| !t.contains('/') && !t.contains('.'))
            .collect();
        assert_eq!(documented, ALL);
        assert!(is_known(CONSENT) && !is_known("e-mail"));
    }
}
