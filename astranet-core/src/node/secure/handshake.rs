//! The TLS handshake of a link, driven through rustls's unbuffered interface so that
//! its keys can then be handed to the record layer ([`crate::link::records`]).

use crate::link::records::{self, invalid, tls_error, Kernel, Opener, Sealer};
use crate::link::sink::send_all;
use rustls::unbuffered::{ConnectionState, EncodeError, InsufficientSizeError, UnbufferedStatus};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use std::io;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest handshake flight read before the peer is refused: certificate chains of a
/// few KiB fit many times over.
const MAX_FLIGHT: usize = 64 * 1024;

/// A link whose handshake is done: its two directions and the peer's certificates
/// (rustls verified them).
pub(super) struct Secured {
    pub opener: Opener,
    pub sealer: Sealer,
    pub write: tokio::net::tcp::OwnedWriteHalf,
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

/// The client's handshake over `tcp`.
pub(super) async fn client(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> io::Result<Secured> {
    let conn = rustls::client::UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
    drive(Side::Client(conn), tcp).await
}

/// The server's handshake over `tcp`.
pub(super) async fn server(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<Secured> {
    let conn = rustls::server::UnbufferedServerConnection::new(config).map_err(tls_error)?;
    drive(Side::Server(conn), tcp).await
}

enum Side {
    Client(rustls::client::UnbufferedClientConnection),
    Server(rustls::server::UnbufferedServerConnection),
}

/// What the handshake needs next, once rustls's state for this step is handled.
enum Next {
    Process,
    Send,
    Receive,
    Done,
}

impl Side {
    /// One step of the handshake over the bytes received so far: returns how many of
    /// them rustls is done with and what to do next.
    fn step(&mut self, incoming: &mut [u8], outgoing: &mut Vec<u8>, early: &mut Vec<u8>) -> io::Result<(usize, Next)> {
        let (discard, next) = match self {
            Side::Client(c) => handle(c.process_tls_records(incoming), outgoing, early)?,
            Side::Server(s) => handle(s.process_tls_records(incoming), outgoing, early)?,
        };
        // A server may be allowed to send before the client's last flight: the
        // handshake is done only once the client is authenticated.
        let handshaking = match self {
            Side::Client(c) => c.is_handshaking(),
            Side::Server(s) => s.is_handshaking(),
        };
        match next {
            Next::Done if handshaking => Ok((discard, Next::Receive)),
            next => Ok((discard, next)),
        }
    }

    fn peer_certificates(&self) -> Vec<CertificateDer<'static>> {
        let certs = match self {
            Side::Client(c) => c.peer_certificates(),
            Side::Server(s) => s.peer_certificates(),
        };
        certs.map(<[_]>::to_vec).unwrap_or_default()
    }

    fn into_kernel(self) -> Result<(rustls::ExtractedSecrets, Kernel), rustls::Error> {
        match self {
            Side::Client(c) => c.dangerous_into_kernel_connection().map(|(s, k)| (s, Kernel::Client(k))),
            Side::Server(s) => s.dangerous_into_kernel_connection().map(|(s, k)| (s, Kernel::Server(k))),
        }
    }
}

fn handle<Data>(
    status: UnbufferedStatus<'_, '_, Data>,
    outgoing: &mut Vec<u8>,
    early: &mut Vec<u8>,
) -> io::Result<(usize, Next)> {
    let UnbufferedStatus { mut discard, state } = status;
    let next = match state.map_err(tls_error)? {
        ConnectionState::EncodeTlsData(mut data) => {
            let at = outgoing.len();
            let mut room = records::MAX_RECORD;
            loop {
                outgoing.resize(at + room, 0);
                match data.encode(&mut outgoing[at..]) {
                    Ok(n) => break outgoing.truncate(at + n),
                    Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => room = required_size,
                    Err(e) => return Err(invalid(format!("TLS: {e}"))),
                }
            }
            Next::Process
        }
        ConnectionState::TransmitTlsData(data) => {
            // The bytes are sent before rustls is asked anything else.
            data.done();
            Next::Send
        }
        ConnectionState::BlockedHandshake => Next::Receive,
        // Application data sent with the peer's last flight: kept for the link.
        ConnectionState::ReadTraffic(mut records) => {
            while let Some(record) = records.next_record() {
                let record = record.map_err(tls_error)?;
                discard += record.discard;
                early.extend_from_slice(record.payload);
            }
            Next::Process
        }
        ConnectionState::WriteTraffic(_) => Next::Done,
        ConnectionState::PeerClosed | ConnectionState::Closed => {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "TLS: the peer closed during the handshake"))
        }
        other => return Err(invalid(format!("TLS: unexpected state during the handshake: {other:?}"))),
    };
    Ok((discard, next))
}

