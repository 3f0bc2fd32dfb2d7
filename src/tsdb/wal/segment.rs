//! The byte format of one segment: magic, then framed records (see
//! `docs/format/wal.md`), and a reader that survives damage.

/// First bytes of every segment: `PSWAL`, then the format version as three
/// bytes (`\0\0\x01`: version 1).
pub const SEGMENT_MAGIC: &[u8; 8] = b"PSWAL\0\0\x01";

/// Bytes before a record's payload: length (4), CRC32 (4), type (1).
pub const FRAME_HEADER_LEN: usize = 9;

/// Largest payload a record may have (1 GiB); a larger length is damage.
pub const MAX_RECORD_BYTES: usize = 1 << 30;

/// Default size at which a segment is closed: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Damage found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The segment's sequence number (0 until the caller sets it).
    pub segment: u64,
    /// Byte offset of the damage in the segment.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// What [`read_segment`] found besides the records.
#[derive(Debug, Default)]
pub struct SegmentRead {
    /// Damaged ranges that were followed by valid records (skipped).
    pub corruptions: Vec<Corruption>,
    /// Offset from which the rest of the segment holds no valid record: a
    /// torn or corrupt tail.
    pub torn_tail_at: Option<usize>,
}

/// Appends one framed record to `out`.
pub fn frame(out: &mut Vec<u8>, typ: u8, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[typ]);
    crc.update(payload);
    // Callers bound payloads by MAX_RECORD_BYTES (< 2^32).
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(typ);
    out.extend_from_slice(payload);
}

/// The valid record at `at`, as (type, payload, end offset), if any.
fn record_at(data: &[u8], at: usize) -> Result<(u8, &[u8], usize), String> {
    let header = data
        .get(at..at + FRAME_HEADER_LEN)
        .ok_or_else(|| format!("{} bytes left, less than a record header", data.len() - at))?;
    // The slices are 4 bytes long by construction.
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let want = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let typ = header[8];
    if len > MAX_RECORD_BYTES {
        return Err(format!("record length {len} is over the limit"));
    }
    let start = at + FRAME_HEADER_LEN;
    let payload = data
        .get(start..start + len)
        .ok_or_else(|| format!("record of {len} bytes runs past the end of the segment"))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[typ]);
    crc.update(payload);
    let got = crc.finalize();
    if got != want {
        return Err(format!(
            "CRC32 mismatch (stored {want:08x}, computed {got:08x})"
        ));
    }
    Ok((typ, payload, start + len))
}

/// Reads a segment, calling `f(type, payload)` for every valid record in
/// order. A bad magic or a damaged record is skipped up to the next offset
/// where a valid record starts; damage with no valid record after it is the
/// torn tail.
pub fn read_segment(data: &[u8], mut f: impl FnMut(u8, &[u8])) -> SegmentRead {
    let mut out = SegmentRead::default();
    let mut at = SEGMENT_MAGIC.len();
    if data.get(..SEGMENT_MAGIC.len()) != Some(SEGMENT_MAGIC.as_slice()) {
        if data.len() < SEGMENT_MAGIC.len() && SEGMENT_MAGIC.starts_with(data) {
            // A segment torn while its magic was written.
            out.torn_tail_at = Some(0);
            return out;
        }
        out.corruptions.push(Corruption {
            segment: 0,
            offset: 0,
            reason: "bad segment magic".into(),
        });
        match resync(data, 0) {
            Some(next) => at = next,
            None => {
                out.torn_tail_at = Some(0);
                return out;
            }
        }
    }
    while at < data.len() {
        match record_at(data, at) {
            Ok((typ, payload, end)) => {
                f(typ, payload);
                at = end;
            }
            Err(reason) => match resync(data, at + 1) {
                Some(next) => {
                    out.corruptions.push(Corruption {
                        segment: 0,
                        offset: at as u64,
                        reason: format!("{reason}; skipped {} bytes", next - at),
                    });
                    at = next;
                }
                None => {
                    out.torn_tail_at = Some(at);
                    return out;
                }
            },
        }
    }
    out
}

/// Highest record type byte this version writes; resync only accepts record
/// starts with a type in `1..=MAX_TYPE`, which also makes it cheap (most
/// candidate offsets fail on the type byte before any CRC is computed).
pub const MAX_TYPE: u8 = 1;

/// The first offset at or after `from` where a valid record starts.
fn resync(data: &[u8], from: usize) -> Option<usize> {
    let last = data.len().checked_sub(FRAME_HEADER_LEN)?;
    (from..=last).find(|&at| (1..=MAX_TYPE).contains(&data[at + 8]) && record_at(data, at).is_ok())
}
