//! The headline: two nodes, ONE TCP link, a million concurrent streams, each echoing a
//! message. Prints counts, times and memory.
//!
//! ```text
//! cargo run --release -p astranet --example million            # 1,000,000 streams
//! cargo run --release -p astranet --example million -- 50000   # fewer
//! ```

use astranet::{Node, Stream};
use futures::stream::{self, StreamExt};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Dials (or echo exchanges) in flight at once.
const IN_FLIGHT: usize = 20_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|_| format!("usage: million [STREAMS], got {arg:?}"))?,
        None => 1_000_000,
    };
    let rss_before = rss_bytes();
    let configure = || Node::builder().max_streams_per_link(n + 1000).listener_backlog(n + 1000);
    let server = configure().build();
    let client = configure().build();
    let tcp = server.listen("127.0.0.1:0").await?;
    client.join(tcp).await?;
    println!("one TCP link {tcp}: client {} -> server {}", client.host_id(), server.host_id());

    // Server: every accepted stream echoes what it reads until EOF.
    let listener = server.bind(":7")?;
    let addr = listener.local_addr();
    tokio::spawn(async move {
        while let Ok(stream) = listener.accept().await {
            tokio::spawn(echo(stream));
        }
    });

    let started = Instant::now();
    let streams: Vec<Stream> = stream::iter(0..n)
        .map(|_| client.dial(addr))
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let open_time = started.elapsed();
    println!(
        "opened {} concurrent streams in {:.2?} ({:.0} streams/s); open on client: {}, on server: {}",
        streams.len(),
        open_time,
        n as f64 / open_time.as_secs_f64(),
        client.stats().streams,
        server.stats().streams
    );

    let started = Instant::now();
    let streams: Vec<Stream> = stream::iter(streams.into_iter().enumerate())
        .map(|(i, s)| tokio::spawn(exchange(i, s)))
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|joined| joined.map_err(|e| e.to_string())?.map_err(|e| e.to_string()))
        .collect::<Result<_, String>>()?;
    let echo_time = started.elapsed();
    let rss = rss_bytes().saturating_sub(rss_before);
    println!(
        "{} streams each echoed a message in {:.2?} ({:.0} echoes/s), all still open: {}",
        streams.len(),
        echo_time,
        n as f64 / echo_time.as_secs_f64(),
        client.stats().streams
    );
    println!(
        "memory: {:.1} MiB RSS for both nodes, their {} streams and one echo task per server stream \
         ({:.0} bytes per stream)",
        rss as f64 / (1 << 20) as f64,
        n,
        rss as f64 / n as f64
    );
    let stats = client.stats();
    println!("link traffic: {} bytes out, {} bytes in, {} frames in", stats.bytes_out, stats.bytes_in, stats.frames_in);
    drop(streams);
    Ok(())
}

/// Echoes until EOF. A small stack buffer: an idle task per stream must stay cheap.
async fn echo(mut stream: Stream) -> std::io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Sends a message on stream `i` and checks its echo; the stream stays open.
async fn exchange(i: usize, mut s: Stream) -> std::io::Result<Stream> {
    let msg = format!("hello from stream {i:07}");
    s.write_all(msg.as_bytes()).await?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await?;
    if back != msg.as_bytes() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("stream {i}: wrong echo")));
    }
    Ok(s)
}

/// Resident memory of this process (Linux), 0 elsewhere.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}