async fn drive(mut side: Side, mut tcp: TcpStream) -> io::Result<Secured> {
    let mut incoming = vec![0u8; records::MAX_RECORD];
    let mut received = 0;
    // rustls sees whole records, one more each time it needs more: it never reads past
    // the handshake's last record, so what follows (a key update, a close_notify,
    // anything) is the record layer's to handle.
    let mut offered = 0;
    let mut outgoing = Vec::new();
    let mut early = Vec::new();
    loop {
        let (discard, next) = match side.step(&mut incoming[..offered], &mut outgoing, &mut early) {
            Ok(step) => step,
            Err(e) => {
                send_alert(&mut side, &tcp, &mut early).await;
                return Err(e);
            }
        };
        incoming.copy_within(discard..received, 0);
        received -= discard;
        offered -= discard;
        match next {
            Next::Process => {}
            Next::Send => {
                send_all(&tcp, &outgoing).await?;
                outgoing.clear();
            }
            Next::Receive => {
                if let Some(len) = next_record(&incoming[offered..received]) {
                    offered += len;
                    continue;
                }
                if received == incoming.len() {
                    if incoming.len() >= MAX_FLIGHT {
                        return Err(invalid(format!("TLS: a handshake flight over {MAX_FLIGHT} bytes")));
                    }
                    incoming.resize(incoming.len() * 2, 0);
                }
                let n = tcp.read(&mut incoming[received..]).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "TLS: the peer closed during the handshake",
                    ));
                }
                received += n;
            }
            Next::Done => break,
        }
    }
    send_all(&tcp, &outgoing).await?;
    let peer_certificates = side.peer_certificates();
    let (secrets, kernel) = side.into_kernel().map_err(tls_error)?;
    let (read, write) = tcp.into_split();
    // Records rustls has not seen, whole or not, go to the record layer.
    let (opener, sealer) = records::split(kernel, secrets, read, &incoming[offered..received], early)?;
    Ok(Secured { opener, sealer, write, peer_certificates })
}

/// The length of the first record in `bytes` once it is all there; an oversized one
/// at once, for rustls to refuse.
fn next_record(bytes: &[u8]) -> Option<usize> {
    let [_, _, _, a, b, ..] = *bytes else { return None };
    let len = 5 + u16::from_be_bytes([a, b]) as usize;
    if len > records::MAX_RECORD {
        return Some(bytes.len());
    }
    (bytes.len() >= len).then_some(len)
}

/// Sends the alert rustls queued on a failed handshake (a bad certificate, say), so
/// the peer learns why; best effort.
async fn send_alert(side: &mut Side, tcp: &TcpStream, early: &mut Vec<u8>) {
    let mut alert = Vec::new();
    if side.step(&mut [], &mut alert, early).is_ok() && !alert.is_empty() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), send_all(tcp, &alert)).await;
    }
}

#[cfg(test)]
mod tests {
    //! The record layer against a standard rustls peer (buffered, another crypto
    //! provider), both ways, and against hostile bytes.

