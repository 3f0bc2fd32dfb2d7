//! The `profstore` binary: `profstore serve` runs the HTTP daemon (an
//! ingester with `--bucket`), `profstore querier` the read-only daemon over
//! a bucket's blocks, `profstore compact` the bucket's compactor;
//! `profstore push` and `profstore query` are its command-line client (see
//! [`profstore::cli`]).

use clap::{Parser, Subcommand};
use profstore::bucket::Bucket;
use profstore::cli;
use profstore::config::{self, BackendKind, LimitSettings, ServeConfig, Settings};
use profstore::engine::live::LiveSource;
use profstore::engine::peer::PeerWork;
use profstore::engine::Storage;
use profstore::querier::live::HttpIngester;
use profstore::querier::peers::{HttpPeer, Peer, Peers};
use profstore::querier::{Querier, QuerierConfig};
use profstore::scrape::ScrapeManager;
use profstore::server::{router, AppState};
use profstore::tsdb::{ShipTo, Tsdb, TsdbConfig};
use std::io::{IsTerminal, Write};
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
    Serve(Box<ServeArgs>),
    /// Runs a querier: the HTTP API over the blocks ingesters shipped to a
    /// bucket (read-only).
    Querier(Box<QuerierArgs>),
    /// Runs the compactor of a bucket: merges and deduplicates its blocks
    /// and applies retention (one instance per bucket).
    Compact(Box<CompactArgs>),
    /// Uploads pprof files to a running daemon.
    Push(cli::PushArgs),
    /// Queries a running daemon: series totals, labels, profiles.
    Query(cli::QueryArgs),
}

