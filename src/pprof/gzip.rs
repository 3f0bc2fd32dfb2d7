//! Gunzip with a hard bound on the output.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use super::PprofError;

/// The gzip magic bytes (RFC 1952, ID1 ID2).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Deflate cannot expand more than about 1032:1, so a body can never produce
/// more than this many bytes per compressed byte; used to cap the initial
/// allocation guessed from a (possibly lying) gzip trailer.
const MAX_DEFLATE_RATIO: usize = 1032;

/// Bytes of output room zeroed ahead of each read.
const READ_CHUNK: usize = 64 * 1024;

/// Whether `bytes` start with the gzip magic bytes. File names are never
/// consulted: several real profiles named `.pb.gz` are raw protobuf and some
/// extensionless ones are gzipped.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Gunzips `bytes` (every member of a multi-member stream, as Go's
/// `gzip.Reader` does), producing at most `limit` bytes.
///
/// Memory: the output buffer never has a capacity above `limit + 1` (one byte
/// more than the limit is read to detect overflow), whatever the input claims;
/// a gzip bomb fails with [`PprofError::TooLarge`] after at most `limit + 1`
/// bytes were inflated.
pub(crate) fn gunzip_bounded(bytes: &[u8], limit: usize) -> Result<Vec<u8>, PprofError> {
    let mut out = Vec::new();
    gunzip_into(bytes, limit, &mut out)?;
    Ok(out)
}

/// [`gunzip_bounded`] into a caller's (empty) buffer, so tests can check its
/// capacity after a failure too.
pub(crate) fn gunzip_into(bytes: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), PprofError> {
    out.clear();
    let cap = limit.saturating_add(1);
    // First guess from ISIZE (the last member's size mod 2^32), bounded by
    // what the compressed size can possibly expand to and by the limit.
    let isize_hint = match bytes.len().checked_sub(4).map(|at| &bytes[at..]) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => 0,
    };
    let first = isize_hint
        .max(4096)
        .min(bytes.len().saturating_mul(MAX_DEFLATE_RATIO))
        .min(cap);
    out.reserve_exact(first);
    // `out[..filled]` is inflated data; `out[filled..]` is zeroed room for
    // the next read (so every byte is zeroed at most once).
    let mut filled = 0;
    let mut dec = MultiGzDecoder::new(bytes);
    loop {
        if filled >= cap {
            return Err(PprofError::too_large("decompressed body (bytes)", limit));
        }
        if filled == out.len() {
            if out.len() == out.capacity() {
                let grow = out.len().max(4096).min(cap - out.len());
                out.reserve_exact(grow);
            }
            // Zero the next chunk of room only (the capacity may come from a
            // lying ISIZE), and never past `cap`, even if the allocator gave
            // more.
            let room_end = out.capacity().min(cap).min(filled + READ_CHUNK);
            out.resize(room_end, 0);
        }
        match dec.read(&mut out[filled..]) {
            Ok(0) => {
                out.truncate(filled);
                return Ok(());
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let msg = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    format!("truncated stream after {filled} decompressed bytes")
                } else {
                    format!("{e} (after {filled} decompressed bytes)")
                };
                out.truncate(filled);
                return Err(PprofError::Gzip(msg));
            }
        }
    }
}
