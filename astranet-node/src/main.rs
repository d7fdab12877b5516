//! `astranet`: run and reach an astranet mesh from the shell.
//!
//! ```text
//! astranet node --listen 0.0.0.0:7000 --role router --control /run/astranet.sock
//! astranet expose web --to 127.0.0.1:8080 --join router:7000 --http-check /healthz
//! astranet forward --listen 127.0.0.1:9000 --to web --join router:7000
//! astranet gateway --http 0.0.0.0:8081 --join router:7000
//! astranet status --control /run/astranet.sock
//! astranet probe --join router:7000 --services
//! astranet probe --join router:7000 --dial db --streams 100 --bytes 4MiB
//! ```
//! Every command that runs a node takes the node options of [`opts::NodeOpts`] as
//! flags, `ASTRANET_*` variables or keys of a TOML file (`--config`).

mod control;
mod expose;
mod forward;
mod gateway;
mod keys;
mod load;
mod metrics;
mod notice;
mod opts;
mod probe;
mod running;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use opts::{BoxError, LinkListen, NodeOpts};
use running::{stop_signal, Running};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(name = "astranet", version, about = "Run and reach an astranet mesh")]
struct Cli {
    /// A TOML file with node options (their long names as keys); flags and
    /// ASTRANET_* variables take precedence over it.
    #[arg(long, global = true, env = "ASTRANET_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines as text or as JSON objects (filter with RUST_LOG, e.g. `astranet=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ASTRANET_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node (a router, or a host of services) until SIGTERM/SIGINT.
    Node(NodeArgs),
    /// Publish a local TCP service into the mesh under a name.
    Expose(expose::ExposeArgs),
    /// Accept local TCP connections and carry each to a mesh service.
    Forward(forward::ForwardArgs),
    /// Serve HTTP/1.1 and route each request to the service its Host names.
    Gateway(gateway::GatewayArgs),
    /// Show a running node's links, services, routes and counters.
    Status(StatusArgs),
    /// Join the mesh briefly: dial a service, list services, or wait for a name to go.
    Probe(probe::ProbeArgs),
    /// Create the mesh CA and node certificates for TLS links.
    Keys(keys::KeysArgs),
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    #[command(flatten)]
    listen: LinkListen,
    #[command(flatten)]
    node: NodeOpts,
    /// Bind this service name (or name:port) and echo every stream opened to it: a
    /// service to try the mesh with (repeatable).
    #[arg(long)]
    serve_echo: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// The node's control socket (its --control; by default the `control` key of
    /// the --config file).
    #[arg(long, env = "ASTRANET_CONTROL")]
    control: Option<PathBuf>,
    /// Print the snapshot as JSON.
    #[arg(long)]
    json: bool,
    /// Refresh every second until interrupted.
    #[arg(long)]
    watch: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return refused(e),
    };
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            notice::failure(format!("cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            notice::failure(e);
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    // Notices are for the operator whatever the filter says.
    let filter = filter.add_directive(format!("{}=info", notice::TARGET).parse().expect("a valid directive"));
    // Colours only for a terminal: a file or journald would get escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => {
            logs.json().init();
            notice::as_json();
        }
    }
}

/// A command line clap refused, or `--help`/`--version`: printed as clap prints it,
/// except that a refusal is one JSON error event when the logs are asked for as JSON
/// (as far as what was given says so).
fn refused(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let lenient = Cli::command().ignore_errors(true).try_get_matches().ok();
    let json = lenient.and_then(|m| m.get_one::<LogFormat>("log_format").copied()) == Some(LogFormat::Json);
    let shown = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if !json || shown {
        e.exit();
    }
    init_logs(LogFormat::Json);
    // Its first line: "error: unexpected argument '--bogus' found".
    let rendered = e.render().to_string();
    notice::failure(rendered.lines().next().unwrap_or("invalid command line").trim_start_matches("error: "));
    ExitCode::from(2)
}

async fn run(cli: Cli) -> Result<ExitCode, BoxError> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Node(mut a) => {
            a.node = a.node.resolve(Some(a.listen.clone()), file)?;
            node(a).await
        }
        Command::Expose(mut a) => {
            a.node = a.node.resolve(Some(a.listen.clone()), file)?;
            expose::run(a).await
        }
        Command::Forward(mut a) => {
            a.node = a.node.resolve(None, file)?;
            forward::run(a).await
        }
        Command::Gateway(mut a) => {
            a.node = a.node.resolve(Some(a.listen.clone()), file)?;
            gateway::run(a).await
        }
        Command::Probe(mut a) => {
            a.node = a.node.resolve(Some(a.listen.clone()), file)?;
            probe::run(a).await
        }
        Command::Status(a) => status(a, file).await,
        Command::Keys(a) => keys::run(a),
    }
}

async fn node(args: NodeArgs) -> Result<ExitCode, BoxError> {
    let running = Running::start(&args.node).await?;
    let mut listeners = Vec::new();
    for name in &args.serve_echo {
        let listener = std::sync::Arc::new(running.node.bind(name)?);
        println!("serving {} at {}", listener.name().unwrap_or(name), listener.local_addr());
        let (l, metrics) = (listener.clone(), running.metrics.clone());
        tokio::spawn(async move {
            while let Ok(mut stream) = l.accept().await {
                let active = metrics.begin();
                tokio::spawn(async move {
                    let _active = active;
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        listeners.push(listener);
    }
    let why = stop_signal().await?;
    notice::notice(format!("{why}: withdrawing services, draining"));
    for l in &listeners {
        l.close();
    }
    running.drain().await;
    running.node.close();
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs, file: Option<&Path>) -> Result<ExitCode, BoxError> {
    let control = match (args.control, file) {
        (Some(path), _) => path,
        (None, Some(file)) => NodeOpts::from_file(file)?
            .control
            .ok_or_else(|| format!("{} has no control key: give --control", file.display()))?,
        (None, None) => return Err("give --control (the node's control socket) or the node's --config".into()),
    };
    loop {
        let snapshot = control::fetch(&control).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&snapshot)?);
        } else {
            if args.watch {
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", control::render(&snapshot));
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop_signal() => return Ok(ExitCode::SUCCESS),
        }
    }
}
