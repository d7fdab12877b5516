//! Counters of the command (connections it carries, dial errors by kind) and the
//! Prometheus endpoint that shows them with the node's own.

use crate::opts::BoxError;
use astranet::{Error, Node};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

#[derive(Default)]
pub struct Metrics {
    active: AtomicU64,
    carried: AtomicU64,
    dial_errors: Mutex<BTreeMap<&'static str, u64>>,
}

/// Counts one connection while it lives.
pub struct Active(Arc<Metrics>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// A connection begins; it ends when the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.carried.fetch_add(1, Ordering::Relaxed);
        Active(self.clone())
    }

    pub fn dial_failed(&self, e: &Error) {
        let kind = match e {
            Error::Refused { .. } => "refused",
            Error::TimedOut { .. } => "timed_out",
            Error::NoSuchService { .. } => "no_such_service",
            Error::NoRoute(_) => "no_route",
            Error::LinkClosed { .. } | Error::RouteLost { .. } => "link_closed",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::InvalidTarget { .. } => "invalid_target",
            Error::NodeClosed => "node_closed",
            _ => "other",
        };
        *self.dial_errors.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
    }

    /// The Prometheus text exposition of the node and of this command.
    pub fn render(&self, node: &Node) -> String {
        let s = node.stats();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP astranet_{name} {help}\n# TYPE astranet_{name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "astranet_{name}{labels} {v}");
            }
        };
        let one = |v: f64| [(String::new(), v)];
        metric("links", "gauge", "Links whose handshake completed and that are up.", &one(s.links as f64));
        metric("streams", "gauge", "Streams known to the node (open, opening, lingering).", &one(s.streams as f64));
        metric("streams_opened_total", "counter", "Streams ever created.", &one(s.streams_opened as f64));
        metric("pending_dials", "gauge", "DIALs waiting in this node's backlogs.", &one(s.pending_dials as f64));
        metric("relayed_streams", "gauge", "Streams relayed between other hosts.", &one(s.relayed_streams as f64));
        metric("bytes_in_total", "counter", "Bytes read from links, headers included.", &one(s.bytes_in as f64));
        metric("bytes_out_total", "counter", "Bytes written to links, headers included.", &one(s.bytes_out as f64));
        metric("frames_in_total", "counter", "Frames received.", &one(s.frames_in as f64));
        metric("frames_dropped_total", "counter", "Frames dropped.", &one(s.frames_dropped as f64));
        let rtts: Vec<(String, f64)> = node
            .links()
            .into_iter()
            .map(|l| (format!("{{link=\"{}\",peer=\"{}\"}}", l.id.0, l.peer), l.rtt.as_secs_f64()))
            .collect();
        metric("link_rtt_seconds", "gauge", "Round trip of each link, from keep-alive.", &rtts);
        metric("connections_active", "gauge", "Connections this command carries now.", &one(self.active() as f64));
        metric(
            "connections_total",
            "counter",
            "Connections this command carried.",
            &one(self.carried.load(Ordering::Relaxed) as f64),
        );
        let errors: Vec<(String, f64)> = self
            .dial_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(kind, n)| (format!("{{kind=\"{kind}\"}}"), *n as f64))
            .collect();
        metric("dial_errors_total", "counter", "Dials this command made that failed, by kind.", &errors);
        out
    }
}

/// Serves `GET /metrics` on `addr`; returns the bound address.
pub async fn serve(node: Node, metrics: Arc<Metrics>, addr: &str) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("--metrics {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (node, metrics) = (node.clone(), metrics.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = (req.uri().path() == "/metrics").then(|| metrics.render(&node));
                    async move {
                        match body {
                            Some(text) => Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(text))),
                            None => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"metrics are at /metrics\n"))),
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    Ok(bound)
}
