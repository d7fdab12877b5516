//! `astranet probe --dial NAME --streams N --bytes SIZE`: a load generator that checks
//! what comes back.
//!
//! Each of the N streams sends SIZE bytes of a pattern seeded by its index and reads
//! the echo while it writes, comparing byte for byte. Every stream ends within the
//! deadline: completed with matching data, mismatched (the bytes differ), or failed
//! with an error, counted by kind. Nothing is allowed to hang: a stream still running
//! at the deadline is dropped and counted as `deadline`. With `--ramp`, the streams
//! start one after the other over that time instead of all at once.

use astranet::{Error, Node};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How one stream ended.
enum Outcome {
    Ok,
    Mismatched,
    Failed(&'static str),
}

/// The deterministic byte pattern of one stream (xorshift64*, seeded by its index).
struct Pattern(u64);

impl Pattern {
    fn new(stream: usize) -> Pattern {
        Pattern(0x9E37_79B9_7F4A_7C15 ^ (stream as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

const CHUNK: usize = 16 * 1024;

/// Parses a size: a number of bytes with an optional `KiB`, `MiB` or `GiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size (e.g. 4096, 64KiB, 4MiB)"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// The kind of a failure, named as in the metrics' `dial_errors_total{kind}`.
fn kind(e: &io::Error) -> &'static str {
    if let Some(e) = e.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        return match e {
            Error::Refused { .. } => "refused",
            Error::TimedOut { .. } => "timed_out",
            Error::NoSuchService { .. } => "no_such_service",
            Error::NoRoute(_) => "no_route",
            Error::LinkClosed { .. } => "link_closed",
            Error::RouteLost { .. } => "route_lost",
            Error::Reset(_) => "reset",
            Error::Aborted => "aborted",
            Error::BrokenPipe | Error::PeerClosed(_) => "broken_pipe",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::NodeClosed => "node_closed",
            _ => "other",
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "eof",
        io::ErrorKind::TimedOut => "timed_out",
        io::ErrorKind::ConnectionReset => "reset",
        io::ErrorKind::ConnectionAborted => "link_closed",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        _ => "other",
    }
}

/// One stream: dial, write the pattern while reading and checking the echo.
async fn one(node: Node, target: Arc<str>, index: usize, bytes: u64, dial_timeout: Duration) -> Outcome {
    let stream = match node.dial_timeout(&*target, dial_timeout).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(kind(&e.into())),
    };
    let (mut rx, mut tx) = tokio::io::split(stream);
    let send = async move {
        let (mut pattern, mut buf, mut left) = (Pattern::new(index), vec![0u8; CHUNK], bytes);
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            pattern.fill(&mut buf[..n]);
            tx.write_all(&buf[..n]).await?;
            left -= n as u64;
        }
        tx.shutdown().await?;
        Ok::<_, io::Error>(tx)
    };
    let check = async move {
        let (mut pattern, mut got, mut want, mut left) = (Pattern::new(index), vec![0u8; CHUNK], [0u8; CHUNK], bytes);
        // The pattern is generated in CHUNK-sized pieces on both sides; reads of any
        // size are compared against a window of it.
        let (mut have, mut at) = (0usize, 0usize);
        while left > 0 {
            let n = rx.read(&mut got[..(left.min(CHUNK as u64) as usize)]).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let mut done = 0;
            while done < n {
                if at == have {
                    have = (left - done as u64).min(CHUNK as u64) as usize;
                    pattern.fill(&mut want[..have]);
                    at = 0;
                }
                let m = (n - done).min(have - at);
                if got[done..done + m] != want[at..at + m] {
                    return Ok(false);
                }
                (done, at) = (done + m, at + m);
            }
            left -= n as u64;
        }
        Ok(true)
    };
    match tokio::try_join!(send, check) {
        Ok((_tx, true)) => Outcome::Ok,
        Ok((_, false)) => Outcome::Mismatched,
        Err(e) => Outcome::Failed(kind(&e)),
    }
}

/// Runs the load and prints its summary; true when every stream completed intact.
/// Stream `i` starts `ramp * i / streams` after the first; each has `deadline` from
/// its start.
pub async fn run(node: &Node, target: &str, streams: usize, bytes: u64, deadline: Duration, ramp: Duration) -> bool {
    let target: Arc<str> = target.into();
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let (node, target) = (node.clone(), target.clone());
            tokio::spawn(async move {
                tokio::time::sleep(ramp.mul_f64(i as f64 / streams as f64)).await;
                let outcome = tokio::time::timeout(deadline, one(node, target, i, bytes, deadline))
                    .await
                    .unwrap_or(Outcome::Failed("deadline"));
                (outcome, started.elapsed())
            })
        })
        .collect();
    let (mut ok, mut mismatched, mut errors) = (0usize, 0usize, BTreeMap::<&str, usize>::new());
    let mut failed_at: Option<(Duration, Duration)> = None;
    for task in tasks {
        match task.await {
            Ok((Outcome::Ok, _)) => ok += 1,
            Ok((Outcome::Mismatched, _)) => mismatched += 1,
            Ok((Outcome::Failed(k), at)) => {
                *errors.entry(k).or_default() += 1;
                let (first, last) = failed_at.unwrap_or((at, at));
                failed_at = Some((first.min(at), last.max(at)));
            }
            Err(_) => *errors.entry("panicked").or_default() += 1,
        }
    }
    let failed: usize = errors.values().sum();
    let secs = started.elapsed().as_secs_f64();
    let moved = ok as u64 * bytes;
    println!(
        "streams {streams} ok {ok} failed {failed} mismatched {mismatched} bytes {moved} seconds {secs:.2} MiB/s {:.2}",
        moved as f64 / (1 << 20) as f64 / secs.max(1e-9)
    );
    for (k, n) in &errors {
        println!("error {k} {n}");
    }
    if let Some((first, last)) = failed_at {
        println!("failures from {:.2} to {:.2} seconds", first.as_secs_f64(), last.as_secs_f64());
    }
    ok == streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert!(parse_size("4 parsecs").is_err());
    }

    #[test]
    fn the_pattern_does_not_depend_on_how_it_is_cut() {
        let (mut whole, mut parts) = (vec![0u8; 64], vec![0u8; 64]);
        Pattern::new(3).fill(&mut whole);
        let mut p = Pattern::new(3);
        p.fill(&mut parts[..16]);
        p.fill(&mut parts[16..]);
        assert_eq!(whole, parts);
        Pattern::new(4).fill(&mut parts);
        assert_ne!(whole, parts);
    }
}
