//! The clock the benches read: this thread's CPU time (on Linux), so that
//! other processes on a shared machine do not inflate the figures; for this
//! single-threaded code it matches wall time on an idle machine. Set
//! `PROFSTORE_BENCH_WALL=1` (or run elsewhere) for wall time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
fn thread_cpu() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call writes only it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Option<Duration> {
    None
}

fn now() -> Duration {
    static WALL: OnceLock<bool> = OnceLock::new();
    static BASE: OnceLock<Instant> = OnceLock::new();
    let wall = *WALL.get_or_init(|| std::env::var_os("PROFSTORE_BENCH_WALL").is_some());
    match (wall, thread_cpu()) {
        (false, Some(t)) => t,
        _ => BASE.get_or_init(Instant::now).elapsed(),
    }
}

/// Runs `f` `iters` times; the time it took (for `Bencher::iter_custom`).
pub fn time<O>(iters: u64, mut f: impl FnMut() -> O) -> Duration {
    let t0 = now();
    for _ in 0..iters {
        std::hint::black_box(f());
    }
    now().saturating_sub(t0)
}