/// Flags of `profstore serve`. Each has a `PROFSTORE_*` environment twin and
/// a key of the same name in the `--config` file; flags win over the file,
/// the file over the defaults.
#[derive(clap::Args)]
struct ServeArgs {
    /// YAML config file (keys as the flags, with underscores; see README).
    #[arg(long, env = "PROFSTORE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7070] (port 0 picks a free
    /// port; the bound address is printed on stdout as `listening on ADDR`).
    #[arg(long, env = "PROFSTORE_LISTEN")]
    listen: Option<String>,
    /// Data directory, created if missing [default: ./data].
    #[arg(long, env = "PROFSTORE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Storage backend: `tsdb`, the time-series backend, or `duckdb`, the
    /// DuckDB columnar backend in `<data-dir>/profiles.duckdb` (needs a
    /// binary built with `--features duckdb`) [default: tsdb].
    #[arg(long, env = "PROFSTORE_STORAGE")]
    storage: Option<String>,
    /// How long profiles are kept; older ones are refused (time-series
    /// backend only) [default: 15d].
    #[arg(long, env = "PROFSTORE_RETENTION")]
    retention: Option<String>,
    /// How far after the daemon's clock a profile may be stamped; later
    /// ones are refused [default: 10m].
    #[arg(long, env = "PROFSTORE_MAX_FUTURE")]
    max_future: Option<String>,
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or a
    /// tracing `EnvFilter` directive [default: info].
    #[arg(long, env = "PROFSTORE_LOG_LEVEL")]
    log_level: Option<String>,
    /// When the write-ahead log syncs to disk: `always` (before each answer)
    /// or an interval such as `1s` (a power loss can lose that much; a
    /// killed process loses nothing) (time-series backend only) [default: 1s].
    #[arg(long, env = "PROFSTORE_WAL_SYNC")]
    wal_sync: Option<String>,
    /// Span of an on-disk block (a range is cut into a block half a block
    /// after it ends, by the wall clock) (time-series backend only)
    /// [default: 2h].
    #[arg(long, env = "PROFSTORE_BLOCK_DURATION")]
    block_duration: Option<String>,
    /// Largest request body, in bytes (also the largest gzipped pprof)
    /// [default: 33554432].
    #[arg(long, env = "PROFSTORE_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Largest pprof protobuf after gunzip, in bytes [default: 67108864].
    #[arg(long, env = "PROFSTORE_MAX_DECOMPRESSED_BYTES")]
    max_decompressed_bytes: Option<usize>,
    /// Most series in the store [default: 1000000].
    #[arg(long, env = "PROFSTORE_MAX_SERIES")]
    max_series: Option<usize>,
    /// Most labels per series, `__name__` and pprof labels included
    /// [default: 32].
    #[arg(long, env = "PROFSTORE_MAX_LABELS_PER_SERIES")]
    max_labels_per_series: Option<usize>,
    /// Longest label name, in bytes [default: 1024].
    #[arg(long, env = "PROFSTORE_MAX_LABEL_NAME_LEN")]
    max_label_name_len: Option<usize>,
    /// Longest label value, in bytes [default: 2048].
    #[arg(long, env = "PROFSTORE_MAX_LABEL_VALUE_LEN")]
    max_label_value_len: Option<usize>,
    /// Writes are refused (507) while the data directory's filesystem has
    /// less than this many bytes free (0: never) (time-series backend only)
    /// [default: 67108864].
    #[arg(long, env = "PROFSTORE_MIN_FREE_BYTES")]
    min_free_bytes: Option<u64>,
    /// Most bytes of symbol values (stacks, locations, functions,
    /// mappings) the meta store caches in memory; the rest are read from
    /// disk when a query needs them (time-series backend only)
    /// [default: 67108864].
    #[arg(long, env = "PROFSTORE_META_CACHE_BYTES")]
    meta_cache_bytes: Option<usize>,
    /// How long a request body may take to arrive whole, from the end of
    /// its headers; a slower one gets 408 [default: 30s].
    #[arg(long, env = "PROFSTORE_BODY_TIMEOUT")]
    body_timeout: Option<String>,
    /// How long a client may take to send a request's headers; the
    /// connection is closed after it (and after this long idle)
    /// [default: 30s].
    #[arg(long, env = "PROFSTORE_HEADER_TIMEOUT")]
    header_timeout: Option<String>,
    /// Queries that read profiles or totals (query_range, query, profile,
    /// merge, diff) running at once; ingest never waits for them
    /// [default: the number of CPUs, at least 2].
    #[arg(long, env = "PROFSTORE_MAX_CONCURRENT_QUERIES")]
    max_concurrent_queries: Option<usize>,
    /// How long a query waits for a free slot before it gets 503 with
    /// Retry-After (`0s`: refuse at once) [default: 10s].
    #[arg(long, env = "PROFSTORE_QUERY_QUEUE_TIMEOUT")]
    query_queue_timeout: Option<String>,
    /// Most series one query may select; more get 422 [default: 10000].
    #[arg(long, env = "PROFSTORE_MAX_QUERY_SERIES")]
    max_query_series: Option<usize>,
    /// Most samples (stack × pprof labels) the profile of one profile query
    /// may hold; more get 422 [default: 10000000].
    #[arg(long, env = "PROFSTORE_MAX_QUERY_SAMPLES")]
    max_query_samples: Option<usize>,
    /// Ship every block to this bucket (the node becomes an ingester):
    /// `s3://BUCKET[/PREFIX]` (credentials and region from `AWS_*`) or
    /// `file:///DIR` (time-series backend only).
    #[arg(long, env = "PROFSTORE_BUCKET")]
    bucket: Option<String>,
    /// The S3 endpoint, for S3-compatible stores other than AWS (an
    /// `http://` endpoint is used without TLS) [default: AWS_ENDPOINT].
    #[arg(long, env = "PROFSTORE_BUCKET_ENDPOINT")]
    bucket_endpoint: Option<String>,
    /// The S3 region [default: AWS_REGION].
    #[arg(long, env = "PROFSTORE_BUCKET_REGION")]
    bucket_region: Option<String>,
    /// A label of this node written into every shipped block's
    /// descriptor, `NAME=VALUE` (repeatable), e.g. `replica=a`.
    #[arg(long = "external-label", value_parser = parse_label)]
    external_labels: Vec<(String, String)>,
    /// pprof labels kept with each sample instead of making series,
    /// comma-separated ("" for none); `{span_id="…"}` still selects them
    /// [default: span_id,trace_id,profile_id].
    #[arg(long, env = "PROFSTORE_SAMPLE_LABELS")]
    sample_labels: Option<String>,
}

/// Parses `NAME=VALUE`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, v)) if !n.is_empty() => Ok((n.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: want NAME=VALUE")),
    }
}

