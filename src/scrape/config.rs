//! `scrape_configs`: the YAML form (a compatible subset of Parca's), its
//! validation into [`ScrapeJob`]s, and [`locate`], which finds the line of a
//! setting so that every error names the file and the line.
//!
//! ```yaml
//! scrape_configs:
//!   - job_name: api                 # required, unique, non-empty
//!     scrape_interval: 10s          # default 10s
//!     scrape_timeout: 10s           # default: the interval; never longer
//!     scheme: http                  # only http (the build has no TLS)
//!     body_size_limit: 32MiB        # default: the daemon's max_body_bytes
//!     params: {debug: ["0"]}        # query parameters of every scrape
//!     static_configs:
//!       - targets: ["10.0.0.1:6060"]  # host:port, no scheme, no path
//!         labels: {env: prod}         # added to every series
//!     profiling_config:
//!       path_prefix: /internal      # prepended to every path
//!       pprof_config:
//!         memory: {enabled: true, path: /debug/pprof/allocs}
//!         fgprof: {path: /debug/fgprof, delta: true}
//! ```
//!
//! The default profiles, all enabled, are Parca's: `memory`
//! (`/debug/pprof/allocs`), `block`, `goroutine`, `mutex`
//! (`/debug/pprof/<name>`) and `process_cpu` (`/debug/pprof/profile`,
//! delta). An entry under `pprof_config` overrides the default of the same
//! name field by field (an entry that does not say `enabled` is enabled); a
//! new name needs a `path`. A delta profile is scraped with `seconds=` the
//! timeout's whole seconds minus one, so its timeout must be at least 2 s.
//!
//! Invariants of a validated [`ScrapeJob`]: `0 < timeout <= interval`; every
//! target is `host:port` with a numeric port; label names are
//! `[a-zA-Z_][a-zA-Z0-9_]*` without the reserved `__` prefix and values are
//! non-empty; profile names are valid profile names and paths start with `/`;
//! the enabled profiles are sorted by name.

use crate::model::labels::METRIC_NAME;
use crate::model::time::parse_duration;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// Default `scrape_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The shortest timeout of a delta profile: it is scraped with `seconds=`
/// the timeout's whole seconds minus one, which must be at least 1.
pub const MIN_DELTA_TIMEOUT: Duration = Duration::from_secs(2);

/// One entry of `scrape_configs` as written in the file; `None` is "not
/// given".
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfigFile {
    /// The job's name: the `job` label and the target's `scrapePool`.
    #[serde(default)]
    pub job_name: String,
    /// How often each target and profile is scraped.
    pub scrape_interval: Option<String>,
    /// How long one scrape may take.
    pub scrape_timeout: Option<String>,
    /// `http`.
    pub scheme: Option<String>,
    /// Largest response body, bytes (`1048576`, `512KiB`, `32MiB`, `1GB`;
    /// K/M/G are powers of 1024 as in Prometheus).
    pub body_size_limit: Option<String>,
    /// Query parameters added to every scrape URL.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// Targets and their labels.
    #[serde(default)]
    pub static_configs: Vec<StaticConfigFile>,
    /// Which profiles to scrape.
    pub profiling_config: Option<ProfilingConfigFile>,
}

/// One entry of `static_configs`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticConfigFile {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels added to every series of these targets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `profiling_config`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProfilingConfigFile {
    /// Per profile name, overrides of the defaults or new profiles.
    #[serde(default)]
    pub pprof_config: BTreeMap<String, PprofConfigFile>,
    /// Prepended to every profile's path.
    pub path_prefix: Option<String>,
}

/// One entry of `pprof_config`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PprofConfigFile {
    /// Whether the profile is scraped (default true).
    pub enabled: Option<bool>,
    /// The URL path.
    pub path: Option<String>,
    /// Whether the endpoint answers a delta over `seconds=` (stored as a
    /// `:delta` profile type).
    pub delta: Option<bool>,
}

