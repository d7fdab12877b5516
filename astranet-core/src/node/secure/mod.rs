//! Links over TLS: the accepting side (which also tells TLS from plaintext by the first
//! byte) and the joining side. The TLS rules themselves are in [`crate::tls`]; the
//! records after the handshake in [`crate::link::records`].

mod handshake;

use super::admission::Admission;
use super::{start_tcp_link, NodeShared};
use crate::error::{Error, Result};
use crate::link::records::{Records, SealedSocket};
use crate::link::sink::Sink;
use crate::link::Identity;
use crate::link::LinkHandle;
use crate::tls::{host_of, name_of, sni, TlsConfig, TLS_RECORD_HANDSHAKE};
use handshake::Secured;
use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// An accepted connection on a node with TLS: a TLS client becomes an authenticated
/// link; a plaintext peer becomes a link only if the configuration allows it. Bounded
/// by the handshake timeout: a connection that says nothing, or never completes its
/// TLS handshake, is closed.
pub(super) async fn accept(
    node: Arc<NodeShared>,
    socket: TcpStream,
    peer: SocketAddr,
    tls: TlsConfig,
    admission: Admission,
) {
    let limit = node.config.handshake_timeout;
    let mut first = [0u8; 1];
    let sniffed = tokio::time::timeout(limit, socket.peek(&mut first)).await;
    match sniffed {
        Ok(Ok(1)) if first[0] == TLS_RECORD_HANDSHAKE => {}
        Ok(Ok(1)) if tls.plaintext_allowed() => {
            let link = start_tcp_link(&node, socket, peer);
            admission.into_link(&node, &link);
            return;
        }
        Ok(Ok(1)) => {
            tracing::warn!(%peer, "plaintext link refused: this node requires TLS");
            return;
        }
        Ok(_) => return,
        Err(_) => {
            tracing::warn!(%peer, ?limit, "connection closed: it sent nothing");
            return;
        }
    }
    let _ = socket.set_nodelay(true);
    match tokio::time::timeout(limit, handshake::server(tls.server.clone(), socket)).await {
        Ok(Ok(secured)) => match certified(&node, &secured.peer_certificates) {
            Ok(identity) => {
                let link = start(&node, secured, peer, identity);
                admission.into_link(&node, &link);
            }
            Err(why) => tracing::warn!(%peer, "link refused: {why}"),
        },
        Ok(Err(e)) => tracing::warn!(%peer, error = %e, "link refused: TLS handshake failed"),
        Err(_) => tracing::warn!(%peer, ?limit, "link refused: no TLS handshake within the handshake timeout"),
    }
}

/// Joins `addr` over TLS.
pub(super) async fn connect(node: &NodeShared, socket: TcpStream, tls: &TlsConfig) -> Result<LinkHandle> {
    let peer = socket.peer_addr()?;
    let _ = socket.set_nodelay(true);
    let secured = handshake::client(tls.client.clone(), sni(), socket)
        .await
        .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("TLS handshake with {peer}: {e}"))))?;
    let identity = certified(node, &secured.peer_certificates)
        .map_err(|why| Error::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, why)))?;
    Ok(start(node, secured, peer, identity))
}

/// Who the peer's certificate says it is, if the node's access policy lets it join.
fn certified(node: &NodeShared, certs: &[CertificateDer<'static>]) -> std::result::Result<Identity, String> {
    let own = certs.first().ok_or("the peer presented no certificate")?;
    let identity = Identity { host: host_of(own)?, name: name_of(own) };
    if let Some(policy) = &node.config.access {
        if policy.rule_for(&identity.name).is_none() {
            return Err(format!("{:?} (host {}) may not join: no access rule names it", identity.name, identity.host));
        }
    }
    Ok(identity)
}

fn start(node: &NodeShared, secured: Secured, peer: SocketAddr, identity: Identity) -> LinkHandle {
    let socket = Arc::new(SealedSocket::new(secured.write, secured.sealer));
    node.start_link(
        crate::link::Reading::Runtime(secured.opener),
        Sink::Tls(socket, Records::default()),
        Some(peer),
        Some(identity),
    )
}
