//! The daemon's configuration: defaults, a YAML file (`--config`) and flags
//! (or their `PROFSTORE_*` environment twins), in rising precedence.
//!
//! Every setting has the same name in the three places (the flag spells it
//! with dashes, the file and [`Settings`] with underscores):
//!
//! ```yaml
//! listen: 127.0.0.1:7070
//! data_dir: ./data
//! storage: tsdb         # or `duckdb` (a binary built with the `duckdb` feature)
//! retention: 15d        # older profiles are refused, and deleted
//! max_future: 10m       # profiles stamped later than now + this are refused
//! block_duration: 2h    # span of an on-disk block
//! log_level: info
//! wal_sync: 1s          # or `always`
//! bucket: s3://profiles/prod   # ship every block there (an ingester); also file:///DIR
//! bucket_endpoint: http://127.0.0.1:8333   # S3-compatible stores other than AWS
//! bucket_region: us-east-1
//! external_labels:      # written into every shipped block's descriptor
//!   replica: a
//! sample_labels: span_id,trace_id,profile_id   # pprof labels kept per sample, not as series ("" for none)
//! limits:
//!   max_body_bytes: 33554432
//!   max_decompressed_bytes: 67108864
//!   max_series: 1000000
//!   max_labels_per_series: 32
//!   max_label_name_len: 1024
//!   max_label_value_len: 2048
//!   min_free_bytes: 67108864   # writes get 507 below this much free disk
//!   meta_cache_bytes: 67108864 # symbols (stacks, locations, ...) cached in memory
//!   # request bounds of the HTTP server (see `server::limits`)
//!   body_timeout: 30s          # a request body must arrive whole within this (408)
//!   header_timeout: 30s        # request headers within this; also closes idle connections
//!   max_concurrent_queries: 2  # queries reading profiles at once [default: CPUs, at least 2]
//!   query_queue_timeout: 10s   # wait for a query slot, then 503 (0s: do not wait)
//!   max_query_series: 10000    # series one query may select (422)
//!   max_query_samples: 10000000  # samples one profile query may hold (422)
//! ```
//!
//! Unknown keys are an error, so a typo never silently falls back to a
//! default; so is `storage: duckdb` in a binary built without the `duckdb`
//! cargo feature (the message says how to build one with it).
//!
//! `retention`, `block_duration` and `wal_sync` configure the time-series
//! store only: the DuckDB backend ignores them (the daemon says so at
//! start).
//!
//! The file (only) may also hold `scrape_configs`, the targets to scrape
//! (see [`crate::scrape::config`] for the format). They are validated when
//! the file is read, and every error names the file and the line.

use crate::bucket::BucketOptions;
use crate::engine::Limits;
use crate::model::time::parse_duration;
use crate::scrape::config::{self as scrape_config, ScrapeConfigFile, ScrapeJob};
use crate::server::ServerLimits;
use crate::tsdb::wal::{SyncPolicy, WalOptions};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings as given in one place (file or flags); `None` is "not given".
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Storage backend: `tsdb` or `duckdb`.
    pub storage: Option<String>,
    /// How long profiles are kept, as a duration (`15d`, `12h`).
    pub retention: Option<String>,
    /// How far after the daemon's clock a profile may be stamped (`10m`).
    pub max_future: Option<String>,
    /// Span of an on-disk block, as a duration (`2h`).
    pub block_duration: Option<String>,
    /// Log filter.
    pub log_level: Option<String>,
    /// WAL sync policy: `always` or an interval.
    pub wal_sync: Option<String>,
    /// The bucket blocks are shipped to (`s3://…`, `file:///…`).
    pub bucket: Option<String>,
    /// The S3 endpoint of the bucket.
    pub bucket_endpoint: Option<String>,
    /// The S3 region of the bucket.
    pub bucket_region: Option<String>,
    /// The node's external labels (`replica: a`).
    pub external_labels: Option<BTreeMap<String, String>>,
    /// pprof labels kept per sample, comma-separated ("" for none).
    pub sample_labels: Option<String>,
    /// Limits.
    #[serde(default)]
    pub limits: LimitSettings,
    /// Scrape jobs (file only; see [`crate::scrape::config`]).
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfigFile>,
}

