//! `sync-server`: `serve`, `admin`, `fsck` and `gc`. See `sync_server::config` for the settings.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sync_server::app::{App, Limits, open_storage};
use sync_server::config::{Cli, Command};

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
        Command::Serve(args) => {
            let settings = args.resolve()?;
            let (catalog, store) = open_storage(&settings.storage).await?;
            let app = Arc::new(App::new(
                catalog,
                store,
                Limits {
                    max_upload_bytes: settings.max_upload_bytes,
                    cache_bytes: settings.cache_bytes,
                },
            ));
            let running = sync_server::server::start(
                app.clone(),
                settings.listen,
                Some(settings.site_dir.clone()),
                settings.shutdown_grace,
            )
            .await
            .with_context(|| format!("listening on {}", settings.listen))?;
            tracing::info!(
                addr = %running.addr,
                embedded = settings.storage.is_embedded(),
                "sync-server listening"
            );
            // The address on stdout, alone on its line, for scripts and tests that pass port 0.
            println!("listening on http://{}", running.addr);
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
            let shutdown = app.shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("signal received");
                shutdown.trigger();
            });
            running.wait().await;
            tracing::info!("stopped");
            Ok(())
        }
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

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
