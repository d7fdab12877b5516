//! Round-trip time of a 64-byte message echoed back on one stream. Each end runs on its
//! own thread and current-thread runtime, as two processes would, and each thread is
//! pinned: left to the scheduler (or to work stealing, on one multi-thread runtime) the
//! ends share a core in some runs and not in others, and on a VM the figure then swings
//! tenfold from run to run (5 µs or 70 µs for raw TCP here).

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::pair::{accept, open, timed_out, Transport};
use crate::report::{Cell, Recorder, Unit};
use crate::section::Section;

const MESSAGE: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The timing end on CPU 0, the echoing end on CPU 1: every message wakes a core.
    TwoCpus,
    /// Both ends on CPU 0, taking turns: the cost of the code path alone.
    OneCpu,
}

impl Placement {
    fn cpus(self) -> (usize, usize) {
        match self {
            Placement::TwoCpus => (0, 1),
            Placement::OneCpu => (0, 0),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Placement::TwoCpus => "ends on CPUs 0 and 1",
            Placement::OneCpu => "both ends on CPU 0",
        }
    }
}

#[derive(Clone, Copy)]
pub struct Latency {
    pub pings: usize,
    /// Runs per figure: each run's p50 and p99, and the median of those is reported, as
    /// a stall of the VM now and then lifts one run's p99 threefold.
    pub repeat: usize,
    pub placement: Placement,
    pub timeout: Duration,
}

impl Section for Latency {
    const NAME: &'static str = "latency";

    async fn run<T: Transport>(&self, rec: &mut Recorder<'_>) -> io::Result<()> {
        const QUANTILES: [(&str, f64); 2] = [("p50", 0.50), ("p99", 0.99)];
        let mut samples = [Vec::new(), Vec::new()];
        for _ in 0..self.repeat {
            let this = *self;
            let mut rtts =
                tokio::task::spawn_blocking(move || this.two_sides::<T>()).await.map_err(io::Error::other)??;
            rtts.sort_unstable();
            for ((_, q), runs) in QUANTILES.iter().zip(&mut samples) {
                runs.push(percentile(&rtts, *q).as_secs_f64() * 1e6);
            }
        }
        for ((name, _), runs) in QUANTILES.iter().zip(samples) {
            rec.put(
                format!("{MESSAGE} B round trip {name}, {}", self.placement.label()),
                Unit::Micros,
                Cell::median(runs),
            );
        }
        Ok(())
    }
}

impl Latency {
    /// Starts the echoing end and the timing end on two threads; returns the round trips.
    fn two_sides<T: Transport>(self) -> io::Result<Vec<Duration>> {
        let (address_tx, address_rx) = oneshot::channel();
        // Each end half-closes when done; the echoing end then keeps its runtime, which
        // flushes its FIN, until the timing end has read it.
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (client_cpu, server_cpu) = self.placement.cpus();
        std::thread::scope(|scope| {
            let server = scope.spawn(|| {
                self.on_own_runtime(server_cpu, async {
                    let (server, address) = T::serve().await?;
                    // Should the timing end be gone already, its error is the one reported.
                    let _ = address_tx.send(address);
                    let mut stream = accept::<T>(&server).await?;
                    echo(&mut stream).await?;
                    stream.shutdown().await?;
                    let _ = done_rx.await;
                    Ok(())
                })
            });
            let client = scope.spawn(|| {
                self.on_own_runtime(client_cpu, async {
                    let address = address_rx.await.map_err(|_| io::Error::other("the echoing end did not start"))?;
                    let client = T::connect(address).await?;
                    let mut stream = open::<T>(&client).await?;
                    let rtts = ping_pong(&mut stream, self.pings).await?;
                    if stream.read(&mut [0u8; 1]).await? != 0 {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "data after the last echo"));
                    }
                    let _ = done_tx.send(());
                    Ok(rtts)
                })
            });
            match (join(client), join(server)) {
                (Ok(rtts), Ok(())) => Ok(rtts),
                (Err(e), Ok(())) => Err(e),
                (Ok(_), Err(e)) => Err(io::Error::new(e.kind(), format!("echoing end: {e}"))),
                // The first failure usually causes the other: both are reported.
                (Err(timing), Err(echoing)) => {
                    Err(io::Error::new(timing.kind(), format!("timing end: {timing}; echoing end: {echoing}")))
                }
            }
        })
    }

    fn on_own_runtime<R>(&self, cpu: usize, work: impl Future<Output = io::Result<R>>) -> io::Result<R> {
        crate::sys::pin_to_cpu(cpu)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime
            .block_on(async { tokio::time::timeout(self.timeout, work).await.map_err(|_| timed_out("in ping-pong"))? })
    }
}

fn join<R>(thread: std::thread::ScopedJoinHandle<'_, io::Result<R>>) -> io::Result<R> {
    thread.join().unwrap_or_else(|_| Err(io::Error::other("a ping-pong thread panicked")))
}

/// Sends back every message until the other end half-closes.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<()> {
    let mut buf = [0u8; MESSAGE];
    loop {
        match stream.read_exact(&mut buf).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        stream.write_all(&buf).await?;
        stream.flush().await?;
    }
}

/// `pings` timed round trips after a tenth as many untimed ones that warm caches and
/// windows, then a half-close; every echo is checked.
async fn ping_pong<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, pings: usize) -> io::Result<Vec<Duration>> {
    let warmup = pings / 10;
    // Written now, so that no page of it is first touched inside the timed loop.
    let mut rtts = vec![Duration::ZERO; pings];
    let mut sent = [0u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    for i in 0..warmup + pings {
        sent[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let start = Instant::now();
        stream.write_all(&sent).await?;
        stream.flush().await?;
        stream.read_exact(&mut back).await?;
        let rtt = start.elapsed();
        if back != sent {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("echo {i} differs from what was sent")));
        }
        if let Some(slot) = i.checked_sub(warmup) {
            rtts[slot] = rtt;
        }
    }
    stream.shutdown().await?;
    Ok(rtts)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let index = (sorted.len().saturating_sub(1) as f64 * q).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}