/// The limit settings; `None` is "not given".
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest request body, bytes.
    pub max_body_bytes: Option<usize>,
    /// Largest pprof after gunzip, bytes.
    pub max_decompressed_bytes: Option<usize>,
    /// Most series.
    pub max_series: Option<usize>,
    /// Most labels per series.
    pub max_labels_per_series: Option<usize>,
    /// Longest label name, bytes.
    pub max_label_name_len: Option<usize>,
    /// Longest label value, bytes.
    pub max_label_value_len: Option<usize>,
    /// Free disk space below which writes are refused, bytes.
    pub min_free_bytes: Option<u64>,
    /// Bytes of symbol values the meta store caches in memory.
    pub meta_cache_bytes: Option<usize>,
    /// How long a request body may take to arrive, as a duration.
    pub body_timeout: Option<String>,
    /// How long request headers may take to arrive, as a duration.
    pub header_timeout: Option<String>,
    /// Expensive queries running at once.
    pub max_concurrent_queries: Option<usize>,
    /// How long a query waits for a slot, as a duration.
    pub query_queue_timeout: Option<String>,
    /// Most series one query may select.
    pub max_query_series: Option<usize>,
    /// Most samples one profile query may hold.
    pub max_query_samples: Option<usize>,
}

/// The storage backend of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// The time-series backend ([`crate::tsdb::Tsdb`]): the default.
    #[default]
    Tsdb,
    /// The DuckDB columnar backend (`<data_dir>/profiles.duckdb`); only in a
    /// binary built with the `duckdb` feature.
    DuckDb,
}

impl BackendKind {
    /// The setting's values, as the messages list them.
    pub const NAMES: &'static str = "tsdb, duckdb";

    /// The setting's value of `self`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Tsdb => "tsdb",
            BackendKind::DuckDb => "duckdb",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to get a binary with the DuckDB backend (in the error for
/// `storage: duckdb` without it).
pub const DUCKDB_BUILD_HINT: &str = "this profstore was built without the `duckdb` cargo feature; \
     rebuild it with: eval \"$(bash scripts/setup-duckdb)\"; cargo build --release --features duckdb";

/// Parses the `storage` setting; `duckdb` only when this binary has the
/// `duckdb` feature.
fn storage_setting(value: &str) -> Result<BackendKind, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        name: "storage",
        message,
    };
    match value {
        "tsdb" => Ok(BackendKind::Tsdb),
        "duckdb" if cfg!(feature = "duckdb") => Ok(BackendKind::DuckDb),
        "duckdb" => Err(invalid(format!("\"duckdb\": {DUCKDB_BUILD_HINT}"))),
        other => Err(invalid(format!(
            "{other:?}: unknown storage backend (allowed: {})",
            BackendKind::NAMES
        ))),
    }
}