    use super::*;
    use crate::link::records::{Records, SealedSocket};
    use crate::tls::TlsConfig;
    use rand::RngCore;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio::io::{AsyncRead, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Two nodes' configurations from one mesh CA.
    fn mesh() -> (TlsConfig, TlsConfig) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let node = |host: u64| {
            let params = CertificateParams::new(vec![format!("{host:016x}.host.astranet")]).unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            TlsConfig::from_pem(ca.pem().as_bytes(), cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
        };
        (node(1), node(2))
    }

    fn random(len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        rand::thread_rng().fill_bytes(&mut bytes);
        bytes
    }

    const STALL: std::time::Duration = std::time::Duration::from_secs(10);

    /// Every test ends within a minute, whatever breaks.
    async fn within<T>(test: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(60), test).await.expect("the test timed out")
    }

    async fn send(socket: &SealedSocket, bytes: &[u8]) {
        socket.write_all(&[bytes], &mut Records::default(), STALL).await.unwrap();
    }

    /// Seals `bytes` to the standard peer `theirs` and returns what it read.
    async fn sent_to(socket: &SealedSocket, theirs: &mut (impl AsyncRead + Unpin), bytes: &[u8]) -> Vec<u8> {
        send(socket, bytes).await;
        let mut got = vec![0; bytes.len()];
        theirs.read_exact(&mut got).await.unwrap();
        got
    }

    /// One record of `bytes`, as sealed for the wire.
    fn sealed(sealer: &mut Sealer, bytes: &[u8]) -> Vec<u8> {
        let mut out = Records::default();
        sealer.seal(&mut vec![bytes], usize::MAX, &mut out).unwrap();
        out.as_slice().to_vec()
    }

    async fn receive(opener: &mut Opener, len: usize) -> Vec<u8> {
        let mut got = vec![0; len];
        opener.read_exact(&mut got).await.unwrap();
        got
    }

