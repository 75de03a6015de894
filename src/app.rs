//! Assembling the service: configuration in, a bound listener and running workers out.
//!
//! Tests use the same path as `wxunion serve`: `Application::build` on port 0, then
//! `local_addr()` to find the real port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::graphql;
use crate::http::AppState;
use crate::http::refusals::RefusalLog;
use crate::http::server::{self, Limits};
use crate::identity::{Service, audit, connect_storage};
use crate::jobs::inbox::Inbox;
use crate::jobs::worker::{self, Queue};
use crate::sim::{SimApp, Simulator};
use crate::telemetry;

/// A built, not yet running, wxunion.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    queue: Queue,
    wake: Arc<Notify>,
    sim: Option<Simulator>,
}

impl Application {
    /// Builds with the real clock.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Connects the database (applying migrations), the cache and WeChat, and binds the
    /// listener. In sandbox mode it first starts the simulator with the demo apps and points
    /// WeChat calls at it.
    pub async fn build_with_clock(
        config: Config,
        clock: SharedClock,
    ) -> anyhow::Result<Application> {
        let sim = if config.sandbox {
            let apps = config.apps.iter().map(SimApp::from).collect();
            let sim = Simulator::spawn(apps, config.sim_listen)
                .await
                .with_context(|| format!("cannot start the simulator on {}", config.sim_listen))?;
            Some(sim)
        } else {
            None
        };
        // Sandbox mode talks to its own simulator (on the port it really got); otherwise WeChat.
        let wechat_api_base = sim
            .as_ref()
            .map_or_else(|| config.wechat_api_base.clone(), Simulator::base_url);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        if let Some(sim) = &sim {
            sim.state
                .set_callback_base(&format!("http://{}", listener.local_addr()?));
        }
        let (db, cache) = connect_storage(&config).await?;
        let service = Service::new(config, db.clone(), cache, clock.clone(), &wechat_api_base)?;
        let wake = Arc::new(Notify::new());
        // The recorder first: the inbox registers its histograms when it starts.
        let metrics = telemetry::metrics_handle();
        let state = AppState {
            schema: graphql::build(Some(service.clone())),
            prevalidated_schema: graphql::build_prevalidated(Some(service.clone())),
            inbox: Inbox::start(db.clone(), wake.clone(), service.database_timeout()),
            metrics,
            refusals: Arc::new(RefusalLog::new()),
            documents: Default::default(),
            service,
        };
        Ok(Application {
            listener,
            state,
            queue: Queue::new(db, clock),
            wake,
            sim,
        })
    }

    /// The address actually bound (the real port when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.service.config().listen)
    }

    /// The in-process simulator, in sandbox mode.
    pub fn simulator(&self) -> Option<&Simulator> {
        self.sim.as_ref()
    }

    /// The configuration it runs on.
    pub fn config(&self) -> &Config {
        self.state.service.config()
    }

    /// Serves until `shutdown` resolves, then lets requests in flight finish for at most
    /// `shutdown_grace_seconds`; job workers run alongside and stop with it.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let config = self.state.service.config().clone();
        let mut workers = JoinSet::new();
        let lease = chrono::Duration::seconds(config.job_lease_seconds as i64);
        for _ in 0..config.job_workers {
            workers.spawn(worker::run(
                self.queue.clone(),
                self.state.service.clone(),
                self.wake.clone(),
                lease,
            ));
        }
        workers.spawn(worker::prune_forever(self.queue.clone()));
        workers.spawn(worker::report_queue_forever(self.queue.clone()));
        workers.spawn(audit::prune_forever(self.state.service.clone()));
        workers.spawn(audit::report_identities_forever(self.state.service.clone()));
        let limits = Limits::from_config(&config);
        let app = crate::http::router(self.state);
        server::serve(self.listener, app, limits, shutdown).await;
        workers.abort_all();
        Ok(())
    }
}
