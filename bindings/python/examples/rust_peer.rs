//! A Rust node in its own process, for the Python suite and benchmark.
//!
//! ```text
//! cargo run --example rust_peer -- serve             # echo node; prints "READY <tcp> <host id>"
//! cargo run --release --example rust_peer -- bulk BYTES             # Rust API figure, MiB/s
//! cargo run --release --example rust_peer -- streams N BYTES_EACH   # Rust API figure, MiB/s
//! ```
//!
//! `serve` listens on 127.0.0.1 (an ephemeral port), binds virtual port 7, echoes every
//! stream until EOF and exits when its standard input closes. The benchmark modes run
//! two nodes over one loopback TCP link in this process, the same shape as the Python
//! benchmark, and print one number.

use astranet::Node;
use std::io::{BufRead, Write};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve().await,
        Some("bulk") => {
            let bytes: u64 = args.get(1).ok_or("bulk BYTES")?.parse()?;
            println!("{:.1}", bulk(bytes).await?);
            Ok(())
        }
        Some("streams") => {
            let n: usize = args.get(1).ok_or("streams N BYTES_EACH")?.parse()?;
            let each: u64 = args.get(2).ok_or("streams N BYTES_EACH")?.parse()?;
            println!("{:.1}", streams(n, each).await?);
            Ok(())
        }
        _ => Err("usage: rust_peer serve | bulk BYTES | streams N BYTES_EACH".into()),
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::new();
    let tcp = node.listen("127.0.0.1:0").await?;
    let listener = node.bind(":7")?;
    println!("READY {tcp} {}", node.host_id());
    std::io::stdout().flush()?;
    tokio::spawn(async move {
        while let Ok(stream) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    // Exit when the parent closes our stdin (or dies).
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().lock().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            line.clear();
        }
    })
    .await?;
    node.close();
    Ok(())
}

async fn pair() -> Result<(Node, Node), Box<dyn std::error::Error>> {
    let (server, client) = (Node::new(), Node::new());
    let tcp = server.listen("127.0.0.1:0").await?;
    client.join(tcp).await?;
    Ok((server, client))
}

/// One stream, `bytes` written in 64 KiB writes and read with 64 KiB reads: MiB/s.
async fn bulk(bytes: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let (server, client) = pair().await?;
    let listener = server.bind(":9")?;
    let addr = listener.local_addr();
    let reader = tokio::spawn(async move {
        let mut s = listener.accept().await?;
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok::<u64, std::io::Error>(total);
            }
            total += n as u64;
        }
    });
    let mut s = client.dial(addr).await?;
    let chunk = vec![7u8; 64 << 10];
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let got = reader.await??;
    assert_eq!(got, bytes);
    Ok(bytes as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64())
}

/// `n` concurrent streams, each sending `each` bytes to an echo-less sink that
/// answers with one byte at EOF: MiB/s over all.
async fn streams(n: usize, each: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let (server, client) = pair().await?;
    let listener = server.bind(":9")?;
    let addr = listener.local_addr();
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                }
                let _ = s.write_all(b"k").await;
            });
        }
    });
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = client.dial(addr).await?;
            let chunk = vec![7u8; 64 << 10];
            let mut left = each;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                s.write_all(&chunk[..k]).await?;
                left -= k as u64;
            }
            s.shutdown().await?;
            let mut ack = [0u8; 1];
            s.read_exact(&mut ack).await?;
            Ok::<(), std::io::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((n as u64 * each) as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64())
}