/// A validated job (see the module doc for its invariants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeJob {
    /// `job_name`.
    pub name: String,
    /// `scrape_interval`.
    pub interval: Duration,
    /// `scrape_timeout`.
    pub timeout: Duration,
    /// `scheme`.
    pub scheme: String,
    /// `body_size_limit`; `None` is the daemon's `max_body_bytes`.
    pub body_size_limit: Option<usize>,
    /// `params`, flattened in order.
    pub params: Vec<(String, String)>,
    /// The targets, in file order.
    pub targets: Vec<StaticTarget>,
    /// The enabled profiles, sorted by name.
    pub profiles: Vec<ProfileSpec>,
}

/// One target of a job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StaticTarget {
    /// `host:port`.
    pub address: String,
    /// Its static labels.
    pub labels: BTreeMap<String, String>,
}

/// One enabled profile of a job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileSpec {
    /// The profile name (`memory`, `process_cpu`, ...).
    pub name: String,
    /// The URL path, prefix included.
    pub path: String,
    /// Whether it is a delta profile.
    pub delta: bool,
}

impl ScrapeJob {
    /// The `seconds=` of a delta profile: the timeout's whole seconds minus
    /// one (at least 1 once validated).
    pub fn delta_seconds(&self) -> u64 {
        self.timeout.as_secs().saturating_sub(1).max(1)
    }
}

/// One step of a path into the YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathElem {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A validation error and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Path from the document root to the offending setting.
    pub path: Vec<PathElem>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", display_path(&self.path), self.message)
    }
}

/// `scrape_configs[0].static_configs[1].targets[2]`.
pub fn display_path(path: &[PathElem]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            PathElem::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathElem::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A path builder for the validation below.
#[derive(Clone)]
struct At(Vec<PathElem>);

impl At {
    fn key(&self, k: &str) -> At {
        let mut p = self.0.clone();
        p.push(PathElem::Key(k.to_string()));
        At(p)
    }
    fn index(&self, i: usize) -> At {
        let mut p = self.0.clone();
        p.push(PathElem::Index(i));
        At(p)
    }
    fn err(&self, message: impl Into<String>) -> Invalid {
        Invalid {
            path: self.0.clone(),
            message: message.into(),
        }
    }
}

/// The default profiles: `(name, path, delta)`.
pub const DEFAULT_PROFILES: [(&str, &str, bool); 5] = [
    ("block", "/debug/pprof/block", false),
    ("goroutine", "/debug/pprof/goroutine", false),
    ("memory", "/debug/pprof/allocs", false),
    ("mutex", "/debug/pprof/mutex", false),
    ("process_cpu", "/debug/pprof/profile", true),
];

/// Validates `scrape_configs` (the path of each error starts with
/// `scrape_configs`).
pub fn validate(configs: &[ScrapeConfigFile]) -> Result<Vec<ScrapeJob>, Invalid> {
    let root = At(vec![PathElem::Key("scrape_configs".into())]);
    let mut names = BTreeSet::new();
    let mut jobs = Vec::with_capacity(configs.len());
    for (i, c) in configs.iter().enumerate() {
        let at = root.index(i);
        let job = validate_job(c, &at)?;
        if !names.insert(job.name.clone()) {
            return Err(at
                .key("job_name")
                .err(format!("duplicate job_name {:?}", job.name)));
        }
        jobs.push(job);
    }
    Ok(jobs)
}

fn duration(value: &Option<String>, at: &At) -> Result<Option<Duration>, Invalid> {
    let Some(s) = value else { return Ok(None) };
    // Units are required, as in Prometheus's config files (`10s`, `1m`).
    if !s.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(at.err(format!(
            "{s:?} is not a duration: give a unit, e.g. \"10s\" or \"1m\""
        )));
    }
    let ms = parse_duration(s).map_err(|e| at.err(e))?;
    if ms <= 0 {
        return Err(at.err(format!("{s:?} must be positive")));
    }
    Ok(Some(Duration::from_millis(ms as u64)))
}

/// Parses a byte size: digits with an optional unit `B`, `KB`/`KiB`,
/// `MB`/`MiB`, `GB`/`GiB` (all powers of 1024, as Prometheus's
/// `body_size_limit`).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let err = || format!("{s:?} is not a size (e.g. 1048576, 512KiB, 32MiB)");
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(err());
    }
    let n: usize = t[..digits].parse().map_err(|_| err())?;
    let mult: usize = match t[digits..].trim() {
        "" | "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        _ => return Err(err()),
    };
    let v = n.checked_mul(mult).ok_or_else(err)?;
    if v == 0 {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(v)
}

