//! `astranet expose NAME --to HOST:PORT`: publish a local TCP service into the mesh.
//!
//! Every stream dialed to NAME becomes a TCP connection to the local service, spliced
//! both ways with half-close carried (end of stream on one side shuts down writing on
//! the other). With `--http-check PATH` the name is published only while
//! `GET PATH` answers 2xx/3xx; with `-- CMD ARGS…` the command is started first and
//! the node stops with it.

use crate::metrics::Metrics;
use crate::notice::notice;
use crate::opts::{seconds, BoxError, LinkListen, NodeOpts};
use crate::running::{stop_signal, Running};
use astranet::{Listener, Node};
use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

#[derive(Args, Debug)]
pub struct ExposeArgs {
    /// The service name to publish (`name` or `name:port`; the environment is appended).
    pub name: String,
    /// The local TCP service: `HOST:PORT`.
    #[arg(long)]
    pub to: String,
    /// Publish only while `GET PATH` on the service answers 2xx or 3xx.
    #[arg(long, value_name = "PATH")]
    pub http_check: Option<String>,
    /// Seconds between two health checks.
    #[arg(long, default_value_t = 2.0)]
    pub check_interval: f64,
    #[command(flatten)]
    pub listen: LinkListen,
    #[command(flatten)]
    pub node: NodeOpts,
    /// The application to start (after `--`); the node stops when it exits, and it
    /// gets SIGTERM when the node is stopped.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Health checks no closer than this: a check is a TCP connection and a request.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

pub async fn run(args: ExposeArgs) -> Result<ExitCode, BoxError> {
    // Caught here, not at the first dial of every client.
    if !matches!(args.to.rsplit_once(':'), Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok()) {
        return Err(format!("--to takes HOST:PORT (the local service), not {:?}", args.to).into());
    }
    let interval = seconds("check-interval", args.check_interval)?;
    if interval < MIN_CHECK_INTERVAL {
        return Err(format!("--check-interval must be at least {}", MIN_CHECK_INTERVAL.as_secs_f64()).into());
    }
    let mut child = match args.command.split_first() {
        Some((cmd, rest)) => Some(Command::new(cmd).args(rest).spawn().map_err(|e| format!("{cmd}: {e}"))?),
        None => None,
    };
    match serve(&args, interval, &mut child).await {
        Ok(code) => Ok(code),
        Err(e) => {
            // The node did not start (or failed): the application goes with it.
            stop_child(&mut child).await;
            Err(e)
        }
    }
}

/// Runs the node and publishes the name until a signal, the application's exit or an
/// error.
async fn serve(args: &ExposeArgs, interval: Duration, child: &mut Option<Child>) -> Result<ExitCode, BoxError> {
    let running = Running::start(&args.node).await?;
    let publisher = Publisher { node: running.node.clone(), metrics: running.metrics.clone(), args };
    let outcome = tokio::select! {
        r = publisher.run(interval) => r.map(|()| None),
        s = stop_signal() => s.map(|s| { notice(format!("{s}: withdrawing {}", args.name)); None }),
        status = wait_child(child) => Ok(Some(status)),
    };
    // Leaving `select!` dropped the publisher's listener: the name is withdrawn, new
    // dials are refused. Connections in flight may finish.
    running.drain().await;
    running.node.close();
    let code = match outcome? {
        Some(status) => status,
        None => stop_child(child).await,
    };
    Ok(code)
}

struct Publisher<'a> {
    node: Node,
    metrics: Arc<Metrics>,
    args: &'a ExposeArgs,
}

impl Publisher<'_> {
    /// Publishes the name (while healthy, with `--http-check`); runs until dropped.
    async fn run(&self, interval: Duration) -> Result<(), BoxError> {
        let Some(path) = &self.args.http_check else {
            let listener = self.publish()?;
            return self.serve(listener).await;
        };
        let mut serving: Option<tokio::task::JoinHandle<()>> = None;
        let mut listener_slot: Option<Arc<Listener>> = None;
        loop {
            let healthy = http_ok(&self.args.to, path).await;
            match (healthy, listener_slot.is_some()) {
                (true, false) => {
                    let listener = Arc::new(self.publish()?);
                    let (l, to, metrics) = (listener.clone(), self.args.to.clone(), self.metrics.clone());
                    serving = Some(tokio::spawn(async move { accept_loop(&l, &to, &metrics).await }));
                    listener_slot = Some(listener);
                }
                (false, true) => {
                    notice(format!("{} failed its health check: withdrawn", self.args.name));
                    if let Some(task) = serving.take() {
                        task.abort();
                    }
                    if let Some(l) = listener_slot.take() {
                        l.close();
                    }
                }
                _ => {}
            }
            tokio::time::sleep(interval).await;
        }
    }

    fn publish(&self) -> Result<Listener, BoxError> {
        let listener = self.node.bind(&self.args.name)?;
        println!(
            "exposing {} at {} to {}",
            listener.name().unwrap_or(&self.args.name),
            listener.local_addr(),
            self.args.to
        );
        Ok(listener)
    }

    async fn serve(&self, listener: Listener) -> Result<(), BoxError> {
        accept_loop(&listener, &self.args.to, &self.metrics).await;
        Ok(())
    }
}

async fn accept_loop(listener: &Listener, to: &str, metrics: &Arc<Metrics>) {
    while let Ok(mut stream) = listener.accept().await {
        let (to, active) = (to.to_string(), metrics.begin());
        tokio::spawn(async move {
            let _active = active;
            match TcpStream::connect(&to).await {
                Ok(mut tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                }
                Err(e) => {
                    tracing::warn!(to = %to, error = %e, "the exposed service does not answer");
                    stream.abort();
                }
            }
        });
    }
}

/// `GET path` answered with 2xx or 3xx within two seconds.
async fn http_ok(to: &str, path: &str) -> bool {
    let check = async {
        let mut tcp = TcpStream::connect(to).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {to}\r\nUser-Agent: astranet-health-check\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.ok()?;
        // "HTTP/1.x NNN"
        let status = std::str::from_utf8(&head[9..12]).ok()?.parse::<u16>().ok()?;
        Some((200..400).contains(&status))
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), check).await, Ok(Some(true)))
}

async fn wait_child(child: &mut Option<Child>) -> ExitCode {
    match child {
        Some(c) => {
            let status = c.wait().await;
            match &status {
                Ok(s) => notice(format!("the exposed application exited ({s})")),
                Err(e) => notice(format!("waiting for the exposed application failed: {e}")),
            }
            exit_code(status.ok())
        }
        None => std::future::pending().await,
    }
}

/// SIGTERM to the application, then its exit status (SIGKILL after 10 s).
async fn stop_child(child: &mut Option<Child>) -> ExitCode {
    let Some(c) = child else { return ExitCode::SUCCESS };
    if let Some(pid) = c.id() {
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(10), c.wait()).await {
        // Stopped the way we asked: the run ends well.
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => {
            let _ = c.kill().await;
            ExitCode::FAILURE
        }
    }
}

fn exit_code(status: Option<std::process::ExitStatus>) -> ExitCode {
    match status.and_then(|s| s.code()) {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    }
}
