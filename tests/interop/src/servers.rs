//! Services run by nodes of this project for the Go side to dial: the counterparts of
//! gopeer's serve modes.

use crate::{read_digest, write_pattern};
use astranet::{Listener, Stream};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// What a service does with each accepted stream.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Writes back everything as it arrives; at EOF, closes (drops the stream).
    Echo,
    /// Reads to EOF, waits, writes it all back, closes.
    ReplyAfter(Duration),
    /// Reads to EOF, answers the 8-byte count and the SHA-256, closes.
    Sink,
    /// Writes `size` pattern bytes for `seed`, closes.
    Source { size: u64, seed: u64 },
}

/// An accept loop; stops when dropped.
pub struct Served(JoinHandle<()>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Handles every stream accepted on `listener` with `mode`.
pub fn serve(listener: Listener, mode: Mode) -> Served {
    Served(tokio::spawn(async move {
        while let Ok(stream) = listener.accept().await {
            tokio::spawn(handle(stream, mode));
        }
    }))
}

async fn handle(mut s: Stream, mode: Mode) {
    match mode {
        Mode::Echo => {
            let mut buf = vec![0; 64 * 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        Mode::ReplyAfter(delay) => {
            let mut data = Vec::new();
            if s.read_to_end(&mut data).await.is_ok() {
                tokio::time::sleep(delay).await;
                let _ = s.write_all(&data).await;
            }
        }
        Mode::Sink => {
            if let Ok((n, digest)) = read_digest(&mut s).await {
                let mut answer = n.to_be_bytes().to_vec();
                answer.extend_from_slice(&digest);
                let _ = s.write_all(&answer).await;
            }
        }
        Mode::Source { size, seed } => {
            let _ = write_pattern(&mut s, seed, size).await;
        }
    }
    // Dropping the stream closes it gracefully: FIN2 after everything written.
}
