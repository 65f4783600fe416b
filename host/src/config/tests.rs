//! One test per error class, asserting the exact one-line message, plus the happy paths.

use std::path::Path;

use super::*;
use crate::sync::model::{Side, SidePair, Value};
use crate::sync::policy::{Direction, LeaveAction, RemoveAction, Scope, Winner};
use crate::sync::rules::{Action, CompareOp, Condition};

/// `BASE` plus a sync `crm` between `sales` and `marketing`, then `extra` lines.
fn with_sync(extra: &str) -> String {
    format!(
        "{BASE}\n[syncs.crm]\na = \"sales\"\nb = \"marketing\"\nentities = \"contacts\"\ndirection = \"two-way\"\n{extra}"
    )
}

fn line_of(src: &str, prefix: &str) -> usize {
    src.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
}

fn catalog() -> Catalog {
    Catalog::new(
        [
            ("freshsales".to_owned(), PluginKind::Connector),
            ("freshmarketer".to_owned(), PluginKind::Connector),
            ("google-contacts".to_owned(), PluginKind::Connector),
            ("normalize".to_owned(), PluginKind::Mapper),
        ],
        None,
    )
}

fn env() -> Env {
    Env::empty()
        .with("FS_KEY", "k-123")
        .with("FM_KEY", "k-456")
        .with("FS_URL", "http://127.0.0.1:4001")
        .with("DB", "postgres://tandem@127.0.0.1/t")
}

/// Parses and checks `src` as `config.toml`; returns the messages.
fn errors(src: &str) -> Vec<String> {
    errors_in(Path::new("config.toml"), src)
}

fn errors_in(file: &Path, src: &str) -> Vec<String> {
    match load_str(file, src, &env(), &catalog()) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn ok(src: &str) -> Config {
    match parse_str(Path::new("config.toml"), src, &env()) {
        Ok(c) => {
            let e = check(&c, &env(), &catalog());
            assert!(e.is_empty(), "{e:#?}");
            c
        }
        Err(e) => panic!(
            "{:#?}",
            e.iter().map(ToString::to_string).collect::<Vec<_>>()
        ),
    }
}

const BASE: &str = r#"
[plugins.freshsales]
builtin = "freshsales"

[plugins.freshmarketer]
builtin = "freshmarketer"

[plugins.normalize]
builtin = "normalize"

[connections.sales]
plugin = "freshsales"
credentials.api-key = { env = "FS_KEY" }

[connections.marketing]
plugin = "freshmarketer"
credentials.api-key = { env = "FM_KEY" }
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = ok(&with_sync(""));
    assert_eq!(c.state.path, Path::new("./.tandem/state.redb"));
    assert_eq!(c.daemon.listen.to_string(), "127.0.0.1:7380");
    let s = &c.syncs["crm"];
    assert_eq!(s.interval, DEFAULT_INTERVAL);
    assert_eq!(s.full_every, syncs::DEFAULT_FULL_EVERY);
    assert_eq!(s.policy.name, "crm");
    assert_eq!(s.policy.direction, Direction::TwoWay);
    assert_eq!(s.policy.entities[0].a, "contacts");
    assert_eq!(s.policy.conflict.winner, Winner::MostRecent);
    assert!(s.policy.create.a && s.policy.create.b);
    // The engine picks the seed's opt-out default per side from the schema.
    assert_eq!(s.policy.opt_out.exclude, SidePair::new(None, None));
    assert_eq!(
        c.connections["sales"].credentials,
        CredentialsConfig::ApiKey(SecretRef {
            source: SecretSource::Env("FS_KEY".into()),
            at: Location {
                file: "config.toml".into(),
                line: 13,
                column: 23
            },
            key: KeyPath::root()
                .key("connections")
                .key("sales")
                .key("credentials")
                .key("api-key"),
        })
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    assert_eq!(
        errors("[state]\npath = \n"),
        ["config.toml:2:8: invalid TOML: string values must be quoted, expected literal string"]
    );
}

#[test]
fn unknown_key_has_path_line_column_and_suggestion() {
    let src = "[state]\npath = \"s.redb\"\n\n[plugins.fs]\nbuiltin = \"freshsales\"\ngrnat = {}\n";
    assert_eq!(
        errors(src),
        [
            r#"config.toml:6:1: plugins.fs.grnat: unknown key (did you mean "grant"?); expected one of builtin, path, sha256, grant"#
        ]
    );
    assert_eq!(
        errors("[sate]\n"),
        [
            r#"config.toml:1:2: sate: unknown key (did you mean "state"?); expected one of state, daemon, plugins, connections, syncs"#
        ]
    );
}

#[test]
fn bad_enum_value_lists_the_choices() {
    let src = with_sync("").replace("direction = \"two-way\"", "direction = \"twoway\"");
    let line = line_of(&src, "direction");
    assert_eq!(
        errors(&src),
        [format!(
            r#"config.toml:{line}:13: syncs.crm.direction: unknown value "twoway" (did you mean "two-way"?); expected one of a-to-b, b-to-a, two-way"#
        )]
    );
}

#[test]
fn wrong_type_names_both_types() {
    let src = with_sync("create = { a = \"yes\" }\n");
    let line = line_of(&src, "create");
    assert_eq!(
        errors(&src),
        [format!(
            "config.toml:{line}:16: syncs.crm.create.a: expected true or false, found a string"
        )]
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let src = with_sync("colour = \"blue\"\ninterval = \"often\"\n")
        .replace("\"two-way\"", "\"sideways\"")
        .replace("entities = \"contacts\"", "entities = \"accounts\"");
    let e = errors(&src);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e[0].contains(
            "syncs.crm.entities: unknown value \"accounts\"; expected one of contacts, leads, both"
        ),
        "{}",
        e[0]
    );
    assert!(
        e[1].contains("syncs.crm.direction: unknown value \"sideways\""),
        "{}",
        e[1]
    );
    assert!(e[2].contains("syncs.crm.colour: unknown key"), "{}", e[2]);
    assert!(
        e[3].contains("syncs.crm.interval: cannot read \"often\" as a duration"),
        "{}",
        e[3]
    );
}

#[test]
fn full_every_is_read_and_checked_with_line_and_column() {
    let c = ok(&with_sync("full-every = \"6h\"\n"));
    assert_eq!(
        c.syncs["crm"].full_every,
        std::time::Duration::from_secs(6 * 3600)
    );
    let e = errors(&with_sync("full-every = \"0s\"\n"));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("syncs.crm.full-every") && e[0].contains("at least \"1s\""),
        "{}",
        e[0]
    );
    let e = errors(&with_sync("full-every = \"daily\"\n"));
    assert!(
        e[0].contains("syncs.crm.full-every: cannot read \"daily\" as a duration"),
        "{}",
        e[0]
    );
}

