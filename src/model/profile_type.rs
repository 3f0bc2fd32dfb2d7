//! Profile types: what `__name__` holds.
//!
//! Every sample type of an ingested pprof becomes its own series, named
//!
//! ```text
//! <name>:<sample type>:<sample unit>:<period type>:<period unit>[:delta]
//! ```
//!
//! e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta`. Parts may be empty
//! (some profilers write an empty sample type or no period type at all); the
//! colons are always there, so a name always has five or six parts.
//!
//! `<name>` is given by the writer (process_cpu, memory, goroutine, block,
//! mutex, …). When the writer gives none, [`infer_name`] derives it from the
//! sample type and period type:
//!
//! | sample type (or period type)                                   | name          |
//! |----------------------------------------------------------------|---------------|
//! | `cpu`, `cpu-time`, or `samples`/`sample` with period type `cpu` | `process_cpu` |
//! | `wall`, `wall-time`, `time` (fgprof), period type `wallclock`/`wall` | `wall`  |
//! | `alloc_*`, `inuse_*`, `space`, `objects`, `live`, period type `space`/`objects` | `memory` |
//! | `goroutine`, `goroutines`                                       | `goroutine`   |
//! | `lock_*`, or `contentions`/`delay` with period type `mutex`     | `mutex`       |
//! | `contentions`, `delay`                                          | `block`       |
//! | `exception`, `exceptions`                                       | `exceptions`  |
//! | anything else                                                   | `unknown`     |
//!
//! Matching is case-insensitive. Go's block and mutex profiles are
//! indistinguishable from their types alone (both `contentions/count` +
//! `delay/nanoseconds`), so a Go mutex profile needs its name from the writer.
//!
//! `:delta` is appended when the writer says the profile is a delta profile,
//! or, when the writer does not say, when the pprof carries a non-zero
//! `duration_nanos` (profiles that cover a window of time, e.g. CPU profiles,
//! are deltas; Go's cumulative heap, block and mutex profiles have no
//! duration) or the name is `process_cpu`.

use std::fmt;

/// The five (or six) parts of a profile type name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileType {
    /// The profile name (`process_cpu`, `memory`, ...).
    pub name: String,
    /// The pprof sample type (`cpu`, `alloc_space`, ...).
    pub sample_type: String,
    /// The pprof sample unit (`nanoseconds`, `bytes`, ...).
    pub sample_unit: String,
    /// The pprof period type.
    pub period_type: String,
    /// The pprof period unit.
    pub period_unit: String,
    /// True for delta profiles (values are per profile, not cumulative).
    pub delta: bool,
}

/// Why a string is not a profile type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid profile type {input:?}: want name:sample_type:sample_unit:period_type:period_unit[:delta]")]
pub struct ParseProfileTypeError {
    /// The rejected input.
    pub input: String,
}

impl ProfileType {
    /// Parses `name:sample_type:sample_unit:period_type:period_unit[:delta]`.
    pub fn parse(s: &str) -> Result<ProfileType, ParseProfileTypeError> {
        let parts: Vec<&str> = s.split(':').collect();
        let delta = match parts.len() {
            5 => false,
            6 if parts[5] == "delta" => true,
            _ => {
                return Err(ParseProfileTypeError {
                    input: s.to_string(),
                })
            }
        };
        Ok(ProfileType {
            name: parts[0].to_string(),
            sample_type: parts[1].to_string(),
            sample_unit: parts[2].to_string(),
            period_type: parts[3].to_string(),
            period_unit: parts[4].to_string(),
            delta,
        })
    }
}

impl fmt::Display for ProfileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}:{}",
            self.name, self.sample_type, self.sample_unit, self.period_type, self.period_unit
        )?;
        if self.delta {
            f.write_str(":delta")?;
        }
        Ok(())
    }
}

/// Infers the profile name from a sample type and the profile's period type
/// (see the module docs for the table).
pub fn infer_name(sample_type: &str, period_type: &str) -> &'static str {
    let st = sample_type.to_ascii_lowercase();
    let pt = period_type.to_ascii_lowercase();
    match st.as_str() {
        "cpu" | "cpu-time" | "cpu_time" => "process_cpu",
        "samples" | "sample" if pt == "cpu" => "process_cpu",
        "wall" | "wall-time" | "wall_time" | "time" => "wall",
        "samples" | "sample" if pt == "wallclock" || pt == "wall" || pt == "wall-time" => "wall",
        "goroutine" | "goroutines" => "goroutine",
        "exception" | "exceptions" => "exceptions",
        "contentions" | "delay" if pt == "mutex" => "mutex",
        "contentions" | "delay" => "block",
        s if s.starts_with("lock_") => "mutex",
        s if s.starts_with("alloc_")
            || s.starts_with("inuse_")
            || s == "space"
            || s == "objects"
            || s == "live" =>
        {
            "memory"
        }
        _ if pt == "space" || pt == "objects" => "memory",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta",
            "memory:alloc_space:bytes:space:bytes",
            "unknown::::",
        ] {
            assert_eq!(ProfileType::parse(s).unwrap().to_string(), s);
        }
        assert!(ProfileType::parse("a:b:c").is_err());
        assert!(ProfileType::parse("a:b:c:d:e:f").is_err());
    }

    #[test]
    fn inference_table() {
        assert_eq!(infer_name("cpu", "cpu"), "process_cpu");
        assert_eq!(infer_name("samples", "cpu"), "process_cpu");
        assert_eq!(infer_name("CPU", "CPU"), "process_cpu");
        assert_eq!(infer_name("alloc_objects", "space"), "memory");
        assert_eq!(infer_name("inuse_space", "space"), "memory");
        assert_eq!(infer_name("contentions", "contentions"), "block");
        assert_eq!(infer_name("delay", "mutex"), "mutex");
        assert_eq!(infer_name("lock_time", ""), "mutex");
        assert_eq!(infer_name("goroutine", "goroutine"), "goroutine");
        assert_eq!(infer_name("time", "wallclock"), "wall");
        assert_eq!(infer_name("samples", "wallclock"), "wall");
        assert_eq!(infer_name("", ""), "unknown");
    }
}