fn valid_label_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// Checks a `host:port` target.
pub fn check_target(t: &str) -> Result<(), String> {
    if t.contains("://") {
        return Err(format!(
            "{t:?} is not host:port: give the scheme in `scheme`, not in the target"
        ));
    }
    if t.contains('/') {
        return Err(format!(
            "{t:?} is not host:port: give paths under profiling_config"
        ));
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(format!("{t:?} is not host:port: the port is missing"));
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{t:?} is not host:port: bad host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "{t:?} is not host:port: write an IPv6 address in brackets"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "{t:?} is not host:port: {port:?} is not a port number"
        )),
    }
}

fn validate_job(c: &ScrapeConfigFile, at: &At) -> Result<ScrapeJob, Invalid> {
    if c.job_name.trim().is_empty() {
        return Err(at.key("job_name").err("job_name is empty"));
    }
    let interval =
        duration(&c.scrape_interval, &at.key("scrape_interval"))?.unwrap_or(DEFAULT_INTERVAL);
    let timeout = duration(&c.scrape_timeout, &at.key("scrape_timeout"))?.unwrap_or(interval);
    if timeout > interval {
        return Err(at.key("scrape_timeout").err(format!(
            "scrape_timeout {timeout:?} is longer than scrape_interval {interval:?}"
        )));
    }
    let scheme = c.scheme.clone().unwrap_or_else(|| "http".to_string());
    match scheme.as_str() {
        "http" => {}
        "https" => {
            return Err(at
                .key("scheme")
                .err("\"https\" is not supported: this build scrapes plain http only"))
        }
        other => {
            return Err(at
                .key("scheme")
                .err(format!("unknown scheme {other:?}: want \"http\"")))
        }
    }
    let body_size_limit = match &c.body_size_limit {
        None => None,
        Some(s) => Some(parse_bytes(s).map_err(|e| at.key("body_size_limit").err(e))?),
    };
    let mut params = Vec::new();
    for (k, vs) in &c.params {
        if k.is_empty() {
            return Err(at.key("params").err("empty parameter name"));
        }
        if k == "seconds" {
            return Err(at.key("params").key(k).err(
                "`seconds` is set per delta profile from scrape_timeout; do not give it in params",
            ));
        }
        for v in vs {
            params.push((k.clone(), v.clone()));
        }
    }
    let mut targets = Vec::new();
    for (gi, g) in c.static_configs.iter().enumerate() {
        let gat = at.key("static_configs").index(gi);
        for (name, value) in &g.labels {
            let lat = gat.key("labels").key(name);
            if !valid_label_name(name) {
                return Err(lat.err(format!(
                    "invalid label name {name:?}: want [a-zA-Z_][a-zA-Z0-9_]*"
                )));
            }
            if name.starts_with("__") || name == METRIC_NAME {
                return Err(lat.err(format!(
                    "label name {name:?} is reserved (names starting with __)"
                )));
            }
            if value.is_empty() {
                return Err(lat.err(format!("label {name:?} has an empty value")));
            }
        }
        for (ti, t) in g.targets.iter().enumerate() {
            check_target(t).map_err(|e| gat.key("targets").index(ti).err(e))?;
            targets.push(StaticTarget {
                address: t.clone(),
                labels: g.labels.clone(),
            });
        }
    }
    let profiles = validate_profiles(c.profiling_config.as_ref(), at)?;
    if let Some(p) = profiles.iter().find(|p| p.delta) {
        if timeout < MIN_DELTA_TIMEOUT {
            return Err(at.key("scrape_timeout").err(format!(
                "{} is a delta profile scraped with seconds= the timeout minus 1 s: \
                 scrape_timeout must be at least 2s, got {:?} (raise scrape_interval and \
                 scrape_timeout, or disable {})",
                p.name, timeout, p.name
            )));
        }
    }
    Ok(ScrapeJob {
        name: c.job_name.clone(),
        interval,
        timeout,
        scheme,
        body_size_limit,
        params,
        targets,
        profiles,
    })
}