#[test]
fn missing_reference_names_what_is_defined() {
    let src =
        with_sync("mappers = [\"normalise\"]\n").replace("b = \"marketing\"", "b = \"marketin\"");
    let b_line = src
        .lines()
        .position(|l| l.starts_with("b = \"marketin\""))
        .unwrap()
        + 1;
    assert_eq!(
        errors(&src),
        [
            format!(
                r#"config.toml:{b_line}:5: syncs.crm.b: no connection named "marketin" (did you mean "marketing"?); defined: marketing, sales"#
            ),
            format!(
                r#"config.toml:{}:12: syncs.crm.mappers[0]: no plugin named "normalise" (did you mean "normalize"?); defined: freshmarketer, freshsales, normalize"#,
                b_line + 3
            ),
        ]
    );
    let e = errors("[connections.x]\nplugin = \"nope\"\n");
    assert_eq!(
        e,
        [r#"config.toml:2:10: connections.x.plugin: no plugin named "nope"; defined: none"#]
    );
}

#[test]
fn plugin_kinds_are_checked() {
    let src = with_sync("mappers = \"freshsales\"\n");
    let line = src.lines().position(|l| l.starts_with("mappers")).unwrap() + 1;
    assert_eq!(
        errors(&src),
        [format!(
            r#"config.toml:{line}:11: syncs.crm.mappers: plugin "freshsales" is a connector, but a mapper is needed here"#
        )]
    );
    let src = "[plugins.n]\nbuiltin = \"normalize\"\n[connections.x]\nplugin = \"n\"\n";
    assert_eq!(
        errors(src),
        [
            r#"config.toml:4:10: connections.x.plugin: plugin "n" is a mapper, but a connector is needed here"#
        ]
    );
}

#[test]
fn unknown_builtin_lists_the_builtins() {
    assert_eq!(
        errors("[plugins.fs]\nbuiltin = \"freshsale\"\n"),
        [
            r#"config.toml:2:11: plugins.fs.builtin: unknown value "freshsale" (did you mean "freshsales"?); expected one of freshmarketer, freshsales, google-contacts, normalize"#
        ]
    );
}

#[test]
fn inline_secret_is_refused_without_echoing_it() {
    let src = "[plugins.fs]\nbuiltin = \"freshsales\"\n[connections.x]\nplugin = \"fs\"\ncredentials.api-key = \"sk-live-123\"\n";
    let e = errors(src);
    assert_eq!(
        e,
        [
            r#"config.toml:5:23: connections.x.credentials.api-key: inline secrets are refused; reference it instead: { env = "VAR" } or { file = "path" }"#
        ]
    );
    assert!(!e[0].contains("sk-live-123"));
    let src = "[plugins.fs]\nbuiltin = \"freshsales\"\n[connections.x]\nplugin = \"fs\"\nsettings.api_key = \"sk-live-123\"\n";
    let e = errors(src);
    assert_eq!(
        e,
        [
            r#"config.toml:5:20: connections.x.settings.api_key: looks like a secret, and settings are readable by the plugin; put it under credentials as { env = "VAR" } or { file = "path" }"#
        ]
    );
}

#[test]
fn missing_env_var_is_named_but_never_valued() {
    let src = "[plugins.fs]\nbuiltin = \"freshsales\"\n[connections.x]\nplugin = \"fs\"\ncredentials.api-key = { env = \"NOPE_KEY\" }\nsettings.base-url = { env = \"NOPE_URL\" }\n";
    assert_eq!(
        errors(src),
        [
            "config.toml:5:23: connections.x.credentials.api-key: environment variable NOPE_KEY is not set; export it before running tandem",
            "config.toml:6:21: connections.x.settings.base-url: environment variable NOPE_URL is not set; export it before running tandem",
        ]
    );
}

#[test]
fn settings_are_interpolated_with_defaults() {
    let c = ok(&format!(
        "{BASE}\n[connections.local]\nplugin = \"freshsales\"\nsettings = {{ base-url = {{ env = \"FS_URL\" }}, domain = {{ env = \"UNSET\", default = \"acme.myfreshworks.com\" }}, page-size = 50 }}\n"
    ));
    let s = &c.connections["local"].settings;
    assert_eq!(s["base-url"], "http://127.0.0.1:4001");
    assert_eq!(s["domain"], "acme.myfreshworks.com");
    assert_eq!(s["page-size"], "50");
}

#[test]
fn secret_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    std::fs::write(dir.path().join("key"), "k-789\n").unwrap();
    let file = dir.path().join("tandem.toml");
    let src = "[plugins.fs]\nbuiltin = \"freshsales\"\n[connections.x]\nplugin = \"fs\"\ncredentials.api-key = { file = \"key\" }\n[connections.y]\nplugin = \"fs\"\ncredentials.api-key = { file = \"empty\" }\n[connections.z]\nplugin = \"fs\"\ncredentials.api-key = { file = \"absent\" }\n";
    let f = file.display();
    let d = dir.path().display();
    assert_eq!(
        errors_in(&file, src),
        [
            format!(
                "{f}:8:23: connections.y.credentials.api-key: cannot use {d}/empty: the file is empty; write the secret into it"
            ),
            format!(
                "{f}:11:23: connections.z.credentials.api-key: cannot use {d}/absent: no such file; create it with the secret as its only content"
            ),
        ]
    );
    let c = parse_str(&file, src, &env()).unwrap();
    let CredentialsConfig::ApiKey(key) = &c.connections["x"].credentials else {
        panic!("api key expected")
    };
    assert_eq!(key.read(&env()).unwrap(), "k-789");
}

#[test]
fn sha256_pin_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.wasm"), b"\0asm fake").unwrap();
    let file = dir.path().join("tandem.toml");
    let zero = "0".repeat(64);
    let src = format!("[plugins.m]\npath = \"m.wasm\"\nsha256 = \"{zero}\"\n");
    let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"\0asm fake"));
    assert_eq!(
        errors_in(&file, &src),
        [format!(
            "{}:3:10: plugins.m.sha256: sha256 mismatch for {}/m.wasm: the file has {actual}; rebuild the expected file, or pin the new digest if you trust it",
            file.display(),
            dir.path().display()
        )]
    );
    let good = format!("[plugins.m]\npath = \"m.wasm\"\nsha256 = \"{actual}\"\n");
    assert_eq!(errors_in(&file, &good), Vec::<String>::new());
    assert_eq!(
        errors_in(&file, "[plugins.m]\npath = \"m.wasm\"\nsha256 = \"abc\"\n"),
        [format!(
            "{}:3:10: plugins.m.sha256: expected 64 hexadecimal digits (the output of `sha256sum FILE`)",
            file.display()
        )]
    );
    assert_eq!(
        errors_in(&file, "[plugins.m]\npath = \"m.wasm\"\n"),
        [format!(
            "{}:1:1: plugins.m.sha256: missing; a plugin file must be pinned: add sha256 = \"<hex digest>\" (print it with `sha256sum FILE`)",
            file.display()
        )]
    );
    assert_eq!(
        errors_in(
            &file,
            &format!("[plugins.m]\npath = \"gone.wasm\"\nsha256 = \"{zero}\"\n")
        ),
        [format!(
            "{}:2:8: plugins.m.path: cannot use {}/gone.wasm: no such file; build the plugin or fix the path",
            file.display(),
            dir.path().display()
        )]
    );
}

#[test]
fn missing_required_key_points_at_its_table() {
    let src = format!(
        "{BASE}\n[syncs.crm]\na = \"sales\"\nentities = \"both\"\ndirection = \"a-to-b\"\n"
    );
    let line = src.lines().position(|l| l == "[syncs.crm]").unwrap() + 1;
    assert_eq!(
        errors(&src),
        [format!(
            r#"config.toml:{line}:1: syncs.crm.b: missing; name the connection on side B: b = "NAME""#
        )]
    );
}

