//! The kit's report: one row per check (pass, fail with a reason, or skip with why), as a
//! table for people and JSON for scripts.

use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
use serde::Serialize;

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    /// The plugin did what the contract asks.
    Pass,
    /// It did not; the reason says what was expected and what happened.
    Fail(String),
    /// Not run; the reason says why (e.g. "needs --sandbox").
    Skip(String),
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `plugin` for checks of the whole plugin, else the entity (`contacts`, `leads`).
    pub scope: String,
    /// Stable check name, e.g. `push create`.
    pub name: String,
    /// Pass, fail (with the reason) or skip (with why).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What was seen (counts, ids, the error the plugin returned), for passes too.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The kit's findings for one plugin and one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `name version` of the plugin.
    pub plugin: String,
    /// What it ran against (`simulated freshsales account at http://…`, or the base URL).
    pub target: String,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// An empty report.
    pub fn new(plugin: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            plugin: plugin.into(),
            target: target.into(),
            checks: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, scope: &str, name: &str, outcome: Outcome, detail: impl Into<String>) {
        let one_line = |s: String| s.replace(['\n', '\r'], " ");
        let outcome = match outcome {
            Outcome::Fail(r) => Outcome::Fail(one_line(r)),
            Outcome::Skip(r) => Outcome::Skip(one_line(r)),
            Outcome::Pass => Outcome::Pass,
        };
        self.checks.push(Check {
            scope: scope.to_owned(),
            name: name.to_owned(),
            outcome,
            detail: one_line(detail.into()),
        });
    }

    /// The check named `name` in `scope`, if it ran.
    pub fn check(&self, scope: &str, name: &str) -> Option<&Check> {
        self.checks
            .iter()
            .find(|c| c.scope == scope && c.name == name)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// No check failed (skips are not failures; they are listed).
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// (passed, failed, skipped).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for check in &self.checks {
            match check.outcome {
                Outcome::Pass => counts.0 += 1,
                Outcome::Fail(_) => counts.1 += 1,
                Outcome::Skip(_) => counts.2 += 1,
            }
        }
        counts
    }

    /// One line: `freshsales 0.1.0: 31 passed, 0 failed, 2 skipped`.
    pub fn summary(&self) -> String {
        let (pass, fail, skip) = self.counts();
        format!(
            "{}: {pass} passed, {fail} failed, {skip} skipped",
            self.plugin
        )
    }

    /// The pass/fail table (colours only when `color`).
    pub fn table(&self, color: bool) -> String {
        let mut table = Table::new();
        table
            .load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(["SCOPE", "CHECK", "RESULT", "DETAIL / REASON"]);
        if !color {
            // Not a terminal (a pipe, a CI log): wrap at a width that still reads well.
            table.force_no_tty().set_width(160);
        }
        for check in &self.checks {
            let (result, colour, text) = match &check.outcome {
                Outcome::Pass => ("pass", Color::Green, check.detail.clone()),
                Outcome::Fail(reason) => ("FAIL", Color::Red, join(reason, &check.detail)),
                Outcome::Skip(reason) => ("skip", Color::Yellow, join(reason, &check.detail)),
            };
            let mut result = Cell::new(result);
            if color {
                result = result.fg(colour);
            }
            table.add_row(vec![
                Cell::new(&check.scope),
                Cell::new(&check.name),
                result,
                Cell::new(text),
            ]);
        }
        table.to_string()
    }
}

fn join(reason: &str, detail: &str) -> String {
    if detail.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason} ({detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_summary_table_and_json() {
        let mut report = Report::new("demo 0.1.0", "http://127.0.0.1:1");
        report.push("plugin", "describe", Outcome::Pass, "1 entity");
        report.push(
            "contacts",
            "pull full",
            Outcome::Fail("page 2\nhad 200 records".into()),
            "",
        );
        report.push(
            "plugin",
            "rate limit",
            Outcome::Skip("needs --sandbox".into()),
            "",
        );
        assert_eq!(report.counts(), (1, 1, 1));
        assert!(!report.passed());
        assert_eq!(
            report.summary(),
            "demo 0.1.0: 1 passed, 1 failed, 1 skipped"
        );
        let table = report.table(false);
        assert!(table.contains("FAIL") && table.contains("page 2 had 200 records"));
        assert!(table.contains("needs --sandbox"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][1]["result"], "fail");
        assert_eq!(json["checks"][1]["reason"], "page 2 had 200 records");
        assert_eq!(json["checks"][0]["result"], "pass");
        assert_eq!(json["checks"][0]["detail"], "1 entity");
        assert_eq!(
            report.check("contacts", "pull full").map(|c| &c.outcome),
            Some(&Outcome::Fail("page 2 had 200 records".into()))
        );
    }
}