/// The bucket flags of `profstore querier` and `profstore compact`.
#[derive(clap::Args)]
struct BucketFlags {
    /// The bucket ingesters ship blocks to (`s3://…` or `file:///…`).
    #[arg(long, env = "PROFSTORE_BUCKET")]
    bucket: String,
    /// The S3 endpoint [default: AWS_ENDPOINT].
    #[arg(long, env = "PROFSTORE_BUCKET_ENDPOINT")]
    bucket_endpoint: Option<String>,
    /// The S3 region [default: AWS_REGION].
    #[arg(long, env = "PROFSTORE_BUCKET_REGION")]
    bucket_region: Option<String>,
}

impl BucketFlags {
    /// Opens the bucket.
    fn open(&self) -> Result<Arc<Bucket>, String> {
        let options = profstore::bucket::BucketOptions {
            endpoint: self.bucket_endpoint.clone(),
            region: self.bucket_region.clone(),
            ..Default::default()
        };
        Bucket::open(&self.bucket, &options)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}

/// Flags of `profstore querier`.
#[derive(clap::Args)]
struct QuerierArgs {
    /// Address to listen on [default: 127.0.0.1:7070].
    #[arg(long, env = "PROFSTORE_LISTEN")]
    listen: Option<String>,
    #[command(flatten)]
    bucket: BucketFlags,
    /// Where block ranges read from the bucket are cached (emptied at
    /// start).
    #[arg(long, env = "PROFSTORE_CACHE_DIR", default_value = "./querier-cache")]
    cache_dir: PathBuf,
    /// Most bytes the cache holds (0: no cache) [default: 1 GiB].
    #[arg(long, env = "PROFSTORE_CACHE_SIZE", default_value_t = profstore::querier::DEFAULT_CACHE_BYTES)]
    cache_size: u64,
    /// How often the bucket is listed for new blocks.
    #[arg(long, env = "PROFSTORE_SYNC_INTERVAL", default_value = "30s")]
    sync_interval: String,
    /// The external label that tells replicas apart (e.g. `replica`):
    /// blocks whose external labels differ only in it are copies of one
    /// stream, and each profile counts once [default: none, every block
    /// adds up].
    #[arg(long, env = "PROFSTORE_DEDUP_LABEL")]
    dedup_label: Option<String>,
    /// Ingesters (`http://host:port`, comma-separated) whose profiles not
    /// yet shipped are read too, as of each sync [default: none, the
    /// bucket alone].
    #[arg(long, env = "PROFSTORE_INGESTERS", value_delimiter = ',')]
    ingesters: Vec<String>,
    /// The queriers merges are shared with (`http://host:port`,
    /// comma-separated, the same list on each of them, this one included):
    /// each unit of blocks is read by one of them, chosen by rendezvous
    /// hashing [default: none, every query is read here].
    #[arg(long, env = "PROFSTORE_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// This querier's own URL in `--peers` (its units are read in
    /// process) [default: http://<listen address>].
    #[arg(long, env = "PROFSTORE_ADVERTISE")]
    advertise: Option<String>,
    /// Log filter [default: info].
    #[arg(long, env = "PROFSTORE_LOG_LEVEL")]
    log_level: Option<String>,
}

/// Flags of `profstore compact`.
#[derive(clap::Args)]
struct CompactArgs {
    #[command(flatten)]
    bucket: BucketFlags,
    /// The external label that tells replicas apart; must be the
    /// queriers' `--dedup-label` [default: none].
    #[arg(long, env = "PROFSTORE_DEDUP_LABEL")]
    dedup_label: Option<String>,
    /// Where merged blocks are written before their upload (emptied at
    /// start).
    #[arg(long, env = "PROFSTORE_WORK_DIR", default_value = "./compactor-work")]
    work_dir: PathBuf,
    /// Level ranges, ascending: blocks inside one aligned window of a range
    /// are merged into one.
    #[arg(long, env = "PROFSTORE_RANGES", default_value = "2h,12h,48h")]
    ranges: String,
    /// Blocks that end longer ago than this are deleted [default: kept].
    #[arg(long, env = "PROFSTORE_RETENTION")]
    retention: Option<String>,
    /// Time between marking a block for deletion and deleting it; keep it
    /// well above the queriers' sync interval.
    #[arg(long, env = "PROFSTORE_DELETE_DELAY", default_value = "15m")]
    delete_delay: String,
    /// Time between two passes.
    #[arg(long, env = "PROFSTORE_INTERVAL", default_value = "5m")]
    interval: String,
    /// Runs one pass and exits (status 1 when a merge failed).
    #[arg(long)]
    once: bool,
    /// Serves `/metrics` and `/-/healthy` on this address (port 0: any
    /// free port; the bound address is printed as `listening on ADDR`)
    /// [default: none].
    #[arg(long, env = "PROFSTORE_LISTEN")]
    listen: Option<String>,
    /// Log filter [default: info].
    #[arg(long, env = "PROFSTORE_LOG_LEVEL")]
    log_level: Option<String>,
}

impl ServeArgs {
    fn settings(&self) -> Settings {
        Settings {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            storage: self.storage.clone(),
            retention: self.retention.clone(),
            max_future: self.max_future.clone(),
            block_duration: self.block_duration.clone(),
            log_level: self.log_level.clone(),
            wal_sync: self.wal_sync.clone(),
            limits: LimitSettings {
                max_body_bytes: self.max_body_bytes,
                max_decompressed_bytes: self.max_decompressed_bytes,
                max_series: self.max_series,
                max_labels_per_series: self.max_labels_per_series,
                max_label_name_len: self.max_label_name_len,
                max_label_value_len: self.max_label_value_len,
                min_free_bytes: self.min_free_bytes,
                meta_cache_bytes: self.meta_cache_bytes,
                body_timeout: self.body_timeout.clone(),
                header_timeout: self.header_timeout.clone(),
                max_concurrent_queries: self.max_concurrent_queries,
                query_queue_timeout: self.query_queue_timeout.clone(),
                max_query_series: self.max_query_series,
                max_query_samples: self.max_query_samples,
            },
            scrape_configs: Vec::new(),
            bucket: self.bucket.clone(),
            bucket_endpoint: self.bucket_endpoint.clone(),
            bucket_region: self.bucket_region.clone(),
            sample_labels: self.sample_labels.clone(),
            external_labels: (!self.external_labels.is_empty())
                .then(|| self.external_labels.iter().cloned().collect()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Querier(args) => querier(*args),
        Command::Compact(args) => compact(*args),
        Command::Push(args) => cli::run_push(args),
        Command::Query(args) => cli::run_query(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let file = match &args.config {
        Some(path) => match config::read_file(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("profstore: {e}");
                return ExitCode::from(2);
            }
        },
        None => Settings::default(),
    };
    let config = match config::resolve(&args.settings(), &file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("profstore: {e}");
            return ExitCode::from(2);
        }
    };
    let config_file = args.config.clone();
    start(config, move |config| run(config, config_file))
}

/// Sets up logging and the runtime, then runs `body` to its end.
fn start<F: std::future::Future<Output = Result<(), String>>>(
    config: ServeConfig,
    body: impl FnOnce(ServeConfig) -> F,
) -> ExitCode {
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("profstore: invalid log level {:?}: {e}", config.log_level);
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
    let result = runtime.block_on(body(config));
    // A scrape abandoned at shutdown may still wait on its target on the
    // blocking pool; its result is discarded, so do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ServeConfig, config_file: Option<PathBuf>) -> Result<(), String> {
    match config.storage {
        BackendKind::Tsdb => run_tsdb(config, config_file).await,
        #[cfg(feature = "duckdb")]
        BackendKind::DuckDb => run_duckdb(config, config_file).await,
        // `config::resolve` rejects `duckdb` in a build without it.
        #[cfg(not(feature = "duckdb"))]
        BackendKind::DuckDb => Err(config::DUCKDB_BUILD_HINT.to_string()),
    }
}

/// `profstore querier`: the daemon's HTTP API over a [`Querier`].
fn querier(args: QuerierArgs) -> ExitCode {
    let settings = Settings {
        listen: args.listen.clone(),
        log_level: args.log_level.clone(),
        ..Settings::default()
    };
    let config = match config::resolve(&settings, &Settings::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("profstore: {e}");
            return ExitCode::from(2);
        }
    };
    let sync_ms = match profstore::model::time::parse_duration(&args.sync_interval) {
        Ok(ms) if ms > 0 => ms,
        _ => {
            eprintln!(
                "profstore: --sync-interval {:?}: want a positive duration such as 30s",
                args.sync_interval
            );
            return ExitCode::from(2);
        }
    };
    let bucket = match args.bucket.open() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("profstore: {e}");
            return ExitCode::from(2);
        }
    };
    let qconfig = QuerierConfig {
        bucket,
        cache_dir: Some(args.cache_dir.clone()),
        cache_bytes: args.cache_size,
        limits: config.limits.clone(),
        sync_interval: std::time::Duration::from_millis(sync_ms as u64),
        dedup_label: args.dedup_label.clone(),
        ingesters: args
            .ingesters
            .iter()
            .filter(|u| !u.trim().is_empty())
            .map(|u| Arc::new(HttpIngester::new(u.trim())) as Arc<dyn LiveSource>)
            .collect(),
        peers: Peers {
            peers: args
                .peers
                .iter()
                .filter(|u| !u.trim().is_empty())
                .map(|u| Arc::new(HttpPeer::new(u.trim())) as Arc<dyn Peer>)
                .collect(),
            own_name: Some(
                args.advertise
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", config.listen))
                    .trim_end_matches('/')
                    .to_string(),
            ),
            ..Peers::default()
        },
    };
    start(config, move |config| async move {
        let q = tokio::task::spawn_blocking(move || Querier::open(qconfig))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot open the querier: {e}"))?;
        tracing::info!(
            bucket = q.bucket().url(),
            "querier over the bucket's blocks"
        );
        let q = Arc::new(q);
        let internal = Internal {
            live: None,
            peer: Some(Arc::clone(&q) as Arc<dyn PeerWork>),
        };
        run_storage(q, &config, None, internal).await
    })
}

