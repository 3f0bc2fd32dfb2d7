//! [`ScrapeManager`]: the running scrape loops, keyed by their spec.

use super::config::ScrapeJob;
use super::metrics::ScrapeMetrics;
use super::scrape_loop::{self, LoopState};
use super::target::{expand, TargetSpec, TargetStatus};
use crate::engine::Storage;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long [`ScrapeManager::stop`] waits for the loops (each ends at once
/// unless an ingest is in flight).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A running loop.
struct Running {
    state: Arc<LoopState>,
    /// Dropping it stops the loop.
    stop: watch::Sender<()>,
    task: JoinHandle<()>,
}

/// What [`ScrapeManager::apply`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplySummary {
    /// Loops started.
    pub added: usize,
    /// Loops stopped.
    pub removed: usize,
    /// Loops left running.
    pub unchanged: usize,
}

/// Where a reload reads the scrape jobs from: the daemon's config file,
/// read by the layer that owns it (`crate::config`). The error says why the
/// jobs cannot be read.
pub type JobSource = Arc<dyn Fn() -> Result<Vec<ScrapeJob>, String> + Send + Sync>;

/// The scrape loops of the daemon and the config file they come from.
///
/// `loops` holds exactly the loops that run; `reload` serializes reloads
/// (held across the file read), `loops` is held only while loops are
/// started or stopped, never across an await.
pub struct ScrapeManager {
    backend: Arc<dyn Storage>,
    metrics: ScrapeMetrics,
    agent: ureq::Agent,
    default_body_limit: usize,
    /// Reads the scrape jobs again for a reload (the daemon's config
    /// file), when there is one.
    source: Mutex<Option<JobSource>>,
    reload: tokio::sync::Mutex<()>,
    loops: Mutex<BTreeMap<TargetSpec, Running>>,
}

impl std::fmt::Debug for ScrapeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeManager")
            .field("loops", &self.loops.lock().len())
            .finish()
    }
}

impl ScrapeManager {
    /// A manager with no loops; `default_body_limit` is the body limit of
    /// jobs without `body_size_limit` (the daemon's `max_body_bytes`).
    pub fn new(
        backend: Arc<dyn Storage>,
        metrics: ScrapeMetrics,
        default_body_limit: usize,
    ) -> Self {
        ScrapeManager {
            backend,
            metrics,
            agent: scrape_loop::agent(),
            default_body_limit,
            source: Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
            loops: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sets where [`ScrapeManager::reload`] reads the jobs from (none: a
    /// reload is refused).
    pub fn set_job_source(&self, source: Option<JobSource>) {
        *self.source.lock() = source;
    }
    /// Makes the running loops those of `jobs`: starts new specs, stops
    /// removed ones, leaves equal ones running. Must be called on a tokio
    /// runtime (it spawns the loops).
    pub async fn apply(&self, jobs: &[ScrapeJob]) -> ApplySummary {
        let _serial = self.reload.lock().await;
        self.apply_locked(jobs)
    }

    fn apply_locked(&self, jobs: &[ScrapeJob]) -> ApplySummary {
        let wanted = expand(jobs, self.default_body_limit);
        let mut loops = self.loops.lock();
        let mut summary = ApplySummary::default();
        let mut next = BTreeMap::new();
        for spec in wanted {
            if let Some(running) = loops.remove(&spec) {
                summary.unchanged += 1;
                next.insert(spec, running);
                continue;
            }
            summary.added += 1;
            let state = Arc::new(LoopState {
                spec: spec.clone(),
                status: Mutex::new(TargetStatus::default()),
            });
            let (stop, stopped) = watch::channel(());
            let task = tokio::spawn(scrape_loop::run(
                Arc::clone(&state),
                Arc::clone(&self.backend),
                self.agent.clone(),
                self.metrics.clone(),
                stopped,
            ));
            next.insert(spec, Running { state, stop, task });
        }
        // What is left in `loops` is no longer configured: dropping the
        // stop senders ends those loops (an ingest in flight completes).
        for (spec, running) in std::mem::take(&mut *loops) {
            summary.removed += 1;
            self.metrics.remove(&spec.metric_labels());
            drop(running.stop);
        }
        *loops = next;
        self.metrics.set_targets(loops.len());
        summary
    }

    /// Reads the config file again and applies its `scrape_configs`; on any
    /// error the running loops are kept and the error says why. Other
    /// settings of the file need a restart.
    pub async fn reload(&self) -> Result<ApplySummary, String> {
        let _serial = self.reload.lock().await;
        let source = self.source.lock().clone();
        let Some(source) = source else {
            return Err(
                "invalid config: no config file to reload: the daemon was started without --config"
                    .into(),
            );
        };
        let jobs = tokio::task::spawn_blocking(move || source())
            .await
            .map_err(|e| format!("invalid config: reload task failed: {e}"))??;
        Ok(self.apply_locked(&jobs))
    }

    /// The specs and statuses of the running loops, sorted by spec.
    pub fn targets(&self) -> Vec<(TargetSpec, TargetStatus)> {
        self.loops
            .lock()
            .values()
            .map(|r| (r.state.spec.clone(), r.state.status.lock().clone()))
            .collect()
    }

    /// Stops every loop and waits (up to 5 s) until they have ended, so no
    /// ingest is in flight afterwards.
    pub async fn stop(&self) {
        let _serial = self.reload.lock().await;
        let loops = std::mem::take(&mut *self.loops.lock());
        self.metrics.set_targets(0);
        let mut tasks = Vec::with_capacity(loops.len());
        for (_, running) in loops {
            drop(running.stop);
            tasks.push(running.task);
        }
        let all = async {
            for t in tasks {
                if let Err(e) = t.await {
                    tracing::warn!("a scrape loop failed: {e}");
                }
            }
        };
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            tracing::warn!("scrape loops did not stop within {STOP_WAIT:?}");
        }
    }
}
