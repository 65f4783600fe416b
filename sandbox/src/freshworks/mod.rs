//! Simulated Freshworks accounts: Freshsales Suite, Freshsales Classic and Freshmarketer.
//!
//! Work in progress: the API trees are being added; for now the account serves its control
//! plane only.

use std::net::SocketAddr;

use axum::Router;
use serde::{Deserialize, Serialize};

use crate::common::{self, ControlPlane};
use crate::{AccountContext, AccountInfo, AccountKind, Credentials, SandboxError, StartedAccount};

/// Behaviour switches where the reference is uncertain (defaults documented in docs/sandbox.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Switches {
    /// Accept `Authorization: Token <key>` as well as `Token token=<key>`.
    pub accept_bare_token: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            accept_bare_token: true,
        }
    }
}

/// Start one Freshworks account of `kind`.
pub async fn start(ctx: &AccountContext<'_>, kind: AccountKind) -> Result<StartedAccount, SandboxError> {
    let plane = ControlPlane::new(ctx.clock.clone(), || {});
    let api = common::instrument(Router::new(), &plane);
    let app = common::mount(api, plane.clone(), Router::new());
    let server = common::serve(ctx.addr, app).await?;
    let base = server.base_url();
    let _: SocketAddr = server.addr();
    Ok(StartedAccount {
        info: AccountInfo {
            kind,
            name: kind.name().to_owned(),
            api_base: format!("{base}/crm/sales/api"),
            control_url: format!("{base}{}", common::CONTROL_PREFIX),
            base_url: base,
            credentials: Credentials::ApiKey {
                api_key: String::new(),
                restricted_api_key: String::new(),
            },
        },
        control: plane,
        server,
    })
}