#[test]
fn grants_are_read_and_loopback_must_be_explicit() {
    let src = "[plugins.fs]\nbuiltin = \"freshsales\"\n[plugins.fs.grant]\nhttp = [\"https://*.myfreshworks.com\", { env = \"FS_URL\" }]\n";
    assert_eq!(
        errors(src),
        [
            "config.toml:4:39: plugins.fs.grant.http[1]: http://127.0.0.1:4001 is a loopback origin; also set loopback = true in this grant to allow it"
        ]
    );
    let c = ok(
        "[plugins.fs]\nbuiltin = \"freshsales\"\n[plugins.fs.grant]\nloopback = true\nhttp = [\"https://*.myfreshworks.com\", { env = \"FS_URL\" }]\nstorage-quota = \"1MiB\"\nlimits = { memory = \"64MiB\", timeout = \"30s\" }\n",
    );
    let g = &c.plugins["fs"].grant;
    assert_eq!(
        g.http,
        ["https://*.myfreshworks.com", "http://127.0.0.1:4001"]
    );
    assert_eq!(g.storage_quota, Some(1 << 20));
    assert_eq!(g.limits.memory, Some(64 << 20));
    assert_eq!(g.limits.timeout, Some(std::time::Duration::from_secs(30)));
    assert_eq!(
        errors(
            "[plugins.fs]\nbuiltin = \"freshsales\"\ngrant.http = [\"https://example.com/api\"]\n"
        ),
        [
            r#"config.toml:3:15: plugins.fs.grant.http[0]: an origin has no path; write "https://example.com""#
        ]
    );
}

#[test]
fn daemon_stays_on_loopback_unless_told() {
    assert_eq!(
        errors("[daemon]\nlisten = \"0.0.0.0:7380\"\n"),
        [
            r#"config.toml:2:10: daemon.listen: 0.0.0.0:7380 is reachable from other machines; use a loopback address, or set allow-remote = true and a token"#
        ]
    );
    assert_eq!(
        errors("[daemon]\nlisten = \"0.0.0.0:7380\"\nallow-remote = true\n"),
        [
            r#"config.toml:3:16: daemon.allow-remote: a remote control API needs a token; add token = { env = "VAR" }"#
        ]
    );
    assert_eq!(
        errors("[daemon]\ntoken = \"hunter2\"\n"),
        [
            r#"config.toml:2:9: daemon.token: inline secrets are refused; reference it instead: { env = "VAR" } or { file = "path" }"#
        ]
    );
}

#[test]
fn rules_are_read_into_the_engine_types() {
    let src = with_sync(
        r#"
[[syncs.crm.rules]]
name = "hot leads"
from = "a"
when = { all = [{ field = "lead-score", op = "gt", value = 50 }, { field = "dnd", value = false }] }
then = [{ set-medium = "Google" }, "grant-authority", { set-field = { field = "cf_source", value = "tandem" } }]
"#,
    );
    let c = ok(&src);
    let r = &c.syncs["crm"].policy.rules[0];
    assert_eq!(r.from, Side::A);
    let Condition::All(preds) = &r.when else {
        panic!("all expected")
    };
    assert_eq!(preds[0].op, CompareOp::Gt);
    assert_eq!(preds[0].value, Some(Value::Number(50.0)));
    assert_eq!(preds[1].op, CompareOp::Eq);
    assert_eq!(
        r.then,
        [
            Action::SetMedium("Google".into()),
            Action::GrantAuthority,
            Action::SetField {
                field: "cf_source".into(),
                value: Value::Text("tandem".into())
            }
        ]
    );
}

#[test]
fn rule_errors_are_all_reported() {
    let src = with_sync(
        r#"
[[syncs.crm.rules]]
name = "bad"
from = "c"
when = { any = [{ field = "dnd", op = "equals", value = true }, { field = "cf_plan", op = "in-list", value = "Pro" }] }
then = ["set-medium", "unsubscribe"]
"#,
    );
    let e = errors(&src);
    let tails: Vec<&str> = e.iter().map(|m| m.split_once(": ").unwrap().1).collect();
    assert_eq!(
        tails,
        [
            r#"syncs.crm.rules[0].from: unknown value "c"; expected one of a, b"#,
            r#"syncs.crm.rules[0].when.any[0].op: unknown value "equals"; expected one of eq, ne, gt, lt, contains, is-empty, not-empty, in-list"#,
            r#"syncs.crm.rules[0].when.any[1]: in-list needs a list: value = ["Pro", "Enterprise"]"#,
            r#"syncs.crm.rules[0].then[0]: set-medium takes a value: write { set-medium = ... } (see examples/demo.toml)"#,
            r#"syncs.crm.rules[0].then[1]: unknown value "unsubscribe"; expected one of mark-dnd, unmark-dnd, grant-authority, revoke-authority, set-medium, set-field, skip"#,
        ]
    );
}

#[test]
fn whole_policy_checks_come_from_the_engine() {
    // remove-from-list on A's opt-outs needs a list on side B.
    let src = with_sync("opt-out = { on-opt-out = { a = \"remove-from-list\" } }\n");
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains(": syncs.crm: sync `crm`: `opt-out.on-opt-out.a` is `remove-from-list`"),
        "{}",
        e[0]
    );
    let c = ok(&with_sync(
        "scope = { b = \"Newsletter\" }\nopt-out = { on-opt-out = { a = \"remove-from-list\" } }\n",
    ));
    assert_eq!(
        c.syncs["crm"].policy.opt_out.on_opt_out.a,
        RemoveAction::RemoveFromContainer
    );
    assert_eq!(
        c.syncs["crm"].policy.scope.b,
        Scope::Container("Newsletter".into())
    );
}

#[test]
fn unreadable_file_is_one_error() {
    let e = load(Path::new("/nonexistent/tandem.toml"), &env(), &catalog()).unwrap_err();
    assert_eq!(
        e.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "/nonexistent/tandem.toml: cannot read the config file: no such file; pass the right file with --config FILE"
        ]
    );
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// The variables `tandem demo` sets for examples/demo.toml (the simulated accounts'
/// addresses; without them the defaults name `tandem demo --serve`'s fixed ports).
fn demo_env() -> Env {
    [
        ("TANDEM_DEMO_FRESHSALES_URL", "http://127.0.0.1:41001"),
        ("TANDEM_DEMO_FRESHMARKETER_URL", "http://127.0.0.1:41002"),
        ("TANDEM_DEMO_GOOGLE_URL", "http://127.0.0.1:41003"),
        ("TANDEM_DEMO_GOOGLE_CLIENT_ID", "c"),
        (
            "TANDEM_DEMO_GOOGLE_TOKEN_URL",
            "http://127.0.0.1:41003/token",
        ),
    ]
    .into_iter()
    .fold(Env::empty(), |env, (k, v)| env.with(k, v))
}

