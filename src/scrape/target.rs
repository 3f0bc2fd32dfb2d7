//! Targets: a [`ScrapeJob`] expands into one [`TargetSpec`] per target ×
//! enabled profile, and each running loop keeps a [`TargetStatus`].
//!
//! A spec holds everything that decides how its loop scrapes (URL, labels,
//! profile, delta, interval, timeout, body limit), so a reload keeps the
//! loop of a spec that is still there and replaces the others.

use super::config::ScrapeJob;
use super::metrics::TargetLabels;
use crate::model::labels::Labels;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// One target × profile, as configured. Never changes once built.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetSpec {
    /// The job name (the target's scrape pool).
    pub job: String,
    /// The profile name (`memory`, `process_cpu`, ...).
    pub profile: String,
    /// The full URL scraped, query included.
    pub url: String,
    /// `host:port`.
    pub address: String,
    /// `http`.
    pub scheme: String,
    /// The URL path.
    pub path: String,
    /// The labels written: `job`, `instance` and the static labels.
    pub labels: BTreeMap<String, String>,
    /// Whether the profile is stored as a delta profile.
    pub delta: bool,
    /// Time between scrapes.
    pub interval: Duration,
    /// Longest scrape.
    pub timeout: Duration,
    /// Largest response body, bytes.
    pub body_limit: usize,
}

impl TargetSpec {
    /// The labels of the written profiles.
    pub fn series_labels(&self) -> Labels {
        Labels::from_pairs(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The labels of its metrics.
    pub fn metric_labels(&self) -> TargetLabels {
        TargetLabels {
            job: self.job.clone(),
            instance: self.labels.get("instance").cloned().unwrap_or_default(),
            profile: self.profile.clone(),
        }
    }

    /// Prometheus's `discoveredLabels`: the labels before the `__` ones are
    /// dropped (`__address__`, `__scheme__`, `__profile_path__` and Parca's
    /// `__name__` for the profile name) plus `job` and the static labels.
    pub fn discovered_labels(&self) -> BTreeMap<String, String> {
        let mut d: BTreeMap<String, String> = self
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "instance")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        d.insert("__address__".into(), self.address.clone());
        d.insert("__scheme__".into(), self.scheme.clone());
        d.insert("__profile_path__".into(), self.path.clone());
        d.insert("__name__".into(), self.profile.clone());
        d
    }

    /// When the first scrape happens, after `now`: at a fixed offset in the
    /// interval given by a hash of the spec, so targets spread over the
    /// interval (Prometheus's scheme). Always in `[0, interval)`.
    pub fn first_delay(&self, now: SystemTime) -> Duration {
        let interval = self.interval.as_nanos().max(1);
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for part in [&self.job, &self.url, &self.profile] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        for (k, v) in &self.labels {
            h.update(k.as_bytes());
            h.update(&[0]);
            h.update(v.as_bytes());
            h.update(&[0]);
        }
        let offset = u128::from(h.digest()) % interval;
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            % interval;
        let delay = (offset + interval - now) % interval;
        // `delay < interval <= u64::MAX ns` for any interval validated from
        // a config (at most years).
        Duration::from_nanos(u64::try_from(delay).unwrap_or(0))
    }
}

/// Expands validated jobs into specs (sorted, duplicates removed);
/// `default_body_limit` is used where a job has no `body_size_limit`.
pub fn expand(jobs: &[ScrapeJob], default_body_limit: usize) -> Vec<TargetSpec> {
    let mut out = Vec::new();
    for job in jobs {
        for t in &job.targets {
            for p in &job.profiles {
                let mut query = form_urlencoded::Serializer::new(String::new());
                for (k, v) in &job.params {
                    query.append_pair(k, v);
                }
                if p.delta {
                    query.append_pair("seconds", &job.delta_seconds().to_string());
                }
                let query = query.finish();
                let url = if query.is_empty() {
                    format!("{}://{}{}", job.scheme, t.address, p.path)
                } else {
                    format!("{}://{}{}?{query}", job.scheme, t.address, p.path)
                };
                let mut labels = BTreeMap::new();
                labels.insert("job".to_string(), job.name.clone());
                labels.insert("instance".to_string(), t.address.clone());
                // Static labels may override `job` and `instance`, as in
                // Prometheus.
                labels.extend(t.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                out.push(TargetSpec {
                    job: job.name.clone(),
                    profile: p.name.clone(),
                    url,
                    address: t.address.clone(),
                    scheme: job.scheme.clone(),
                    path: p.path.clone(),
                    labels,
                    delta: p.delta,
                    interval: job.interval,
                    timeout: job.timeout,
                    body_limit: job.body_size_limit.unwrap_or(default_body_limit),
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A target's health after its last scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not scraped yet.
    Unknown,
    /// The last scrape succeeded.
    Up,
    /// The last scrape failed.
    Down,
}

impl Health {
    /// Prometheus's spelling: `unknown`, `up`, `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// What the last scrape of a loop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// Up, down or unknown.
    pub health: Health,
    /// The last scrape's error; empty when it succeeded.
    pub last_error: String,
    /// When the last scrape started; `None` before the first.
    pub last_scrape: Option<SystemTime>,
    /// How long it took.
    pub last_duration: Duration,
}

impl Default for TargetStatus {
    fn default() -> Self {
        TargetStatus {
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape: None,
            last_duration: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::config::{ProfileSpec, StaticTarget};

    fn job() -> ScrapeJob {
        ScrapeJob {
            name: "api".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            scheme: "http".into(),
            body_size_limit: None,
            params: vec![("debug".into(), "0".into())],
            targets: vec![
                StaticTarget {
                    address: "a:1".into(),
                    labels: BTreeMap::from([("env".into(), "prod".into())]),
                },
                StaticTarget {
                    address: "b:2".into(),
                    labels: BTreeMap::from([("instance".into(), "bee".into())]),
                },
            ],
            profiles: vec![
                ProfileSpec {
                    name: "memory".into(),
                    path: "/debug/pprof/allocs".into(),
                    delta: false,
                },
                ProfileSpec {
                    name: "process_cpu".into(),
                    path: "/debug/pprof/profile".into(),
                    delta: true,
                },
            ],
        }
    }

    #[test]
    fn expansion() {
        let specs = expand(&[job()], 100);
        assert_eq!(specs.len(), 4);
        let urls: Vec<&str> = specs.iter().map(|s| s.url.as_str()).collect();
        assert!(urls.contains(&"http://a:1/debug/pprof/allocs?debug=0"));
        assert!(urls.contains(&"http://a:1/debug/pprof/profile?debug=0&seconds=4"));
        let a = specs.iter().find(|s| s.address == "a:1").unwrap();
        assert_eq!(a.labels["job"], "api");
        assert_eq!(a.labels["instance"], "a:1");
        assert_eq!(a.labels["env"], "prod");
        assert_eq!(a.body_limit, 100);
        let b = specs.iter().find(|s| s.address == "b:2").unwrap();
        assert_eq!(b.labels["instance"], "bee");
        // A job listed twice expands to the same specs.
        assert_eq!(expand(&[job(), job()], 100), specs);
    }

    #[test]
    fn first_delay_is_within_the_interval_and_spreads() {
        let specs = expand(&[job()], 100);
        let now = SystemTime::now();
        let delays: Vec<Duration> = specs.iter().map(|s| s.first_delay(now)).collect();
        assert!(delays.iter().all(|d| *d < Duration::from_secs(10)));
        // Deterministic per spec and moment.
        assert_eq!(specs[0].first_delay(now), delays[0]);
        let mut distinct = delays.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 1, "{delays:?}");
    }
}
