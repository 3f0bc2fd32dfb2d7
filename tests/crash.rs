//! Crash safety: the real binary is SIGKILLed at random moments while several
//! writers push profiles; after each restart every acknowledged profile is
//! served with its exact totals, and nothing unacknowledged is half-there.
//!
//! `crash_cycles` runs 20 cycles; the ignored `crash_cycles_long` runs 200
//! (`cargo test --release --test crash -- --ignored`).

mod common;

use common::daemon::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WRITERS: usize = 3;
const FILE: &str = "parca/fib.pb.gz";

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
    let body = Arc::new(std::fs::read(common::testdata_dir().join(FILE)).unwrap());
    let expected = file_total(FILE);
    let mut srv = Server::start(&[]);
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut attempted: BTreeSet<String> = BTreeSet::new();
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (addr, body, stop) = (srv.addr.clone(), body.clone(), stop.clone());
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
                        match try_http(&addr, "POST", &target, None, &body) {
                            Ok(r) if r.status == 200 => ok.push(inst),
                            Ok(r) => panic!("write failed: {} {}", r.status, r.text()),
                            // Killed: this write may or may not have landed.
                            Err(_) => break,
                        }
                    }
                    (ok, tried)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + next() % 300));
        srv.kill_and_restart(&[]);
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
