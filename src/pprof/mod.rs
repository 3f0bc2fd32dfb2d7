//! pprof: untrusted bytes in, a validated [`Profile`] out, and back.
//!
//! [`decode`] is the only way profstore turns request bodies into profiles:
//!
//! 1. **Gzip or not** is decided by the magic bytes `1f 8b`, never by a file
//!    name (real profiles named `.pb.gz` are often raw protobuf, and
//!    extensionless ones gzipped). Gzip is inflated with a hard bound: at most
//!    `max_decompressed_bytes + 1` bytes are ever produced or allocated, so a
//!    gzip bomb costs at most the limit. Multi-member streams are read to the
//!    end, as Go's `gzip.Reader` does.
//! 2. **Pre-scan.** Before prost allocates anything, a single pass over the
//!    protobuf wire format counts samples, locations, functions, mappings,
//!    strings (and their lengths), and inside each sample its location ids,
//!    values and labels, and inside each location its lines. Any count over
//!    its [`DecodeLimits`] bound, or an estimated decoded size over
//!    `max_heap_bytes`, is rejected without decoding.
//! 3. **prost decode** into vectors reserved to the exact pre-scanned counts.
//! 4. **[`validate`].**
//!
//! # What "validated" guarantees
//!
//! A profile returned by [`decode`] (or accepted by [`validate`]) satisfies:
//!
//! - every string index in it — sample and period types, `drop_frames`,
//!   `keep_frames`, `comment`, `default_sample_type`, mapping `filename` and
//!   `build_id`, function `name`, `system_name` and `filename`, label `key`,
//!   `str` and `num_unit` — is in `0..string_table.len()`, or is 0 when the
//!   table is empty;
//! - `string_table` is empty or starts with `""`;
//! - mapping, function and location ids are non-zero and unique within their
//!   kind;
//! - every `Location::mapping_id` is 0 (no mapping) or the id of a mapping;
//!   every `Line::function_id` is 0 (no function) or the id of a function;
//!   every `Sample::location_id` is the id of a location;
//! - every sample has exactly `sample_type.len()` values;
//! - every count is within the [`DecodeLimits`] used.
//!
//! So downstream code may resolve ids through a map built from the profile
//! and index the string table without checking — with two exceptions it must
//! handle: an id of 0 (mapping or function) means "none", and an empty
//! `string_table` means every index is 0 and reads as `""` (use
//! `string_table.get(i).map_or("", String::as_str)`, or build the maps and
//! treat a missing 0 as `""`).
//!
//! # Decisions
//!
//! - **Empty body:** rejected with [`PprofError::Empty`] ("empty profile
//!   body"). A zero-length protobuf message would decode to a profile with no
//!   sample types and no samples, which is never what a client meant to send.
//!   The same holds for a gzip stream that inflates to nothing.
//! - **Empty string table:** treated as `[""]`, so index 0 is valid and
//!   everything else is out of range. (A profile with no strings at all can
//!   only use index 0 anyway; proto3 omits an all-default field.)
//! - **`Line::function_id == 0`:** accepted and means "no function", like
//!   `Location::mapping_id == 0`. The spec says function ids are non-zero, so
//!   a 0 cannot name a function; rejecting the whole profile for one frame
//!   would lose the rest of it (and the location's address and mapping) for
//!   no safety gain. This is more lenient than Go's `profile.CheckValid`
//!   ("has a line with nil function"); profstore's ingest drops such lines,
//!   so what it serves back stays valid for Go. None of the 79 corpus
//!   profiles has such a line (a test checks this, so the decision is
//!   revisited if one appears). A non-zero id that names no function is
//!   rejected. Pyroscope's .NET profiles `dotnet-pprof-3/73` (not in the
//!   corpus) give *functions* id 0, which is rejected as a zero id.
//! - **Invalid UTF-8** in a string is a [`PprofError::Protobuf`] error: the
//!   generated types hold `String`s, and prost enforces UTF-8. Go's pprof
//!   accepts such bytes; they are rare (only a synthetic test file in
//!   Pyroscope).
//! - **Unknown fields** are skipped (and so dropped on re-encoding), as
//!   protobuf requires; groups are skipped too, nested at most 100 deep.
//!
//! # Memory bound
//!
//! Decoding allocates at most the inflated body (`max_decompressed_bytes +
//! 1`) plus the decoded profile. The pre-scan computes the latter's heap
//! footprint exactly from the counts — top-level vectors reserved exactly;
//! nested vectors (`Sample::location_id`, `value`, `label`,
//! `Location::line`) at std's push growth (capacity `max(4, n)` rounded up
//! to a power of two); strings at `max(8, len)` bytes — and rejects a body
//! whose profile would exceed `max_heap_bytes`. (A test checks the estimate
//! equals the real capacities on every corpus file.)
//!
//! Real profiles decode to 6–12.5x their protobuf size (the corpus: 6.0x for
//! the 6.8 MB `pyroscope/profile.pprof`, 12.5x for the .NET profiles with six
//! values per sample), because each sample becomes a 72-byte struct plus
//! three vectors of at least four elements. A hostile body can do worse, and
//! the count limits alone would not stop it, since they bound the number of
//! elements, not their encoded size: an empty sample (2 bytes) decodes to 72
//! bytes (36x), a sample holding one empty label (4 bytes) to 200 (50x), a
//! location with one empty line (4 bytes) to 152 (38x), a 1-byte packed
//! varint to 8 bytes plus growth slack (up to 16x). So without
//! `max_heap_bytes` a 64 MiB body could ask for about 3 GiB; with it the
//! worst case is `max_decompressed_bytes + 1 + max_heap_bytes`, plus
//! allocator rounding. [`validate`] then builds id maps only for ids that are
//! not exactly `1..=n` (what Go writes): at most ~24 bytes per mapping,
//! function and location, itself bounded by the count limits.

