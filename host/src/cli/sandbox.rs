//! `tandem sandbox`: starts the simulated accounts (crate `tandem-sandbox`) and keeps
//! them up until Ctrl-C, after printing each account's API base, control API and
//! credentials (the sandbox's own fake ones: printing them is the point) and the
//! connection to put in a config file to use it.

use std::io::Write;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tandem_sandbox::{AccountInfo, AccountKind, Credentials, Sandbox, SandboxOptions, Sizes};

/// `tandem sandbox` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    tandem sandbox\n  \
    tandem sandbox --port 4100 --rate-limits off --contacts 5000\n  \
    tandem sandbox --account freshsales --account google --json\n\n\
    The control API of each account (reset, faults, counters, user edits, clock, tokens)\n\
    is documented in docs/sandbox.md.")]
pub struct SandboxArgs {
    /// Seed of the generated data: the same seed gives the same people and credentials.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Accounts to start (repeat the option); default: all four.
    #[arg(long = "account", value_enum, value_name = "ACCOUNT")]
    pub accounts: Vec<Account>,
    /// Base port: freshsales, freshsales-classic, freshmarketer and google listen on
    /// PORT, PORT+1, PORT+2 and PORT+3. Default: free ports.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Enforce the apps' rate limits (Freshworks hourly and per-minute quotas, Google
    /// per-minute buckets) as the real accounts do.
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "on|off")]
    pub rate_limits: Switch,
    /// Records seeded in every account (the per-account options below win).
    #[arg(long, value_name = "N")]
    pub contacts: Option<usize>,
    /// Contacts of the Freshsales Suite account (default 200).
    #[arg(long, value_name = "N")]
    pub freshsales: Option<usize>,
    /// Leads of the Freshsales Classic account (and a third as many contacts; default 120).
    #[arg(long, value_name = "N")]
    pub freshsales_classic: Option<usize>,
    /// Contacts of the Freshmarketer account (default 200).
    #[arg(long, value_name = "N")]
    pub freshmarketer: Option<usize>,
    /// Contacts of the Google account (default 150).
    #[arg(long, value_name = "N")]
    pub google: Option<usize>,
    /// Print the accounts as JSON (one object per account) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A simulated account, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Account {
    /// Freshsales Suite (Freshworks CRM): contacts.
    Freshsales,
    /// Freshsales Classic: leads and contacts.
    FreshsalesClassic,
    /// Freshmarketer: contacts, lists, subscription status.
    Freshmarketer,
    /// Google People (Google Contacts), with its OAuth2 token endpoint.
    Google,
}

impl Account {
    fn kind(self) -> AccountKind {
        match self {
            Account::Freshsales => AccountKind::FreshsalesSuite,
            Account::FreshsalesClassic => AccountKind::FreshsalesClassic,
            Account::Freshmarketer => AccountKind::Freshmarketer,
            Account::Google => AccountKind::GooglePeople,
        }
    }
}

/// `on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// The sandbox options the arguments describe.
pub fn options(args: &SandboxArgs) -> SandboxOptions {
    let defaults = Sizes::default();
    let size = |own: Option<usize>, default: usize| own.or(args.contacts).unwrap_or(default);
    let kinds = if args.accounts.is_empty() {
        AccountKind::ALL.to_vec()
    } else {
        args.accounts.iter().map(|a| a.kind()).collect()
    };
    SandboxOptions {
        seed: args.seed,
        sizes: Sizes {
            freshsales: size(args.freshsales, defaults.freshsales),
            freshsales_classic: size(args.freshsales_classic, defaults.freshsales_classic),
            freshmarketer: size(args.freshmarketer, defaults.freshmarketer),
            google: size(args.google, defaults.google),
        },
        rate_limits_enabled: args.rate_limits == Switch::On,
        base_port: args.port,
        kinds,
        ..SandboxOptions::default()
    }
}

