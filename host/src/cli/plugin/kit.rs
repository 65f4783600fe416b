//! `tandem plugin test FILE`: the conformance kit ([`crate::conformance`]) from the
//! command line, against a simulated account (`--sandbox`) or a base URL.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use crate::conformance::{self, KitOptions, Recording, Target};
use crate::runtime::manifest::AuthProfile;
use crate::runtime::{
    Credentials, Plugin, PluginKind, PluginSource, Runtime, RuntimeOptions, Secret,
};

/// A simulated account the kit can start.
#[cfg(feature = "sandbox")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxAccount {
    /// Freshsales Suite (contacts).
    Freshsales,
    /// Freshsales Classic (leads and contacts).
    FreshsalesClassic,
    /// Freshmarketer (contacts, lists).
    Freshmarketer,
    /// Google People (contacts, groups).
    Google,
}

#[cfg(feature = "sandbox")]
impl SandboxAccount {
    fn kind(self) -> tandem_sandbox::AccountKind {
        use tandem_sandbox::AccountKind as K;
        match self {
            Self::Freshsales => K::FreshsalesSuite,
            Self::FreshsalesClassic => K::FreshsalesClassic,
            Self::Freshmarketer => K::Freshmarketer,
            Self::Google => K::GooglePeople,
        }
    }
}

/// `tandem plugin test --help`: examples and the checks.
#[cfg(feature = "sandbox")]
const TEST_HELP_SANDBOX: &str = "Examples:\n  \
    tandem plugin test freshsales.wasm --sandbox freshsales\n  \
    tandem plugin test google_contacts.wasm --sandbox google --json\n  \
    TANDEM_API_KEY=... tandem plugin test my_connector.wasm --base-url https://sandbox.myapp.example/api\n\n\
    Checks: describe; check with good and wrong credentials; per entity: schema\n\
    (well-known email, custom fields), containers, pull of every page, push\n\
    create/update/delete, find by email/marker/ids, pull again (incremental: new versions,\n\
    tombstones), container membership; 429s with and without Retry-After, 503,\n\
    truncated and late answers and revoked credentials mapped to the contract's errors\n\
    (injected by a proxy the kit starts on loopback in front of the base URL); and with\n\
    --sandbox: the listing against the account's records, a user's edit and deletion.\n\
    Against a base URL the checks that need the simulated account's control API are\n\
    listed as skipped. The records the kit creates\n\
    are deleted again. Exit status 1 when any check fails.\n\n\
    Record and replay (how to test in CI, without a server):\n  \
    TANDEM_API_KEY=... tandem plugin test my_connector.wasm --base-url URL --record tests/recording\n  \
    tandem plugin test my_connector.wasm --replay tests/recording          # in CI\n\
    --record saves every HTTP exchange of the plugin (method, URL, body, the answer; never\n\
    request headers) with every credential scrubbed, and what the kit read from the\n\
    simulated account, as reviewable JSON: commit the directory. --replay runs the same\n\
    checks in seconds with no network and no credentials: a request the recording does\n\
    not have fails the check that sent it, naming the request; record again when the\n\
    plugin's requests change on purpose.";

/// `tandem plugin test --help` in a build without the simulated accounts.
#[cfg(not(feature = "sandbox"))]
const TEST_HELP: &str = "Example:\n  \
    TANDEM_API_KEY=... tandem plugin test my_connector.wasm --base-url https://sandbox.myapp.example/api\n\n\
    Checks: describe; check with good and wrong credentials; per entity: schema\n\
    (well-known email, custom fields), containers, pull of every page, push\n\
    create/update/delete, find by email/marker/ids, pull again (incremental: new versions,\n\
    tombstones), container membership. The checks that need a simulated account's control\n\
    API are listed as skipped. The records the kit creates are deleted again. Exit status 1\n\
    when any check fails.\n\n\
    --record DIR saves the plugin's HTTP exchanges (credentials scrubbed) as reviewable\n\
    JSON to commit; --replay DIR runs the same checks from it in seconds, with no network.\n\n\
    This build has no simulated accounts (built without the `sandbox` feature): no --sandbox.";