#![warn(missing_docs)]

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

use crate::proto::pprof::Profile;

mod error;
mod gzip;
mod prescan;
mod strings;
#[cfg(test)]
pub(crate) mod tests;
mod validate;

pub use error::PprofError;
pub use strings::StringTable;
pub use validate::validate;

const MIB: usize = 1024 * 1024;

/// Bounds on what [`decode`] accepts. Every bound is inclusive (a value equal
/// to the limit is accepted); exceeding one gives [`PprofError::TooLarge`].
///
/// The defaults are sized for production ingest: well above every real
/// profile we know of (the largest in the test corpus,
/// `pyroscope/profile.pprof`, is 1.1 MB gzipped, 6.8 MB decoded, with
/// 118 761 samples and 23 241 locations), and low enough that one request
/// cannot take more than `max_decompressed_bytes + max_heap_bytes` (about
/// 1.1 GiB; a real profile needing that much would be over 80 MiB of
/// protobuf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest gzipped body, in bytes. Default 32 MiB. (A raw, not gzipped,
    /// body is bounded by `max_decompressed_bytes` instead.)
    pub max_compressed_bytes: usize,
    /// Largest protobuf message, in bytes: the gunzipped body, or the body
    /// itself when it is not gzipped. Default 64 MiB.
    pub max_decompressed_bytes: usize,
    /// Most samples. Default 4 000 000.
    pub max_samples: usize,
    /// Most locations. Default 4 000 000.
    pub max_locations: usize,
    /// Most functions. Default 4 000 000.
    pub max_functions: usize,
    /// Most mappings. Default 65 536 (real processes have tens to hundreds).
    pub max_mappings: usize,
    /// Most entries in the string table. Default 4 000 000.
    pub max_strings: usize,
    /// Longest single string, in bytes. Default 1 MiB (the corpus's longest
    /// is 1 KiB; long C++/Rust symbol names reach a few KiB).
    pub max_string_bytes: usize,
    /// Most location ids in one sample. Default 1024. The corpus's deepest
    /// stack has 125 frames; Go cuts stacks at 32–128 frames (by profile kind
    /// and version: its truncated heap and CPU profiles in the corpus stop at
    /// 32 and 64). async-profiler allows 2048 by default, so a profile with
    /// deeper Java stacks needs a higher limit.
    pub max_stack_depth: usize,
    /// Most labels on one sample. Default 256 (the corpus has at most 4).
    pub max_labels_per_sample: usize,
    /// Most sample types (and so values per sample). Default 64 (Go heap
    /// profiles have 4, Pyroscope's .NET profiles 6).
    pub max_sample_types: usize,
    /// Most lines (inlined frames) in one location. Default 1024 (the corpus
    /// has at most 7).
    pub max_lines_per_location: usize,
    /// Most heap bytes the decoded `Profile` may own, as estimated exactly by
    /// the pre-scan from the counts (see the [module docs](self#memory-bound)).
    /// Default 1 GiB: real profiles decode to 6–12.5x their protobuf size,
    /// so a real profile near `max_decompressed_bytes` fits, while a hostile
    /// one (up to 50x) does not. Checked by [`decode`] only: [`validate`]
    /// takes a profile that is already built.
    pub max_heap_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_compressed_bytes: 32 * MIB,
            max_decompressed_bytes: 64 * MIB,
            max_samples: 4_000_000,
            max_locations: 4_000_000,
            max_functions: 4_000_000,
            max_mappings: 65_536,
            max_strings: 4_000_000,
            max_string_bytes: MIB,
            max_stack_depth: 1024,
            max_labels_per_sample: 256,
            max_sample_types: 64,
            max_lines_per_location: 1024,
            max_heap_bytes: 1024 * MIB,
        }
    }
}