/// Parses a duration flag: `name` for the error.
fn duration_flag(name: &str, value: &str, allow_zero: bool) -> Result<i64, String> {
    match profstore::model::time::parse_duration(value) {
        Ok(ms) if ms > 0 || (allow_zero && ms == 0) => Ok(ms),
        _ => Err(format!(
            "--{name} {value:?}: want a {} duration such as 30s",
            if allow_zero {
                "non-negative"
            } else {
                "positive"
            }
        )),
    }
}

/// `profstore compact`: the bucket's compactor, until SIGINT or SIGTERM
/// (or one pass with `--once`).
fn compact(args: CompactArgs) -> ExitCode {
    use profstore::compactor::{Compactor, CompactorConfig, DEFAULT_ORPHAN_AGE};
    let settings = Settings {
        log_level: args.log_level.clone(),
        ..Settings::default()
    };
    let parsed = (|| -> Result<_, String> {
        let config = config::resolve(&settings, &Settings::default()).map_err(|e| e.to_string())?;
        let mut ranges = Vec::new();
        for r in args.ranges.split(',') {
            ranges.push(duration_flag("ranges", r.trim(), false)?);
        }
        if ranges.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "--ranges {:?}: want ascending durations",
                args.ranges
            ));
        }
        let retention = match &args.retention {
            Some(r) => Some(duration_flag("retention", r, false)?),
            None => None,
        };
        let delay = duration_flag("delete-delay", &args.delete_delay, true)?;
        let interval = duration_flag("interval", &args.interval, false)?;
        let bucket = args.bucket.open()?;
        let cconfig = CompactorConfig {
            bucket,
            work_dir: args.work_dir.clone(),
            dedup_label: args.dedup_label.clone(),
            ranges_ms: ranges,
            retention_ms: retention,
            delete_delay: std::time::Duration::from_millis(delay as u64),
            orphan_age: DEFAULT_ORPHAN_AGE,
            clock: profstore::ingest::Clock::system(),
        };
        Ok((
            config,
            cconfig,
            std::time::Duration::from_millis(interval as u64),
        ))
    })();
    let (config, cconfig, interval) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("profstore: {e}");
            return ExitCode::from(2);
        }
    };
    let once = args.once;
    let listen = args.listen.clone();
    start(config, move |_| async move {
        let c = tokio::task::spawn_blocking(move || Compactor::open(cconfig))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot open the compactor: {e}"))?;
        let c = Arc::new(c);
        if once {
            let stats = tokio::task::spawn_blocking(move || c.run_once())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("compaction failed: {e}"))?;
            println!(
                "merged {} blocks into {}, marked {}, deleted {}, failed {}; block bytes {} -> {}",
                stats.inputs,
                stats.merged,
                stats.marked,
                stats.deleted,
                stats.failed,
                stats.bytes_before,
                stats.bytes_after
            );
            return if stats.failed > 0 {
                Err(format!("{} merges failed", stats.failed))
            } else {
                Ok(())
            };
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shutdown = shutdown_signal()?;
        if let Some(addr) = &listen {
            serve_compactor_metrics(addr, &c).await?;
        }
        let worker = {
            let stop = Arc::clone(&stop);
            tokio::task::spawn_blocking(move || c.run(interval, &stop))
        };
        shutdown.await;
        tracing::info!("stopping after the current pass");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        worker.await.map_err(|e| e.to_string())
    })
}