/// `tandem plugin test` options.
#[derive(Debug, Args)]
#[cfg_attr(feature = "sandbox", command(after_help = TEST_HELP_SANDBOX))]
#[cfg_attr(not(feature = "sandbox"), command(after_help = TEST_HELP))]
pub struct TestArgs {
    /// The connector's `.wasm`.
    pub file: PathBuf,
    /// Start this simulated account in-process and test against it (loopback granted).
    #[cfg(feature = "sandbox")]
    #[arg(
        long,
        value_enum,
        conflicts_with = "base_url",
        required_unless_present_any = ["base_url", "replay"]
    )]
    pub sandbox: Option<SandboxAccount>,
    /// Test against this API root (the plugin's `base-url` setting).
    #[arg(long, value_name = "URL")]
    #[cfg_attr(not(feature = "sandbox"), arg(required_unless_present = "replay"))]
    pub base_url: Option<String>,
    /// Save the run's HTTP exchanges, credentials scrubbed, into this directory (new, empty
    /// or an earlier recording) for `--replay`.
    #[arg(long, value_name = "DIR", conflicts_with = "replay")]
    pub record: Option<PathBuf>,
    /// Run the checks against a recording made with `--record` instead of a server: no
    /// network, no credentials, the recorded settings and entities.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["base_url", "settings", "entities"]
    )]
    #[cfg_attr(feature = "sandbox", arg(conflicts_with = "sandbox"))]
    pub replay: Option<PathBuf>,
    /// Another connection setting the plugin reads (repeatable), e.g. `--setting edition=classic`.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// API key for a plugin with an `api-key` auth profile.
    #[arg(
        long,
        env = "TANDEM_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// HTTP Basic user name (plugins with a `basic` auth profile that fixes none); the
    /// password is the API key.
    #[arg(long, env = "TANDEM_USER", value_name = "USER")]
    pub user: Option<String>,
    /// OAuth2 client id (plugins with an `oauth2` auth profile).
    #[arg(long, env = "TANDEM_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// OAuth2 client secret.
    #[arg(
        long,
        env = "TANDEM_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub client_secret: Option<String>,
    /// OAuth2 refresh token.
    #[arg(
        long,
        env = "TANDEM_REFRESH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub refresh_token: Option<String>,
    /// OAuth2 token endpoint (the refresh token and client secret go there). Without it
    /// the manifest's is used only if it is https on the base URL's origin.
    #[arg(long, value_name = "URL")]
    pub token_url: Option<String>,
    /// Allow private network addresses (10/8, 192.168/16…) for the base URL.
    #[arg(long)]
    pub allow_private: bool,
    /// Test only this entity (repeatable); default: every entity the plugin describes.
    #[arg(long = "entity", value_name = "NAME")]
    pub entities: Vec<String>,
    /// Seed of the simulated account's data.
    #[cfg(feature = "sandbox")]
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Runs the kit and prints the report; an error when a check failed.
pub async fn run(args: TestArgs) -> anyhow::Result<()> {
    let db = redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .context("cannot create an in-memory database")?;
    let runtime = Runtime::new(RuntimeOptions::new(Arc::new(db)))?;
    let plugin = runtime
        .load(PluginSource::Path(args.file.clone()), None)
        .await?;
    if plugin.kind() != PluginKind::Connector {
        bail!(
            "{} is a {}; the conformance kit tests connectors",
            plugin.label(),
            plugin.kind()
        );
    }
    if let Some(dir) = &args.replay {
        let recording = Recording::load(dir)?;
        let recorded = recording.plugin();
        if recorded.sha256 != plugin.sha256_hex() {
            eprintln!(
                "note: {} is not the plugin recorded ({} {}, sha256 {}): its requests must be the recorded ones",
                plugin.label(),
                recorded.name,
                recorded.version,
                &recorded.sha256[..recorded.sha256.len().min(12)]
            );
        }
        eprintln!(
            "replaying {} against {} exchanges recorded {} from {} …",
            plugin.label(),
            recording.exchanges(),
            recording.recorded_at(),
            recording.target()
        );
        let replay = conformance::replay(&runtime, &plugin, &recording).await;
        if let Some(first) = replay.unused.first() {
            eprintln!(
                "note: the plugin never asked for {} recorded exchange{}, first {first}",
                replay.unused.len(),
                if replay.unused.len() == 1 { "" } else { "s" }
            );
        }
        return print_report(&args, &replay.report);
    }
    let options = KitOptions {
        entities: args.entities.clone(),
        ..KitOptions::default()
    };
    #[cfg(feature = "sandbox")]
    let (sandbox, mut target) = match args.sandbox {
        Some(account) => {
            let (sandbox, target) = conformance::start_sandbox(
                account.kind(),
                tandem_sandbox::SandboxOptions {
                    seed: args.seed,
                    ..conformance::kit_sandbox_options()
                },
            )
            .await
            .context("cannot start the simulated account")?;
            (Some(sandbox), target)
        }
        None => (None, base_url_target(&args, &plugin)?),
    };
    #[cfg(not(feature = "sandbox"))]
    let mut target = base_url_target(&args, &plugin)?;
    target.settings.extend(args.settings.iter().cloned());
    eprintln!("testing {} against {} …", plugin.label(), target.label);
    let (report, recording) = match &args.record {
        None => (
            conformance::run(&runtime, &plugin, &target, &options).await,
            None,
        ),
        Some(_) => {
            let (report, recording) =
                conformance::record(&runtime, &plugin, &target, &options).await;
            (report, Some(recording))
        }
    };
    #[cfg(feature = "sandbox")]
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await;
    }
    if let (Some(dir), Some(recording)) = (&args.record, recording) {
        recording.save(dir)?;
        eprintln!(
            "recorded {} exchanges into {}: commit it, and replay with `tandem plugin test {} --replay {}`",
            recording.exchanges(),
            dir.display(),
            args.file.display(),
            dir.display()
        );
    }
    print_report(&args, &report)
}

