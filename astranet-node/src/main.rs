//! `astranet-node`: runs an astranet node from the shell.
//!
//! ```text
//! astranet-node --listen 0.0.0.0:7000 --role router           # a router
//! astranet-node --join router:7000 --serve-echo db             # host an echo service "db"
//! astranet-node --join router:7000 --dial db --message hello   # dial it by name, print the echo
//! astranet-node --join router:7000 --services                  # print what the mesh announces
//! ```
//! It runs until interrupted (Ctrl-C) unless given a one-off action (`--dial`,
//! `--services`, `--stats`, `--wait-gone`), whose result sets the exit status.

use astranet::{Node, Role};
use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(version, about = "Run an astranet node: router, service host, or a one-off dial")]
struct Args {
    /// Accept links on this TCP address (repeatable).
    #[arg(long)]
    listen: Vec<String>,
    /// Join the node(s) at this address, every address it resolves to (repeatable).
    #[arg(long)]
    join: Vec<String>,
    /// The node's role in the mesh.
    #[arg(long, value_enum, default_value_t = RoleArg::Peer)]
    role: RoleArg,
    /// Environment, dot-separated (`prod.eu` makes names end in `.prod.eu`).
    #[arg(long)]
    env: Option<String>,
    /// Keep-alive period in seconds (Go's rules: PING after half of it, dead after 10×).
    #[arg(long)]
    keepalive: Option<f64>,
    /// Bind this service name (or name:port) and echo every stream opened to it.
    #[arg(long)]
    serve_echo: Vec<String>,
    /// Dial this target (a service name, or <host id>:<port>), send --message, print
    /// the echo, and exit.
    #[arg(long)]
    dial: Option<String>,
    /// The message for --dial.
    #[arg(long, default_value = "hello")]
    message: String,
    /// Print the services the node knows (after --wait seconds) and exit.
    #[arg(long)]
    services: bool,
    /// Exit 0 once this service name is no longer announced (1 after --wait seconds).
    #[arg(long)]
    wait_gone: Option<String>,
    /// Print the node's counters (links, streams, bytes) after --wait seconds and exit.
    #[arg(long)]
    stats: bool,
    /// Seconds between two resolutions of a joined name (new addresses are joined).
    #[arg(long)]
    resolve_interval: Option<f64>,
    /// Seconds the one-off actions wait (dial timeout, service waits).
    #[arg(long, default_value_t = 10.0)]
    wait: f64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Peer,
    Client,
    Server,
    Router,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ASTRANET_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("astranet-node: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let wait = Duration::from_secs_f64(args.wait);
    let mut builder = Node::builder().role(match args.role {
        RoleArg::Peer => Role::Peer,
        RoleArg::Client => Role::Client,
        RoleArg::Server => Role::Server,
        RoleArg::Router => Role::Router,
    });
    if let Some(env) = &args.env {
        builder = builder.env(env.split('.').filter(|p| !p.is_empty()));
    }
    if let Some(t) = args.resolve_interval {
        builder = builder.resolve_interval(Duration::from_secs_f64(t));
    }
    if let Some(k) = args.keepalive {
        builder = builder.keepalive(Duration::from_secs_f64(k));
    }
    // A bad value (keepalive 0, an empty environment part) is an error, not a panic.
    let node = builder.try_build()?;
    println!("host {}", node.host_id());
    for addr in &args.listen {
        println!("listening {}", node.listen(addr.as_str()).await?);
    }
    for addr in &args.join {
        println!("joined {addr} peer {}", node.join(addr.clone()).await?);
    }
    for name in &args.serve_echo {
        let listener = node.bind(name)?;
        println!("serving {} at {}", listener.name().unwrap_or(name), listener.local_addr());
        tokio::spawn(async move {
            while let Ok(mut stream) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }

    if let Some(target) = &args.dial {
        let mut stream = node.dial_timeout(target.as_str(), wait).await?;
        stream.write_all(args.message.as_bytes()).await?;
        let mut echo = vec![0u8; args.message.len()];
        tokio::time::timeout(wait, stream.read_exact(&mut echo)).await??;
        println!("{} echoed {}", stream.peer_addr(), String::from_utf8_lossy(&echo));
        return Ok(ExitCode::SUCCESS);
    }
    if args.services {
        tokio::time::sleep(wait).await;
        for s in node.services() {
            println!("service {s}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.stats {
        tokio::time::sleep(wait).await;
        let stats = node.stats();
        println!("links {}", stats.links);
        println!("streams {}", stats.streams);
        println!("relayed_streams {}", stats.relayed_streams);
        println!("bytes_in {}", stats.bytes_in);
        println!("bytes_out {}", stats.bytes_out);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(name) = &args.wait_gone {
        let mut watch = node.watch_services();
        let gone = watch.wait_for(wait, |s| s.iter().all(|s| s.name != *name)).await;
        return Ok(if gone.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    tokio::signal::ctrl_c().await?;
    node.close();
    Ok(ExitCode::SUCCESS)
}
