//! Bulk transfer: one stream, and many streams at once.

use std::io;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::go_original;
use crate::pair::{spawn, timed_out, Kind, Pair, Transport};
use crate::report::{Cell, Recorder, Unit};
use crate::section::Section;
use crate::units::{fmt_count, fmt_size, MIB};

const WRITE_CHUNK: usize = 128 * 1024;
static PAYLOAD: [u8; WRITE_CHUNK] = [0x5a; WRITE_CHUNK];
/// Read buffer of the single bulk stream; the parallel readers use a smaller one, as
/// 10,000 readers with 256 KiB each would measure the allocator.
const BULK_READ_BUF: usize = 256 * 1024;
const PARALLEL_READ_BUF: usize = 16 * 1024;

/// Writes `bytes` and half-closes.
async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: u64) -> io::Result<()> {
    let mut left = bytes;
    while left > 0 {
        let n = left.min(WRITE_CHUNK as u64) as usize;
        stream.write_all(&PAYLOAD[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await
}

/// Reads to end of stream; returns the byte count.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S, buf_size: usize) -> io::Result<u64> {
    let mut buf = vec![0u8; buf_size];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

fn expect_bytes(got: u64, want: u64) -> io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidData, format!("receiver counted {got} bytes, sender wrote {want}")))
    }
}

fn mib_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

pub struct Bulk {
    pub bytes: u64,
    /// Runs per figure; the median is reported.
    pub repeat: usize,
    pub timeout: Duration,
}

impl Section for Bulk {
    const NAME: &'static str = "bulk";

    async fn run<T: Transport>(&self, rec: &mut Recorder<'_>) -> io::Result<()> {
        let mut samples = Vec::with_capacity(self.repeat);
        for _ in 0..self.repeat {
            let elapsed = tokio::time::timeout(self.timeout, bulk::<T>(self.bytes))
                .await
                .map_err(|_| timed_out("in bulk transfer"))??;
            samples.push(mib_per_sec(self.bytes, elapsed));
        }
        rec.put(format!("1 stream × {}", fmt_size(self.bytes)), Unit::MibPerSec, Cell::median(samples));
        Ok(())
    }

    fn applies(&self, _kind: Kind) -> bool {
        true
    }

    async fn run_go(&self, rec: &mut Recorder<'_>) -> io::Result<()> {
        let args = ["bulk".to_owned(), self.bytes.to_string(), self.repeat.to_string()];
        let answer = go_original::measure(&args, self.timeout * self.repeat as u32).await?;
        rec.put(
            format!("1 stream × {}", fmt_size(self.bytes)),
            Unit::MibPerSec,
            Cell::median(go_original::samples(&answer)),
        );
        Ok(())
    }
}

/// Times `bytes` sent over one stream of a fresh pair.
async fn bulk<T: Transport>(bytes: u64) -> io::Result<Duration> {
    let pair = Pair::<T>::connect().await?;
    let (mut opened, mut accepted) = pair.establish_one().await?;
    let start = Instant::now();
    let reader = spawn(async move { drain(&mut accepted, BULK_READ_BUF).await });
    send(&mut opened, bytes).await?;
    expect_bytes(reader.await?, bytes)?;
    Ok(start.elapsed())
}

#[derive(Clone, Copy, Serialize)]
pub struct Shape {
    pub streams: usize,
    pub bytes_per_stream: u64,
}

pub struct Parallel {
    pub shapes: Vec<Shape>,
    /// Runs per figure; the median is reported.
    pub repeat: usize,
    pub in_flight: usize,
    pub timeout: Duration,
}

impl Section for Parallel {
    const NAME: &'static str = "parallel";

    async fn run<T: Transport>(&self, rec: &mut Recorder<'_>) -> io::Result<()> {
        for &Shape { streams, bytes_per_stream: size } in &self.shapes {
            let metric = format!("{} streams × {}", fmt_count(streams), fmt_size(size));
            // Raw TCP needs a connection per stream and two descriptors per connection.
            let count = if T::KIND == Kind::Tcp { streams.min(crate::tcp::max_connections()) } else { streams };
            let mut samples = Vec::with_capacity(self.repeat);
            for _ in 0..self.repeat {
                let elapsed = tokio::time::timeout(self.timeout, parallel::<T>(count, size, self.in_flight))
                    .await
                    .map_err(|_| timed_out(&format!("in {metric}")))??;
                samples.push(mib_per_sec(count as u64 * size, elapsed));
            }
            let mut cell = Cell::median(samples);
            if count < streams {
                cell = cell.with_note(format!(
                    "{} connections × {}, capped by the descriptor limit {}",
                    fmt_count(count),
                    fmt_size(size),
                    crate::sys::fd_limit()
                ));
            }
            rec.put(metric, Unit::MibPerSec, cell);
        }
        Ok(())
    }

    fn applies(&self, _kind: Kind) -> bool {
        true
    }

    async fn run_go(&self, rec: &mut Recorder<'_>) -> io::Result<()> {
        for &Shape { streams, bytes_per_stream: size } in &self.shapes {
            let metric = format!("{} streams × {}", fmt_count(streams), fmt_size(size));
            let args = [streams, size as usize, self.repeat, self.in_flight].map(|n| n.to_string());
            let args: Vec<String> = std::iter::once("parallel".to_owned()).chain(args).collect();
            match go_original::measure(&args, self.timeout * self.repeat as u32).await {
                Ok(answer) => rec.put(metric, Unit::MibPerSec, Cell::median(go_original::samples(&answer))),
                Err(e) => rec.put(metric, Unit::MibPerSec, Cell::missing(e.to_string())),
            }
        }
        Ok(())
    }
}

/// Opens `count` streams on a fresh pair, then times all of them sending `size` bytes at
/// once, until the last byte has been read.
async fn parallel<T: Transport>(count: usize, size: u64, in_flight: usize) -> io::Result<Duration> {
    let pair = Pair::<T>::connect().await?;
    let (opened, accepted) = pair.establish(count, in_flight).await?;
    let start = Instant::now();
    let readers: Vec<_> =
        accepted.into_iter().map(|mut s| spawn(async move { drain(&mut s, PARALLEL_READ_BUF).await })).collect();
    let writers: Vec<_> = opened.into_iter().map(|mut s| spawn(async move { send(&mut s, size).await })).collect();
    for writer in writers {
        writer.await?;
    }
    let mut received = 0;
    for reader in readers {
        received += reader.await?;
    }
    let elapsed = start.elapsed();
    expect_bytes(received, count as u64 * size)?;
    Ok(elapsed)
}
