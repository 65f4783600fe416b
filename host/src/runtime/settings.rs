//! The WIT `config` host interface: a connection's non-secret settings (account domain,
//! base URL, edition). Credentials live in [`super::Credentials`] and never pass through here;
//! as a second line of defence, settings whose names look like secrets are withheld.

use std::collections::BTreeMap;

use super::bindings::config::Host;
use super::manifest::SettingSpec;
use super::state::HostState;

/// Why a connection's (or a mapper use's) settings do not fit the plugin's declared ones.
/// One line each; values are settings, never secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingProblem {
    /// A setting the plugin does not declare (a typo, most often).
    #[error("setting `{key}` is not one the plugin declares ({declared})")]
    Unknown {
        /// The setting given.
        key: String,
        /// The declared names, comma-separated.
        declared: String,
    },
    /// A required setting is not given.
    #[error("setting `{key}` is required{}", describe(.description))]
    Missing {
        /// The setting's name.
        key: String,
        /// Its declared description.
        description: String,
    },
    /// A value of the wrong type or outside an enum.
    #[error("setting `{key}`: {problem}")]
    Invalid {
        /// The setting's name.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

impl SettingProblem {
    /// The setting concerned.
    pub fn key(&self) -> &str {
        match self {
            Self::Unknown { key, .. } | Self::Missing { key, .. } | Self::Invalid { key, .. } => {
                key
            }
        }
    }
}

fn describe(description: &str) -> String {
    if description.is_empty() {
        String::new()
    } else {
        format!(" ({})", super::text::clean_line(description))
    }
}

/// Checks `given` against the plugin's declared settings and returns what the plugin
/// reads: the given settings plus the defaults of declared ones not given. A plugin
/// that declares none gets `given` as it is (manifests before declarations existed).
pub fn apply_declared(
    declared: &BTreeMap<String, SettingSpec>,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<SettingProblem>> {
    if declared.is_empty() {
        return Ok(given.clone());
    }
    let mut problems = Vec::new();
    for (key, value) in given {
        match declared.get(key) {
            None => problems.push(SettingProblem::Unknown {
                key: key.clone(),
                declared: declared.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
            Some(spec) => {
                if let Some(problem) = spec.refuse(value) {
                    problems.push(SettingProblem::Invalid {
                        key: key.clone(),
                        problem,
                    });
                }
            }
        }
    }
    let mut out = given.clone();
    for (key, spec) in declared {
        if given.contains_key(key) {
            continue;
        }
        match &spec.default {
            Some(default) => {
                out.insert(key.clone(), default.as_text());
            }
            None if spec.required => problems.push(SettingProblem::Missing {
                key: key.clone(),
                description: spec.description.clone(),
            }),
            None => {}
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The settings a plugin may read.
pub(crate) struct PluginSettings {
    visible: BTreeMap<String, String>,
}

impl PluginSettings {
    /// Keeps every setting except those named like secrets.
    pub(crate) fn new(settings: &BTreeMap<String, String>, connection: &str) -> Self {
        let visible = settings
            .iter()
            .filter(|(k, _)| {
                let secret = looks_secret(k);
                if secret {
                    tracing::warn!(%connection, setting = %k, "setting looks like a secret; withheld from the plugin (put credentials in the connection's credentials)");
                }
                !secret
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self { visible }
    }
}

/// Whether a setting name suggests a credential.
pub fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('_', "-");
    [
        "password",
        "secret",
        "api-key",
        "apikey",
        "access-token",
        "refresh-token",
        "bearer",
    ]
    .iter()
    .any(|needle| k.contains(needle))
        || k == "token"
        || k == "key"
}

impl HostState {
    /// The settings this call reads: a mapper's own, or its connection's.
    fn with_settings<R>(&self, f: impl FnOnce(&PluginSettings) -> R) -> wasmtime::Result<R> {
        match &self.mapper_settings {
            Some(settings) => Ok(f(settings)),
            None => Ok(f(&self.conn()?.settings)),
        }
    }
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.with_settings(|s| s.visible.get(&key).cloned())
    }

    async fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        self.with_settings(|s| {
            s.visible
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> BTreeMap<String, SettingSpec> {
        crate::runtime::Manifest::parse(
            "name = \"x\"\nversion = \"0.1.0\"\nkind = \"mapper\"\ncontract = \"0.1.0\"\n\
             [settings.region]\ntype = \"enum\"\nvalues = [\"eu\", \"us\"]\nrequired = true\ndescription = \"Data region\"\n\
             [settings.page-size]\ntype = \"integer\"\ndefault = 50\n\
             [settings.strict]\ntype = \"boolean\"\n",
        )
        .unwrap()
        .settings
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn declared_settings_get_their_defaults() {
        let out = apply_declared(&declared(), &given(&[("region", "eu")])).unwrap();
        assert_eq!(out, given(&[("region", "eu"), ("page-size", "50")]));
        // Given values win over defaults; an optional one without default stays unset.
        let out =
            apply_declared(&declared(), &given(&[("region", "us"), ("page-size", "7")])).unwrap();
        assert_eq!(out["page-size"], "7");
        assert!(!out.contains_key("strict"));
    }

    #[test]
    fn every_problem_is_reported_with_its_setting() {
        let problems = apply_declared(
            &declared(),
            &given(&[("regoin", "eu"), ("page-size", "many"), ("strict", "yes")]),
        )
        .unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems.iter().map(SettingProblem::key).collect::<Vec<_>>(),
            ["page-size", "regoin", "strict", "region"]
        );
        assert!(text[0].contains("expected an integer"), "{text:?}");
        assert!(
            text[1].contains("not one the plugin declares (page-size, region, strict)"),
            "{text:?}"
        );
        assert!(text[2].contains("true or false"), "{text:?}");
        assert_eq!(text[3], "setting `region` is required (Data region)");
        let problems = apply_declared(&declared(), &given(&[("region", "asia")])).unwrap_err();
        assert!(
            problems[0].to_string().contains("expected one of eu, us"),
            "{problems:?}"
        );
    }

    #[test]
    fn undeclared_settings_pass_through_as_before() {
        let any = given(&[("whatever", "1"), ("base-url", "not even a url")]);
        assert_eq!(apply_declared(&BTreeMap::new(), &any).unwrap(), any);
    }

    #[test]
    fn secret_like_settings_are_withheld() {
        let settings: BTreeMap<String, String> = [
            ("domain", "acme.myfreshworks.com"),
            ("base-url", "http://127.0.0.1:1"),
            ("token-url", "http://127.0.0.1:2/token"),
            ("api_key", "k"),
            ("client-secret", "s"),
            ("refresh-token", "r"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let visible = PluginSettings::new(&settings, "c");
        let keys: Vec<_> = visible.visible.keys().map(String::as_str).collect();
        assert_eq!(keys, ["base-url", "domain", "token-url"]);
    }
}