/// Runs `tandem sandbox` until Ctrl-C.
pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let options = options(&args);
    let rate_limits = options.rate_limits_enabled;
    let sandbox = Sandbox::start(options)
        .await
        .context("cannot start the simulated accounts")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for account in sandbox.accounts() {
            writeln!(out, "{}", serde_json::to_string(&account_json(account))?)?;
        }
    } else {
        write!(out, "{}", describe(sandbox.accounts(), rate_limits))?;
    }
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    eprintln!("stopping the simulated accounts");
    sandbox.shutdown().await;
    Ok(())
}

/// One account as JSON: what `--json` prints.
pub fn account_json(account: &AccountInfo) -> serde_json::Value {
    serde_json::json!({
        "name": account.name,
        "base_url": account.base_url,
        "api_base": account.api_base,
        "control_url": account.control_url,
        "credentials": account.credentials,
        "connection_base_url": connection_base_url(account),
    })
}

/// What the connectors' `base-url` setting must be for this account: the Freshworks
/// API root (its path tells Suite from Classic), or the Google server's root.
fn connection_base_url(account: &AccountInfo) -> &str {
    match account.kind {
        AccountKind::GooglePeople => &account.base_url,
        _ => &account.api_base,
    }
}

/// The text `tandem sandbox` prints: every account, then how to use them.
pub fn describe(accounts: &[AccountInfo], rate_limits: bool) -> String {
    let mut text = format!(
        "Simulated accounts are running (rate limits {}); Ctrl-C stops them.\n\
         The credentials below are the sandbox's own fake ones, valid only here.\n",
        if rate_limits { "on" } else { "off" }
    );
    for account in accounts {
        text.push('\n');
        text.push_str(&format!("{}\n", account.name));
        text.push_str(&format!("  API base     {}\n", account.api_base));
        text.push_str(&format!("  control API  {}\n", account.control_url));
        match &account.credentials {
            Credentials::ApiKey {
                api_key,
                restricted_api_key,
            } => {
                text.push_str(&format!("  api key      {api_key}\n"));
                text.push_str(&format!(
                    "  restricted   {restricted_api_key}   (a user without API permission: 403)\n"
                ));
            }
            Credentials::OAuth2 {
                token_url,
                client_id,
                client_secret,
                refresh_token,
            } => {
                text.push_str(&format!("  token URL    {token_url}\n"));
                text.push_str(&format!("  client id    {client_id}\n"));
                text.push_str(&format!("  secret       {client_secret}\n"));
                text.push_str(&format!("  refresh      {refresh_token}\n"));
            }
        }
    }
    text.push_str("\nPoint a connection at an account in the config file, e.g.:\n\n");
    for account in accounts {
        text.push_str(&connection_example(account));
        text.push('\n');
    }
    text.push_str(
        "and grant the plugin the loopback address:\n\n\
         [plugins.freshsales.grant]\n\
         http = [\"setting:base-url\"]\n\
         loopback = true\n\n\
         Try a connector against one of them: tandem plugin test FILE --sandbox freshsales\n\
         (or test against these running accounts: --base-url URL with --api-key).\n",
    );
    text
}

