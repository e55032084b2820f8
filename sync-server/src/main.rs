//! `sync-server`: `serve`, `admin`, `fsck` and `gc`. See `sync_server::config` for the settings.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sync_server::app::{App, Limits, open_storage};
use sync_server::config::{CatalogSettings, Cli, Command, Settings};
use sync_server::node;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args.resolve()?).await,
        Command::Admin { storage, command } => {
            let (catalog, store) = open_storage(&storage.resolve()?).await?;
            sync_server::admin::run(catalog.as_ref(), &store, command).await
        }
        Command::Fsck {
            storage,
            project,
            read_data,
            sample,
        } => {
            let (catalog, store) = open_storage(&storage.resolve()?).await?;
            let options = sync_server::fsck::Options {
                read_data,
                sample: sample.unwrap_or(1.0),
            };
            let report =
                sync_server::fsck::run(catalog.as_ref(), &store, project.as_deref(), options)
                    .await?;
            print!("{report}");
            if !report.is_clean() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Gc {
            storage,
            project,
            grace,
            retain,
            dry_run,
        } => {
            let (catalog, store) = open_storage(&storage.resolve()?).await?;
            let options = sync_server::gc::Options {
                grace: grace.unwrap_or(sync_server::gc::DEFAULT_GRACE),
                retain,
                dry_run,
            };
            let report =
                sync_server::gc::run(catalog.as_ref(), &store, project.as_deref(), options).await?;
            print!("{report}");
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let (catalog, store) = open_storage(&settings.storage).await?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let advertised = settings
        .advertise
        .clone()
        .unwrap_or_else(|| advertised_address(addr));
    let app = Arc::new(
        App::new(
            catalog,
            store,
            Limits {
                max_upload_bytes: settings.max_upload_bytes,
                cache_bytes: settings.cache_bytes,
                connections_per_address: settings.max_connections_per_address,
                trust_proxy_headers: settings.trust_proxy_headers,
                ..Limits::default()
            },
        )
        .registered_at(advertised),
    );
    let running = sync_server::server::start_on(
        app.clone(),
        listener,
        Some(settings.site_dir.clone()),
        settings.shutdown_grace,
    )?;
    tracing::info!(
        addr = %running.addr,
        node = %app.node.id,
        embedded = settings.storage.is_embedded(),
        "sync-server listening"
    );
    // The address on stdout, alone on its line, for scripts and tests that pass port 0.
    println!("listening on http://{}", running.addr);
    node::beat(&app).await;
    tokio::spawn(node::heartbeats(app.clone()));
    if let CatalogSettings::Postgres { url } = &settings.storage.catalog {
        tokio::spawn(sync_server::events::relay::run(app.clone(), url.clone()));
    }
    if let Some(every) = settings.gc_every {
        let options = sync_server::gc::Options {
            grace: settings.gc_grace,
            retain: settings.gc_retain,
            dry_run: false,
        };
        tokio::spawn(sync_server::gc::schedule(
            app.catalog.clone(),
            app.store.clone(),
            every,
            options,
            app.shutdown.clone(),
        ));
    }
    tokio::spawn(stop_on_signal(app.clone(), settings.drain_delay));
    running.wait().await;
    node::leave(&app).await;
    tracing::info!("stopped");
    Ok(())
}

/// The address shown in the registry when none is configured: the listening one, with the
/// host's name in place of an unspecified IP (0.0.0.0).
fn advertised_address(addr: SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    match host {
        Some(host) => format!("{host}:{}", addr.port()),
        None => addr.to_string(),
    }
}

/// Drains, then stops the node on the first SIGTERM or Ctrl-C: `/readyz` turns unready at
/// once; after SIGTERM the node keeps serving for `drain_delay` (so the balancer's checks see
/// it leave; a second signal cuts it short), then it stops accepting and requests in flight
/// get the grace period.
async fn stop_on_signal(app: Arc<App>, drain_delay: Duration) {
    let signal = wait_for_signal().await;
    app.shutdown.drain();
    node::beat(&app).await;
    if signal == Signal::Terminate && !drain_delay.is_zero() {
        tracing::info!(
            delay_ms = drain_delay.as_millis() as u64,
            "SIGTERM: draining (/readyz answers 503), then stopping"
        );
        tokio::select! {
            () = tokio::time::sleep(drain_delay) => {}
            _ = wait_for_signal() => tracing::info!("second signal: stopping now"),
        }
    } else {
        tracing::info!(?signal, "stopping");
    }
    app.shutdown.trigger();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGTERM: what service managers and orchestrators send.
    Terminate,
    /// Ctrl-C at a terminal.
    Interrupt,
}

async fn wait_for_signal() -> Signal {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return Signal::Interrupt;
                }
            };
        tokio::select! {
            _ = ctrl_c => Signal::Interrupt,
            _ = terminate.recv() => Signal::Terminate,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        Signal::Interrupt
    }
}
