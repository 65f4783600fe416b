//! An entity's schema: the well-known email field, custom fields, and the fields the kit
//! writes.

use std::collections::BTreeSet;

use crate::runtime::types::{FieldDef, FieldType};

use super::{Fields, Kit, abbreviate};

impl<'a> Kit<'a> {
    /// Which fields the kit writes; adds the schema's email and custom-field rows.
    pub(super) fn schema_fields(&mut self, scope: &str, schema: &[FieldDef]) -> Option<Fields> {
        let tagged = |tag: &str| {
            schema
                .iter()
                .find(|f| f.writable && f.well_known.as_deref() == Some(tag))
                .map(|f| f.name.clone())
        };
        let email = tagged(tandem_well_known::EMAIL);
        self.row(
            scope,
            "schema: well-known email",
            match (&email, schema.iter().find(|f| f.well_known.as_deref() == Some(tandem_well_known::EMAIL))) {
                (Some(name), _) => Ok(format!("`{name}`")),
                (None, Some(f)) => Err(format!(
                    "`{}` is tagged `email` but not writable: the host cannot create records",
                    f.name
                )),
                (None, None) => Err(
                    "no field is tagged `email`: the host pairs records by email and cannot sync this entity"
                        .to_owned(),
                ),
            },
        );
        let custom: Vec<&str> = schema
            .iter()
            .filter(|f| f.custom)
            .map(|f| f.name.as_str())
            .collect();
        if custom.is_empty() {
            if self.control().is_some() {
                self.row(
                    scope,
                    "schema: custom fields",
                    Err(
                        "no field is marked custom, but the simulated account has custom fields"
                            .to_owned(),
                    ),
                );
            } else {
                self.skip(
                    scope,
                    "schema: custom fields",
                    "no field is marked custom (fine if the account has no custom fields)",
                );
            }
        } else {
            self.row(
                scope,
                "schema: custom fields",
                Ok(format!("{}: {}", custom.len(), abbreviate(&custom, 6))),
            );
        }
        let first_name = tagged("first-name");
        let last_name = tagged("last-name");
        Some(Fields {
            name: first_name
                .clone()
                .or_else(|| tagged("full-name"))
                .or_else(|| last_name.clone()),
            email: email?,
            first_name,
            last_name,
        })
    }
}

/// The well-known tags of the contract's vocabulary (`wit/types.wit`, `field-def`).
const VOCABULARY: &[&str] = tandem_well_known::ALL;

/// Well-formed field definitions.
pub(super) fn schema_check(schema: &[FieldDef]) -> Result<String, String> {
    if schema.is_empty() {
        return Err("no field".to_owned());
    }
    let mut names = BTreeSet::new();
    let mut unknown_tags = Vec::new();
    for f in schema {
        if f.name.trim().is_empty() {
            return Err(format!("a field labelled `{}` has no name", f.label));
        }
        if !names.insert(f.name.as_str()) {
            return Err(format!("field `{}` is listed twice", f.name));
        }
        if matches!(f.kind, FieldType::Choice | FieldType::MultiChoice) && f.choices.is_empty() {
            return Err(format!("`{}` is a choice field without choices", f.name));
        }
        if f.kind == FieldType::MultiChoice && !f.multi_value {
            return Err(format!(
                "`{}` is a multi-choice field but not multi-value",
                f.name
            ));
        }
        if let Some(tag) = &f.well_known
            && !VOCABULARY.contains(&tag.as_str())
        {
            unknown_tags.push(format!("{} ({tag})", f.name));
        }
    }
    let tagged = schema.iter().filter(|f| f.well_known.is_some()).count();
    let mut detail = format!("{} fields, {tagged} with a well-known tag", schema.len());
    if !unknown_tags.is_empty() {
        detail.push_str(&format!(
            "; tags outside the vocabulary, which the host ignores: {}",
            unknown_tags.join(", ")
        ));
    }
    Ok(detail)
}
