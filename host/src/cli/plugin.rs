//! `tandem plugin list | inspect | check | test`.

pub mod kit;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use sha2::{Digest, Sha256};

use crate::runtime::capabilities::{self, SUPPORTED_CONTRACT};
use crate::runtime::manifest::{self, AuthProfile, ComponentScan, Manifest};
use crate::runtime::types::MapContext;
use crate::runtime::{
    Connection, Credentials, Grant, MapperLimits, PluginKind, PluginSource, Runtime, RuntimeOptions,
};

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List the plugins built into this binary.
    #[command(after_help = "Example:\n  tandem plugin list")]
    List,
    /// Describe a plugin file: manifest, contract version, imports and exports,
    /// requested capabilities, size and sha256. Nothing of the plugin runs.
    #[command(after_help = "Examples:\n  \
        tandem plugin inspect target/wasm32-wasip2/release/my_connector.wasm\n  \
        tandem plugin inspect my_connector.wasm --json | jq .manifest")]
    Inspect {
        /// The plugin's `.wasm` (a `<stem>.tandem.toml` beside it is read if present).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load a plugin through every check the host applies (manifest, contract version,
    /// allowed imports, compile, link), then instantiate it once with nothing granted
    /// (`describe` for connectors, an empty `map` for mappers).
    #[command(after_help = "Examples:\n  \
        tandem plugin check my_connector.wasm\n  \
        tandem plugin check my_connector.wasm --sha256 3f1c...e9  # also verify a pinned digest")]
    Check {
        /// The plugin's `.wasm`.
        file: PathBuf,
        /// Refuse the file unless its sha256 is this (hex).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// Run the conformance kit: the plugin through the whole contract against a simulated
    /// account or a base URL, with a pass/fail table.
    // Boxed: the kit's arguments are much larger than the other commands'.
    Test(Box<kit::TestArgs>),
}

/// Runs a plugin command.
pub async fn run(cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::List => list(),
        PluginCommand::Inspect { file, json } => inspect(&file, json),
        PluginCommand::Check { file, sha256 } => check(file, sha256.as_deref()).await,
        PluginCommand::Test(args) => kit::run(*args).await,
    }
}