/// Prints the report as asked; an error when a check failed.
fn print_report(args: &TestArgs, report: &conformance::Report) -> anyhow::Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{}", report.table(std::io::stdout().is_terminal()));
        println!("{}", report.summary());
    }
    let (_, failed, _) = report.counts();
    if failed > 0 {
        bail!(
            "{failed} conformance check{} failed for {}",
            if failed == 1 { "" } else { "s" },
            report.plugin
        );
    }
    Ok(())
}

/// The `--base-url` target with the credentials from the arguments.
fn base_url_target(args: &TestArgs, plugin: &Plugin) -> anyhow::Result<Target> {
    let url = args.base_url.as_deref().unwrap_or_default();
    let credentials = credentials(args, plugin.manifest().auth.as_ref())?;
    check_token_url(url, &credentials, plugin.manifest().auth.as_ref())?;
    let mut target = Target::base_url(url, credentials);
    target.allow_private = args.allow_private;
    Ok(target)
}

/// Without `--token-url`, the manifest's token endpoint is used only if it is https on
/// the base URL's origin (the only origin the kit grants): the refresh token and client
/// secret go nowhere the operator did not name.
fn check_token_url(
    base_url: &str,
    credentials: &Credentials,
    auth: Option<&AuthProfile>,
) -> anyhow::Result<()> {
    if let (
        Some(AuthProfile::OAuth2 { token_url, .. }),
        Credentials::OAuth2 {
            token_url: None, ..
        },
    ) = (auth, credentials)
    {
        let settings = [("base-url".to_owned(), base_url.to_owned())].into();
        let base = url::Url::parse(base_url).ok();
        crate::runtime::credentials::approve_manifest_token_url(token_url, &settings, |u| {
            base.as_ref().is_some_and(|b| b.origin() == u.origin())
        })
        .map_err(|e| anyhow::anyhow!("{e}; here: pass --token-url URL"))?;
    }
    Ok(())
}

