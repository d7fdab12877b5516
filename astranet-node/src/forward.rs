//! `astranet forward --listen HOST:PORT --to NAME[:KEY]`: a local TCP port whose
//! connections become streams to a mesh service (as `ssh -L` does).

use crate::opts::{BoxError, NodeOpts};
use crate::running::Running;
use astranet::Target;
use clap::Args;
use std::process::ExitCode;
use tokio::net::TcpListener;

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// The local TCP address to accept connections on.
    #[arg(long)]
    pub listen: String,
    /// Where each connection goes: a service name (`NAME`), a service name with a
    /// key that picks its instance by consistent hashing (`NAME:KEY`, the Go
    /// package's vport2registry form), or an address `<host id>:<port>`.
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub node: NodeOpts,
}

/// `NAME`, `NAME:KEY` or `<16 hex digits>:<port>`.
pub fn target(to: &str) -> Result<Target, astranet::Error> {
    match to.parse::<Target>() {
        Ok(t) if t.addr().is_some() => Ok(t),
        _ if to.contains(':') => Target::from_go("vport2registry", to),
        parsed => parsed,
    }
}

pub async fn run(args: ForwardArgs) -> Result<ExitCode, BoxError> {
    let target = target(&args.to)?;
    let running = Running::start(&args.node).await?;
    let listener = TcpListener::bind(&args.listen).await.map_err(|e| format!("--listen {}: {e}", args.listen))?;
    println!("forwarding {} to {}", listener.local_addr()?, args.to);
    let node = running.node.clone();
    let metrics = running.metrics.clone();
    running
        .serve_tcp(listener, move |mut tcp, from| {
            let (node, target, metrics) = (node.clone(), target.clone(), metrics.clone());
            async move {
                match node.dial(target).await {
                    Ok(mut stream) => {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
                    }
                    Err(e) => {
                        metrics.dial_failed(&e);
                        tracing::warn!(%from, error = %e, "dial failed: connection closed");
                    }
                }
            }
        })
        .await
}
