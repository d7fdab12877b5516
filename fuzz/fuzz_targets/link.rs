//! A whole node link driven by arbitrary bytes from its peer, after a valid handshake
//! (v1 or with extensions), with a listener that echoes: the node never panics or
//! hangs, whatever the peer sends.
#![no_main]

use astranet::proto::{Command, Handshake, Header};
use astranet::{HostId, Node};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The node's host id; inputs address stream frames to it (dst host 1, src host 2).
const NODE: u64 = 1;
const PEER: u64 = 2;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(async {
        let node = Node::builder().host_id(HostId(NODE)).max_stream_window(1 << 20).build();
        let listener = node.bind(":1").unwrap();
        tokio::spawn(async move {
            while let Ok(mut s) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let attach = tokio::spawn({
            let node = node.clone();
            async move { node.attach(ours).await }
        });
        let (mut rx, mut tx) = tokio::io::split(theirs);
        tokio::spawn(async move {
            let mut sink = vec![0u8; 1 << 16];
            while matches!(rx.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let hs = if flags & 1 == 1 { Handshake::ours(String::new()) } else { Handshake::default() };
        let payload = hs.encode();
        let mut hello = Vec::new();
        Header {
            cmd: Command::Handshake,
            dst_host: 0,
            src_host: PEER,
            dst_port: 0,
            src_port: 0,
            len: payload.len() as u32,
        }
        .put(&mut hello);
        hello.extend_from_slice(&payload);
        let _ = tx.write_all(&hello).await;
        let _ = tx.write_all(input).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(60), attach).await.expect("attach never hangs");
        node.close();
    });
});
