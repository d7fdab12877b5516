//! The options every command that runs a node shares, and where they come from.
//!
//! Precedence, highest first: a flag on the command line, its `ASTRANET_*`
//! environment variable, the same key in the TOML file given with `--config` (or
//! `ASTRANET_CONFIG`), the library's default. The file's keys are the flags' long
//! names: `listen = ["0.0.0.0:7000"]`, `role = "router"`, `keepalive = 5.0`.

use astranet::{Node, Role};
use clap::Args;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a node is set up and linked to the mesh.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeOpts {
    /// Where the node accepts links: set by [`LinkListen`] on the commands that have
    /// `--listen` for it, or by the file's `listen` key.
    #[arg(skip)]
    pub listen: Vec<String>,
    /// Join the node(s) at this address: every address a DNS name resolves to, and
    /// new ones as they appear (repeatable; comma-separated in the variable).
    #[arg(long, env = "ASTRANET_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// The node's role: peer, client, server or router.
    #[arg(long, env = "ASTRANET_ROLE")]
    pub role: Option<String>,
    /// Environment, dot-separated: `prod.eu` makes every name end in `.prod.eu`.
    #[arg(long, env = "ASTRANET_ENV")]
    pub env: Option<String>,
    /// Keep-alive period in seconds (PING after half of it; a link silent for ten
    /// times it is dead).
    #[arg(long, env = "ASTRANET_KEEPALIVE")]
    pub keepalive: Option<f64>,
    /// Seconds between two resolutions of a joined name.
    #[arg(long, env = "ASTRANET_RESOLVE_INTERVAL")]
    pub resolve_interval: Option<f64>,
    /// Seconds a dial waits for its stream (and for a name to be announced).
    #[arg(long, env = "ASTRANET_DIAL_TIMEOUT")]
    pub dial_timeout: Option<f64>,
    /// Streams per link at most.
    #[arg(long, env = "ASTRANET_MAX_STREAMS_PER_LINK")]
    pub max_streams_per_link: Option<usize>,
    /// Dials waiting for accept per listener at most.
    #[arg(long, env = "ASTRANET_LISTENER_BACKLOG")]
    pub listener_backlog: Option<usize>,
    /// Links accepted from one source IP address at most (handshakes in progress count).
    #[arg(long, env = "ASTRANET_MAX_LINKS_PER_ADDRESS")]
    pub max_links_per_address: Option<usize>,
    /// Streams a peer may reset per second on a link before it is disconnected.
    #[arg(long, env = "ASTRANET_MAX_RESETS_PER_SECOND")]
    pub max_resets_per_second: Option<u32>,
    /// Bytes received but not yet read per link; a peer that sends more is disconnected.
    #[arg(long, env = "ASTRANET_MAX_LINK_BUFFER")]
    pub max_link_buffer: Option<usize>,
    /// Bytes of control frames (answers, credit) queued per link; a peer that makes it
    /// grow past this by not reading is disconnected.
    #[arg(long, env = "ASTRANET_MAX_CONTROL_QUEUE")]
    pub max_control_queue: Option<usize>,
    /// Bytes of data frames queued for writing per link before writers wait.
    #[arg(long, env = "ASTRANET_LINK_WRITE_QUEUE")]
    pub link_write_queue: Option<usize>,
    /// Seconds a new link may take to send its HANDSHAKE before it is closed.
    #[arg(long, env = "ASTRANET_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<f64>,
    /// Seconds a frame that began arriving may take to complete before its link is closed.
    #[arg(long, env = "ASTRANET_FRAME_STALL_TIMEOUT")]
    pub frame_stall_timeout: Option<f64>,
    /// Seconds without data either way after which a stream is reset (none by default).
    #[arg(long, env = "ASTRANET_STREAM_IDLE_TIMEOUT")]
    pub stream_idle_timeout: Option<f64>,
    /// Serve `astranet status` on this Unix socket (created with mode 0600).
    #[arg(long, env = "ASTRANET_CONTROL")]
    pub control: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address (`GET /metrics`).
    #[arg(long, env = "ASTRANET_METRICS")]
    pub metrics: Option<String>,
    /// On SIGTERM/SIGINT, seconds open streams get to finish before the node closes.
    #[arg(long, env = "ASTRANET_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<f64>,
    /// TLS: the mesh CA's certificate (PEM). With --tls-cert and --tls-key, every link
    /// is encrypted and authenticated (see `astranet keys`).
    #[arg(long, env = "ASTRANET_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// TLS: this node's certificate (PEM), signed by the mesh CA.
    #[arg(long, env = "ASTRANET_TLS_CERT", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// TLS: this node's private key (PEM).
    #[arg(long, env = "ASTRANET_TLS_KEY", requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
    /// TLS: also accept plaintext links (nodes without TLS, such as Go nodes).
    #[arg(long, env = "ASTRANET_ALLOW_PLAINTEXT", num_args = 0..=1, default_missing_value = "true")]
    pub allow_plaintext: Option<bool>,
    /// Access rules, from the configuration file only (`[[access]]` tables with
    /// `peers`, `announce` and `dial`; see docs/OPERATIONS.md). Needs TLS.
    #[arg(skip)]
    pub access: Option<Vec<astranet::AccessRule>>,
}

