//! `astranet gateway --http ADDR`: an HTTP/1.1 gateway into the mesh.
//!
//! The request's Host (without its port) names the service — or, with
//! `--route path`, the first segment of the path, which is then removed. Requests go
//! over streams to the service, kept alive and pooled per service; an unknown or
//! unreachable service gets 502 with a body that says why. Upgrades (WebSocket) pass
//! through: after the service's 101 the two connections are spliced.

use crate::metrics::Metrics;
use crate::opts::{BoxError, LinkListen, NodeOpts};
use crate::running::Running;
use astranet::Node;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, hyper::Error>;

/// Idle connections kept per service.
const POOL_PER_SERVICE: usize = 32;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Route {
    /// The Host header names the service.
    Host,
    /// The first path segment names the service (`/db/x` → service `db`, path `/x`).
    Path,
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// The TCP address to serve HTTP on.
    #[arg(long)]
    pub http: String,
    /// What names the service of a request.
    #[arg(long, value_enum, default_value_t = Route::Host)]
    pub route: Route,
    #[command(flatten)]
    pub listen: LinkListen,
    #[command(flatten)]
    pub node: NodeOpts,
}

struct Gateway {
    node: Node,
    metrics: Arc<Metrics>,
    route: Route,
    pool: Mutex<HashMap<String, Vec<SendRequest<Incoming>>>>,
}

pub async fn run(args: GatewayArgs) -> Result<ExitCode, BoxError> {
    let running = Running::start(&args.node).await?;
    let listener = TcpListener::bind(&args.http).await.map_err(|e| format!("--http {}: {e}", args.http))?;
    println!("gateway http://{}", listener.local_addr()?);
    let gw = Arc::new(Gateway {
        node: running.node.clone(),
        metrics: running.metrics.clone(),
        route: args.route,
        pool: Mutex::new(HashMap::new()),
    });
    running
        .serve_tcp(listener, move |tcp, _| {
            let gw = gw.clone();
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let gw = gw.clone();
                    async move { Ok::<_, std::convert::Infallible>(gw.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            }
        })
        .await
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

impl Gateway {
    async fn handle(&self, mut req: Request<Incoming>) -> Response<Body> {
        let name = match self.service_of(&mut req) {
            Ok(name) => name,
            Err(why) => return text(StatusCode::BAD_REQUEST, format!("astranet gateway: {why}\n")),
        };
        if req.headers().contains_key(hyper::header::UPGRADE) {
            return self.upgrade(&name, req).await;
        }
        let mut sender = match self.sender(&name).await {
            Ok(s) => s,
            Err(e) => return self.bad_gateway(&name, &e),
        };
        match sender.send_request(req).await {
            Ok(resp) => {
                self.give_back(&name, sender);
                resp.map(|b| b.boxed())
            }
            Err(e) => text(StatusCode::BAD_GATEWAY, format!("astranet gateway: service {name:?}: {e}\n")),
        }
    }

    /// The service a request is for; in path mode the segment leaves the path.
    fn service_of(&self, req: &mut Request<Incoming>) -> Result<String, String> {
        match self.route {
            Route::Host => {
                let host = req
                    .headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| req.uri().host())
                    .ok_or("the request has no Host")?;
                // "name:80" → "name"; an IPv6 literal is not a service name anyway.
                Ok(host.rsplit_once(':').map_or(host, |(h, _)| h).to_string())
            }
            Route::Path => {
                let pq = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
                let rest = pq.strip_prefix('/').unwrap_or(&pq);
                let (name, tail) = rest.find(['/', '?']).map_or((rest, ""), |i| rest.split_at(i));
                if name.is_empty() {
                    return Err("the path names no service (/<service>/…)".into());
                }
                let tail = if tail.starts_with('/') { tail.to_string() } else { format!("/{tail}") };
                *req.uri_mut() = tail.parse::<Uri>().map_err(|e| e.to_string())?;
                Ok(name.to_string())
            }
        }
    }

    /// A pooled connection to the service that can take a request now, or a new one.
    async fn sender(&self, name: &str) -> Result<SendRequest<Incoming>, astranet::Error> {
        {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(list) = pool.get_mut(name) {
                list.retain(|s| !s.is_closed());
                if let Some(i) = list.iter().position(|s| s.is_ready()) {
                    return Ok(list.swap_remove(i));
                }
            }
        }
        let stream = self.dial(name).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| astranet::Error::Io(std::io::Error::other(e)))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn give_back(&self, name: &str, sender: SendRequest<Incoming>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.entry(name.to_string()).or_default();
        if list.len() < POOL_PER_SERVICE {
            // Ready again once the response body is through.
            list.push(sender);
        }
    }

    async fn dial(&self, name: &str) -> Result<astranet::Stream, astranet::Error> {
        // A name nobody announces is answered at once, not after the dial timeout. Host
        // names are case-insensitive: "WEB" finds "web" when no "WEB" is announced.
        let env = &self.node.config().env;
        let services = self.node.services();
        let announced = |n: &str| services.iter().any(|s| s.name.strip_suffix(env.as_str()) == Some(n));
        let lower = name.to_ascii_lowercase();
        let stream = match [name, lower.as_str()].into_iter().find(|n| announced(n)) {
            Some(n) => self.node.dial(astranet::Target::name(n)).await,
            None => Err(astranet::Error::NoSuchService {
                name: format!("{name}{env}"),
                port: None,
                after: std::time::Duration::ZERO,
            }),
        };
        if let Err(e) = &stream {
            self.metrics.dial_failed(e);
        }
        stream
    }

    fn bad_gateway(&self, name: &str, e: &astranet::Error) -> Response<Body> {
        let why = match e {
            astranet::Error::NoSuchService { name, .. } => format!("no instance of {name:?} is announced in the mesh"),
            other => other.to_string(),
        };
        text(StatusCode::BAD_GATEWAY, format!("astranet gateway: service {name:?} is not reachable: {why}\n"))
    }

    /// An upgrade (WebSocket): its own stream; spliced once the service said 101.
    async fn upgrade(&self, name: &str, mut req: Request<Incoming>) -> Response<Body> {
        let client_side = hyper::upgrade::on(&mut req);
        let stream = match self.dial(name).await {
            Ok(s) => s,
            Err(e) => return self.bad_gateway(name, &e),
        };
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(x) => x,
            Err(e) => return text(StatusCode::BAD_GATEWAY, format!("astranet gateway: service {name:?}: {e}\n")),
        };
        tokio::spawn(conn.with_upgrades());
        let mut resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => return text(StatusCode::BAD_GATEWAY, format!("astranet gateway: service {name:?}: {e}\n")),
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let service_side = hyper::upgrade::on(&mut resp);
            let active = self.metrics.begin();
            tokio::spawn(async move {
                let _active = active;
                if let (Ok(a), Ok(b)) = tokio::join!(client_side, service_side) {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b)).await;
                }
            });
        }
        resp.map(|b| b.boxed())
    }
}
