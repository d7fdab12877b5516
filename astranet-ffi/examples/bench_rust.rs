//! The Rust side of the C benchmark (astranet-ffi/bench.sh): the same transfers as
//! `bench/bench_c.c`, through the Rust API, so the two figures of one run compare.
//!
//! Two nodes in this process, one TCP link over loopback; `streams` streams each send
//! `bytes` (128 KiB writes, then shutdown) to a server that reads to end of stream.
//! Prints one line: `rust <streams> <bytes per stream> <MiB/s>`.
//!
//!   cargo run --release -p astranet-ffi --example bench_rust -- 1 1073741824

use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK: usize = 128 * 1024;

#[tokio::main]
async fn main() -> astranet::Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let (streams, bytes) = (args.first().copied().unwrap_or(1) as usize, args.get(1).copied().unwrap_or(1 << 30));
    let server = astranet::Node::new();
    let client = astranet::Node::new();
    let tcp = server.listen("127.0.0.1:0").await?;
    let id = client.join(tcp).await?;
    let listener = server.bind(":9")?;
    let read_buf = if streams == 1 { 256 * 1024 } else { 16 * 1024 };

    let receiver = tokio::spawn(async move {
        let mut readers = Vec::with_capacity(streams);
        for _ in 0..streams {
            let mut s = listener.accept().await?;
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; read_buf];
                let mut total = 0u64;
                loop {
                    match s.read(&mut buf).await? {
                        0 => return Ok::<u64, std::io::Error>(total),
                        n => total += n as u64,
                    }
                }
            }));
        }
        let mut total = 0;
        for r in readers {
            total += r.await.expect("reader task")?;
        }
        Ok::<u64, std::io::Error>(total)
    });

    let mut conns = Vec::with_capacity(streams);
    for _ in 0..streams {
        conns.push(client.dial(astranet::Addr::new(id, 9)).await?);
    }
    static PAYLOAD: [u8; CHUNK] = [0x5a; CHUNK];
    let start = Instant::now();
    let mut writers = Vec::with_capacity(streams);
    for mut s in conns {
        writers.push(tokio::spawn(async move {
            let mut left = bytes;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                s.write_all(&PAYLOAD[..n]).await?;
                left -= n as u64;
            }
            s.shutdown().await
        }));
    }
    for w in writers {
        w.await.expect("writer task")?;
    }
    let total = receiver.await.expect("receiver task")?;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(total, bytes * streams as u64);
    println!("rust {streams} {bytes} {:.1}", total as f64 / (1 << 20) as f64 / secs);
    Ok(())
}