/// The resolved configuration of `profstore serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The storage backend.
    pub storage: BackendKind,
    /// The settings of the time-series backend only (`retention`,
    /// `block_duration`, `wal_sync`) given in the flags or the file, so the
    /// daemon can warn that another backend ignores them.
    pub tsdb_settings_given: Vec<&'static str>,
    /// Retention in ms.
    pub retention_ms: i64,
    /// Free disk space below which writes are refused (time-series backend).
    pub min_free_bytes: u64,
    /// Bytes of symbol values the meta store caches (time-series backend).
    pub meta_cache_bytes: usize,
    /// Block span in ms.
    pub block_duration_ms: i64,
    /// Log filter.
    pub log_level: String,
    /// WAL options.
    pub wal: WalOptions,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// The store's limits.
    pub limits: Limits,
    /// The scrape jobs of the file.
    pub scrape: Vec<ScrapeJob>,
    /// The HTTP server's bounds on requests.
    pub server: ServerLimits,
    /// The bucket to ship blocks to: its URL and options.
    pub bucket: Option<(String, BucketOptions)>,
    /// The node's external labels.
    pub external_labels: BTreeMap<String, String>,
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default retention.
pub const DEFAULT_RETENTION: &str = "15d";
/// Parses the duration setting `name`, which must be at least `min_ms`.
fn duration_setting(name: &'static str, value: &str, min_ms: i64) -> Result<i64, ConfigError> {
    match parse_duration(value) {
        Ok(ms) if ms >= min_ms => Ok(ms),
        Ok(_) if min_ms <= 1 => Err(ConfigError::Invalid {
            name,
            message: format!("{value:?}: must be positive"),
        }),
        Ok(_) => Err(ConfigError::Invalid {
            name,
            message: format!("{value:?}: must be at least {} s", min_ms / 1000),
        }),
        Err(message) => Err(ConfigError::Invalid { name, message }),
    }
}

/// Default block span.
pub const DEFAULT_BLOCK_DURATION: &str = "2h";
/// Default largest request body: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// Errors of the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The YAML parser's message.
        message: String,
    },
    /// A setting has an invalid value.
    #[error("invalid {name}: {message}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Reads a YAML config file and validates its `scrape_configs` (an error
/// names the file and the line).
pub fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    read_file_and_jobs(path).map(|(settings, _)| settings)
}

/// Reads a YAML config file: its settings and its validated scrape jobs.
pub fn read_file_and_jobs(path: &Path) -> Result<(Settings, Vec<ScrapeJob>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let settings = parse_yaml(&text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })?;
    let jobs = scrape_config::validate(&settings.scrape_configs).map_err(|e| {
        // Worded as the YAML parser's own errors: "path: what at line L
        // column C".
        let at = scrape_config::locate(&text, &e.path)
            .map(|(line, col)| format!(" at line {line} column {col}"))
            .unwrap_or_default();
        ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("{e}{at}"),
        }
    })?;
    Ok((settings, jobs))
}

/// The validated scrape jobs of a config file (what a reload applies).
pub fn read_scrape_jobs(path: &Path) -> Result<Vec<ScrapeJob>, ConfigError> {
    read_file_and_jobs(path).map(|(_, jobs)| jobs)
}