/// The credentials for a base URL, as the plugin's auth profile needs them.
fn credentials(args: &TestArgs, auth: Option<&AuthProfile>) -> anyhow::Result<Credentials> {
    Ok(match auth {
        None => Credentials::None,
        Some(AuthProfile::ApiKey { .. } | AuthProfile::Bearer { .. }) => match &args.api_key {
            Some(key) => Credentials::ApiKey(Secret::new(key.clone())),
            None => bail!(
                "the plugin authenticates with an API key: set TANDEM_API_KEY (or pass --api-key)"
            ),
        },
        Some(AuthProfile::Basic { user, .. }) => match (&args.user, user, &args.api_key) {
            (None, None, _) => bail!(
                "the plugin authenticates with HTTP Basic and names no user: set TANDEM_USER (or pass --user)"
            ),
            (given, _, Some(key)) => Credentials::Basic {
                user: given.clone(),
                password: Secret::new(key.clone()),
            },
            (_, _, None) => bail!(
                "the plugin authenticates with HTTP Basic: set TANDEM_API_KEY to the password or API key (or pass --api-key)"
            ),
        },
        Some(AuthProfile::OAuth2 { .. }) => {
            match (&args.client_id, &args.client_secret, &args.refresh_token) {
                (Some(id), Some(secret), Some(refresh)) => Credentials::OAuth2 {
                    client_id: id.clone(),
                    client_secret: Secret::new(secret.clone()),
                    refresh_token: Secret::new(refresh.clone()),
                    token_url: args.token_url.clone(),
                },
                _ => bail!(
                    "the plugin authenticates with OAuth2: set TANDEM_CLIENT_ID, TANDEM_CLIENT_SECRET and TANDEM_REFRESH_TOKEN (or pass --client-id, --client-secret, --refresh-token)"
                ),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::plugin::PluginCommand;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<TestArgs, clap::Error> {
        let mut argv = vec!["tandem", "plugin", "test"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Plugin(PluginCommand::Test(args)) => Ok(*args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_targets_settings_and_credentials() {
        let args = parse(&["x.wasm", "--sandbox", "freshsales-classic", "--json"]).unwrap();
        assert_eq!(args.sandbox, Some(SandboxAccount::FreshsalesClassic));
        assert!(args.json && args.base_url.is_none());
        let args = parse(&[
            "x.wasm",
            "--base-url",
            "http://127.0.0.1:9/api",
            "--setting",
            "edition=classic",
            "--api-key",
            "k",
            "--entity",
            "leads",
        ])
        .unwrap();
        assert_eq!(args.settings, vec![("edition".into(), "classic".into())]);
        assert_eq!(args.entities, vec!["leads".to_owned()]);
        let auth = AuthProfile::ApiKey {
            header: "Authorization".into(),
            template: "Token token={secret}".into(),
            origins: None,
        };
        assert_eq!(
            credentials(&args, Some(&auth)).unwrap(),
            Credentials::ApiKey(Secret::new("k"))
        );
        assert_eq!(credentials(&args, None).unwrap(), Credentials::None);
        let oauth = AuthProfile::OAuth2 {
            token_url: "https://oauth.example/token".into(),
            scopes: Vec::new(),
            origins: None,
        };
        let err = credentials(&args, Some(&oauth)).unwrap_err().to_string();
        assert!(err.contains("TANDEM_REFRESH_TOKEN"), "{err}");

        // The manifest's token endpoint is not the operator's choice.
        let refresh = Credentials::OAuth2 {
            client_id: "c".into(),
            client_secret: Secret::new("s"),
            refresh_token: Secret::new("r"),
            token_url: None,
        };
        let err = check_token_url("https://api.example/v1", &refresh, Some(&oauth))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("https://oauth.example") && err.contains("--token-url"),
            "{err}"
        );
        check_token_url("https://oauth.example/v1", &refresh, Some(&oauth)).unwrap();
        let named = Credentials::OAuth2 {
            client_id: "c".into(),
            client_secret: Secret::new("s"),
            refresh_token: Secret::new("r"),
            token_url: Some("https://oauth.example/token".into()),
        };
        check_token_url("https://api.example/v1", &named, Some(&oauth)).unwrap();

        // Record with a target; replay instead of one, with the recorded settings.
        let args = parse(&["x.wasm", "--sandbox", "freshsales", "--record", "rec"]).unwrap();
        assert_eq!(args.record, Some(PathBuf::from("rec")));
        let args = parse(&["x.wasm", "--replay", "rec"]).unwrap();
        assert!(args.replay.is_some() && args.sandbox.is_none() && args.base_url.is_none());
        for extra in [
            &["--sandbox", "google"][..],
            &["--base-url", "http://x"],
            &["--record", "again"],
            &["--entity", "leads"],
            &["--setting", "a=b"],
        ] {
            let mut argv = vec!["x.wasm", "--replay", "rec"];
            argv.extend_from_slice(extra);
            assert!(parse(&argv).is_err(), "{argv:?}");
        }
        assert!(parse(&["x.wasm", "--record", "rec"]).is_err());

        // One target, exactly.
        assert!(parse(&["x.wasm"]).is_err());
        assert!(parse(&["x.wasm", "--sandbox", "google", "--base-url", "http://x"]).is_err());
        assert!(parse(&["x.wasm", "--sandbox", "hubspot"]).is_err());
        assert!(parse(&["x.wasm", "--base-url", "http://x", "--setting", "novalue"]).is_err());
    }
}
