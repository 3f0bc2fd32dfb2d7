//! Crash safety: the real binary is SIGKILLed at random moments while several
//! writers push profiles; after each restart every acknowledged profile is
//! served with its exact totals, and nothing unacknowledged is half-there.
//!
//! Every write carries its own timestamp from a shared clock that advances
//! 1 s per write, and the daemon cuts blocks of 1 minute, so kills also land
//! while blocks are written and WAL segments deleted. Every third write is
//! stamped minutes before the clock (a late profile, for a range usually in
//! a block already: the late head and compaction), and every fourth
//! acknowledged write is sent again (a retry, which must change nothing).
//!
//! `crash_cycles` runs 20 cycles; the ignored `crash_cycles_long` runs 200
//! (`cargo test --release --test crash -- --ignored`).

mod common;

use common::daemon::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WRITERS: usize = 3;
const FILE: &str = "parca/fib.pb.gz";
/// Every write is its own series: the long run selects more than the
/// default per-query series limit.
const ARGS: &[&str] = &["--block-duration", "1m", "--max-query-series", "10000000"];

fn run(cycles: usize) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("crash test seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let profile = Arc::new(common::load(&common::testdata_dir().join(FILE)));
    let clock = Arc::new(AtomicI64::new(1_700_000_000_000));
    let expected = file_total(FILE);
    let mut srv = Server::start(ARGS);
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut attempted: BTreeSet<String> = BTreeSet::new();
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (addr, profile, stop, clock) = (
                    srv.addr.clone(),
                    profile.clone(),
                    stop.clone(),
                    clock.clone(),
                );
                std::thread::spawn(move || {
                    let (mut ok, mut tried) = (Vec::new(), Vec::new());
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let inst = format!("c{cycle}-w{w}-{i}");
                        let target = format!(
                            "/api/v1/write?{}",
                            qs(&[("labels", &format!(r#"{{job="crash",instance="{inst}"}}"#))])
                        );
                        tried.push(inst.clone());
                        let mut p = (*profile).clone();
                        let now = clock.fetch_add(1000, Ordering::Relaxed);
                        let late = (i % 7) as i64 * 20_000 + 120_000;
                        let ts = if i % 3 == 1 { now - late } else { now };
                        p.time_nanos = ts * 1_000_000;
                        let body = profstore::pprof::encode(&p);
                        match try_http(&addr, "POST", &target, None, &body) {
                            Ok(r) if r.status == 200 => ok.push(inst),
                            Ok(r) => panic!("write failed: {} {}", r.status, r.text()),
                            // Killed: this write may or may not have landed.
                            Err(_) => break,
                        }
                        if i % 4 == 0 {
                            match try_http(&addr, "POST", &target, None, &body) {
                                Ok(r) if r.status == 200 => {
                                    assert_eq!(r.json()["duplicate"], true, "a retry");
                                }
                                Ok(r) => panic!("retry failed: {} {}", r.status, r.text()),
                                Err(_) => break,
                            }
                        }
                    }
                    (ok, tried)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + next() % 300));
        srv.kill_and_restart(ARGS);
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            let (ok, tried) = w.join().unwrap();
            acked.extend(ok);
            attempted.extend(tried);
        }
        let got = totals_by_instance(&srv, r#"{job="crash"}"#);
        for inst in &acked {
            assert_eq!(
                got.get(inst),
                Some(&expected),
                "cycle {cycle}: acknowledged {inst} lost or partial (seed {seed})"
            );
        }
        for (inst, total) in &got {
            assert!(
                attempted.contains(inst),
                "cycle {cycle}: {inst} was never sent"
            );
            assert_eq!(
                *total, expected,
                "cycle {cycle}: {inst} is half-there (seed {seed})"
            );
        }
    }
    assert!(acked.len() > cycles, "writes were acknowledged");
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn crash_cycles() {
    run(20);
}

#[test]
#[ignore = "long: 200 kill/restart cycles"]
fn crash_cycles_long() {
    run(200);
}
