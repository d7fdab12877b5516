//! Faults across real network stacks: namespaces joined by impaired links (loss,
//! delay, reordering, rate limits, cuts; see `support/impair.rs`) and nodes killed or
//! partitioned, with `astranet probe --streams` checking every byte that comes back.
//!
//! Every test asserts that no byte is lost or altered (mismatched == 0) and that no
//! stream hangs (each ends within its deadline: ok + failed == streams). Needs root,
//! `ip` and /dev/net/tun; elsewhere each test prints why it is skipped and passes.
//! docs/FAULTS.md has the figures measured with these tests.

mod support;

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::hosts::Hosts;
use support::impair::Link;

/// What `probe --streams` reported.
#[derive(Debug, Default)]
struct Load {
    streams: usize,
    ok: usize,
    failed: usize,
    mismatched: usize,
    bytes: u64,
    seconds: f64,
    errors: BTreeMap<String, usize>,
    /// Seconds after the start of the load of the first and the last failure.
    failures: Option<(f64, f64)>,
}

impl Load {
    /// Parses the probe's output; panics when the probe did not report (it hung and
    /// was killed, or could not start).
    fn from(out: &Output) -> Load {
        let text = String::from_utf8_lossy(&out.stdout);
        let mut load = Load::default();
        let mut reported = false;
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["streams", n, "ok", ok, "failed", f, "mismatched", m, "bytes", b, "seconds", s, ..] => {
                    reported = true;
                    load.streams = n.parse().unwrap();
                    load.ok = ok.parse().unwrap();
                    load.failed = f.parse().unwrap();
                    load.mismatched = m.parse().unwrap();
                    load.bytes = b.parse().unwrap();
                    load.seconds = s.parse().unwrap();
                }
                ["error", kind, n] => {
                    load.errors.insert(kind.to_string(), n.parse().unwrap());
                }
                ["failures", "from", a, "to", b, "seconds"] => {
                    load.failures = Some((a.parse().unwrap(), b.parse().unwrap()));
                }
                _ => {}
            }
        }
        assert!(reported, "the load did not report (hung?): {text}\n{}", String::from_utf8_lossy(&out.stderr));
        load
    }

    /// Nothing lost, nothing hung.
    fn assert_sound(&self) {
        assert_eq!(self.mismatched, 0, "bytes came back altered: {self:?}");
        assert_eq!(self.ok + self.failed, self.streams, "streams unaccounted for: {self:?}");
    }
}

/// Runs `probe --dial db --streams N --bytes SIZE` on host `h`; every stream ends
/// within `deadline` seconds, the probe is killed 30 s after that.
fn load(hosts: &Hosts, h: &str, join: &[&str], streams: usize, bytes: &str, deadline: u64, extra: &[&str]) -> Load {
    let (n, wait) = (streams.to_string(), deadline.to_string());
    let mut args: Vec<&str> = join.iter().flat_map(|j| ["--join", j]).collect();
    args.extend(["--dial", "db", "--streams", &n, "--bytes", bytes, "--wait", &wait]);
    args.extend(extra);
    let load = Load::from(&hosts.run_for(h, deadline + 30, &args));
    load.assert_sound();
    load
}

/// A (10.78.1.2) and B (10.78.1.1) joined by one impaired link; B serves the echo
/// service `db` on 10.78.1.1:7000. `None` after printing why the test is skipped.
fn pair(test: &str, node_args: &[&str]) -> Option<(Hosts, Link)> {
    let mut hosts = support::hosts::setup(test, &["a", "b"])?;
    let link = match Link::new(&hosts, "a", "b", "10.78.1") {
        Ok(link) => link,
        Err(why) => {
            eprintln!("SKIPPED {test}: no TUN devices here ({why})");
            return None;
        }
    };
    let mut args = vec!["--listen", "0.0.0.0:7000", "--serve-echo", "db"];
    args.extend(node_args);
    hosts.spawn("b", &args);
    Some((hosts, link))
}

const B: &str = "10.78.1.1:7000";

/// Runs 100 streams of `bytes` each across the pair's link impaired as `impair`
/// says; all of them must come back intact.
fn intact_under(test: &str, what: &str, bytes: &str, impair: impl FnOnce(&mut support::impair::Impairment)) -> Load {
    let Some((hosts, link)) = pair(test, &[]) else { return Load::default() };
    link.set(impair);
    let l = load(&hosts, "a", &[B], 100, bytes, 240, &[]);
    let (sent, dropped) =
        (link.counters.delivered.load(Ordering::Relaxed), link.counters.dropped.load(Ordering::Relaxed));
    eprintln!("{what}: 100 x {bytes}: ok {} in {:.1} s; packets delivered {sent} dropped {dropped}", l.ok, l.seconds);
    assert_eq!(l.ok, 100, "{what}: {l:?}");
    l
}

/// Loss of 1% of the packets each way: 100 streams x 4 MiB intact.
#[test]
fn loss_1_percent() {
    intact_under("l1", "loss 1%", "4MiB", |s| s.loss = 0.01);
}

/// Loss of 5% of the packets each way: 100 streams x 4 MiB intact.
#[test]
fn loss_5_percent() {
    intact_under("l5", "loss 5%", "4MiB", |s| s.loss = 0.05);
}

/// 50 ms one way, varying by up to 10 ms either way (which also reorders packets):
/// 100 streams x 1 MiB intact. (With 4 MiB each the run takes 110 s: TCP with this
/// much reordering on a 100 ms round trip carries about 3.6 MiB/s.)
#[test]
fn delay_50ms_jitter_10ms() {
    intact_under("dj", "delay 50 ms +- 10 ms", "1MiB", |s| {
        s.delay = Duration::from_millis(50);
        s.jitter = Duration::from_millis(10);
    });
}

/// One packet in ten held back 3 ms, so that the ones behind it overtake it:
/// 100 streams x 4 MiB intact.
#[test]
fn reordering() {
    intact_under("ro", "reorder 10% by 3 ms", "4MiB", |s| {
        s.reorder = 0.1;
        s.reorder_gap = Duration::from_millis(3);
    });
}

/// 10 Mbit/s each way with a 64 KiB queue (tail drop) and 5 ms delay. 100 streams x
/// 256 KiB: 25 MiB each way take about 21 s at this rate (4 MiB each would take
/// 6 minutes).
#[test]
fn rate_10_mbit() {
    intact_under("rt", "10 Mbit/s", "256KiB", |s| {
        s.rate_bps = 10_000_000;
        s.queue_bytes = 64 * 1024;
        s.delay = Duration::from_millis(5);
    });
}