/// Serves the compactor's `/metrics` (and `/-/healthy`) on `addr` until
/// the process ends.
async fn serve_compactor_metrics(
    addr: &str,
    c: &Arc<profstore::compactor::Compactor>,
) -> Result<(), String> {
    use axum::routing::get;
    let mut registry = prometheus_client::registry::Registry::with_prefix("profstore");
    c.register_metrics(&mut registry);
    let registry = Arc::new(registry);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = Arc::clone(&registry);
                async move {
                    let mut out = String::new();
                    // Writing into a String cannot fail.
                    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        out,
                    )
                }
            }),
        )
        .route(
            "/-/healthy",
            get(|| async { "profstore compactor is Healthy.\n" }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {bound}");
    tokio::spawn(profstore::server::serve(
        listener,
        app,
        std::time::Duration::from_secs(10),
        std::future::pending(),
    ));
    Ok(())
}

/// Runs the daemon over the time-series backend: recovery logs, the
/// maintenance thread (block cuts, retention), and the head snapshot at
/// shutdown.
async fn run_tsdb(config: ServeConfig, config_file: Option<PathBuf>) -> Result<(), String> {
    let mut limits = config.limits.clone();
    limits.time.retention_ms = Some(config.retention_ms);
    let store_config = TsdbConfig {
        data_dir: Some(config.data_dir.clone()),
        limits,
        wal: config.wal,
        block_duration_ms: config.block_duration_ms,
        min_free_bytes: config.min_free_bytes,
        meta_cache_bytes: config.meta_cache_bytes,
        ship: match &config.bucket {
            Some((url, options)) => Some(ShipTo {
                bucket: Arc::new(Bucket::open(url, options).map_err(|e| format!("--bucket: {e}"))?),
                external_labels: config.external_labels.clone(),
            }),
            None => None,
        },
    };
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Tsdb::open(store_config))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open the store in {}: {e}", data_dir.display()))?;
    let r = store.recovery();
    tracing::info!(
        blocks = r.blocks,
        damaged_blocks = r.damaged_blocks,
        snapshot_series = r.snapshot_series,
        elapsed_ms = r.load_elapsed.as_millis() as u64,
        "blocks and head snapshot loaded"
    );
    tracing::info!(
        profiles = r.profiles,
        skipped = r.skipped,
        failed = r.failed,
        records = r.wal.records,
        bytes = r.wal.bytes,
        damaged = r.wal.corruptions.len(),
        elapsed_ms = r.wal.elapsed.as_millis() as u64,
        "write-ahead log replayed"
    );
    if let Some(s) = store.shipper() {
        tracing::info!(
            bucket = s.bucket().url(),
            pending = s.num_pending(),
            "shipping blocks"
        );
    }
    tracing::info!("on shutdown: the head snapshot is written");
    let store = Arc::new(store);
    // An ingester serves queriers the profiles it has not shipped yet.
    let live = store
        .shipper()
        .is_some()
        .then(|| Arc::clone(&store) as Arc<dyn LiveSource>);
    let internal = Internal { live, peer: None };
    run_storage(store, &config, config_file, internal).await
}

