//! How a version 4 block stores each section: every series blob, the
//! symbols section and the index section is
//!
//! ```text
//! encoding u8   0: the message follows as is
//!               1: its length in bytes (u32 LE), then one zstd frame that
//!                  decompresses to exactly that many bytes
//! ```
//!
//! The writer compresses a section (zstd level [`ZSTD_LEVEL`]) when that
//! makes it smaller. Offsets, lengths and CRC32s in the index and the
//! footer are those of the stored bytes, so a damaged section is found by
//! its CRC before it is decompressed. A reader refuses an unknown encoding
//! byte, a length above the section's bound, and a frame that does not
//! decompress to exactly its length; it allocates at most the length it
//! read (see [`unframe`]). Blocks of versions 2 and 3 store every section
//! as the bare message.
//!
//! Why: on real CPU profiles the chunk columns and the symbols of a block
//! shrank 2.7× (many short-lived stacks: each column's header and each
//! stack's run of location indexes repeat), and 1.3–1.8× on the synthetic
//! scenarios; see BENCHMARKS.md, "Blocks compressed by section".

use std::borrow::Cow;
use std::cell::RefCell;

/// Encoding byte: the message follows as is.
pub const PLAIN: u8 = 0;
/// Encoding byte: its length and a zstd frame follow.
pub const ZSTD: u8 = 1;
/// zstd's level for block sections: its default. Blocks are written off
/// the ingest path (a cut, a compaction, a snapshot, live data for a
/// querier); level 1 gave 3–7 % more bytes on the real and synthetic
/// blocks measured, in half the time.
pub const ZSTD_LEVEL: i32 = 3;

/// Compresses sections, keeping its zstd context and buffer between them.
pub struct Framer {
    zstd: zstd::block::Compressor,
    buf: Vec<u8>,
    /// Whether to try zstd at all.
    compress: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new()
    }
}

impl Framer {
    /// A framer that compresses.
    pub fn new() -> Framer {
        Framer {
            zstd: zstd::block::Compressor::new(),
            buf: Vec::new(),
            compress: true,
        }
    }

    /// A framer that stores every section as is.
    pub fn plain() -> Framer {
        Framer {
            compress: false,
            ..Framer::new()
        }
    }

    /// `plain` as stored: compressed when that is smaller (and zstd takes
    /// it, and this framer compresses), else as is.
    pub fn frame(&mut self, plain: &[u8]) -> Vec<u8> {
        if !self.compress {
            let mut out = Vec::with_capacity(1 + plain.len());
            out.push(PLAIN);
            out.extend_from_slice(plain);
            return out;
        }
        self.buf.clear();
        self.buf
            .reserve(zstd::zstd_safe::compress_bound(plain.len()));
        match (
            u32::try_from(plain.len()),
            self.zstd
                .compress_to_buffer(plain, &mut self.buf, ZSTD_LEVEL),
        ) {
            (Ok(len), Ok(n)) if 5 + n < 1 + plain.len() => {
                let mut out = Vec::with_capacity(5 + n);
                out.push(ZSTD);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&self.buf[..n]);
                out
            }
            // Incompressible, above u32::MAX bytes, or refused (zstd does
            // so only for a destination too small, which compress_bound
            // rules out): stored as is.
            _ => {
                let mut out = Vec::with_capacity(1 + plain.len());
                out.push(PLAIN);
                out.extend_from_slice(plain);
                out
            }
        }
    }
}

thread_local! {
    /// One zstd decompression context per reading thread.
    static DECOMPRESSOR: RefCell<zstd::block::Decompressor> =
        RefCell::new(zstd::block::Decompressor::new());
}

