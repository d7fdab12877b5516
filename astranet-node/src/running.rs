//! A node started from the command line: linked to the mesh, with its control socket
//! and metrics endpoint, and its graceful stop.

use crate::control::ControlSocket;
use crate::metrics::{self, Metrics};
use crate::notice::notice;
use crate::opts::{BoxError, NodeOpts};
use astranet::Node;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

pub struct Running {
    pub node: Node,
    pub metrics: Arc<Metrics>,
    drain: Duration,
    _control: Option<ControlSocket>,
}

/// Joins every `--join` address. One that cannot be joined now while another could
/// (one router of two down) is retried in the background until the node closes; when
/// none could, the command fails naming each.
async fn join_all(node: &Node, addrs: &[String]) -> Result<(), BoxError> {
    let mut failed = Vec::new();
    for addr in addrs {
        match node.join(addr.clone()).await {
            Ok(peer) => println!("joined {addr} peer {peer}"),
            Err(e) => failed.push((addr.clone(), e)),
        }
    }
    if !addrs.is_empty() && failed.len() == addrs.len() {
        let why: Vec<String> = failed.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        return Err(format!("cannot join {}", why.join("; ")).into());
    }
    for (addr, e) in failed {
        tracing::warn!(%addr, error = %e, "cannot join now; retrying in the background");
        let node = node.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                tokio::time::sleep(delay).await;
                match node.join(addr.clone()).await {
                    Ok(peer) => return tracing::warn!(%addr, %peer, "joined"),
                    Err(astranet::Error::NodeClosed) => return,
                    Err(_) => delay = (delay * 2).min(Duration::from_secs(60)),
                }
            }
        });
    }
    Ok(())
}

impl Running {
    /// Builds the node, listens and joins as told, and starts the control socket and
    /// the metrics endpoint. Prints what it did, a line each (scripts read them).
    pub async fn start(opts: &NodeOpts) -> Result<Running, BoxError> {
        let node = opts.build()?;
        let metrics = Arc::new(Metrics::default());
        println!("host {}", node.host_id());
        for addr in &opts.listen {
            println!("listening {}", node.listen(addr.as_str()).await?);
        }
        join_all(&node, &opts.join).await?;
        let control = match &opts.control {
            Some(path) => {
                let socket = ControlSocket::serve(node.clone(), path)?;
                println!("control {}", path.display());
                Some(socket)
            }
            None => None,
        };
        if let Some(addr) = &opts.metrics {
            println!("metrics http://{}/metrics", metrics::serve(node.clone(), metrics.clone(), addr).await?);
        }
        Ok(Running { node, metrics, drain: opts.drain_timeout()?, _control: control })
    }

    /// Waits until every connection this command carries has ended, or the drain
    /// timeout passed. Listeners should be closed first, so that none begins.
    /// A second SIGTERM or SIGINT ends the wait at once (as with most servers: the
    /// first asks politely, the second means now).
    pub async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + self.drain;
        let drained = async {
            while self.metrics.active() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            () = drained => {}
            Ok(s) = stop_signal() => {
                notice(format!("{s} again: closing {} connection(s) now", self.metrics.active()));
            }
        }
    }

    /// Accepts TCP connections and runs `handle` on each (counted as active) until
    /// SIGTERM/SIGINT; then stops accepting, lets the connections finish (the drain
    /// timeout) and closes the node.
    pub async fn serve_tcp<F, Fut>(self, listener: TcpListener, handle: F) -> Result<ExitCode, BoxError>
    where
        F: Fn(TcpStream, SocketAddr) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = async {
            loop {
                let (tcp, from) = listener.accept().await?;
                let _ = tcp.set_nodelay(true);
                let (active, work) = (self.metrics.begin(), handle(tcp, from));
                tokio::spawn(async move {
                    let _active = active;
                    work.await;
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), std::io::Error>(())
        };
        tokio::select! {
            r = accept => r?,
            s = stop_signal() => notice(format!("{}: no new connections", s?)),
        }
        drop(listener);
        self.drain().await;
        self.node.close();
        Ok(ExitCode::SUCCESS)
    }
}

/// Completes on SIGTERM or SIGINT; says which.
pub async fn stop_signal() -> Result<&'static str, BoxError> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