/// Runs the daemon over the DuckDB backend in `<data_dir>/profiles.duckdb`:
/// no retention, no blocks, no write-ahead log of profstore's own (DuckDB
/// keeps its own); a checkpoint at shutdown.
#[cfg(feature = "duckdb")]
async fn run_duckdb(config: ServeConfig, config_file: Option<PathBuf>) -> Result<(), String> {
    use profstore::columnar::Columnar;
    let data_dir = config.data_dir.clone();
    let path = data_dir.join(DUCKDB_FILE);
    let limits = config.limits.clone();
    let open_path = path.clone();
    let db = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        Columnar::open_with(Some(&open_path), limits).map_err(|e| {
            format!(
                "cannot open the DuckDB database {}: {e}",
                open_path.display()
            )
        })
    })
    .await
    .map_err(|e| e.to_string())??;
    tracing::info!(
        path = %path.display(),
        series = db.num_series(),
        "DuckDB backend opened"
    );
    tracing::info!("the DuckDB backend keeps every profile: retention is not enforced");
    if !config.tsdb_settings_given.is_empty() {
        tracing::warn!(
            "ignored with --storage duckdb (time-series backend only): {}",
            config.tsdb_settings_given.join(", ")
        );
    }
    tracing::info!("on shutdown: the DuckDB database is checkpointed");
    run_storage(Arc::new(db), &config, config_file, Internal::default()).await
}

