//! [`DaemonClient`]: [`SyncControl`] through the daemon's control API, for when
//! `tandem run` holds the state file. Typed with [`super::api`], the server's own types.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{
    self, Disconnected, ErrorReply, Logs, LogsQuery, Resolved, RunQuery, StatusChanged, SyncList,
};
use super::{DryRun, Route, SyncControl, SyncControlError};
use crate::app::report::{RunLog, RunSummary, SyncSummary};
use crate::app::{Resolution, StateFileError};
use crate::config::{Config, ConfigError, Env, SyncConfig};

/// Why the daemon could not be asked, or what it refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The state file is held, and no control API answers for it (no `[daemon] token`,
    /// or the holder is not the daemon), or the operation needs the file itself (a plan).
    #[error("{0}")]
    Held(String),
    /// The token reference could not be read.
    #[error("{0}")]
    Token(Box<ConfigError>),
    /// Nobody answers at `[daemon] listen`.
    #[error(
        "{holder}, and the daemon's control API at {base} does not answer (check [daemon] listen, or stop that process first)"
    )]
    Unreachable {
        /// Who holds the state file.
        holder: String,
        /// The API's address.
        base: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The answer is not JSON.
    #[error("the control API answered with something other than JSON")]
    NotJson(#[source] reqwest::Error),
    /// The daemon answered with an error.
    #[error("the daemon refused: {0}")]
    Refused(String),
    /// The answer is JSON of another shape.
    #[error(transparent)]
    Shape(serde_json::Error),
    /// A sync the config does not define.
    #[error("there is no sync `{name}` in {file}; defined: {defined}")]
    UnknownSync {
        /// The name asked for.
        name: String,
        /// The config file.
        file: String,
        /// The syncs the config defines (as the local host lists them).
        defined: String,
    },
}

/// The daemon's control API, used when the daemon holds the state file.
pub struct DaemonClient {
    base: String,
    token: String,
    http: reqwest::Client,
    config: Config,
    /// Who holds the state file, for when nobody answers.
    holder: String,
    /// The state file's refusal, for what needs the file itself.
    held: String,
}

impl std::fmt::Debug for DaemonClient {
    // Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl DaemonClient {
    /// The client for `config`'s daemon, which `locked` says holds the state file. Fails
    /// with the lock's own message when no control API can answer: `[daemon]` has no
    /// token, or another process than the daemon (a `tandem sync run`) holds the file.
    pub fn for_locked(
        config: &Config,
        env: &Env,
        locked: &StateFileError,
    ) -> Result<Self, ClientError> {
        let (Some(token), false) = (&config.daemon.token, locked.held_by_other_than_daemon())
        else {
            return Err(ClientError::Held(locked.to_string()));
        };
        let token = token
            .read(env)
            .map_err(|e| ClientError::Token(Box::new(e)))?;
        Ok(DaemonClient {
            base: format!("http://{}", config.daemon.listen),
            token,
            http: reqwest::Client::new(),
            config: config.clone(),
            holder: match locked {
                StateFileError::Locked { path, owner, .. } => {
                    format!("the state file {} is in use by {owner}", path.display())
                }
                other => other.to_string(),
            },
            held: locked.to_string(),
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                holder: self.holder.clone(),
                base: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.map_err(ClientError::NotJson)?;
        if !status.is_success() {
            let msg = serde_json::from_value::<ErrorReply>(body)
                .map(|e| e.error)
                .unwrap_or_else(|_| "unknown error".into());
            return Err(ClientError::Refused(msg));
        }
        serde_json::from_value(body).map_err(ClientError::Shape)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(reqwest::Method::GET, path, None::<&()>).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(reqwest::Method::POST, path, None::<&()>).await
    }
}

impl SyncControl for DaemonClient {
    fn route(&self) -> Route {
        Route::Daemon
    }

    fn sync_config(&self, name: &str) -> Result<&SyncConfig, SyncControlError> {
        self.config.syncs.get(name).ok_or_else(|| {
            let defined: Vec<&str> = self.config.syncs.keys().map(String::as_str).collect();
            ClientError::UnknownSync {
                name: name.into(),
                file: self.config.file.display().to_string(),
                defined: if defined.is_empty() {
                    "none".into()
                } else {
                    defined.join(", ")
                },
            }
            .into()
        })
    }

    async fn status(&self, only: Option<&str>) -> Result<Vec<SyncSummary>, SyncControlError> {
        let mut list = self.get::<SyncList>(api::SYNCS).await?.syncs;
        if let Some(n) = only {
            self.sync_config(n)?;
            list.retain(|s| s.name == n);
        }
        Ok(list)
    }

    async fn logs(&self, name: &str, query: LogsQuery) -> Result<Vec<RunLog>, SyncControlError> {
        self.sync_config(name)?;
        let path = format!("{}{}", api::path(api::LOGS, name), query.to_query());
        let runs = self.get::<Logs>(&path).await?.runs;
        super::require_run(name, &query, runs)
    }

    async fn plan(&self, _name: &str, _full: bool) -> Result<DryRun, SyncControlError> {
        // A plan reads the stored state itself; the daemon does not serve one.
        Err(ClientError::Held(self.held.clone()).into())
    }

    async fn run(
        &self,
        name: &str,
        full: bool,
        force: bool,
    ) -> Result<RunSummary, SyncControlError> {
        self.sync_config(name)?;
        let query = RunQuery {
            wait: true,
            full,
            force,
        };
        let path = format!("{}{}", api::path(api::RUN, name), query.to_query());
        Ok(self.post(&path).await?)
    }

    async fn pause(&self, name: &str) -> Result<(), SyncControlError> {
        self.post::<StatusChanged>(&api::path(api::PAUSE, name))
            .await?;
        Ok(())
    }

    async fn resume(&self, name: &str) -> Result<(), SyncControlError> {
        self.post::<StatusChanged>(&api::path(api::RESUME, name))
            .await?;
        Ok(())
    }

    async fn disconnect(&self, name: &str) -> Result<usize, SyncControlError> {
        let d: Disconnected = self.post(&api::path(api::DISCONNECT, name)).await?;
        Ok(d.wiped)
    }

    async fn resolve(
        &self,
        name: &str,
        resolution: &Resolution,
    ) -> Result<String, SyncControlError> {
        self.sync_config(name)?;
        let r: Resolved = self
            .send(
                reqwest::Method::POST,
                &api::path(api::RESOLVE, name),
                Some(resolution),
            )
            .await?;
        Ok(r.message)
    }
}