/// Decodes an untrusted pprof body (gzipped or raw `profile.proto` bytes)
/// into a validated [`Profile`].
///
/// See the [module docs](self) for the steps, the guarantees on the result
/// and the memory bound. Errors: [`PprofError::Empty`] for an empty body,
/// [`PprofError::TooLarge`] when any limit is exceeded,
/// [`PprofError::Gzip`] / [`PprofError::Protobuf`] for malformed bytes, and
/// [`PprofError::Invalid`] when [`validate`] fails.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Profile, PprofError> {
    if bytes.is_empty() {
        return Err(PprofError::Empty);
    }
    if gzip::is_gzip(bytes) {
        if bytes.len() > limits.max_compressed_bytes {
            return Err(PprofError::too_large(
                format!("gzipped body of {} bytes", bytes.len()),
                limits.max_compressed_bytes,
            ));
        }
        let raw = gzip::gunzip_bounded(bytes, limits.max_decompressed_bytes)?;
        if raw.is_empty() {
            return Err(PprofError::Empty);
        }
        decode_raw(&raw, limits)
    } else {
        if bytes.len() > limits.max_decompressed_bytes {
            return Err(PprofError::too_large(
                format!("body of {} bytes", bytes.len()),
                limits.max_decompressed_bytes,
            ));
        }
        decode_raw(bytes, limits)
    }
}

/// Pre-scan, prost decode into exactly reserved vectors, validate.
fn decode_raw(raw: &[u8], limits: &DecodeLimits) -> Result<Profile, PprofError> {
    let counts = prescan::scan(raw, limits)?;
    let mut p = Profile {
        sample_type: Vec::with_capacity(counts.sample_types),
        sample: Vec::with_capacity(counts.samples),
        mapping: Vec::with_capacity(counts.mappings),
        location: Vec::with_capacity(counts.locations),
        function: Vec::with_capacity(counts.functions),
        string_table: Vec::with_capacity(counts.strings),
        comment: Vec::with_capacity(counts.comments),
        ..Default::default()
    };
    p.merge(raw)
        .map_err(|e| PprofError::Protobuf(e.to_string()))?;
    validate(&p, limits)?;
    Ok(p)
}

/// Encodes `p` as raw (not gzipped) `profile.proto` bytes.
pub fn encode(p: &Profile) -> Vec<u8> {
    p.encode_to_vec()
}

/// Encodes `p` as gzipped `profile.proto` bytes (default compression, as Go's
/// `profile.Write`), what `go tool pprof` and `/debug/pprof` endpoints serve.
pub fn encode_gzip(p: &Profile) -> Vec<u8> {
    let raw = p.encode_to_vec();
    let mut enc = GzEncoder::new(
        Vec::with_capacity(raw.len() / 3 + 64),
        Compression::default(),
    );
    // Writing into a Vec<u8> cannot fail (it only allocates).
    enc.write_all(&raw)
        .expect("writing gzip into a Vec cannot fail");
    enc.finish().expect("finishing gzip into a Vec cannot fail")
}

/// Entry point for fuzzing (`fuzz/fuzz_targets/pprof_decode.rs`) and the
/// fuzz-style unit tests: decodes `data` under tight and default limits and
/// panics if anything is inconsistent — never on bad input. Returns whether
/// the default limits accepted it.
///
/// Besides "no panic, no unbounded allocation" it checks, for every accepted
/// profile, that [`validate`] accepts it again and that [`encode`] followed by
/// [`decode`] gives back an equal profile.
pub fn fuzz_decode(data: &[u8]) -> bool {
    let tight = DecodeLimits {
        max_compressed_bytes: MIB,
        max_decompressed_bytes: 4 * MIB,
        max_samples: 10_000,
        max_locations: 10_000,
        max_functions: 10_000,
        max_mappings: 100,
        max_strings: 10_000,
        max_string_bytes: 4096,
        max_stack_depth: 64,
        max_labels_per_sample: 8,
        max_sample_types: 8,
        max_lines_per_location: 8,
        max_heap_bytes: 16 * MIB,
    };
    let default = DecodeLimits::default();
    let mut accepted = false;
    for (limits, is_default) in [(&tight, false), (&default, true)] {
        match decode(data, limits) {
            Ok(p) => {
                accepted |= is_default;
                assert_eq!(
                    validate(&p, limits),
                    Ok(()),
                    "decode returned an invalid profile"
                );
                let bytes = encode(&p);
                if bytes.is_empty() {
                    // Only an all-default profile encodes to nothing (the
                    // input held only default-valued or unknown fields).
                    assert_eq!(p, Profile::default());
                } else {
                    let again = decode(&bytes, limits);
                    assert_eq!(
                        again.as_ref(),
                        Ok(&p),
                        "encode/decode round trip changed the profile"
                    );
                }
            }
            Err(e) => {
                // Formatting must not panic either.
                let _ = e.to_string();
            }
        }
    }
    accepted
}
