//! The `wxunion` command line: serve (default), migrate, schema, sim, sync-followers, check.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;
use wxunion::app::Application;

use wxunion::clock::SystemClock;
use wxunion::config::Config;
use wxunion::domain::AppId;
use wxunion::identity::Service;
use wxunion::sim::{SimApp, Simulator};
use wxunion::telemetry::redact_url;
use wxunion::{doctor, graphql, sandbox, store, telemetry};

/// mimalloc instead of glibc's allocator: the callback path allocates per request on many
/// threads, and glibc's malloc/free showed up as a fifth of the server's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wxunion",
    version,
    about = "One user identity across all of an organisation's WeChat apps"
)]
struct Cli {
    /// The TOML configuration file (without one, `serve` starts in sandbox mode).
    #[arg(long, global = true, env = "WXUNION_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations, then serve HTTP (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Print the GraphQL SDL.
    Schema,
    /// Run the WeChat simulator alone.
    Sim {
        /// Where the simulator listens.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
        /// wxunion's base URL, where follow/message events are posted.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        target: String,
    },
    /// Walk an official account's follower list and resolve every follower.
    SyncFollowers {
        #[arg(long)]
        app: String,
    },
    /// Check every app's secret, unionids and console settings, the database and Redis;
    /// exit 1 when anything FAILs.
    Check {
        /// wxunion's address as WeChat reaches it, for the callback URLs
        /// (e.g. https://id.example.com).
        #[arg(long)]
        public_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Schema) = cli.command {
        print!("{}", graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // `check` reports everything itself, on stdout: no log lines in between.
    if !matches!(cli.command, Some(Command::Check { .. })) {
        telemetry::init_tracing();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.runtime_threads > 0 {
        builder.worker_threads(config.runtime_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Check { public_url }) = &cli.command {
        let report = runtime.block_on(doctor::check(&config, public_url.as_deref()));
        println!("{report}");
        return if report.failed() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = store::connect(&config.database_url, config.database_max_connections).await?;
            store::migrate(&db).await?;
            println!("migrations applied to {}", redact_url(&config.database_url));
            Ok(())
        }
        Command::Schema | Command::Check { .. } => Ok(()),
        Command::Sim { listen, target } => {
            // The configured apps, or the demo apps for a file that lists none.
            let apps = if config.apps.is_empty() {
                sandbox::demo_apps()
            } else {
                config.apps.clone()
            };
            let sim = Simulator::spawn(apps.iter().map(SimApp::from).collect(), listen).await?;
            sim.state.set_callback_base(&target);
            println!(
                "WeChat simulator on http://{} (control API: GET /sim), posting events to {target}",
                sim.addr
            );
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Command::SyncFollowers { app } => sync_followers(config, &app).await,
    }
}

/// Runs the follower backfill of one official account in the foreground: the same sync as
/// `syncFollowers` (resuming one a stopped run left), a progress bar on a terminal and plain
/// lines otherwise, a summary at the end; exit status 1 unless it ends DONE.
async fn sync_followers(config: Config, app_id: &str) -> anyhow::Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::IsTerminal;
    use wxunion::identity::sync::{self, Backoff, Progress};
    // Sandbox mode has no WeChat: the simulator of the running sandbox (`cargo run`) answers.
    let wechat_api_base = if config.sandbox {
        format!("http://{}", config.sim_listen)
    } else {
        config.wechat_api_base.clone()
    };
    let (db, cache) = wxunion::identity::connect_storage(&config).await?;
    let service = Service::new(config, db, cache, Arc::new(SystemClock), &wechat_api_base)?;
    let app_id = AppId::parse(app_id)?;
    let started = sync::start(&service, &app_id).await?;
    let resumed = started.followers_seen > 0;
    println!(
        "follower sync {} of {app_id}: {}",
        started.id,
        if resumed {
            format!("resuming after {} followers", started.followers_seen)
        } else {
            "starting".to_owned()
        }
    );
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} followers ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut total = 0u64;
    let mut last_line = std::time::Instant::now();
    let clock = std::time::Instant::now();
    let ended = sync::run(
        &service,
        started.id,
        &sync::owner(),
        Backoff::default(),
        |p| match p {
            Progress::Started { total: t, seen } => {
                total = t;
                bar.set_length(t);
                bar.set_position(seen);
                if !terminal {
                    println!("{t} followers, {seen} already done");
                }
            }
            Progress::Batch { seen } => {
                bar.set_position(seen);
                if !terminal && (last_line.elapsed().as_secs() >= 2 || seen >= total) {
                    last_line = std::time::Instant::now();
                    println!("{seen}/{total} followers");
                }
            }
            Progress::Retrying { error, wait } => {
                bar.suspend(|| eprintln!("{error}; retrying in {wait:?}"));
            }
        },
    )
    .await?;
    bar.finish_and_clear();
    let Some(s) = ended else {
        anyhow::bail!(
            "follower sync {} of {app_id} is being run by another process (lease held); try again later",
            started.id
        );
    };
    println!(
        "follower sync {} of {app_id}: {}: {} followers seen, {} linked with a unionid, {} without one, {} failed, in {:.1}s",
        s.id,
        s.status.as_str(),
        s.followers_seen,
        s.linked,
        s.without_union_id,
        s.failed,
        clock.elapsed().as_secs_f64()
    );
    match s.status {
        wxunion::domain::follower_sync::SyncStatus::Done => Ok(()),
        _ => anyhow::bail!(
            "the sync stopped: {} (run the command again to resume it)",
            s.last_error.unwrap_or_default()
        ),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let listen = app.local_addr();
    if let Some(sim) = app.simulator() {
        println!("{}", sandbox::banner(app.config(), listen, sim.addr));
    }
    tracing::info!(
        %listen,
        database = %redact_url(&app.config().database_url),
        runtime_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "wxunion serving"
    );
    app.run_until_stopped(shutdown_signal()).await
}

/// Ctrl-C or SIGTERM (what systemd and Kubernetes send): stop accepting, finish in-flight
/// requests (each callback waits for its commit) within `shutdown_grace_seconds`, then stop. Jobs a worker was running are
/// picked up again when their lease ends.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
