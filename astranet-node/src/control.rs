//! The control socket of a running node, and `astranet status` that reads it.
//!
//! The node listens on a Unix socket created with mode 0600 (only its user may
//! connect); each connection gets one JSON document — the node, its links, services,
//! routes and counters — and is closed.

use crate::opts::BoxError;
use astranet::Node;
use serde::Serialize;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

#[derive(Serialize)]
pub struct Snapshot {
    pub host_id: String,
    pub role: String,
    pub env: String,
    pub links: Vec<LinkRow>,
    pub services: Vec<ServiceRow>,
    pub routes: Vec<RouteRow>,
    pub stats: StatsRow,
}

#[derive(Serialize)]
pub struct LinkRow {
    pub id: u64,
    pub peer: String,
    pub addr: Option<String>,
    pub streams: usize,
    pub rtt_ms: f64,
    pub v1: bool,
    pub secure: bool,
}

#[derive(Serialize)]
pub struct ServiceRow {
    pub name: String,
    pub addr: String,
    pub via: Option<String>,
    pub reach: String,
}

#[derive(Serialize)]
pub struct RouteRow {
    pub host: String,
    pub via: String,
    pub direct: bool,
}

#[derive(Serialize)]
pub struct StatsRow {
    pub links: usize,
    pub streams: u64,
    pub streams_opened: u64,
    pub pending_dials: usize,
    pub relayed_streams: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub frames_in: u64,
    pub frames_dropped: u64,
}

impl Snapshot {
    pub fn of(node: &Node) -> Snapshot {
        let s = node.stats();
        let cfg = node.config();
        Snapshot {
            host_id: node.host_id().to_string(),
            role: cfg.role.to_string(),
            env: cfg.env.trim_start_matches('.').to_string(),
            links: node
                .links()
                .into_iter()
                .map(|l| LinkRow {
                    id: l.id.0,
                    peer: l.peer.to_string(),
                    addr: l.remote_addr.map(|a| a.to_string()),
                    streams: l.streams,
                    rtt_ms: l.rtt.as_secs_f64() * 1e3,
                    v1: l.v1,
                    secure: l.secure,
                })
                .collect(),
            services: node
                .services()
                .into_iter()
                .map(|s| ServiceRow {
                    name: s.name,
                    addr: s.addr.to_string(),
                    via: s.via.map(|v| v.to_string()),
                    reach: format!("{:?}", s.reach).to_lowercase(),
                })
                .collect(),
            routes: node
                .routes()
                .into_iter()
                .map(|r| RouteRow { host: r.host.to_string(), via: r.via.to_string(), direct: r.direct })
                .collect(),
            stats: StatsRow {
                links: s.links,
                streams: s.streams,
                streams_opened: s.streams_opened,
                pending_dials: s.pending_dials,
                relayed_streams: s.relayed_streams,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                frames_in: s.frames_in,
                frames_dropped: s.frames_dropped,
            },
        }
    }
}

/// The socket, removed when dropped.
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlSocket {
    pub fn serve(node: Node, path: &Path) -> Result<ControlSocket, BoxError> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            // Only a socket is ours to replace: anything else is somebody's file.
            if !meta.file_type().is_socket() {
                return Err(format!("{}: exists and is not a socket; not replacing it", path.display()).into());
            }
            // A socket nobody answers on is a leftover of a node that died.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!("{}: another node serves this control socket", path.display()).into());
            }
            std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        // Created inaccessible to others from the start: no window with a wider mode.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        unsafe { libc::umask(old) };
        let listener = bound.map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut doc = serde_json::to_vec(&Snapshot::of(&node)).expect("a snapshot serializes");
                doc.push(b'\n');
                tokio::spawn(async move {
                    let _ = conn.write_all(&doc).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(ControlSocket { path: path.to_path_buf(), task })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one snapshot from a node's control socket.
pub async fn fetch(path: &Path) -> Result<serde_json::Value, BoxError> {
    let mut conn = UnixStream::connect(path)
        .await
        .map_err(|e| format!("{}: {e} (is a node running with --control {0}?)", path.display()))?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await?;
    Ok(serde_json::from_str(&text)?)
}

/// The snapshot as tables for people.
pub fn render(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let mut out = String::new();
    let env = s(&v["env"]);
    let _ = writeln!(
        out,
        "node {}  role {}  env {}",
        s(&v["host_id"]),
        s(&v["role"]),
        if env.is_empty() { "-" } else { &env }
    );
    let st = &v["stats"];
    let _ = writeln!(
        out,
        "streams {} (opened {}, pending dials {}, relayed {})  bytes in {} out {}  frames in {} dropped {}",
        st["streams"],
        st["streams_opened"],
        st["pending_dials"],
        st["relayed_streams"],
        st["bytes_in"],
        st["bytes_out"],
        st["frames_in"],
        st["frames_dropped"]
    );
    let empty = Vec::new();
    let _ = writeln!(
        out,
        "\nLINKS\n{:<6} {:<18} {:<24} {:>8} {:>9} PROTOCOL",
        "ID", "PEER", "ADDRESS", "STREAMS", "RTT ms"
    );
    for l in v["links"].as_array().unwrap_or(&empty) {
        let proto = match (l["v1"].as_bool().unwrap_or(false), l["secure"].as_bool().unwrap_or(false)) {
            (true, true) => "v1, tls",
            (true, false) => "v1",
            (false, true) => "extended, tls",
            (false, false) => "extended",
        };
        let rtt = l["rtt_ms"].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            out,
            "{:<6} {:<18} {:<24} {:>8} {:>9.3} {}",
            s(&l["id"]),
            s(&l["peer"]),
            s(&l["addr"]),
            s(&l["streams"]),
            rtt,
            proto
        );
    }
    let _ = writeln!(out, "\nSERVICES\n{:<32} {:<30} {:<18} REACH", "NAME", "ADDRESS", "VIA");
    for x in v["services"].as_array().unwrap_or(&empty) {
        let _ = writeln!(out, "{:<32} {:<30} {:<18} {}", s(&x["name"]), s(&x["addr"]), s(&x["via"]), s(&x["reach"]));
    }
    let _ = writeln!(out, "\nROUTES\n{:<18} {:<18} DIRECT", "HOST", "VIA");
    for r in v["routes"].as_array().unwrap_or(&empty) {
        let _ = writeln!(out, "{:<18} {:<18} {}", s(&r["host"]), s(&r["via"]), s(&r["direct"]));
    }
    out
}