/// The DuckDB backend's database file in the data directory.
#[cfg(feature = "duckdb")]
const DUCKDB_FILE: &str = "profiles.duckdb";

/// The internal routes a node serves besides the API: an ingester's live
/// data, a querier's units for its peers.
#[derive(Default)]
struct Internal {
    live: Option<Arc<dyn LiveSource>>,
    peer: Option<Arc<dyn PeerWork>>,
}

/// Starts the backend's background work, serves until SIGINT or SIGTERM,
/// then closes the backend (making it durable for the next start).
async fn run_storage(
    storage: Arc<dyn Storage>,
    config: &ServeConfig,
    config_file: Option<PathBuf>,
    internal: Internal,
) -> Result<(), String> {
    Arc::clone(&storage)
        .start_background()
        .map_err(|e| format!("cannot start the background work: {e}"))?;
    serve_backend(Arc::clone(&storage), config, config_file, internal).await?;
    tracing::info!("closing the storage");
    tokio::task::spawn_blocking(move || storage.close())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("shutdown failed: {e}"))?;
    tracing::info!("bye");
    Ok(())
}

/// Serves HTTP and scrapes over `backend` until SIGINT or SIGTERM; returns
/// once the server stopped and no scrape ingest is in flight, so the
/// caller can flush the backend.
async fn serve_backend(
    backend: Arc<dyn Storage>,
    config: &ServeConfig,
    config_file: Option<PathBuf>,
    internal: Internal,
) -> Result<(), String> {
    let mut state =
        AppState::new(backend, config.max_body_bytes).with_limits(config.server.clone());
    if let Some(live) = internal.live {
        state = state.with_live(live);
    }
    if let Some(peer) = internal.peer {
        state = state.with_peer_work(peer);
    }
    let scrape = Arc::clone(&state.scrape);
    scrape.set_job_source(config_file.map(|path| {
        Arc::new(move || config::read_scrape_jobs(&path).map_err(|e| e.to_string()))
            as profstore::scrape::JobSource
    }));
    let started = scrape.apply(&config.scrape).await;
    if started.added > 0 {
        tracing::info!(loops = started.added, "scraping");
    }
    let app = router(state);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        %addr,
        data_dir = %config.data_dir.display(),
        storage = %config.storage,
        "profstore serving"
    );
    // A parseable line for scripts and tests (which may listen on port 0).
    let shutdown = shutdown_signal()?;
    reload_on_sighup(Arc::clone(&scrape))?;
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    profstore::server::serve(listener, app, config.server.header_timeout, shutdown).await;
    tracing::info!("shutting down: stopping the scrapes");
    scrape.stop().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// right after `listening on` is printed still shuts down cleanly.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot listen for SIGINT: {e}"))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

/// Reloads the scrape configuration on every SIGHUP (a bad file keeps the
/// running configuration and logs why). The handler is installed before
/// `listening on` is printed, as SIGHUP's default action ends the process.
fn reload_on_sighup(scrape: Arc<ScrapeManager>) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup =
        signal(SignalKind::hangup()).map_err(|e| format!("cannot listen for SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match scrape.reload().await {
                Ok(s) => tracing::info!(
                    added = s.added,
                    removed = s.removed,
                    unchanged = s.unchanged,
                    "SIGHUP: scrape configuration reloaded"
                ),
                Err(e) => tracing::error!(
                    "SIGHUP: reload failed, keeping the previous configuration: {e}"
                ),
            }
        }
    });
    Ok(())
}