fn validate_profiles(
    pc: Option<&ProfilingConfigFile>,
    at: &At,
) -> Result<Vec<ProfileSpec>, Invalid> {
    let at = at.key("profiling_config");
    let mut merged: BTreeMap<String, (bool, Option<String>, bool)> = DEFAULT_PROFILES
        .iter()
        .map(|&(n, p, d)| (n.to_string(), (true, Some(p.to_string()), d)))
        .collect();
    let prefix = match pc.and_then(|p| p.path_prefix.as_ref()) {
        Some(p) if !p.starts_with('/') => {
            return Err(at
                .key("path_prefix")
                .err(format!("{p:?} must start with /")))
        }
        Some(p) => p.trim_end_matches('/').to_string(),
        None => String::new(),
    };
    for (name, e) in pc.map(|p| &p.pprof_config).into_iter().flatten() {
        let eat = at.key("pprof_config").key(name);
        crate::ingest::check_profile_name(name).map_err(|err| eat.err(err.to_string()))?;
        if let Some(path) = &e.path {
            if !path.starts_with('/') {
                return Err(eat.key("path").err(format!("{path:?} must start with /")));
            }
        }
        let entry = merged.entry(name.clone()).or_insert((true, None, false));
        entry.0 = e.enabled.unwrap_or(true);
        if e.path.is_some() {
            entry.1 = e.path.clone();
        }
        if let Some(d) = e.delta {
            entry.2 = d;
        }
        if entry.0 && entry.1.is_none() {
            return Err(eat.err(format!("{name:?} is not a default profile: give its path")));
        }
    }
    Ok(merged
        .into_iter()
        .filter_map(|(name, (enabled, path, delta))| {
            Some(ProfileSpec {
                name,
                path: format!("{prefix}{}", path.filter(|_| enabled)?),
                delta,
            })
        })
        .collect())
}

/// The line and column (1-based) of the node at `path` in the YAML `text`,
/// or of its closest ancestor that exists (a missing key is reported where
/// its mapping is). `None` when the text does not parse.
pub fn locate(text: &str, path: &[PathElem]) -> Option<(usize, usize)> {
    for len in (0..=path.len()).rev() {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        match Probe(&path[..len]).deserialize(de) {
            Err(e) if e.to_string().contains(FOUND) => {
                return e.location().map(|l| (l.line(), l.column()));
            }
            _ => continue,
        }
    }
    None
}

/// The marker error [`Probe`] raises at the node it was looking for; the
/// YAML deserializer attaches that node's position to it.
const FOUND: &str = "profstore-probe-found";

/// Walks a YAML document along a path and fails at its end with [`FOUND`].
struct Probe<'a>(&'a [PathElem]);

/// Fails at whatever node it is given with [`FOUND`].
struct Here;