/// Parses YAML settings (an empty document is no settings).
pub fn parse_yaml(text: &str) -> Result<Settings, String> {
    if text.trim().is_empty() {
        return Ok(Settings::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
}

/// Resolves `flags` over `file` over the defaults.
pub fn resolve(flags: &Settings, file: &Settings) -> Result<ServeConfig, ConfigError> {
    let pick = |f: &Option<String>, g: &Option<String>, d: &str| -> String {
        f.clone()
            .or_else(|| g.clone())
            .unwrap_or_else(|| d.to_string())
    };
    let listen = pick(&flags.listen, &file.listen, DEFAULT_LISTEN);
    let listen: SocketAddr = listen.parse().map_err(|e| ConfigError::Invalid {
        name: "listen",
        message: format!("{listen:?}: {e}"),
    })?;
    let data_dir = flags
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let storage = storage_setting(&pick(&flags.storage, &file.storage, "tsdb"))?;
    let tsdb_settings_given = [
        (
            "retention",
            flags.retention.is_some() || file.retention.is_some(),
        ),
        (
            "block_duration",
            flags.block_duration.is_some() || file.block_duration.is_some(),
        ),
        (
            "wal_sync",
            flags.wal_sync.is_some() || file.wal_sync.is_some(),
        ),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    let retention = pick(&flags.retention, &file.retention, DEFAULT_RETENTION);
    let retention_ms = duration_setting("retention", &retention, 1)?;
    let max_future = pick(&flags.max_future, &file.max_future, "10m");
    let max_future_ms = duration_setting("max_future", &max_future, 0)?;
    let block_duration = pick(
        &flags.block_duration,
        &file.block_duration,
        DEFAULT_BLOCK_DURATION,
    );
    let block_duration_ms = duration_setting("block_duration", &block_duration, 1000)?;
    let wal_sync = pick(&flags.wal_sync, &file.wal_sync, "1s");
    let sync: SyncPolicy = wal_sync.parse().map_err(|message| ConfigError::Invalid {
        name: "wal_sync",
        message,
    })?;
    let (fl, fi) = (&flags.limits, &file.limits);
    let lim = |f: Option<usize>, g: Option<usize>, d: usize| f.or(g).unwrap_or(d);
    let mut limits = Limits::default();
    limits.time.max_future_ms = max_future_ms;
    let max_body_bytes = lim(fl.max_body_bytes, fi.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    limits.decode.max_compressed_bytes = max_body_bytes;
    limits.decode.max_decompressed_bytes = lim(
        fl.max_decompressed_bytes,
        fi.max_decompressed_bytes,
        limits.decode.max_decompressed_bytes,
    );
    limits.max_series = lim(fl.max_series, fi.max_series, limits.max_series);
    let l = &mut limits.labels;
    l.max_labels_per_series = lim(
        fl.max_labels_per_series,
        fi.max_labels_per_series,
        l.max_labels_per_series,
    );
    l.max_label_name_len = lim(
        fl.max_label_name_len,
        fi.max_label_name_len,
        l.max_label_name_len,
    );
    l.max_label_value_len = lim(
        fl.max_label_value_len,
        fi.max_label_value_len,
        l.max_label_value_len,
    );
    if let Some(names) = flags.sample_labels.as_ref().or(file.sample_labels.as_ref()) {
        l.sample_labels = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = l.sample_labels.iter().find(|n| !valid_label_name(n)) {
            return Err(ConfigError::Invalid {
                name: "sample_labels",
                message: format!("{bad:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
            });
        }
    }
    let min_free_bytes = fl
        .min_free_bytes
        .or(fi.min_free_bytes)
        .unwrap_or(crate::tsdb::DEFAULT_MIN_FREE_BYTES);
    let meta_cache_bytes = fl
        .meta_cache_bytes
        .or(fi.meta_cache_bytes)
        .unwrap_or(crate::tsdb::meta::DEFAULT_CACHE_BYTES);
    if meta_cache_bytes == 0 {
        return Err(ConfigError::Invalid {
            name: "meta_cache_bytes",
            message: "must be more than 0".into(),
        });
    }
    let server = server_limits(fl, fi)?;
    let bucket = flags.bucket.clone().or_else(|| file.bucket.clone());
    let bucket_options = BucketOptions {
        endpoint: flags
            .bucket_endpoint
            .clone()
            .or_else(|| file.bucket_endpoint.clone()),
        region: flags
            .bucket_region
            .clone()
            .or_else(|| file.bucket_region.clone()),
        ..BucketOptions::default()
    };
    if bucket.is_some() && storage != BackendKind::Tsdb {
        return Err(ConfigError::Invalid {
            name: "bucket",
            message: "blocks are shipped by the time-series backend only (storage: tsdb)".into(),
        });
    }
    let external_labels = flags
        .external_labels
        .clone()
        .or_else(|| file.external_labels.clone())
        .unwrap_or_default();
    let mut as_labels = crate::model::Labels::new();
    for (name, value) in &external_labels {
        if value.is_empty() {
            return Err(ConfigError::Invalid {
                name: "external_labels",
                message: format!("label {name:?} has an empty value"),
            });
        }
        as_labels.set(name.clone(), value.clone());
    }
    crate::ingest::check_writer_labels(&as_labels, &limits.labels).map_err(|e| {
        ConfigError::Invalid {
            name: "external_labels",
            message: e.to_string(),
        }
    })?;
    let scrape =
        scrape_config::validate(&file.scrape_configs).map_err(|e| ConfigError::Invalid {
            name: "scrape_configs",
            message: e.to_string(),
        })?;
    Ok(ServeConfig {
        scrape,
        listen,
        data_dir,
        storage,
        tsdb_settings_given,
        retention_ms,
        min_free_bytes,
        meta_cache_bytes,
        block_duration_ms,
        log_level: pick(&flags.log_level, &file.log_level, "info"),
        wal: WalOptions {
            sync,
            ..WalOptions::default()
        },
        max_body_bytes,
        limits,
        server,
        bucket: bucket.map(|url| (url, bucket_options)),
        external_labels,
    })
}

/// Resolves the server's request bounds (`limits.body_timeout`, …) of
/// `flags` over `file` over the defaults.
fn server_limits(flags: &LimitSettings, file: &LimitSettings) -> Result<ServerLimits, ConfigError> {
    let defaults = ServerLimits::default();
    let duration = |name: &'static str,
                    f: &Option<String>,
                    g: &Option<String>,
                    default: Duration,
                    zero_ok: bool|
     -> Result<Duration, ConfigError> {
        let Some(value) = f.as_ref().or(g.as_ref()) else {
            return Ok(default);
        };
        let invalid = |message: String| ConfigError::Invalid { name, message };
        match parse_duration(value) {
            Ok(ms) if ms > 0 || (zero_ok && ms == 0) => Ok(Duration::from_millis(ms as u64)),
            Ok(_) if zero_ok => Err(invalid(format!("{value:?}: must not be negative"))),
            Ok(_) => Err(invalid(format!("{value:?}: must be positive"))),
            Err(message) => Err(invalid(message)),
        }
    };
    let max_concurrent_queries = flags
        .max_concurrent_queries
        .or(file.max_concurrent_queries)
        .unwrap_or(defaults.max_concurrent_queries);
    if max_concurrent_queries == 0 {
        return Err(ConfigError::Invalid {
            name: "limits.max_concurrent_queries",
            message: "0: must be at least 1".into(),
        });
    }
    Ok(ServerLimits {
        body_timeout: duration(
            "limits.body_timeout",
            &flags.body_timeout,
            &file.body_timeout,
            defaults.body_timeout,
            false,
        )?,
        header_timeout: duration(
            "limits.header_timeout",
            &flags.header_timeout,
            &file.header_timeout,
            defaults.header_timeout,
            false,
        )?,
        max_concurrent_queries,
        query_queue_timeout: duration(
            "limits.query_queue_timeout",
            &flags.query_queue_timeout,
            &file.query_queue_timeout,
            defaults.query_queue_timeout,
            true,
        )?,
        max_query_series: flags
            .max_query_series
            .or(file.max_query_series)
            .unwrap_or(defaults.max_query_series),
        max_query_samples: flags
            .max_query_samples
            .or(file.max_query_samples)
            .unwrap_or(defaults.max_query_samples),
    })
}

/// True for a Prometheus label name that is not reserved.
fn valid_label_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        && !n.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_flags_in_rising_precedence() {
        let none = Settings::default();
        let c = resolve(&none, &none).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.retention_ms, 15 * 86_400_000);
        assert_eq!(c.wal.sync, SyncPolicy::default());
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.limits.max_series, 1_000_000);
        assert_eq!(c.storage, BackendKind::Tsdb);
        assert!(c.tsdb_settings_given.is_empty());

        let file = parse_yaml(
            "listen: 0.0.0.0:9000\nretention: 2d\nwal_sync: always\nlimits:\n  max_series: 10\n  max_body_bytes: 100\n",
        )
        .unwrap();
        let c = resolve(&none, &file).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.retention_ms, 2 * 86_400_000);
        assert_eq!(c.wal.sync, SyncPolicy::Always);
        assert_eq!(c.limits.max_series, 10);
        assert_eq!(c.limits.decode.max_compressed_bytes, 100);
        assert_eq!(c.tsdb_settings_given, ["retention", "wal_sync"]);

        let mut flags = Settings {
            retention: Some("12h".into()),
            ..Default::default()
        };
        flags.limits.max_series = Some(20);
        let c = resolve(&flags, &file).unwrap();
        assert_eq!(c.retention_ms, 12 * 3_600_000);
        assert_eq!(c.limits.max_series, 20);
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
    }

    #[test]
    fn meta_cache_bytes_defaults_and_refuses_zero() {
        let none = Settings::default();
        let c = resolve(&none, &none).unwrap();
        assert_eq!(c.meta_cache_bytes, crate::tsdb::meta::DEFAULT_CACHE_BYTES);
        let file = parse_yaml("limits:\n  meta_cache_bytes: 1048576\n").unwrap();
        assert_eq!(resolve(&none, &file).unwrap().meta_cache_bytes, 1 << 20);
        let mut flags = Settings::default();
        flags.limits.meta_cache_bytes = Some(0);
        let e = resolve(&flags, &file).unwrap_err().to_string();
        assert!(e.contains("meta_cache_bytes"), "{e}");
    }

    #[test]
    fn bucket_and_external_labels_resolve_and_are_checked() {
        let none = Settings::default();
        let c = resolve(&none, &none).unwrap();
        assert!(c.bucket.is_none() && c.external_labels.is_empty());
        let file = parse_yaml(
            "bucket: s3://b/p\nbucket_endpoint: http://127.0.0.1:8333\nexternal_labels:\n  replica: a\n",
        )
        .unwrap();
        let c = resolve(&none, &file).unwrap();
        let (url, options) = c.bucket.unwrap();
        assert_eq!(url, "s3://b/p");
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(c.external_labels["replica"], "a");
        let flags = Settings {
            external_labels: Some([("replica".to_string(), "b".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&flags, &file).unwrap().external_labels["replica"],
            "b"
        );
        let bad = Settings {
            external_labels: Some([("__replica".to_string(), "b".to_string())].into()),
            ..Default::default()
        };
        let e = resolve(&bad, &none).unwrap_err().to_string();
        assert!(e.contains("external_labels"), "{e}");
        let duck = parse_yaml("storage: duckdb\nbucket: file:///x\n").unwrap();
        if let Err(e) = resolve(&none, &duck) {
            assert!(
                e.to_string().contains("bucket") || e.to_string().contains("duckdb"),
                "{e}"
            );
        }
        assert!(resolve(&none, &duck).is_err());
    }

    #[test]
    fn sample_labels_resolve_and_are_checked() {
        let none = Settings::default();
        let c = resolve(&none, &none).unwrap();
        assert_eq!(
            c.limits.labels.sample_labels,
            ["span_id", "trace_id", "profile_id"]
        );
        let file = parse_yaml("sample_labels: request_id, span_id\n").unwrap();
        let c = resolve(&none, &file).unwrap();
        assert_eq!(c.limits.labels.sample_labels, ["request_id", "span_id"]);
        let flags = Settings {
            sample_labels: Some(String::new()),
            ..Default::default()
        };
        assert!(resolve(&flags, &file)
            .unwrap()
            .limits
            .labels
            .sample_labels
            .is_empty());
        let bad = parse_yaml("sample_labels: span-id\n").unwrap();
        let e = resolve(&none, &bad).unwrap_err().to_string();
        assert!(e.contains("sample_labels") && e.contains("span-id"), "{e}");
    }

    #[test]
    fn bad_settings_are_named() {
        let none = Settings::default();
        assert!(parse_yaml("").unwrap() == none);
        let e = parse_yaml("retension: 2d\n").unwrap_err();
        assert!(e.contains("retension"), "{e}");
        let e = parse_yaml("limits:\n  max_series: many\n").unwrap_err();
        assert!(e.contains("max_series"), "{e}");
        for (flags, name) in [
            (
                Settings {
                    retention: Some("soon".into()),
                    ..Default::default()
                },
                "retention",
            ),
            (
                Settings {
                    listen: Some("nowhere".into()),
                    ..Default::default()
                },
                "listen",
            ),
            (
                Settings {
                    wal_sync: Some("never".into()),
                    ..Default::default()
                },
                "wal_sync",
            ),
            (
                Settings {
                    storage: Some("bogus".into()),
                    ..Default::default()
                },
                "storage",
            ),
        ] {
            let e = resolve(&flags, &none).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn server_limits_resolve_and_are_checked() {
        let none = Settings::default();
        let c = resolve(&none, &none).unwrap();
        assert_eq!(c.server, ServerLimits::default());
        assert!(c.server.max_concurrent_queries >= 2);
        assert_eq!(c.server.body_timeout, Duration::from_secs(30));
        assert_eq!(c.server.query_queue_timeout, Duration::from_secs(10));
        assert_eq!(c.server.max_query_series, 10_000);
        assert_eq!(c.server.max_query_samples, 10_000_000);

        let file = parse_yaml(
            "limits:\n  body_timeout: 5s\n  header_timeout: 2s\n  max_concurrent_queries: 3\n  query_queue_timeout: 0s\n  max_query_series: 7\n  max_query_samples: 8\n",
        )
        .unwrap();
        let c = resolve(&none, &file).unwrap();
        assert_eq!(
            c.server,
            ServerLimits {
                body_timeout: Duration::from_secs(5),
                header_timeout: Duration::from_secs(2),
                max_concurrent_queries: 3,
                query_queue_timeout: Duration::ZERO,
                max_query_series: 7,
                max_query_samples: 8,
            }
        );
        let mut flags = Settings::default();
        flags.limits.body_timeout = Some("250ms".into());
        flags.limits.max_query_series = Some(9);
        let c = resolve(&flags, &file).unwrap();
        assert_eq!(c.server.body_timeout, Duration::from_millis(250));
        assert_eq!(c.server.max_query_series, 9);
        assert_eq!(c.server.max_concurrent_queries, 3);

        for (yaml, name) in [
            ("limits:\n  body_timeout: 0s\n", "limits.body_timeout"),
            ("limits:\n  header_timeout: soon\n", "limits.header_timeout"),
            (
                "limits:\n  query_queue_timeout: -1s\n",
                "limits.query_queue_timeout",
            ),
            (
                "limits:\n  max_concurrent_queries: 0\n",
                "limits.max_concurrent_queries",
            ),
        ] {
            let e = resolve(&none, &parse_yaml(yaml).unwrap())
                .unwrap_err()
                .to_string();
            assert!(e.contains(name), "{yaml}: {e}");
        }
    }

    #[test]
    fn storage() {
        let none = Settings::default();
        let flags = |v: &str| Settings {
            storage: Some(v.into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&flags("tsdb"), &none).unwrap().storage,
            BackendKind::Tsdb
        );
        let file = parse_yaml("storage: tsdb\n").unwrap();
        assert_eq!(resolve(&none, &file).unwrap().storage, BackendKind::Tsdb);
        let e = resolve(&flags("bogus"), &none).unwrap_err().to_string();
        assert!(e.contains("tsdb") && e.contains("duckdb"), "{e}");
        let duck = resolve(&flags("duckdb"), &file);
        if cfg!(feature = "duckdb") {
            assert_eq!(duck.unwrap().storage, BackendKind::DuckDb);
        } else {
            let e = duck.unwrap_err().to_string();
            assert!(e.contains("--features duckdb"), "{e}");
        }
    }
}