/// examples/demo.toml read (pass 1) and checked (pass 2) with its credential files,
/// which `tandem demo` writes, in a temporary directory instead.
fn demo_config(env: &Env, catalog: &Catalog) -> Result<Config, Vec<ConfigError>> {
    let file = example("demo.toml");
    let src = std::fs::read_to_string(&file).unwrap();
    let mut c = parse_str(&file, &src, env)?;
    let dir = tempfile::tempdir().unwrap();
    let mut refs: Vec<&mut SecretRef> = c.daemon.token.iter_mut().collect();
    for conn in c.connections.values_mut() {
        match &mut conn.credentials {
            CredentialsConfig::ApiKey(k) | CredentialsConfig::Basic { password: k, .. } => {
                refs.push(k)
            }
            CredentialsConfig::OAuth2 {
                client_secret,
                refresh_token,
                ..
            } => refs.extend([client_secret, refresh_token]),
            CredentialsConfig::None => {}
        }
    }
    for r in refs {
        let SecretSource::File(p) = &mut r.source else {
            panic!("the demo's secrets are files it writes: {r:?}");
        };
        *p = dir.path().join(p.file_name().unwrap());
        std::fs::write(&*p, "fake-secret\n").unwrap();
    }
    let problems = check(&c, env, catalog);
    if problems.is_empty() {
        Ok(c)
    } else {
        Err(problems)
    }
}

#[test]
fn demo_example_validates() {
    let c = demo_config(&demo_env(), &catalog()).unwrap_or_else(|e| {
        panic!(
            "{:#?}",
            e.iter().map(ToString::to_string).collect::<Vec<_>>()
        )
    });
    assert_eq!(
        c.connections["freshsales"].settings["base-url"],
        "http://127.0.0.1:41001"
    );
    assert_eq!(c.plugins["freshsales"].grant.http, ["setting:base-url"]);
    assert!(c.plugins["freshsales"].grant.loopback);
    let fm = &c.syncs["sales-marketing"];
    assert_eq!(
        (fm.a.as_str(), fm.b.as_str()),
        ("freshsales", "freshmarketer")
    );
    assert_eq!(fm.policy.direction, Direction::TwoWay);
    assert_eq!(fm.policy.scope.b, Scope::Container("Newsletter".into()));
    assert_eq!(fm.policy.mappers, ["normalize"]);
    assert_eq!(
        fm.policy.opt_out.on_opt_out.a,
        RemoveAction::RemoveFromContainer
    );
    let g = &c.syncs["sales-google"];
    assert_eq!(g.policy.rules.len(), 2);
    assert_eq!(g.policy.conflict.winner, Winner::AWins);
    assert!(matches!(
        c.connections["google"].credentials,
        CredentialsConfig::OAuth2 { ref token_url, .. } if token_url.as_deref() == Some("http://127.0.0.1:41003/token")
    ));
}

#[test]
fn examples_validate_against_the_builtin_plugins() {
    // The real catalog: the plugins embedded in this binary, kinds from their manifests.
    let catalog = Catalog::builtin();
    if let Err(e) = demo_config(&demo_env(), &catalog) {
        panic!(
            "{:#?}",
            e.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
    }
    let e = load(&example("production.toml"), &Env::empty(), &catalog).unwrap_err();
    assert!(
        e.iter()
            .all(|e| matches!(e, ConfigError::MissingEnv { .. })),
        "only the unset secrets: {e:#?}"
    );
}

#[test]
fn demo_example_defaults_to_the_fixed_demo_ports() {
    let c = demo_config(&Env::empty(), &catalog()).unwrap();
    assert_eq!(
        c.connections["freshsales"].settings["base-url"],
        "http://127.0.0.1:7400/crm/sales/api"
    );
    assert_eq!(
        c.connections["google"].settings["base-url"],
        "http://127.0.0.1:7403"
    );
}

#[test]
fn production_example_validates() {
    let env = [
        "TANDEM_CONTROL_TOKEN",
        "FRESHSALES_API_KEY",
        "FRESHMARKETER_API_KEY",
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "GOOGLE_REFRESH_TOKEN",
    ]
    .into_iter()
    .fold(Env::empty(), |env, k| env.with(k, "x"));
    let c = load(&example("production.toml"), &env, &catalog()).unwrap_or_else(|e| {
        panic!(
            "{:#?}",
            e.iter().map(ToString::to_string).collect::<Vec<_>>()
        )
    });
    assert_eq!(
        c.connections["freshsales"].settings["domain"],
        "acme.myfreshworks.com"
    );
    assert_eq!(c.state.path, Path::new("/var/lib/tandem/state.redb"));
    assert!(!c.plugins["freshsales"].grant.loopback);
    assert_eq!(c.syncs["sales-google"].policy.direction, Direction::AToB);
}

#[test]
fn limits_that_do_not_apply_are_refused() {
    let src = "[plugins.n]\nbuiltin = \"normalize\"\ngrant.limits = { cpu = \"1s\", fuel = 1000 }\n[plugins.fs]\nbuiltin = \"freshsales\"\ngrant.limits = { fuel = 1000 }\n";
    assert_eq!(
        errors(src),
        [
            "config.toml:1:1: plugins.n.grant.limits.cpu: does not apply to a mapper plugin; remove it",
            "config.toml:4:1: plugins.fs.grant.limits.fuel: does not apply to a connector plugin; remove it",
        ]
    );
}

#[test]
fn grants_and_limits_convert_to_the_runtime_types() {
    let c = ok(
        "[plugins.fs]\nbuiltin = \"freshsales\"\n[plugins.fs.grant]\nhttp = [\"setting:base-url\"]\nloopback = true\nstorage-quota = \"2MiB\"\nlimits = { memory = \"100MB\", timeout = \"5s\", response-size = \"1MiB\" }\n[plugins.n]\nbuiltin = \"normalize\"\ngrant.limits = { fuel = 1000, memory = \"8MiB\" }\n",
    );
    let g = c.plugins["fs"].grant.to_grant();
    assert_eq!(g.http, ["setting:base-url"]);
    assert!(g.allow_loopback && !g.allow_private);
    assert_eq!(g.storage.map(|s| s.quota_bytes), Some(2 << 20));
    assert_eq!(g.limits.memory_mib, 96, "100 MB rounds up to 96 MiB");
    assert_eq!(g.limits.timeout, std::time::Duration::from_secs(5));
    assert_eq!(g.limits.http_response_bytes, 1 << 20);
    let m = c.plugins["n"].mapper_limits();
    assert_eq!((m.fuel, m.memory_mib), (1000, 8));
    assert_eq!(
        GrantConfig::default().to_grant(),
        crate::runtime::Grant::default(),
        "nothing granted by default"
    );
}

#[test]
fn connections_resolve_with_redacted_secrets() {
    let c = ok(BASE);
    let conn = c.connection("sales", &env()).unwrap();
    assert_eq!(conn.id, "sales");
    assert_eq!(
        conn.credentials,
        crate::runtime::Credentials::ApiKey(crate::runtime::Secret::new("k-123"))
    );
    assert!(
        !format!("{conn:?}").contains("k-123"),
        "secrets are redacted in Debug"
    );
    let err = c
        .connection("sales", &Env::empty())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "config.toml:13:23: connections.sales.credentials.api-key: environment variable FS_KEY is not set; export it before running tandem"
    );
}

#[test]
fn the_builtin_catalog_reads_manifests() {
    let normalize = builtin_plugins()
        .into_iter()
        .find(|b| b.name == "normalize");
    assert_eq!(
        normalize.map(|b| b.kind),
        Some(PluginKind::Mapper),
        "the normalize mapper is built in"
    );
}