fn list() -> anyhow::Result<()> {
    let builtins = tandem_plugins::builtins();
    if builtins.is_empty() {
        bail!("this binary has no built-in plugins (they failed to build; see the build warnings)");
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["NAME", "VERSION", "KIND", "CONTRACT", "SIZE", "DESCRIPTION"]);
    for builtin in builtins {
        let scan = manifest::scan_component(builtin.wasm)
            .with_context(|| format!("built-in {}", builtin.package))?;
        let manifest = manifest::resolve_manifest(&scan.manifests, None)
            .with_context(|| format!("built-in {}", builtin.package))?;
        table.add_row([
            manifest.name.clone(),
            manifest.version.clone(),
            manifest.kind.to_string(),
            contract_of(&scan)
                .or_else(|| manifest.contract.clone())
                .unwrap_or_else(|| "?".to_owned()),
            human_size(builtin.wasm.len()),
            manifest.description.clone(),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn inspect(file: &PathBuf, json: bool) -> anyhow::Result<()> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let scan = manifest::scan_component(&wasm).with_context(|| file.display().to_string())?;
    let sidecar_path = manifest::sidecar_path(file);
    let sidecar = std::fs::read_to_string(&sidecar_path).ok();
    let origin = sidecar_path.display().to_string();
    let manifest = manifest::resolve_manifest(
        &scan.manifests,
        sidecar.as_deref().map(|text| (origin.as_str(), text)),
    )
    .with_context(|| file.display().to_string())?;
    let sha256 = hex::encode(Sha256::digest(&wasm));
    let contract = contract_of(&scan);
    // A sha256 pin covers the component's bytes, so only an embedded manifest is pinned.
    let manifest_source = if scan.manifests.is_empty() {
        format!(
            "sidecar {origin} (not covered by a sha256 pin: a pinned plugin must embed its manifest)"
        )
    } else {
        "embedded (covered by the sha256)".to_owned()
    };
    let verdict = capabilities::check_interfaces(manifest.kind, &scan.imports, &scan.exports)
        .and_then(|c| capabilities::check_manifest_contract(manifest.contract.as_deref(), &c))
        .err()
        .map(|e| e.to_string());

    if json {
        let value = serde_json::json!({
            "file": file.display().to_string(),
            "size": wasm.len(),
            "sha256": sha256,
            "manifest": {
                "name": manifest.name,
                "version": manifest.version,
                "kind": manifest.kind.to_string(),
                "contract": manifest.contract,
                "description": manifest.description,
            },
            "contract": contract,
            "supported-contract": SUPPORTED_CONTRACT,
            "manifest-source": manifest_source,
            "capabilities": capabilities_json(&manifest),
            "settings": settings_json(&manifest),
            "imports": scan.imports,
            "exports": scan.exports,
            "refused": verdict,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }

    println!("{} {} ({})", manifest.name, manifest.version, manifest.kind);
    if !manifest.description.is_empty() {
        println!("  {}", manifest.description);
    }
    println!("file:      {}", file.display());
    println!(
        "size:      {} ({} bytes)",
        human_size(wasm.len()),
        wasm.len()
    );
    println!("sha256:    {sha256}");
    println!("manifest:  {manifest_source}");
    println!(
        "contract:  tandem:plugin@{} ({}this host supports {SUPPORTED_CONTRACT})",
        contract.as_deref().unwrap_or("?"),
        manifest
            .contract
            .as_ref()
            .map(|c| format!("manifest says {c}; "))
            .unwrap_or_default()
    );
    println!("requests:");
    for line in capability_lines(&manifest) {
        println!("  {line}");
    }
    for line in setting_lines(&manifest) {
        println!("{line}");
    }
    println!("imports:");
    for import in &scan.imports {
        println!("  {import}");
    }
    println!("exports:");
    for export in &scan.exports {
        println!("  {export}");
    }
    match verdict {
        None => println!("interfaces: allowed for a {}", manifest.kind),
        Some(reason) => println!("interfaces: REFUSED: {reason}"),
    }
    Ok(())
}

async fn check(file: PathBuf, sha256: Option<&str>) -> anyhow::Result<()> {
    let db = redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .context("cannot create an in-memory database")?;
    let runtime = Runtime::new(RuntimeOptions::new(Arc::new(db)))?;
    let plugin = runtime.load(PluginSource::Path(file), sha256).await?;
    let ran = match plugin.kind() {
        PluginKind::Connector => {
            let client = runtime.connector(
                &plugin,
                Connection {
                    id: "plugin-check".into(),
                    settings: Default::default(),
                    grant: Grant::default(),
                    credentials: Credentials::None,
                    budget: None,
                },
            )?;
            let info = client.describe().await?;
            format!(
                "describe: {} {} for {}, entities: {}",
                info.name,
                info.version,
                info.app,
                info.entities
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        PluginKind::Mapper => {
            let client = runtime.mapper(&plugin, MapperLimits::default(), "plugin-check")?;
            let ctx = MapContext {
                sync: "plugin-check".into(),
                source: "a".into(),
                target: "b".into(),
                entity: "contacts".into(),
            };
            client.map(&ctx, &[]).await?;
            "map: an empty batch maps to an empty batch".to_owned()
        }
    };
    println!(
        "ok: {} ({}, contract {}) passed every check; {ran}",
        plugin.label(),
        plugin.kind(),
        plugin.contract()
    );
    Ok(())
}

fn contract_of(scan: &ComponentScan) -> Option<String> {
    scan.imports
        .iter()
        .chain(&scan.exports)
        .filter_map(|n| n.strip_prefix("tandem:plugin/"))
        .filter_map(|n| n.split_once('@').map(|(_, v)| v.to_owned()))
        .max()
}

fn capability_lines(m: &Manifest) -> Vec<String> {
    let mut lines = Vec::new();
    if m.http.origins.is_empty() {
        lines.push("http:     none".to_owned());
    } else {
        lines.push(format!("http:     {}", m.http.origins.join(", ")));
    }
    lines.push(match &m.auth {
        None => "auth:     none".to_owned(),
        Some(AuthProfile::ApiKey {
            header, template, ..
        }) => {
            format!("auth:     api-key in header {header} ({template})")
        }
        Some(AuthProfile::Bearer { .. }) => {
            "auth:     bearer API key (Authorization: Bearer KEY)".to_owned()
        }
        Some(AuthProfile::Basic {
            user: Some(user), ..
        }) => {
            format!("auth:     basic, user {user:?}, the API key as password")
        }
        Some(AuthProfile::Basic { user: None, .. }) => {
            "auth:     basic, user and password from the connection's credentials".to_owned()
        }
        Some(AuthProfile::OAuth2 {
            token_url, scopes, ..
        }) => format!(
            "auth:     oauth2 via {token_url}{}",
            if scopes.is_empty() {
                String::new()
            } else {
                format!(" (scopes: {})", scopes.join(" "))
            }
        ),
    });
    if let Some(auth) = &m.auth {
        lines.push(format!(
            "auth to:  {} (narrowed by the connection's credentials.origins; default: the base-url setting's origin)",
            auth_origins(auth, m).join(", ")
        ));
    }
    lines.push(match m.storage {
        None => "storage:  none".to_owned(),
        Some(s) => format!("storage:  {} bytes", s.quota_bytes),
    });
    let mut limits = Vec::new();
    if let Some(mib) = m.limits.memory_mib {
        limits.push(format!("memory {mib} MiB"));
    }
    if let Some(ms) = m.limits.timeout_ms {
        limits.push(format!("timeout {ms} ms"));
    }
    lines.push(format!(
        "limits:   {}",
        if limits.is_empty() {
            "host defaults".to_owned()
        } else {
            limits.join(", ")
        }
    ));
    lines
}

/// Where the auth profile sends credentials: its own origins, or every requested one.
fn auth_origins(auth: &AuthProfile, m: &Manifest) -> Vec<String> {
    match auth.origins() {
        Some(origins) => origins.to_vec(),
        None if m.http.origins.is_empty() => vec!["none".to_owned()],
        None => m.http.origins.clone(),
    }
}

/// `settings:` and one line per declared setting: name, type, required or default, and
/// its description.
fn setting_lines(m: &Manifest) -> Vec<String> {
    if m.settings.is_empty() {
        return vec!["settings:  none declared (the plugin reads any connection setting)".into()];
    }
    let mut lines = vec!["settings:".to_owned()];
    for (name, spec) in &m.settings {
        let kind = if spec.values.is_empty() {
            spec.kind.to_string()
        } else {
            format!("{} ({})", spec.kind, spec.values.join(" | "))
        };
        let need = match (&spec.default, spec.required) {
            (Some(d), _) => format!("default {}", d.as_text()),
            (None, true) => "required".to_owned(),
            (None, false) => "optional".to_owned(),
        };
        let mut line = format!("  {name}: {kind}, {need}");
        if !spec.description.is_empty() {
            line.push_str(&format!(
                " — {}",
                crate::runtime::text::clean_line(&spec.description)
            ));
        }
        lines.push(line);
    }
    lines
}

fn settings_json(m: &Manifest) -> serde_json::Value {
    m.settings
        .iter()
        .map(|(name, spec)| {
            let value = serde_json::json!({
                "type": spec.kind.to_string(),
                "required": spec.required,
                "default": spec.default.as_ref().map(|d| d.as_text()),
                "description": spec.description,
                "values": spec.values,
            });
            (name.clone(), value)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn capabilities_json(m: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "http": m.http.origins,
        "auth": m.auth.as_ref().map(|a| a.kind()),
        "auth-origins": m.auth.as_ref().map(|a| auth_origins(a, m)),
        "token-url": match &m.auth {
            Some(AuthProfile::OAuth2 { token_url, .. }) => Some(token_url.as_str()),
            _ => None,
        },
        "storage-quota-bytes": m.storage.map(|s| s.quota_bytes),
        "memory-mib": m.limits.memory_mib,
        "timeout-ms": m.limits.timeout_ms,
    })
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    /// `plugin inspect` shows each declared setting (type, default or required,
    /// description) and the auth kind, in text and JSON.
    #[test]
    fn inspect_shows_declared_settings_and_auth() {
        let m = Manifest::parse(
            "name = \"mc\"\nversion = \"0.1.0\"\nkind = \"connector\"\ncontract = \"0.1.0\"\n\
             [http]\norigins = [\"setting:base-url\"]\n[auth]\nkind = \"basic\"\nuser = \"anystring\"\n\
             [settings.base-url]\ntype = \"url\"\nrequired = true\ndescription = \"API root\"\n\
             [settings.edition]\ntype = \"enum\"\nvalues = [\"free\", \"standard\"]\ndefault = \"free\"\n",
        )
        .unwrap();
        assert_eq!(
            setting_lines(&m),
            [
                "settings:",
                "  base-url: url, required — API root",
                "  edition: enum (free | standard), default free",
            ]
        );
        assert!(
            capability_lines(&m).contains(
                &"auth:     basic, user \"anystring\", the API key as password".to_owned()
            )
        );
        let json = settings_json(&m);
        assert_eq!(json["edition"]["default"], "free");
        assert_eq!(json["base-url"]["required"], true);
        assert_eq!(capabilities_json(&m)["auth"], "basic");
    }

    #[test]
    fn parses_the_plugin_commands() {
        let cli = Cli::try_parse_from(["tandem", "plugin", "inspect", "x.wasm", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Plugin(PluginCommand::Inspect { json: true, .. })
        ));
        let cli =
            Cli::try_parse_from(["tandem", "plugin", "check", "x.wasm", "--sha256", "ab"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Plugin(PluginCommand::Check { sha256: Some(ref h), .. }) if h == "ab"
        ));
        assert!(Cli::try_parse_from(["tandem", "plugin", "inspect"]).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inspect_and_check_a_fixture_and_refuse_a_bad_one() {
        let hostile = tandem_plugins::wasm_path("tandem-fixture-hostile").unwrap();
        run(PluginCommand::Inspect {
            file: hostile.clone(),
            json: true,
        })
        .await
        .unwrap();
        run(PluginCommand::Check {
            file: hostile,
            sha256: None,
        })
        .await
        .unwrap();
        let wrong = tandem_plugins::wasm_path("tandem-fixture-wrong-major").unwrap();
        let err = run(PluginCommand::Check {
            file: wrong,
            sha256: None,
        })
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("tandem:plugin@9.0.0") && !msg.contains('\n'),
            "{msg}"
        );
        let err = run(PluginCommand::Inspect {
            file: "/nonexistent/plugin.wasm".into(),
            json: false,
        })
        .await
        .unwrap_err();
        assert!(format!("{err:#}").starts_with("cannot read /nonexistent/plugin.wasm"));
    }
}
