//! `astranet probe`: a node that joins the mesh for one question and exits with the
//! answer — dial a service and print its echo, load it with many checked streams
//! (`--streams`, see [`crate::load`]), list services, print counters, or wait for a
//! name to be withdrawn.

use crate::opts::{seconds, BoxError, LinkListen, NodeOpts};
use crate::running::Running;
use clap::Args;
use std::process::ExitCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub listen: LinkListen,
    #[command(flatten)]
    pub node: NodeOpts,
    /// Dial this target (a service name, or `<host id>:<port>`), send --message and
    /// print what comes back.
    #[arg(long)]
    pub dial: Option<String>,
    /// The message for --dial.
    #[arg(long, default_value = "hello")]
    pub message: String,
    /// With --dial: open this many streams at once, send --bytes on each and check the
    /// echo; prints `streams N ok N failed N mismatched N bytes ...` and the errors by
    /// kind. Every stream ends within --wait seconds.
    #[arg(long, requires = "dial")]
    pub streams: Option<usize>,
    /// With --streams: bytes per stream (`4096`, `64KiB`, `4MiB`).
    #[arg(long, default_value = "64KiB", value_parser = crate::load::parse_size)]
    pub bytes: u64,
    /// With --streams: start the streams evenly over this many seconds, not at once.
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Print the services the node knows after --wait seconds.
    #[arg(long)]
    pub services: bool,
    /// Print the node's counters after --wait seconds.
    #[arg(long)]
    pub stats: bool,
    /// Exit 0 once this name, announced when the probe joined or later, is withdrawn
    /// (1 when that did not happen within --wait seconds).
    #[arg(long)]
    pub wait_gone: Option<String>,
    /// Seconds the question may take.
    #[arg(long, default_value_t = 10.0)]
    pub wait: f64,
}

pub async fn run(args: ProbeArgs) -> Result<ExitCode, BoxError> {
    let wait = seconds("wait", args.wait)?;
    let running = Running::start(&args.node).await?;
    let node = &running.node;
    let code = if let (Some(target), Some(streams)) = (&args.dial, args.streams) {
        if crate::load::run(node, target, streams, args.bytes, wait, seconds("ramp", args.ramp)?).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    } else if let Some(target) = &args.dial {
        let mut stream = node.dial_timeout(target.as_str(), wait).await?;
        stream.write_all(args.message.as_bytes()).await?;
        let mut echo = vec![0u8; args.message.len()];
        tokio::time::timeout(wait, stream.read_exact(&mut echo)).await??;
        println!("{} echoed {}", stream.peer_addr(), String::from_utf8_lossy(&echo));
        ExitCode::SUCCESS
    } else if let Some(name) = &args.wait_gone {
        let mut watch = node.watch_services();
        let started = tokio::time::Instant::now();
        let seen = watch.wait_for(wait, |s| s.iter().any(|s| s.name == *name)).await;
        let left = wait.saturating_sub(started.elapsed());
        let gone = match seen {
            Ok(_) => watch.wait_for(left, |s| s.iter().all(|s| s.name != *name)).await.is_ok(),
            Err(_) => false,
        };
        if gone {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    } else {
        tokio::time::sleep(wait).await;
        if args.services {
            for s in node.services() {
                println!("service {s}");
            }
        }
        if args.stats {
            let stats = node.stats();
            println!("links {}", stats.links);
            println!("streams {}", stats.streams);
            println!("relayed_streams {}", stats.relayed_streams);
            println!("bytes_in {}", stats.bytes_in);
            println!("bytes_out {}", stats.bytes_out);
        }
        ExitCode::SUCCESS
    };
    node.close();
    Ok(code)
}