#[test]
fn webhooks_and_rate_limit_settings_are_read() {
    use crate::config::rate_limit::{NoWaitPolicy, RatePolicy, ResetMeaning, Share};
    let src = BASE.replace(
        "[connections.marketing]",
        "[connections.sales.rate-limit]\nlimits = [\"5000/1h\", \"400/1m\"]\nreset = \"epoch\"\nreserve = 50\nslow-below = 0.2\nwithout-retry-after = \"next-hour\"\n\n[connections.sales.webhook]\nsecret = { env = \"FS_HOOK\" }\nheader = \"X-Hook-Secret\"\n\n[connections.marketing]",
    ) + "\n[daemon.webhooks]\nlisten = \"127.0.0.1:0\"\ndebounce = \"5s\"\nmax-body = \"8KiB\"\n";
    let env = env().with("FS_HOOK", "s3cret-value");
    let c = load_str(Path::new("config.toml"), &src, &env, &catalog()).unwrap_or_else(|e| {
        panic!(
            "{:#?}",
            e.iter().map(ToString::to_string).collect::<Vec<_>>()
        )
    });
    let sales = &c.connections["sales"];
    assert_eq!(
        sales.rate_limit,
        Some(RatePolicy {
            headers: true,
            reset: ResetMeaning::Epoch,
            reserve: Share::Requests(50),
            slow_below: Share::Of(0.2),
            no_wait: NoWaitPolicy::NextHour,
            ..RatePolicy::default()
        })
    );
    assert_eq!(
        sales.rate_windows,
        Some(vec![
            crate::config::rate_limit::Window {
                requests: 5000,
                period: std::time::Duration::from_secs(3600)
            },
            crate::config::rate_limit::Window {
                requests: 400,
                period: std::time::Duration::from_secs(60)
            },
        ])
    );
    let hook = sales.webhook.as_ref().unwrap();
    assert_eq!(hook.header, "x-hook-secret");
    assert_eq!(hook.secret.source, SecretSource::Env("FS_HOOK".into()));
    assert!(c.connections["marketing"].webhook.is_none());
    assert_eq!(c.connections["marketing"].rate_limit, None);
    assert_eq!(c.daemon.webhooks.listen.to_string(), "127.0.0.1:0");
    assert_eq!(
        c.daemon.webhooks.debounce,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(c.daemon.webhooks.max_body, 8192);
    // Defaults.
    let c = ok(&with_sync(""));
    assert_eq!(c.daemon.webhooks.listen.to_string(), DEFAULT_WEBHOOK_LISTEN);
    assert_eq!(
        c.daemon.webhooks.debounce,
        std::time::Duration::from_secs(2)
    );
    // The secret is checked like credentials: named, never valued.
    let errs = errors(&src);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("config.toml:")
            && errs[0].contains(
                "connections.sales.webhook.secret: environment variable FS_HOOK is not set"
            ),
        "{errs:#?}"
    );
}

#[test]
fn webhook_and_rate_limit_errors_have_key_line_and_column() {
    let src = BASE.replace(
        "[connections.marketing]",
        "[connections.sales.rate-limit]\nlimits = [\"lots\", \"10/0s\"]\nreset = \"minutes\"\nreserve = -3\nslow-below = 1.5\nwithout-retry-after = \"never\"\nheaders = \"yes\"\n\n[connections.sales.webhook]\nsecret = \"inline\"\nheader = \"Content-Length\"\n\n[connections.marketing]",
    ) + "\n[daemon.webhooks]\nport = 1\n";
    let line = |p: &str| line_of(&src, p);
    assert_eq!(
        errors(&src),
        [
            format!(
                r#"config.toml:{}:11: connections.sales.rate-limit.limits[0]: cannot read "lots"; write requests per period, such as "5000/1h" or "400/1m""#,
                line("limits =")
            ),
            format!(
                r#"config.toml:{}:19: connections.sales.rate-limit.limits[1]: cannot read "10/0s"; write requests per period, such as "5000/1h" or "400/1m""#,
                line("limits =")
            ),
            format!(
                r#"config.toml:{}:9: connections.sales.rate-limit.reset: unknown value "minutes"; expected one of auto, seconds, epoch"#,
                line("reset =")
            ),
            format!(
                r#"config.toml:{}:11: connections.sales.rate-limit.reserve: expected a whole number of 0 or more"#,
                line("reserve =")
            ),
            format!(
                r#"config.toml:{}:14: connections.sales.rate-limit.slow-below: a number of requests (e.g. 50) or a share of the app's limit between 0 and 1 (e.g. 0.1)"#,
                line("slow-below =")
            ),
            format!(
                r#"config.toml:{}:23: connections.sales.rate-limit.without-retry-after: unknown value "never"; expected one of backoff, next-hour"#,
                line("without-retry-after =")
            ),
            format!(
                r#"config.toml:{}:11: connections.sales.rate-limit.headers: expected true or false, found a string"#,
                line("headers =")
            ),
            format!(
                r#"config.toml:{}:10: connections.sales.webhook.secret: inline secrets are refused; reference it instead: {{ env = "VAR" }} or {{ file = "path" }}"#,
                line("secret =")
            ),
            format!(
                r#"config.toml:{}:10: connections.sales.webhook.header: "Content-Length" is an HTTP framing header; name a custom header such as "X-Tandem-Webhook-Secret""#,
                line("header =")
            ),
            format!(
                r#"config.toml:{}:1: daemon.webhooks.port: unknown key; expected one of listen, allow-remote, debounce, max-body"#,
                line("port =")
            ),
        ]
    );
    let src2 = "[daemon.webhooks]\nlisten = \"0.0.0.0:7381\"\n";
    assert_eq!(
        errors(src2),
        [
            r#"config.toml:2:10: daemon.webhooks.listen: 0.0.0.0:7381 is reachable from other machines; use a loopback address behind a TLS proxy, or set allow-remote = true"#
        ]
    );
    assert!(
        ok("[daemon.webhooks]\nlisten = \"0.0.0.0:7381\"\nallow-remote = true\n")
            .daemon
            .webhooks
            .allow_remote
    );
    assert_eq!(
        errors("[daemon.webhooks]\ndebounce = \"soon\"\n"),
        [
            r#"config.toml:2:12: daemon.webhooks.debounce: cannot read "soon" as a duration; write a duration such as "30s", "5m" or "1h""#
        ]
    );
    assert_eq!(
        errors("[daemon.webhooks]\nmax-body = 10\n"),
        [r#"config.toml:2:12: daemon.webhooks.max-body: between 1KiB and 16MiB"#]
    );
}

// ---------- conflict rules per field, scope.on-leave, loops (issue 5) ----------

#[test]
fn per_field_rules_on_leave_and_loops_are_read() {
    let src = with_sync(
        "scope = { a = \"VIP\", b = \"Newsletter\", on-leave = { b = \"unsubscribe\" } }\n\
         [syncs.crm.conflict]\nwinner = \"prefer-a-unless-blank\"\n\
         fields = { job-title = \"manual\", mobile = \"prefer-b-unless-blank\" }\n\
         [syncs.crm.loops]\nmax-writes = 5\nwindow = 20\nalternation = false\n",
    );
    let c = ok(&src);
    let p = &c.syncs["crm"].policy;
    assert_eq!(p.conflict.winner, Winner::PreferAUnlessBlank);
    assert_eq!(p.conflict.fields["job-title"], Winner::Manual);
    assert_eq!(p.conflict.fields["mobile"], Winner::PreferBUnlessBlank);
    assert_eq!(p.scope.b, Scope::Container("Newsletter".into()));
    assert_eq!(
        p.on_leave,
        SidePair::new(LeaveAction::Keep, LeaveAction::Unsubscribe)
    );
    assert_eq!(
        (p.loops.max_writes, p.loops.window, p.loops.alternation),
        (5, 20, false)
    );
    // One string applies to both sides.
    let src =
        with_sync("scope = { a = \"VIP\", b = \"Newsletter\", on-leave = \"remove-from-list\" }\n");
    let p = &ok(&src).syncs["crm"].policy;
    assert_eq!(p.on_leave, SidePair::both(LeaveAction::RemoveFromContainer));
    // Defaults: keep, 8 writes in 10 runs, alternation on.
    let p = &ok(&with_sync("")).syncs["crm"].policy;
    assert_eq!(p.on_leave, SidePair::both(LeaveAction::Keep));
    assert_eq!((p.loops.max_writes, p.loops.window), (8, 10));
}

#[test]
fn bad_per_field_rule_names_key_line_and_column() {
    let src = with_sync("[syncs.crm.conflict]\nfields = { job-title = \"manuel\" }\n");
    let line = line_of(&src, "fields");
    assert_eq!(
        errors(&src),
        [format!(
            r#"config.toml:{line}:24: syncs.crm.conflict.fields.job-title: unknown value "manuel" (did you mean "manual"?); expected one of a-wins, b-wins, most-recent, prefer-a-unless-blank, prefer-b-unless-blank, manual"#
        )]
    );
    let src = with_sync(
        "[syncs.crm.conflict]\nowners = { mobile = \"a\" }\nfields = { mobile = \"manual\" }\n",
    );
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("syncs.crm.conflict.fields.mobile") && e[0].contains("conflict.owners"),
        "{}",
        e[0]
    );
}