/// A `[connections.NAME]` block for `account` (secrets by environment variable, as the
/// config requires).
fn connection_example(account: &AccountInfo) -> String {
    let name = account.name.replace('-', "_");
    let var = name.to_uppercase();
    match &account.credentials {
        Credentials::ApiKey { api_key, .. } => {
            let plugin = if account.kind == AccountKind::Freshmarketer {
                "freshmarketer"
            } else {
                "freshsales"
            };
            format!(
                "# export SANDBOX_{var}_KEY={api_key}\n\
                 [connections.{name}]\n\
                 plugin = \"{plugin}\"\n\
                 settings = {{ base-url = \"{}\" }}\n\
                 credentials = {{ api-key = {{ env = \"SANDBOX_{var}_KEY\" }} }}\n",
                connection_base_url(account)
            )
        }
        Credentials::OAuth2 {
            token_url,
            client_id,
            client_secret,
            refresh_token,
        } => format!(
            "# export SANDBOX_GOOGLE_SECRET={client_secret} SANDBOX_GOOGLE_REFRESH={refresh_token}\n\
             [connections.{name}]\n\
             plugin = \"google-contacts\"\n\
             settings = {{ base-url = \"{}\" }}\n\
             [connections.{name}.credentials.oauth2]\n\
             client-id = \"{client_id}\"\n\
             client-secret = {{ env = \"SANDBOX_GOOGLE_SECRET\" }}\n\
             refresh-token = {{ env = \"SANDBOX_GOOGLE_REFRESH\" }}\n\
             token-url = \"{token_url}\"\n",
            connection_base_url(account)
        ),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> SandboxArgs {
        let mut argv = vec!["tandem", "sandbox"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Sandbox(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arguments_become_sandbox_options() {
        let o = options(&parse(&[]));
        assert_eq!(o.kinds, AccountKind::ALL.to_vec());
        assert_eq!(o.sizes, Sizes::default());
        assert!(o.rate_limits_enabled);
        assert_eq!((o.seed, o.base_port), (1, None));

        let o = options(&parse(&[
            "--seed",
            "9",
            "--port",
            "4100",
            "--rate-limits",
            "off",
            "--contacts",
            "50",
            "--google",
            "7",
            "--account",
            "google",
            "--account",
            "freshsales-classic",
        ]));
        assert_eq!((o.seed, o.base_port), (9, Some(4100)));
        assert!(!o.rate_limits_enabled);
        assert_eq!(
            o.sizes,
            Sizes {
                freshsales: 50,
                freshsales_classic: 50,
                freshmarketer: 50,
                google: 7
            }
        );
        assert_eq!(
            o.kinds,
            vec![AccountKind::GooglePeople, AccountKind::FreshsalesClassic]
        );
        assert!(Cli::try_parse_from(["tandem", "sandbox", "--rate-limits", "maybe"]).is_err());
        assert!(Cli::try_parse_from(["tandem", "sandbox", "--account", "hubspot"]).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prints_urls_credentials_and_connections_of_running_accounts() {
        let args = parse(&[
            "--contacts",
            "5",
            "--account",
            "freshsales",
            "--account",
            "google",
        ]);
        let sandbox = Sandbox::start(options(&args)).await.unwrap();
        let text = describe(sandbox.accounts(), true);
        let fs = sandbox.account(AccountKind::FreshsalesSuite).unwrap();
        let google = sandbox.account(AccountKind::GooglePeople).unwrap();
        let Credentials::ApiKey { api_key, .. } = &fs.credentials else {
            panic!("freshsales has an api key")
        };
        for wanted in [
            fs.api_base.as_str(),
            fs.control_url.as_str(),
            api_key,
            google.control_url.as_str(),
            "refresh      1//tandem-sandbox-refresh-token",
            "[connections.freshsales]",
            "[connections.google.credentials.oauth2]",
            &format!("base-url = \"{}\"", google.base_url),
        ] {
            assert!(text.contains(wanted), "missing {wanted:?} in:\n{text}");
        }
        // What the text says is reachable: the control API answers.
        let counters = reqwest::get(format!("{}/counters", fs.control_url))
            .await
            .unwrap();
        assert_eq!(counters.status(), 200);
        let json = account_json(google);
        assert_eq!(json["connection_base_url"], google.base_url.as_str());
        assert_eq!(
            json["credentials"]["refresh_token"],
            "1//tandem-sandbox-refresh-token"
        );
        // The connection examples are valid TOML with the settings the connectors read.
        for account in sandbox.accounts() {
            let example: toml::Table = toml::from_str(&connection_example(account)).unwrap();
            let name = account.name.replace('-', "_");
            assert_eq!(
                example["connections"][name.as_str()]["settings"]["base-url"].as_str(),
                Some(connection_base_url(account))
            );
        }
        sandbox.shutdown().await;
    }
}