    /// Our server, listening on the address returned, handshaking with the first
    /// connection.
    async fn our_server(tls: TlsConfig) -> (std::net::SocketAddr, tokio::task::JoinHandle<io::Result<Secured>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, tokio::spawn(async move { server(tls.server.clone(), listener.accept().await.unwrap().0).await }))
    }

    /// Our client and our server, handshaken over loopback.
    async fn our_pair() -> (Secured, Secured) {
        let (a, b) = mesh();
        let (addr, server) = our_server(a).await;
        let client =
            client(b.client.clone(), crate::tls::sni(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
        (server.await.unwrap().unwrap(), client)
    }

    #[tokio::test]
    async fn our_client_and_a_standard_server_agree_across_key_updates_and_tickets() {
        within(async {
            let (a, b) = mesh();
            // Session tickets on: a client must take them after the handshake.
            let mut standard = (*a.server).clone();
            standard.send_tls13_tickets = 2;
            let standard = tokio_rustls::TlsAcceptor::from(Arc::new(standard));
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let theirs =
                tokio::spawn(async move { standard.accept(listener.accept().await.unwrap().0).await.unwrap() });
            let ours =
                client(b.client.clone(), crate::tls::sni(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
            let mut theirs = theirs.await.unwrap();
            let Secured { mut opener, sealer, write, peer_certificates } = ours;
            assert_eq!(peer_certificates.len(), 1);
            let socket = SealedSocket::new(write, sealer);

            let up = random(1 << 20);
            assert!(sent_to(&socket, &mut theirs, &up).await == up, "the standard peer read what we sealed");

            let down = random(1 << 20);
            theirs.write_all(&down).await.unwrap();
            assert!(receive(&mut opener, down.len()).await == down, "we opened what the standard peer sent");

            // The peer updates its keys and asks us to update ours.
            theirs.get_mut().1.refresh_traffic_keys().unwrap();
            let down = random(100_000);
            theirs.write_all(&down).await.unwrap();
            assert!(receive(&mut opener, down.len()).await == down, "read under the peer's next keys");
            let up = random(100_000);
            assert!(
                sent_to(&socket, &mut theirs, &up).await == up,
                "sent under our next keys, announced by our key update"
            );

            // Near the confidentiality limit we update our keys unasked.
            socket.near_confidentiality_limit();
            let up = random(100_000);
            assert!(sent_to(&socket, &mut theirs, &up).await == up);

            // close_notify ends our reading cleanly.
            theirs.shutdown().await.unwrap();
            let mut rest = Vec::new();
            opener.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        })
        .await
    }

    #[tokio::test]
    async fn a_standard_client_and_our_server_agree_until_close_notify() {
        within(async {
            let (a, b) = mesh();
            let (addr, ours) = our_server(a).await;
            let standard = tokio_rustls::TlsConnector::from(b.client.clone());
            let mut theirs =
                standard.connect(crate::tls::sni(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
            let Secured { mut opener, sealer, write, .. } = ours.await.unwrap().unwrap();
            let socket = SealedSocket::new(write, sealer);

            let up = random(3 << 20);
            theirs.write_all(&up).await.unwrap();
            assert!(receive(&mut opener, up.len()).await == up);
            let down = random(3 << 20);
            assert!(sent_to(&socket, &mut theirs, &down).await == down);

            // Frames written directly, between and after batches, arrive in order.
            let frames: Vec<Vec<u8>> = (0..1000).map(|i| random(1 + (i * 37) % 20_000)).collect();
            let expected = frames.concat();
            let len = expected.len();
            let reading = tokio::spawn(async move {
                let mut got = vec![0; len];
                theirs.read_exact(&mut got).await.unwrap();
                (theirs, got)
            });
            for (i, frame) in frames.iter().enumerate() {
                let (header, payload) = frame.split_at(frame.len().min(16));
                if i % 10 == 0 {
                    send(&socket, frame).await;
                } else if socket.write_frame(header, payload).0.is_none() {
                    socket.flush(STALL).await.unwrap();
                    assert!(socket.write_frame(header, payload).0.is_some());
                }
            }
            socket.flush(STALL).await.unwrap();
            let (mut theirs, got) = reading.await.unwrap();
            assert!(got == expected, "direct writes and batches in order");

            socket.close(STALL).await.unwrap();
            let mut rest = Vec::new();
            theirs.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "a clean end of stream for the standard peer");
        })
        .await
    }

    /// A peer may update its keys as soon as its handshake is over: here the client's
    /// last flight, its key update (asking for ours) and data arrive in one write. The
    /// update is the record layer's to answer, not lost in the handover from rustls.
    #[tokio::test]
    async fn a_key_update_sent_with_the_last_flight_is_answered() {
        within(async {
            use std::io::{Read, Write};
            let (a, b) = mesh();
            let (addr, ours) = our_server(a).await;
            let config = b.client.clone();
            let theirs = tokio::task::spawn_blocking(move || {
                let mut tcp = std::net::TcpStream::connect(addr).unwrap();
                tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
                let mut conn = rustls::ClientConnection::new(config, crate::tls::sni()).unwrap();
                // The handshake by hand, holding back the client's last flight.
                while conn.is_handshaking() {
                    while conn.wants_write() {
                        conn.write_tls(&mut tcp).unwrap();
                    }
                    conn.read_tls(&mut tcp).unwrap();
                    conn.process_new_packets().unwrap();
                }
                conn.refresh_traffic_keys().unwrap();
                conn.writer().write_all(b"after the update").unwrap();
                let mut flight = Vec::new();
                while conn.wants_write() {
                    conn.write_tls(&mut flight).unwrap();
                }
                tcp.write_all(&flight).unwrap();
                // Our answer must be readable under the keys our key update announced.
                let mut got = Vec::new();
                while got.len() < 5 {
                    conn.read_tls(&mut tcp).unwrap();
                    conn.process_new_packets().unwrap();
                    let mut chunk = [0; 64];
                    match conn.reader().read(&mut chunk) {
                        Ok(n) => got.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                got
            });
            let Secured { mut opener, sealer, write, .. } = ours.await.unwrap().unwrap();
            assert_eq!(receive(&mut opener, 16).await, b"after the update");
            let socket = SealedSocket::new(write, sealer);
            send(&socket, b"reply").await;
            assert_eq!(theirs.await.unwrap(), b"reply");
        })
        .await
    }

    #[tokio::test]
    async fn our_nodes_agree_on_aes_128_gcm() {
        within(async {
            let (server, client) = our_pair().await;
            assert_eq!(server.opener.cipher_suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
            assert_eq!(client.opener.cipher_suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        })
        .await
    }

    #[tokio::test]
    async fn key_updates_without_data_in_between_are_refused_past_32() {
        within(async {
            let (mut server, mut client) = our_pair().await;
            let (mut out, mut wire) = (Records::default(), Vec::new());
            client.sealer.key_updates(32, &mut out);
            wire.extend_from_slice(out.as_slice());
            client.sealer.record(rustls::ContentType::ApplicationData, b"ok", &mut out);
            wire.extend_from_slice(out.as_slice());
            client.sealer.key_updates(33, &mut out);
            wire.extend_from_slice(out.as_slice());
            client.write.write_all(&wire).await.unwrap();
            assert_eq!(receive(&mut server.opener, 2).await, b"ok", "32 in a row are fine");
            let err = server.opener.read(&mut [0; 64]).await.unwrap_err();
            assert!(err.to_string().contains("key updates"), "{err}");
        })
        .await
    }

    #[tokio::test]
    async fn an_empty_handshake_record_is_refused() {
        within(async {
            let (mut server, mut client) = our_pair().await;
            let mut out = Records::default();
            client.sealer.record(rustls::ContentType::Handshake, b"", &mut out);
            client.write.write_all(out.as_slice()).await.unwrap();
            let err = server.opener.read(&mut [0; 64]).await.unwrap_err();
            assert!(err.to_string().contains("empty handshake"), "{err}");
        })
        .await
    }

    /// A refused handshake says why: the peer gets rustls's alert, not a bare close.
    #[tokio::test]
    async fn a_peer_of_another_ca_hears_an_alert() {
        within(async {
            let (ours, _) = mesh();
            let (stranger, _) = mesh();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(stranger.server.clone());
            let theirs =
                tokio::spawn(async move { acceptor.accept(listener.accept().await.unwrap().0).await.map(drop) });
            let refused = client(ours.client.clone(), crate::tls::sni(), TcpStream::connect(addr).await.unwrap()).await;
            assert!(refused.is_err());
            let heard = theirs.await.unwrap().unwrap_err();
            assert!(heard.to_string().contains("alert"), "{heard}");
        })
        .await
    }

    #[tokio::test]
    async fn a_tampered_record_is_refused() {
        within(async {
            let (mut server, mut client) = our_pair().await;
            let mut record = sealed(&mut client.sealer, b"a frame");
            let last = record.len() - 1;
            record[last] ^= 1;
            client.write.write_all(&record).await.unwrap();
            let err = server.opener.read(&mut [0; 64]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        })
        .await
    }

    #[tokio::test]
    async fn an_oversized_record_is_refused_at_its_header() {
        within(async {
            let (mut server, mut client) = our_pair().await;
            client.write.write_all(&[23, 3, 3, 0xff, 0xff]).await.unwrap();
            let err = server.opener.read(&mut [0; 64]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains("65535 bytes"), "{err}");
        })
        .await
    }

    #[tokio::test]
    async fn a_connection_cut_mid_record_is_an_error_not_an_end() {
        within(async {
            let (mut server, mut client) = our_pair().await;
            let record = sealed(&mut client.sealer, b"a frame");
            client.write.write_all(&record[..record.len() / 2]).await.unwrap();
            drop(client);
            let err = server.opener.read(&mut [0; 64]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        })
        .await
    }
}