#[test]
fn bad_on_leave_and_loops_name_their_keys() {
    let src = with_sync("scope = { b = \"Newsletter\", on-leave = { b = \"unsub\" } }\n");
    let line = line_of(&src, "scope");
    let e = errors(&src);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with(&format!("config.toml:{line}:")),
        "{}",
        e[0]
    );
    assert!(
        e[0].contains("syncs.crm.scope.on-leave.b: unknown value \"unsub\"")
            && e[0].contains("keep, remove-from-list, unsubscribe"),
        "{}",
        e[0]
    );
    // Leaving a side that syncs everything cannot happen: said so.
    let e = errors(&with_sync(
        "scope = { b = \"Newsletter\", on-leave = { a = \"unsubscribe\" } }\n",
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains("scope.on-leave.a") && e[0].contains("scope.a"),
        "{}",
        e[0]
    );
    let src = with_sync("[syncs.crm.loops]\nmax-writes = 0\nwindow = 0\nspeed = 1\n");
    let e = errors(&src);
    assert_eq!(e.len(), 3, "{e:#?}");
    let line = line_of(&src, "max-writes");
    assert!(
        e[0].starts_with(&format!(
            "config.toml:{line}:14: syncs.crm.loops.max-writes:"
        )) && e[0].contains("from 1 to 63"),
        "{}",
        e[0]
    );
    assert!(e[1].contains("syncs.crm.loops.window:"), "{}", e[1]);
    assert!(
        e[2].contains("syncs.crm.loops.speed: unknown key"),
        "{}",
        e[2]
    );
}

#[test]
fn tombstone_retention_is_read_with_a_default_and_checked() {
    let days = |c: &Config| c.syncs["crm"].policy.deletes.tombstone_retention_days;
    assert_eq!(days(&ok(&with_sync(""))), 30);
    assert_eq!(
        days(&ok(&with_sync(
            "deletes = { tombstone-retention-days = 7 }\n"
        ))),
        7
    );
    for bad in ["0", "5000"] {
        let src = with_sync(&format!(
            "deletes = {{ tombstone-retention-days = {bad} }}\n"
        ));
        let line = line_of(&src, "deletes");
        let col = src.lines().nth(line - 1).unwrap().find(bad).unwrap() + 1;
        assert_eq!(
            errors(&src),
            [format!(
                "config.toml:{line}:{col}: syncs.crm.deletes.tombstone-retention-days: a number of days from 1 to 3650, e.g. 30"
            )]
        );
    }
    let src = with_sync("deletes = { tombstone-retention-days = \"30d\" }\n");
    assert!(
        errors(&src)[0].contains("deletes.tombstone-retention-days: expected a whole number"),
        "{:?}",
        errors(&src)
    );
}

/// A catalog whose `google-contacts` names Google's token endpoint, as the built-in does.
fn oauth_catalog() -> Catalog {
    catalog().with_token_urls([(
        "google-contacts".to_owned(),
        "https://oauth2.googleapis.com/token".to_owned(),
    )])
}

#[test]
fn a_token_endpoint_must_be_named_or_granted_over_https() {
    let src = |grant: &str, token_url: &str| {
        format!(
            "[plugins.g]\nbuiltin = \"google-contacts\"\n{grant}\n[connections.g]\nplugin = \"g\"\n[connections.g.credentials.oauth2]\nclient-id = \"cid\"\nclient-secret = {{ env = \"FS_KEY\" }}\nrefresh-token = {{ env = \"FM_KEY\" }}\n{token_url}\n"
        )
    };
    let check_src =
        |text: &str| match load_str(Path::new("config.toml"), text, &env(), &oauth_catalog()) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect::<Vec<_>>(),
        };
    // The manifest's endpoint, neither named nor granted: refused, with line and column.
    assert_eq!(
        check_src(&src("grant.http = [\"https://people.googleapis.com\"]", "")),
        [
            "config.toml:6:1: connections.g.credentials.oauth2: the plugin's manifest sends the refresh token and client secret to https://oauth2.googleapis.com, which the operator did not approve; name the token endpoint in the connection's credentials (token-url = \"https://…\") or grant its origin explicitly over https"
        ]
    );
    // `*` is the plugin's choice, not the operator's.
    assert_eq!(check_src(&src("grant.http = [\"*\"]", "")).len(), 1);
    // Granted explicitly, or named: accepted.
    assert!(
        check_src(&src(
            "grant.http = [\"https://people.googleapis.com\", \"https://oauth2.googleapis.com\"]",
            ""
        ))
        .is_empty()
    );
    assert!(
        check_src(&src(
            "grant.http = [\"https://people.googleapis.com\"]",
            "token-url = \"https://oauth2.googleapis.com/token\""
        ))
        .is_empty()
    );
}

