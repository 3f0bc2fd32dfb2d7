//! Object storage: the bucket that ingesters ship blocks to and queriers
//! read them from.
//!
//! [`Bucket`] is a small, blocking face over Apache Arrow's `object_store`
//! crate, which does the real work (S3's protocol and signing, retries with
//! backoff, a local directory with atomic writes). Its callers are threads
//! (the shipper, a query on tokio's blocking pool), so every call runs to
//! completion on a small runtime the bucket owns.
//!
//! # Locations
//! - `s3://BUCKET[/PREFIX]`: any S3-compatible store. Credentials, region
//!   and endpoint come from the usual `AWS_*` environment variables
//!   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//!   `AWS_ENDPOINT`, …), overridden by [`BucketOptions`] (the daemon's
//!   `--bucket-endpoint` and `--bucket-region`). An `http://` endpoint is
//!   allowed without TLS; requests use path-style addressing unless
//!   `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`.
//! - `file:///DIR`: a directory, typically shared (NFS); created when
//!   missing. Writes are atomic (a temporary file renamed into place).
//! - `memory://`: in this process only, for tests.
//!
//! # Invariants
//! - Keys are relative, `/`-separated, and never start with `/`; the
//!   location's prefix is prepended here, so callers never see it.
//! - A `put` is atomic: a reader sees the whole object or none (S3 and the
//!   local store both guarantee it; this is what makes a small descriptor
//!   written last a commit point).
//! - Every error names the operation and the key.

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, PutPayload, RetryConfig};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The bucket URL cannot be used.
    #[error("bucket {url}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// An operation failed (after the store's own retries).
    #[error("bucket {op} {key}: {source}")]
    Op {
        /// What was done: get, put, list, delete, head.
        op: &'static str,
        /// The key (without the location's prefix).
        key: String,
        /// The store's error.
        source: object_store::Error,
    },
}

impl BucketError {
    /// True when the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            BucketError::Op {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}

/// Settings beside the URL.
#[derive(Debug, Clone, Default)]
pub struct BucketOptions {
    /// The S3 endpoint (for stores other than AWS), overriding
    /// `AWS_ENDPOINT`.
    pub endpoint: Option<String>,
    /// The S3 region, overriding `AWS_REGION`.
    pub region: Option<String>,
    /// Retries of a failed S3 request (default 10, within 3 minutes).
    pub max_retries: Option<usize>,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key (without the location's prefix).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, in ms since the epoch.
    pub modified_ms: i64,
}

/// Counters of what a bucket did, for metrics.
#[derive(Debug, Default)]
pub struct BucketStats {
    /// Bytes read (gets and range gets).
    pub bytes_read: AtomicU64,
    /// Bytes written.
    pub bytes_written: AtomicU64,
    /// Requests sent (each call once, whatever the store's retries).
    pub requests: AtomicU64,
    /// Calls that failed.
    pub failures: AtomicU64,
}

/// The size of the parts of [`Bucket::put_parts`]'s multipart uploads (S3
/// wants at least 5 MiB but for the last part).
pub const PART_BYTES: u64 = 16 << 20;

/// A failed read of what was being uploaded, as the store's error.
fn read_failed(e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "upload source",
        source: Box::new(e),
    }
}

/// A bucket: a location in an object store.
pub struct Bucket {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// `Some` until dropped; see `Drop`.
    runtime: Option<tokio::runtime::Runtime>,
    stats: BucketStats,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("url", &self.url).finish()
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // A runtime dropped inside another runtime's thread panics;
        // `shutdown_background` is allowed anywhere.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The retry policy for S3 requests: up to 10 retries within 3 minutes,
/// backing off from 100 ms to 15 s. A shipper retries whole uploads after
/// that, so a long outage is waited out, not failed.
fn retry_config(max_retries: Option<usize>) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: max_retries.unwrap_or(10),
        retry_timeout: Duration::from_secs(180),
    }
}

