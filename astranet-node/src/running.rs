//! A node started from the command line: linked to the mesh, with its control socket
//! and metrics endpoint, and its graceful stop.

use crate::control::ControlSocket;
use crate::metrics::{self, Metrics};
use crate::opts::{BoxError, NodeOpts};
use astranet::Node;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

pub struct Running {
    pub node: Node,
    pub metrics: Arc<Metrics>,
    drain: Duration,
    _control: Option<ControlSocket>,
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
        for addr in &opts.join {
            println!("joined {addr} peer {}", node.join(addr.clone()).await?);
        }
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
    pub async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + self.drain;
        while self.metrics.active() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