#[test]
fn credentials_origins_narrow_where_credentials_go() {
    let c = ok(&format!(
        "{BASE}\n[connections.narrow]\nplugin = \"freshsales\"\n[connections.narrow.credentials]\napi-key = {{ env = \"FS_KEY\" }}\norigins = [\"https://acme.myfreshworks.com\", \"setting:base-url\"]\n"
    ));
    assert_eq!(
        c.connection("narrow", &env()).unwrap().grant.auth_origins,
        Some(vec![
            "https://acme.myfreshworks.com".to_owned(),
            "setting:base-url".to_owned()
        ])
    );
    assert_eq!(
        c.connection("sales", &env()).unwrap().grant.auth_origins,
        None
    );
    assert_eq!(
        errors(
            "[plugins.fs]\nbuiltin = \"freshsales\"\n[connections.x]\nplugin = \"fs\"\ncredentials.origins = [\"https://a.example/path\"]\ncredentials.api-key = { env = \"FS_KEY\" }\n[connections.y]\nplugin = \"fs\"\ncredentials.origins = [\"https://a.example\"]\n[connections.z]\nplugin = \"fs\"\ncredentials.api-key = { env = \"FS_KEY\" }\ncredentials.origins = []\n"
        ),
        [
            "config.toml:5:24: connections.x.credentials.origins[0]: an origin has no path; write \"https://a.example\"",
            "config.toml:9:23: connections.y.credentials.origins: there are no credentials to send; remove origins or add api-key, basic or oauth2",
            "config.toml:13:23: connections.z.credentials.origins: no origin given; list where the credentials may go, such as [\"https://acme.myfreshworks.com\"]",
        ]
    );
}

#[test]
fn a_postgres_state_reads_its_reference_tls_pool_and_fleet_keys() {
    let c = ok(
        "[state]\nbackend = \"postgres\"\nurl = { env = \"DB\" }\ntls = \"require\"\nca-file = \"ca.pem\"\npool-size = 3\n[daemon.fleet]\nlease-ttl = \"10s\"\ncapacity = 40\nid = \"worker-a\"\n",
    );
    let pg = c.state.postgres.expect("postgres");
    assert_eq!(pg.tls, crate::db::TlsMode::Require);
    assert_eq!(pg.pool_size, 3);
    assert!(pg.ca_file.is_some_and(|p| p.ends_with("ca.pem")));
    assert_eq!(c.daemon.fleet.lease_ttl, std::time::Duration::from_secs(10));
    assert_eq!(c.daemon.fleet.capacity, 40);
    assert_eq!(c.daemon.fleet.id.as_deref(), Some("worker-a"));
    // redb stays the default, without a fleet.
    assert!(ok("").state.postgres.is_none());
}

#[test]
fn postgres_state_mistakes_name_the_key_line_and_column() {
    assert_eq!(
        errors("[state]\nbackend = \"mysql\"\n"),
        [
            "config.toml:2:11: state.backend: unknown backend \"mysql\"; use \"redb\" (one machine) or \"postgres\" (a fleet)"
        ]
    );
    assert_eq!(
        errors("[state]\nbackend = \"postgres\"\n"),
        [
            "config.toml:2:11: state.backend: backend = \"postgres\" needs url = { env = \"TANDEM_DATABASE_URL\" } (a reference to postgres://user:password@host:port/database)"
        ]
    );
    let inline = errors("[state]\nbackend = \"postgres\"\nurl = \"postgres://u:hunter2@db/t\"\n");
    assert_eq!(inline.len(), 1, "{inline:?}");
    assert!(
        inline[0].starts_with("config.toml:3:7: state.url"),
        "{inline:?}"
    );
    assert!(!inline[0].contains("hunter2"), "{inline:?}");
    assert_eq!(
        errors("[state]\nurl = { env = \"DB\" }\n"),
        [
            "config.toml:2:7: state.url: only used with backend = \"postgres\"; add it, or remove this key"
        ]
    );
    assert_eq!(
        errors("[state]\nbackend = \"postgres\"\nurl = { env = \"DB\" }\ntls = \"verify\"\n"),
        [
            "config.toml:4:7: state.tls: unknown tls mode \"verify\"; use \"disable\", \"prefer\" or \"require\""
        ]
    );
    assert_eq!(
        errors("[daemon.fleet]\nlease-ttl = \"1s\"\n"),
        ["config.toml:2:13: daemon.fleet.lease-ttl: between \"3s\" and \"1h\""]
    );
}

#[test]
fn the_redb_page_cache_is_bounded_and_sized_by_cache_size() {
    assert_eq!(ok("").state.cache_size, crate::config::DEFAULT_STATE_CACHE);
    assert_eq!(
        ok("[state]\ncache-size = \"16MiB\"\n").state.cache_size,
        16 << 20
    );
    assert_eq!(
        errors("[state]\ncache-size = \"1KiB\"\n"),
        ["config.toml:2:14: state.cache-size: between \"1MiB\" and \"64GiB\""]
    );
    assert_eq!(
        errors("[state]\nbackend = \"postgres\"\nurl = { env = \"DB\" }\ncache-size = \"16MiB\"\n"),
        [
            "config.toml:4:14: state.cache-size: only used with backend = \"redb\" (PostgreSQL has its own cache: shared_buffers); remove this key"
        ]
    );
}

#[test]
fn plugin_instances_sizes_the_pool_and_is_checked_with_key_line_and_column() {
    assert_eq!(
        ok("").daemon.plugin_instances,
        crate::runtime::DEFAULT_INSTANCE_SLOTS
    );
    assert_eq!(
        ok("[daemon]\nplugin-instances = 64\n")
            .daemon
            .plugin_instances,
        64
    );
    assert_eq!(
        errors("[daemon]\nplugin-instances = 0\n"),
        ["config.toml:2:20: daemon.plugin-instances: between 1 and 10000 instances"]
    );
    assert_eq!(
        errors("[daemon]\nplugin-instances = 20000\n"),
        ["config.toml:2:20: daemon.plugin-instances: between 1 and 10000 instances"]
    );
}

