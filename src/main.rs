//! The `profstore` binary: `profstore serve` runs the HTTP daemon;
//! `profstore push` and `profstore query` are its command-line client (see
//! [`profstore::cli`]).

use clap::{Parser, Subcommand};
use profstore::cli;
use profstore::server::{router, AppState};
use profstore::store::{Limits, Store, StoreConfig};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "profstore",
    version,
    about = "A continuous-profiling storage daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP daemon.
    Serve(ServeArgs),
    /// Uploads pprof files to a running daemon.
    Push(cli::PushArgs),
    /// Queries a running daemon: series totals, labels, profiles.
    Query(cli::QueryArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is
    /// printed on stdout as `listening on ADDR`).
    #[arg(long, env = "PROFSTORE_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Data directory (created if missing).
    #[arg(long, env = "PROFSTORE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or a
    /// tracing `EnvFilter` directive.
    #[arg(long, env = "PROFSTORE_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Largest request body of `/api/v1/write`, in bytes (also the largest
    /// gzipped pprof).
    #[arg(long, env = "PROFSTORE_MAX_BODY_BYTES", default_value_t = 32 << 20)]
    max_body_bytes: usize,
    /// Largest pprof protobuf after gunzip, in bytes.
    #[arg(long, env = "PROFSTORE_MAX_DECOMPRESSED_BYTES", default_value_t = 64 << 20)]
    max_decompressed_bytes: usize,
    /// Most series in the store.
    #[arg(long, env = "PROFSTORE_MAX_SERIES", default_value_t = 1_000_000)]
    max_series: usize,
    /// Most labels per series, `__name__` and pprof labels included.
    #[arg(long, env = "PROFSTORE_MAX_LABELS_PER_SERIES", default_value_t = 32)]
    max_labels_per_series: usize,
    /// Longest label name, in bytes.
    #[arg(long, env = "PROFSTORE_MAX_LABEL_NAME_LEN", default_value_t = 1024)]
    max_label_name_len: usize,
    /// Longest label value, in bytes.
    #[arg(long, env = "PROFSTORE_MAX_LABEL_VALUE_LEN", default_value_t = 2048)]
    max_label_value_len: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Push(args) => cli::run_push(args),
        Command::Query(args) => cli::run_query(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("profstore: invalid --log-level {:?}: {e}", args.log_level);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ServeArgs) -> Result<(), String> {
    let mut limits = Limits::default();
    limits.decode.max_compressed_bytes = args.max_body_bytes;
    limits.decode.max_decompressed_bytes = args.max_decompressed_bytes;
    limits.max_series = args.max_series;
    limits.labels.max_labels_per_series = args.max_labels_per_series;
    limits.labels.max_label_name_len = args.max_label_name_len;
    limits.labels.max_label_value_len = args.max_label_value_len;
    let config = StoreConfig {
        data_dir: Some(args.data_dir.clone()),
        limits,
    };
    let store = tokio::task::spawn_blocking(move || Store::open(config))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open the store in {}: {e}", args.data_dir.display()))?;
    let store = Arc::new(store);
    let app = router(AppState {
        store: Arc::clone(&store),
        max_body_bytes: args.max_body_bytes,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "profstore serving");
    // A parseable line for scripts and tests (which may listen on port 0).
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("shutting down: flushing the store");
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("flush failed: {e}"))?;
    tracing::info!("bye");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