impl<'de> Visitor<'de> for Here {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("anything")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_some<D: de::Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0.is_empty() {
            d.deserialize_any(Here)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping or a sequence")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let want = match self.0.first() {
            Some(PathElem::Index(i)) => Some(*i),
            _ => None,
        };
        let mut i = 0;
        loop {
            if Some(i) == want {
                if seq.next_element_seed(Probe(&self.0[1..]))?.is_none() {
                    return Ok(());
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let want = match self.0.first() {
            Some(PathElem::Key(k)) => Some(k.as_str()),
            _ => None,
        };
        while let Some(key) = map.next_key::<KeyText>()? {
            if want.is_some() && key.0.as_deref() == want {
                map.next_value_seed(Probe(&self.0[1..]))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A mapping key as text (`None` for a key that is not a scalar).
struct KeyText(Option<String>);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<KeyText, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyText, E> {
                Ok(KeyText(Some(s.to_string())))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<KeyText, E> {
                Ok(KeyText(Some(b.to_string())))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<KeyText, E> {
                Ok(KeyText(Some(n.to_string())))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<KeyText, E> {
                Ok(KeyText(Some(n.to_string())))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<KeyText, E> {
                Ok(KeyText(Some(n.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<KeyText, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<KeyText, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Vec<ScrapeConfigFile> {
        #[derive(Deserialize)]
        struct Doc {
            scrape_configs: Vec<ScrapeConfigFile>,
        }
        serde_yaml_ng::from_str::<Doc>(yaml).unwrap().scrape_configs
    }

    #[test]
    fn defaults_are_parcas() {
        let jobs = validate(&parse(
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['h:1']\n",
        ))
        .unwrap();
        let j = &jobs[0];
        assert_eq!(j.interval, DEFAULT_INTERVAL);
        assert_eq!(j.timeout, DEFAULT_INTERVAL);
        assert_eq!(j.delta_seconds(), 9);
        let names: Vec<_> = j.profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["block", "goroutine", "memory", "mutex", "process_cpu"]
        );
        let cpu = j.profiles.iter().find(|p| p.name == "process_cpu").unwrap();
        assert!(cpu.delta);
        assert_eq!(cpu.path, "/debug/pprof/profile");
    }

    #[test]
    fn overrides_merge_with_defaults() {
        let jobs = validate(&parse(
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 1s\n    profiling_config:\n      path_prefix: /x/\n      pprof_config:\n        process_cpu: {enabled: false}\n        block: {enabled: false}\n        goroutine: {enabled: false}\n        mutex: {enabled: false}\n        memory: {path: /heap}\n        fgprof: {path: /debug/fgprof}\n",
        ))
        .unwrap();
        assert_eq!(
            jobs[0].profiles,
            vec![
                ProfileSpec {
                    name: "fgprof".into(),
                    path: "/x/debug/fgprof".into(),
                    delta: false
                },
                ProfileSpec {
                    name: "memory".into(),
                    path: "/x/heap".into(),
                    delta: false
                },
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let text =
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 1s\n    scrape_timeout: 5s\n";
        let e = validate(&parse(text)).unwrap_err();
        assert_eq!(display_path(&e.path), "scrape_configs[0].scrape_timeout");
        assert_eq!(locate(text, &e.path).unwrap().0, 4);
        let text = "scrape_configs:\n  - job_name: a\n  - job_name: a\n";
        let e = validate(&parse(text)).unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
        assert_eq!(locate(text, &e.path).unwrap().0, 3);
        // A missing key is reported at its mapping.
        let text = "scrape_configs:\n  - scrape_interval: 1s\n";
        let e = validate(&parse(text)).unwrap_err();
        assert!(e.message.contains("job_name is empty"), "{e}");
        assert_eq!(locate(text, &e.path).unwrap().0, 2);
        let text = "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets:\n          - ok:1\n          - http://bad:2\n";
        let e = validate(&parse(text)).unwrap_err();
        assert_eq!(locate(text, &e.path).unwrap().0, 6);
    }

    #[test]
    fn bad_values() {
        for (yaml, want) in [
            ("scrape_interval: 10", "give a unit"),
            ("scrape_interval: soon", "duration"),
            ("scrape_timeout: 0s", "positive"),
            ("scheme: ftp", "unknown scheme"),
            ("scheme: https", "https"),
            ("body_size_limit: lots", "size"),
            ("params: {seconds: ['3']}", "seconds"),
            (
                "scrape_interval: 1s\n    profiling_config: {pprof_config: {fgprof: {delta: true}}}",
                "give its path",
            ),
            ("scrape_interval: 1s", "at least 2s"),
            ("static_configs: [{targets: ['a']}]", "port"),
            ("static_configs: [{targets: ['a:x']}]", "port"),
            ("static_configs: [{targets: ['a:1'], labels: {__x: y}}]", "reserved"),
            ("static_configs: [{targets: ['a:1'], labels: {'a-b': y}}]", "label name"),
            ("profiling_config: {pprof_config: {memory: {path: heap}}}", "start with /"),
        ] {
            let text = format!("scrape_configs:\n  - job_name: a\n    {yaml}\n");
            let e = validate(&parse(&text)).unwrap_err();
            assert!(e.to_string().contains(want), "{yaml}: {e}");
            assert!(locate(&text, &e.path).is_some(), "{yaml}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("2KiB").unwrap(), 2048);
        assert_eq!(parse_bytes("3MB").unwrap(), 3 << 20);
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("1TB").is_err());
    }
}