#[test]
fn concurrent_runs_bounds_the_daemons_runs_and_is_checked_with_key_line_and_column() {
    assert_eq!(
        ok("").daemon.concurrent_runs,
        super::daemon::DEFAULT_CONCURRENT_RUNS
    );
    assert_eq!(
        ok("[daemon]\nconcurrent-runs = 8\n").daemon.concurrent_runs,
        8
    );
    for bad in ["0", "10001", "\"many\""] {
        let errors = errors(&format!("[daemon]\nconcurrent-runs = {bad}\n"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("config.toml:2:19: daemon.concurrent-runs: "),
            "{errors:?}"
        );
    }
}

/// A catalog whose built-ins carry manifests: a Mailchimp-like connector (HTTP Basic
/// with any user, declared settings), a Jira-like one (Basic, the user from the
/// connection) and the `normalize` mapper with its `default-country-code`.
fn declaring_catalog() -> Catalog {
    let manifest = |text: &str| {
        let m = crate::runtime::Manifest::parse(text).unwrap();
        (m.name.clone(), Inspected::of(&m))
    };
    let head = |name: &str, kind: &str| {
        format!("name = \"{name}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"\ncontract = \"0.1.0\"\n")
    };
    Catalog::new(
        [
            ("mailchimp".to_owned(), PluginKind::Connector),
            ("jira".to_owned(), PluginKind::Connector),
            ("normalize".to_owned(), PluginKind::Mapper),
        ],
        None,
    )
    .with_manifests([
        manifest(&format!(
            "{}[http]\norigins = [\"setting:base-url\"]\n[auth]\nkind = \"basic\"\nuser = \"anystring\"\n\
             [settings.base-url]\ntype = \"url\"\nrequired = true\ndescription = \"https://<dc>.api.mailchimp.com/3.0\"\n\
             [settings.list]\ntype = \"string\"\n\
             [settings.edition]\ntype = \"enum\"\nvalues = [\"free\", \"standard\"]\ndefault = \"standard\"\n\
             [settings.page-size]\ntype = \"integer\"\ndefault = 100\n",
            head("mailchimp", "connector")
        )),
        manifest(&format!(
            "{}[http]\norigins = [\"https://*.atlassian.net\"]\n[auth]\nkind = \"basic\"\n",
            head("jira", "connector")
        )),
        manifest(&format!(
            "{}[settings.default-country-code]\ntype = \"integer\"\n",
            head("normalize", "mapper")
        )),
    ])
}

fn declared_errors(src: &str) -> Vec<String> {
    match load_str(Path::new("config.toml"), src, &env(), &declaring_catalog()) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

const MAILCHIMP: &str = "[plugins.mc]\nbuiltin = \"mailchimp\"\n\
[connections.mc]\nplugin = \"mc\"\ncredentials.basic = { password = { env = \"FS_KEY\" } }\n\
[connections.mc.settings]\nbase-url = \"https://us21.api.mailchimp.com/3.0\"\n";

#[test]
fn settings_are_checked_against_the_plugins_declaration() {
    assert_eq!(declared_errors(MAILCHIMP), Vec::<String>::new());
    let src = format!("{MAILCHIMP}lsit = \"abc\"\nedition = \"premium\"\npage-size = \"lots\"\n");
    assert_eq!(
        declared_errors(&src),
        [
            "config.toml:8:8: connections.mc.settings.lsit: unknown key (did you mean \"list\"?); expected one of base-url, edition, list, page-size",
            "config.toml:9:11: connections.mc.settings.edition: unknown value \"premium\"; expected one of free, standard",
            "config.toml:10:13: connections.mc.settings.page-size: expected an integer, found \"lots\"",
        ]
    );
    let src = MAILCHIMP.replace(
        "base-url = \"https://us21.api.mailchimp.com/3.0\"\n",
        "list = \"x\"\n",
    );
    assert_eq!(
        declared_errors(&src),
        [
            "config.toml:6:1: connections.mc.settings.base-url: missing; the plugin requires it: https://<dc>.api.mailchimp.com/3.0"
        ]
    );
    let src = MAILCHIMP.replace("https://us21.api.mailchimp.com/3.0", "us21");
    let errs = declared_errors(&src);
    assert!(
        errs[0].starts_with(
            "config.toml:7:12: connections.mc.settings.base-url: expected an absolute http(s) URL"
        ),
        "{errs:?}"
    );
}

#[test]
fn credentials_must_be_what_the_auth_profile_takes() {
    // An API key for a Basic profile: the key to write instead, at the credentials table.
    let src = MAILCHIMP.replace(
        "credentials.basic = { password = { env = \"FS_KEY\" } }",
        "credentials.api-key = { env = \"FS_KEY\" }",
    );
    assert_eq!(
        declared_errors(&src),
        [
            "config.toml:5:1: connections.mc.credentials.api-key: plugin `mc` authenticates with `basic`, which takes credentials.basic; write basic = { user = \"...\", password = { env = \"VAR\" } }"
        ]
    );
    // Jira names no user: the connection must.
    let jira = "[plugins.j]\nbuiltin = \"jira\"\n[connections.j]\nplugin = \"j\"\n\
                [connections.j.credentials]\nbasic = { password = { env = \"FS_KEY\" } }\n";
    assert_eq!(
        declared_errors(jira),
        [
            "config.toml:5:1: connections.j.credentials.basic.user: missing; plugin `j` names no HTTP Basic user; add user = \"...\" (an e-mail, an account id: the app's documentation says which)"
        ]
    );
    let with_user = jira.replace("basic = {", "basic = { user = \"jane@acme.example\",");
    assert_eq!(declared_errors(&with_user), Vec::<String>::new());
    // A pre-encoded or `user:password` user is refused without echoing anything secret.
    let colon = jira.replace("basic = {", "basic = { user = \"jane:hunter2\",");
    let errs = declared_errors(&colon);
    assert!(
        errs[0].starts_with(
            "config.toml:6:18: connections.j.credentials.basic.user: an HTTP Basic user name"
        ),
        "{errs:?}"
    );
    // An inline password is refused like every inline secret.
    let inline = jira.replace("{ env = \"FS_KEY\" }", "\"hunter2\"");
    let errs = declared_errors(&inline);
    assert!(
        errs[0].contains("inline secrets are refused") && !errs[0].contains("hunter2"),
        "{errs:?}"
    );
    // Two kinds at once.
    let both = jira.replace("basic = {", "api-key = { env = \"FM_KEY\" }\nbasic = {");
    let errs = declared_errors(&both);
    assert!(
        errs[0].contains("api-key, basic and oauth2 are exclusive"),
        "{errs:?}"
    );
}

#[test]
fn basic_credentials_resolve_without_pre_encoding() {
    let jira = "[plugins.j]\nbuiltin = \"jira\"\n[connections.j]\nplugin = \"j\"\n\
                [connections.j.credentials]\nbasic = { user = \"jane@acme.example\", password = { env = \"FS_KEY\" } }\n";
    let c = load_str(Path::new("config.toml"), jira, &env(), &declaring_catalog()).unwrap();
    let creds = c.connections["j"].credentials.resolve(&env()).unwrap();
    let crate::runtime::Credentials::Basic { user, password } = creds else {
        panic!("{creds:?}")
    };
    assert_eq!(user.as_deref(), Some("jane@acme.example"));
    assert!(format!("{password:?}").contains("redacted"));
}

#[test]
fn mapper_settings_are_per_sync_and_checked() {
    let base = "[plugins.mc]\nbuiltin = \"mailchimp\"\n[plugins.n]\nbuiltin = \"normalize\"\n\
        [connections.a]\nplugin = \"mc\"\nsettings.base-url = \"https://a.example\"\n\
        [connections.b]\nplugin = \"mc\"\nsettings.base-url = \"https://b.example\"\n\
        [syncs.s]\na = \"a\"\nb = \"b\"\nentities = \"contacts\"\ndirection = \"two-way\"\nmappers = [\"n\"]\n";
    let fr = format!("{base}[syncs.s.mapper-settings.n]\ndefault-country-code = 33\n");
    let c = load_str(Path::new("config.toml"), &fr, &env(), &declaring_catalog()).unwrap();
    assert_eq!(
        c.syncs["s"].mapper_settings["n"]["default-country-code"],
        "33"
    );
    let bad = format!("{base}[syncs.s.mapper-settings.n]\ndefault-contry-code = \"FR\"\n");
    assert_eq!(
        declared_errors(&bad),
        [
            "config.toml:18:23: syncs.s.mapper-settings.n.default-contry-code: unknown key (did you mean \"default-country-code\"?); expected one of default-country-code"
        ]
    );
    let typed = format!("{base}[syncs.s.mapper-settings.n]\ndefault-country-code = \"FR\"\n");
    assert_eq!(
        declared_errors(&typed),
        [
            "config.toml:18:24: syncs.s.mapper-settings.n.default-country-code: expected an integer, found \"FR\""
        ]
    );
    // Settings for a mapper the sync does not use.
    let stray = format!("{base}[syncs.s.mapper-settings.normalise]\ndefault-country-code = 33\n");
    let errs = declared_errors(&stray);
    assert_eq!(
        errs,
        ["config.toml:17:1: syncs.s.mapper-settings.normalise: unknown key; expected one of n"]
    );
}