/// The message `stored` holds, of at most `max` bytes. The error says
/// what is wrong (an unknown encoding, a length above `max`, a frame that
/// does not decompress to its length).
pub fn unframe(stored: &[u8], max: usize) -> Result<Cow<'_, [u8]>, String> {
    match stored.split_first() {
        Some((&PLAIN, msg)) => Ok(Cow::Borrowed(msg)),
        Some((&ZSTD, rest)) => {
            let Some((len, frame)) = rest.split_first_chunk::<4>() else {
                return Err("a compressed section without its length".into());
            };
            let len = u32::from_le_bytes(*len) as usize;
            if len > max {
                return Err(format!(
                    "a compressed section of {len} bytes, above the bound of {max}"
                ));
            }
            let mut out = Vec::new();
            out.reserve_exact(len);
            // The Vec takes at most its capacity: len bytes or a little
            // more, never what the frame claims beyond it.
            let n = DECOMPRESSOR
                .with(|d| d.borrow_mut().decompress_to_buffer(frame, &mut out))
                .map_err(|e| format!("zstd: {e}"))?;
            if n != len {
                return Err(format!(
                    "{n} bytes decompressed where the length says {len}"
                ));
            }
            Ok(Cow::Owned(out))
        }
        Some((b, _)) => Err(format!("unknown section encoding {b}")),
        None => Err("an empty section".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the bytes, framing then unframing gives them back, and
        /// the stored form is never more than one byte longer.
        #[test]
        fn frame_round_trips(
            plain in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(7u8), any::<u8>()],
                0..5000,
            ),
        ) {
            let mut f = Framer::new();
            let stored = f.frame(&plain);
            prop_assert!(stored.len() <= plain.len() + 1);
            let back = unframe(&stored, plain.len()).unwrap();
            prop_assert_eq!(back.as_ref(), plain.as_slice());
        }

        /// Arbitrary stored bytes give an error or a message, never a
        /// panic or more than `max` bytes.
        #[test]
        fn arbitrary_bytes_unframe_within_the_bound(
            stored in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            if let Ok(m) = unframe(&stored, 100) {
                prop_assert!(m.len() <= 100 || stored[0] == PLAIN);
            }
        }
    }

    #[test]
    fn compressible_sections_are_compressed_and_bounds_hold() {
        let mut f = Framer::new();
        let plain = b"the same line again\n".repeat(100);
        let stored = f.frame(&plain);
        assert_eq!(stored[0], ZSTD);
        assert!(stored.len() < plain.len() / 5, "{}", stored.len());
        assert_eq!(unframe(&stored, plain.len()).unwrap().as_ref(), &plain[..]);
        // A bound below the length is refused before decompressing.
        let e = unframe(&stored, plain.len() - 1).unwrap_err();
        assert!(e.contains("above the bound"), "{e}");
        // A length that disagrees with the frame.
        let mut wrong = stored.clone();
        wrong[1..5].copy_from_slice(&(plain.len() as u32 + 1).to_le_bytes());
        assert!(unframe(&wrong, usize::MAX).is_err());
        let mut short = stored.clone();
        short[1..5].copy_from_slice(&(plain.len() as u32 - 1).to_le_bytes());
        assert!(unframe(&short, usize::MAX).is_err());
        // A damaged frame, an unknown encoding, nothing at all.
        let mut damaged = stored.clone();
        let last = damaged.len() - 3;
        damaged[last] ^= 0xff;
        assert!(unframe(&damaged, usize::MAX)
            .map(|m| m.as_ref() != plain)
            .unwrap_or(true));
        assert!(unframe(&[2, 0, 0], usize::MAX).is_err());
        assert!(unframe(&[], usize::MAX).is_err());
        assert!(unframe(&[ZSTD, 1, 0], usize::MAX).is_err());
        // A plain framer never compresses.
        let kept = Framer::plain().frame(&plain);
        assert_eq!(kept[0], PLAIN);
        assert_eq!(&kept[1..], &plain[..]);
        // Incompressible bytes are kept as they are.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let stored = f.frame(&noise);
        assert_eq!(stored[0], PLAIN);
        assert_eq!(&stored[1..], &noise[..]);
    }
}
