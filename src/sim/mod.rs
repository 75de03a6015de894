//! The WeChat simulator: a real HTTP server speaking `api.weixin.qq.com`'s wire format,
//! errcodes and token rules, plus a control API (`/sim/...`) to mint login codes, make people
//! follow accounts, and inject faults. It is the only fake in wxunion: the tests, the
//! benchmarks and sandbox mode all talk to it over HTTP exactly as they would to WeChat.

mod api;
mod control;
mod push;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

pub use state::{Fault, Follow, SimApp, SimState};

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
}

impl Simulator {
    /// Binds `listen` (port 0 for a free port) and serves in the background.
    pub async fn spawn(apps: Vec<SimApp>, listen: SocketAddr) -> anyhow::Result<Simulator> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(apps));
        let app = router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "simulator stopped");
            }
        });
        Ok(Simulator { addr, state })
    }

    /// The base URL to use as `wechat_api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// WeChat's API routes and the control API on one router.
pub fn router(state: Arc<SimState>) -> Router {
    api::routes().merge(control::routes()).with_state(state)
}
