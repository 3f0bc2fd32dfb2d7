//! The ingesters' live data as the querier reads it: [`HttpIngester`]
//! fetches it from an ingester's [`LIVE_ROUTE`], and [`live_block`] opens
//! it as one more block of the ingester's stream.
//!
//! A live block is listed under the id `live:<ingester>`, with the
//! ingester's external labels and a commit time after every bucket
//! block's, so that it ranks first in its stream: a profile it shares with
//! a shipped block (shipped since the export, or a replica's) counts once.

use crate::engine::live::{LiveData, LiveSource, EXTERNAL_LABELS_HEADER, LIVE_ROUTE};
use crate::model::StorageError;
use crate::tsdb::block::{Block, BlockSource};
use crate::tsdb::ship::{Descriptor, DESCRIPTOR_VERSION};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The id prefix of live blocks.
pub const LIVE_PREFIX: &str = "live:";
/// Most bytes of one ingester's live data a querier takes: 4 GiB.
pub const MAX_LIVE_BYTES: u64 = 4 << 30;
/// How long a querier waits for one ingester's live data.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// An ingester's live data over HTTP.
#[derive(Debug)]
pub struct HttpIngester {
    base: String,
    agent: ureq::Agent,
}

impl HttpIngester {
    /// The ingester at `base` (`http://host:port`).
    pub fn new(base: &str) -> HttpIngester {
        HttpIngester {
            base: base.trim_end_matches('/').to_string(),
            agent: super::http_agent(LIVE_TIMEOUT),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> StorageError {
    StorageError::new("ingester", e)
}

impl LiveSource for HttpIngester {
    fn name(&self) -> String {
        self.base.clone()
    }

    fn live(&self) -> Result<Option<LiveData>, StorageError> {
        let url = format!("{}{LIVE_ROUTE}", self.base);
        let mut res = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| failed(format!("GET {url}: {e}")))?;
        let status = res.status().as_u16();
        if status == 204 {
            return Ok(None);
        }
        let mut body = Vec::new();
        res.body_mut()
            .as_reader()
            .take(MAX_LIVE_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| failed(format!("GET {url}: reading the body: {e}")))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(failed(format!(
                "GET {url}: status {status}: {}",
                text.trim()
            )));
        }
        if body.len() as u64 > MAX_LIVE_BYTES {
            return Err(failed(format!(
                "GET {url}: live data over {MAX_LIVE_BYTES} bytes"
            )));
        }
        let labels = res
            .headers()
            .get(EXTERNAL_LABELS_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| failed(format!("GET {url}: no {EXTERNAL_LABELS_HEADER} header")))?;
        let external_labels: BTreeMap<String, String> = serde_json::from_str(labels)
            .map_err(|e| failed(format!("GET {url}: {EXTERNAL_LABELS_HEADER}: {e}")))?;
        Ok(Some(LiveData {
            external_labels,
            block: body,
        }))
    }
}

/// A block's bytes in memory.
#[derive(Debug)]
struct InMemory(Vec<u8>);

impl BlockSource for InMemory {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.0.len() as u64)
    }
    fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.0.len() as u64);
        match end {
            Some(end) => Ok(self.0[offset as usize..end as usize].to_vec()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{len} bytes at {offset} of {}", self.0.len()),
            )),
        }
    }
}

/// Opens `ingester`'s live data as a block with its descriptor.
pub fn live_block(ingester: &str, data: LiveData) -> Result<(Descriptor, Block), String> {
    let id = format!("{LIVE_PREFIX}{ingester}");
    let name = PathBuf::from(&id);
    let block = Block::open_source(&name, Box::new(InMemory(data.block)))
        .map_err(|e| format!("live data of {ingester}: {e}"))?;
    let (bytes, index_crc32) = block.fingerprint();
    let descriptor = Descriptor {
        version: DESCRIPTOR_VERSION,
        id: id.clone(),
        min_time: block.min_time(),
        max_time: block.max_time(),
        bytes,
        index_crc32,
        series: block.num_series() as u64,
        profiles: block.num_profiles(),
        external_labels: data.external_labels,
        sources: vec![id],
        created_ms: i64::MAX,
    };
    Ok((descriptor, block))
}

/// Shared ingesters, as the querier's configuration holds them.
pub type Ingesters = Vec<Arc<dyn LiveSource>>;
