//! The `yamux` crate over one loopback TCP connection. A yamux `Connection` makes progress
//! only while a task polls it, so each end gets a driver task (as libp2p does) that takes
//! open requests over a channel and hands inbound streams out over another.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Mutex, OnceCell};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use yamux::{Config, Connection, Mode};

use crate::pair::{Kind, Task, Transport};
use crate::tcp;

type Link = Connection<Compat<TcpStream>>;
type OpenReply = oneshot::Sender<yamux::Result<yamux::Stream>>;

/// Far above any level the benchmark asks for, and small enough that yamux's check
/// (`max streams × 256 KiB` must fit a usize) cannot overflow.
const MAX_STREAMS: usize = 100_000_000;
/// Open requests queued for the driver before `open` waits.
const OPEN_QUEUE: usize = 1024;

pub struct Yamux;

/// The accepting end: a TCP listener until the link arrives, then its driver.
pub struct Server {
    listener: TcpListener,
    link: OnceCell<Accepting>,
}

struct Accepting {
    inbound: Mutex<mpsc::UnboundedReceiver<yamux::Stream>>,
    _driver: Task<()>,
}

pub struct Client {
    opens: mpsc::Sender<OpenReply>,
    _driver: Task<()>,
}

fn config() -> Config {
    let mut config = Config::default();
    // The stream-count tests go to millions; yamux requires the connection window to
    // cover 256 KiB per allowed stream, so that cap is lifted first.
    config.set_max_connection_receive_window(None);
    config.set_max_num_streams(MAX_STREAMS);
    config
}

impl Transport for Yamux {
    const KIND: Kind = Kind::Yamux;
    const LAZY_OPEN: bool = true;
    type Stream = Compat<yamux::Stream>;
    type Address = SocketAddr;
    type Server = Server;
    type Client = Client;

    async fn serve() -> io::Result<(Server, SocketAddr)> {
        let (listener, address) = tcp::listen_loopback()?;
        Ok((Server { listener, link: OnceCell::new() }, address))
    }

    async fn connect(to: SocketAddr) -> io::Result<Client> {
        let socket = tcp::connect_nodelay(to).await?;
        let (opens, requests) = mpsc::channel(OPEN_QUEUE);
        let driver = Driver {
            link: Connection::new(socket.compat(), config(), Mode::Client),
            opens: Some(requests),
            waiting: None,
            inbound: None,
        };
        Ok(Client { opens, _driver: tokio::spawn(driver).into() })
    }

    async fn open(client: &Client) -> io::Result<Self::Stream> {
        let (reply, stream) = oneshot::channel();
        client.opens.send(reply).await.map_err(|_| closed())?;
        let stream = stream.await.map_err(|_| closed())?;
        Ok(stream.map_err(io::Error::other)?.compat())
    }

    async fn accept(server: &Server) -> io::Result<Self::Stream> {
        let link = server
            .link
            .get_or_try_init(|| async {
                let socket = tcp::accept_nodelay(&server.listener).await?;
                let (inbound, streams) = mpsc::unbounded_channel();
                let driver = Driver {
                    link: Connection::new(socket.compat(), config(), Mode::Server),
                    opens: None,
                    waiting: None,
                    inbound: Some(inbound),
                };
                Ok::<_, io::Error>(Accepting { inbound: Mutex::new(streams), _driver: tokio::spawn(driver).into() })
            })
            .await?;
        let stream = link.inbound.lock().await.recv().await.ok_or_else(closed)?;
        Ok(stream.compat())
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "yamux connection closed")
}

/// Polls one end's `Connection`: serves open requests one at a time (yamux makes an
/// opener wait while 256 of its streams are unacknowledged) and forwards inbound streams.
struct Driver {
    link: Link,
    opens: Option<mpsc::Receiver<OpenReply>>,
    waiting: Option<OpenReply>,
    inbound: Option<mpsc::UnboundedSender<yamux::Stream>>,
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            if this.waiting.is_none() {
                if let Some(opens) = &mut this.opens {
                    if let Poll::Ready(request) = opens.poll_recv(cx) {
                        // None: the pair is gone; the abort on drop ends this task.
                        this.waiting = request;
                    }
                }
            }
            if let Some(reply) = this.waiting.take() {
                match this.link.poll_new_outbound(cx) {
                    Poll::Ready(result) => {
                        // The dialer may have timed out and left; nothing to do then.
                        let _ = reply.send(result);
                        continue;
                    }
                    Poll::Pending => this.waiting = Some(reply),
                }
            }
            match this.link.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    if let Some(inbound) = &this.inbound {
                        let _ = inbound.send(stream);
                    }
                }
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