impl Bucket {
    /// Opens the bucket at `url` (see the module docs for the schemes).
    /// Nothing is sent to the store yet.
    pub fn open(url: &str, options: &BucketOptions) -> Result<Bucket, BucketError> {
        let bad = |reason: String| BucketError::Url {
            url: url.to_string(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("want s3://BUCKET[/PREFIX], file:///DIR or memory://".into()))?;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match scheme {
            "s3" => {
                let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if name.is_empty() {
                    return Err(bad("no bucket name".into()));
                }
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(name)
                    .with_retry(retry_config(options.max_retries));
                if let Some(endpoint) = &options.endpoint {
                    b = b.with_endpoint(endpoint);
                }
                if let Some(region) = &options.region {
                    b = b.with_region(region);
                }
                let endpoint = options
                    .endpoint
                    .clone()
                    .or_else(|| std::env::var("AWS_ENDPOINT").ok())
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
                if endpoint.is_some_and(|e| e.starts_with("http://")) {
                    b = b.with_allow_http(true);
                }
                let s3 = b.build().map_err(|e| bad(e.to_string()))?;
                (Arc::new(s3), prefix.trim_matches('/').to_string())
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad("a file:// URL needs an absolute path".into()));
                }
                std::fs::create_dir_all(rest).map_err(|e| bad(format!("{rest}: {e}")))?;
                let local = LocalFileSystem::new_with_prefix(rest)
                    .map_err(|e| bad(e.to_string()))?
                    .with_automatic_cleanup(true);
                (Arc::new(local), String::new())
            }
            "memory" => (
                Arc::new(InMemory::new()),
                rest.trim_matches('/').to_string(),
            ),
            other => return Err(bad(format!("unknown scheme {other:?}"))),
        };
        Ok(Bucket::with_store(url, store, prefix))
    }

    /// A bucket over `store` (a test's store, or one that fails on
    /// purpose).
    pub fn with_store(url: &str, store: Arc<dyn ObjectStore>, prefix: String) -> Bucket {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bucket")
            .enable_all()
            .build()
            // Building a runtime fails only when no thread can be spawned,
            // which leaves this process unable to do anything.
            .expect("cannot start the bucket's runtime");
        Bucket {
            url: url.to_string(),
            store,
            prefix,
            runtime: Some(runtime),
            stats: BucketStats::default(),
        }
    }

    /// A fresh in-memory bucket.
    pub fn memory() -> Bucket {
        Bucket::with_store("memory://", Arc::new(InMemory::new()), String::new())
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What it did so far.
    pub fn stats(&self) -> &BucketStats {
        &self.stats
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn key_of(&self, path: &ObjectPath) -> String {
        let s = path.as_ref();
        if self.prefix.is_empty() {
            return s.to_string();
        }
        s.strip_prefix(&self.prefix)
            .map(|k| k.trim_start_matches('/'))
            .unwrap_or(s)
            .to_string()
    }

    fn run<T>(
        &self,
        op: &'static str,
        key: &str,
        f: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T, BucketError> {
        self.stats.requests.fetch_add(1, Relaxed);
        let rt = self
            .runtime
            .as_ref()
            // Only `Drop` takes it.
            .expect("the bucket's runtime is there until it is dropped");
        rt.block_on(f).map_err(|source| {
            if !matches!(source, object_store::Error::NotFound { .. }) {
                self.stats.failures.fetch_add(1, Relaxed);
            }
            BucketError::Op {
                op,
                key: key.to_string(),
                source,
            }
        })
    }

    /// Writes `bytes` at `key`, replacing what is there, atomically.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BucketError> {
        let n = bytes.len() as u64;
        let path = self.path(key);
        self.run("put", key, self.store.put(&path, PutPayload::from(bytes)))?;
        self.stats.bytes_written.fetch_add(n, Relaxed);
        Ok(())
    }

    /// Writes the `len` bytes that `read(offset, len)` gives at `key`,
    /// replacing what is there, atomically, reading them [`PART_BYTES`] at
    /// a time: an object larger than one part goes as a multipart upload
    /// (completed only once every part is sent, aborted on a failure), so
    /// no more than one part is in memory.
    pub fn put_parts(
        &self,
        key: &str,
        len: u64,
        read: &mut dyn FnMut(u64, u64) -> std::io::Result<Vec<u8>>,
    ) -> Result<(), BucketError> {
        if len <= PART_BYTES {
            let bytes = read(0, len).map_err(|e| BucketError::Op {
                op: "put",
                key: key.to_string(),
                source: read_failed(e),
            })?;
            return self.put(key, bytes);
        }
        let path = self.path(key);
        self.run("put", key, async {
            let mut upload = self.store.put_multipart(&path).await?;
            let mut offset = 0;
            while offset < len {
                let n = PART_BYTES.min(len - offset);
                let sent = match read(offset, n) {
                    Ok(part) => upload.put_part(PutPayload::from(part)).await,
                    Err(e) => Err(read_failed(e)),
                };
                if let Err(e) = sent {
                    // The upload is abandoned either way; a failed abort
                    // leaves parts the store expires, never an object.
                    let _ = upload.abort().await;
                    return Err(e);
                }
                offset += n;
            }
            upload.complete().await.map(|_| ())
        })?;
        self.stats.bytes_written.fetch_add(len, Relaxed);
        Ok(())
    }

    /// The whole object at `key`.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, BucketError> {
        let path = self.path(key);
        let bytes = self.run("get", key, async {
            self.store.get(&path).await?.bytes().await
        })?;
        self.stats.bytes_read.fetch_add(bytes.len() as u64, Relaxed);
        Ok(bytes.to_vec())
    }

    /// `len` bytes of the object at `key` from `offset`.
    pub fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, BucketError> {
        let path = self.path(key);
        let end = offset.saturating_add(len);
        let bytes = self.run("get", key, self.store.get_range(&path, offset..end))?;
        self.stats.bytes_read.fetch_add(bytes.len() as u64, Relaxed);
        Ok(bytes.to_vec())
    }

    /// The size of the object at `key`, `None` when there is none.
    pub fn size(&self, key: &str) -> Result<Option<u64>, BucketError> {
        let path = self.path(key);
        match self.run("head", key, self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object whose key starts with `prefix/` (or every object for
    /// an empty prefix), in no particular order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, BucketError> {
        let dir = if prefix.is_empty() && self.prefix.is_empty() {
            None
        } else if prefix.is_empty() {
            Some(ObjectPath::from(self.prefix.as_str()))
        } else {
            Some(self.path(prefix))
        };
        let metas = self.run("list", prefix, async {
            self.store.list(dir.as_ref()).try_collect::<Vec<_>>().await
        })?;
        Ok(metas
            .into_iter()
            .map(|m| Listed {
                key: self.key_of(&m.location),
                size: m.size,
                modified_ms: m.last_modified.timestamp_millis(),
            })
            .collect())
    }

    /// Deletes the object at `key`; one that is not there is no error.
    pub fn delete(&self, key: &str) -> Result<(), BucketError> {
        let path = self.path(key);
        match self.run("delete", key, self.store.delete(&path)) {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(b: &Bucket) {
        b.put("blocks/a/block", b"0123456789".to_vec()).unwrap();
        b.put("blocks/a/meta.json", b"{}".to_vec()).unwrap();
        b.put("other", b"x".to_vec()).unwrap();
        assert_eq!(b.get("blocks/a/block").unwrap(), b"0123456789");
        assert_eq!(b.get_range("blocks/a/block", 3, 4).unwrap(), b"3456");
        assert_eq!(b.size("blocks/a/block").unwrap(), Some(10));
        assert_eq!(b.size("blocks/nope").unwrap(), None);
        assert!(b.get("blocks/nope").unwrap_err().is_not_found());
        let mut keys: Vec<String> = b
            .list("blocks")
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect();
        keys.sort();
        assert_eq!(keys, ["blocks/a/block", "blocks/a/meta.json"]);
        assert_eq!(b.list("").unwrap().len(), 3);
        b.delete("blocks/a/block").unwrap();
        b.delete("blocks/a/block").unwrap();
        assert_eq!(b.size("blocks/a/block").unwrap(), None);
        assert!(b.stats().bytes_read.load(Relaxed) >= 14);
    }

    #[test]
    fn memory_bucket_round_trips() {
        exercise(&Bucket::memory());
        exercise(&Bucket::open("memory://some/prefix", &BucketOptions::default()).unwrap());
    }

    #[test]
    fn file_bucket_round_trips_and_keeps_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/bucket", dir.path().display());
        exercise(&Bucket::open(&url, &BucketOptions::default()).unwrap());
        assert!(dir.path().join("bucket/blocks/a/meta.json").exists());
    }

    #[test]
    fn large_objects_go_in_parts_and_a_failed_read_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/bucket", dir.path().display());
        let file = Bucket::open(&url, &BucketOptions::default()).unwrap();
        let data: Vec<u8> = (0..2 * PART_BYTES + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        for b in [Bucket::memory(), file] {
            let mut reads = Vec::new();
            let mut read = |off: u64, n: u64| {
                reads.push(n);
                Ok(data[off as usize..(off + n) as usize].to_vec())
            };
            b.put_parts("big", data.len() as u64, &mut read).unwrap();
            assert_eq!(reads, [PART_BYTES, PART_BYTES, 12_345]);
            assert!(b.get("big").unwrap() == data);
            b.put_parts("small", 10, &mut |off, n| {
                Ok(data[off as usize..(off + n) as usize].to_vec())
            })
            .unwrap();
            assert_eq!(b.get("small").unwrap(), data[..10]);
            // The second part fails to read: no object, and the old one
            // stays.
            let mut failing = |off: u64, n: u64| {
                if off > 0 {
                    return Err(std::io::Error::other("disk gone"));
                }
                Ok(data[..n as usize].to_vec())
            };
            let e = b
                .put_parts("big", data.len() as u64, &mut failing)
                .unwrap_err();
            assert!(e.to_string().contains("disk gone"), "{e}");
            assert!(b.get("big").unwrap() == data);
            assert!(b.put_parts("new", data.len() as u64, &mut failing).is_err());
            assert_eq!(b.size("new").unwrap(), None);
        }
    }

    #[test]
    fn bad_urls_are_named() {
        for url in ["nope", "gs://x", "s3://", "file://relative"] {
            let e = Bucket::open(url, &BucketOptions::default()).unwrap_err();
            assert!(e.to_string().contains(url), "{e}");
        }
    }
}