/// `--listen` for links, on the commands whose `--listen` means that (`forward`
/// uses the flag for its own TCP port; its node takes `listen` from the file).
#[derive(Args, Debug, Default, Clone)]
pub struct LinkListen {
    /// Accept links on this TCP address (repeatable; comma-separated in the variable).
    #[arg(long = "listen", env = "ASTRANET_LISTEN", value_delimiter = ',')]
    pub addrs: Vec<String>,
}

impl NodeOpts {
    /// The options, with the command line's link addresses and the file's keys.
    pub fn resolve(mut self, listen: Option<LinkListen>, file: Option<&Path>) -> Result<NodeOpts, BoxError> {
        if let Some(l) = listen {
            self.listen = l.addrs;
        }
        self.with_file(file)
    }

    /// Fills what neither a flag nor the environment set from the configuration file.
    fn with_file(mut self, file: Option<&Path>) -> Result<NodeOpts, BoxError> {
        let Some(path) = file else { return Ok(self) };
        let f = NodeOpts::from_file(path)?;
        if self.listen.is_empty() {
            self.listen = f.listen;
        }
        if self.join.is_empty() {
            self.join = f.join;
        }
        macro_rules! fill {
            ($($field:ident),*) => { $( if self.$field.is_none() { self.$field = f.$field; } )* };
        }
        fill!(
            role,
            env,
            keepalive,
            resolve_interval,
            dial_timeout,
            max_streams_per_link,
            listener_backlog,
            max_links_per_address,
            max_resets_per_second,
            max_link_buffer,
            max_control_queue,
            link_write_queue,
            handshake_timeout,
            frame_stall_timeout,
            stream_idle_timeout,
            control,
            metrics,
            drain_timeout,
            tls_ca,
            tls_cert,
            tls_key,
            allow_plaintext,
            access
        );
        Ok(self)
    }

    /// The options a configuration file sets. Its relative paths are taken from the
    /// file's folder, as its author meant them whatever folder the command runs in
    /// (those of flags and variables, from the working directory).
    pub fn from_file(path: &Path) -> Result<NodeOpts, BoxError> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut f: NodeOpts = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let folder = path.parent().unwrap_or(Path::new(""));
        for p in [&mut f.control, &mut f.tls_ca, &mut f.tls_cert, &mut f.tls_key].into_iter().flatten() {
            if p.is_relative() {
                *p = folder.join(&*p);
            }
        }
        Ok(f)
    }

    /// The node these options describe (not linked yet).
    pub fn build(&self) -> Result<Node, BoxError> {
        let mut b = Node::builder();
        if let Some(role) = &self.role {
            b = b.role(role.parse::<Role>()?);
        }
        if let Some(env) = &self.env {
            b = b.env(env.split('.').filter(|p| !p.is_empty()));
        }
        if let Some(k) = self.keepalive {
            b = b.keepalive(seconds("keepalive", k)?);
        }
        if let Some(t) = self.resolve_interval {
            b = b.resolve_interval(seconds("resolve-interval", t)?);
        }
        if let Some(t) = self.dial_timeout {
            b = b.dial_timeout(seconds("dial-timeout", t)?);
        }
        if let Some(n) = self.max_streams_per_link {
            b = b.max_streams_per_link(n);
        }
        if let Some(n) = self.listener_backlog {
            b = b.listener_backlog(n);
        }
        if let Some(n) = self.max_links_per_address {
            b = b.max_links_per_address(n);
        }
        if let Some(n) = self.max_resets_per_second {
            b = b.max_resets_per_second(n);
        }
        if let Some(n) = self.max_link_buffer {
            b = b.max_link_buffer(n);
        }
        if let Some(n) = self.max_control_queue {
            b = b.max_control_queue(n);
        }
        if let Some(n) = self.link_write_queue {
            b = b.link_write_queue(n);
        }
        if let Some(t) = self.handshake_timeout {
            b = b.handshake_timeout(seconds("handshake-timeout", t)?);
        }
        if let Some(t) = self.stream_idle_timeout {
            b = b.stream_idle_timeout(seconds("stream-idle-timeout", t)?);
        }
        if let Some(t) = self.frame_stall_timeout {
            b = b.frame_stall_timeout(seconds("frame-stall-timeout", t)?);
        }
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => {
                let tls = astranet::TlsConfig::from_pem_files(ca, cert, key)?;
                b = b.tls(tls.allow_plaintext(self.allow_plaintext.unwrap_or(false)));
            }
            (None, None, None) => {
                if self.allow_plaintext.is_some() {
                    return Err("--allow-plaintext goes with --tls-ca, --tls-cert and --tls-key".into());
                }
            }
            _ => return Err("TLS needs all of --tls-ca, --tls-cert and --tls-key (or their file keys)".into()),
        }
        if let Some(rules) = &self.access {
            b = b.access(rules.iter().cloned().collect());
        }
        Ok(b.try_build()?)
    }

    pub fn drain_timeout(&self) -> Result<Duration, BoxError> {
        seconds("drain-timeout", self.drain_timeout.unwrap_or(30.0))
    }
}

/// A number of seconds from the command line, refusing what is not a finite number
/// of at least zero.
pub fn seconds(what: &str, s: f64) -> Result<Duration, BoxError> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{what} takes seconds (a number >= 0), not {s}").into())
}
