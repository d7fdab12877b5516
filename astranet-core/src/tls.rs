//! Encrypted, mutually authenticated links: TLS 1.3 under the astranet framing.
//!
//! The scheme is a mesh CA: one certificate authority per mesh, whose certificate every
//! node trusts, and a certificate per node signed by it. A node's certificate names its
//! host id (a subject alternative name `<16 hex digits>.host.astranet`), so a peer that
//! authenticated cannot claim another node's host id: the HANDSHAKE that follows must
//! carry the host id of the certificate, or the link is closed. Both sides present
//! and verify certificates; a peer without one signed by the mesh CA is refused during
//! the TLS handshake, before it learns anything about the mesh.
//!
//! A listening node tells TLS from a plaintext peer (a Go node) by the first byte
//! (0x16 starts a TLS record); plaintext peers are refused unless
//! [`TlsConfig::allow_plaintext`] says otherwise.
//!
//! `astranet keys` (the command line) makes the CA and node certificates.

use crate::addr::HostId;
use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The DNS suffix of the subject alternative name that carries a node's host id.
pub const HOST_NAME_SUFFIX: &str = ".host.astranet";

/// The name a host id is written as in a certificate: `<16 hex digits>.host.astranet`.
pub fn host_name(host: HostId) -> String {
    format!("{host}{HOST_NAME_SUFFIX}")
}

/// A node's TLS identity and the mesh it trusts.
///
/// ```no_run
/// # fn demo() -> astranet::Result<()> {
/// use astranet::{Node, TlsConfig};
/// let tls = TlsConfig::from_pem_files("mesh-ca.pem", "node.pem", "node.key")?;
/// let node = Node::builder().tls(tls).try_build()?; // host id: the certificate's
/// # drop(node); Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: Arc<rustls::ClientConfig>,
    host: HostId,
    allow_plaintext: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").field("host", &self.host).field("allow_plaintext", &self.allow_plaintext).finish()
    }
}

fn invalid(what: impl fmt::Display) -> Error {
    Error::InvalidConfig(format!("TLS: {what}"))
}

impl TlsConfig {
    /// From PEM text: the mesh CA's certificate(s), this node's certificate chain (its
    /// own first) and its private key.
    pub fn from_pem(ca: &[u8], cert_chain: &[u8], key: &[u8]) -> Result<TlsConfig> {
        let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| invalid(format!("the CA certificate: {e}")))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| invalid(format!("the node certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid(format!("the private key: {e}")))?;
        if cas.is_empty() {
            return Err(invalid("no CA certificate in the PEM text"));
        }
        let own = chain.first().ok_or_else(|| invalid("no node certificate in the PEM text"))?;
        let host = host_of(own).map_err(invalid)?;

        // aws-lc-rs: the fastest AES-GCM rustls offers, and a post-quantum hybrid key
        // exchange (X25519MLKEM768) preferred over X25519.
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        // AES-128-GCM first: with AES instructions it is the cheapest per byte, and a
        // link carries everything its streams carry.
        provider.cipher_suites.sort_by_key(|s| match s.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
            _ => 2,
        });
        let provider = Arc::new(provider);
        let mut roots = RootCertStore::empty();
        for ca in cas {
            roots.add(ca).map_err(|e| invalid(format!("the CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| invalid(format!("the CA certificate: {e}")))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(invalid)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| invalid(format!("the node certificate and key: {e}")))?;
        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| invalid(format!("the CA certificate: {e}")))?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(invalid)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(MeshVerifier { webpki: server_verifier, provider }))
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid(format!("the node certificate and key: {e}")))?;
        // After the handshake the link's records are sealed and opened by
        // `link::records` with the keys rustls hands over. No session resumption: every
        // link authenticates with certificates.
        server.enable_secret_extraction = true;
        server.send_tls13_tickets = 0;
        client.enable_secret_extraction = true;
        client.resumption = rustls::client::Resumption::disabled();
        Ok(TlsConfig { server: Arc::new(server), client: Arc::new(client), host, allow_plaintext: false })
    }

    /// [`TlsConfig::from_pem`] reading three files.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| invalid(format!("{}: {e}", p.display())));
        TlsConfig::from_pem(&read(ca.as_ref())?, &read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    /// Also accept plaintext links on listening ports (nodes without TLS, such as the
    /// original Go package's). Off by default.
    pub fn allow_plaintext(mut self, allow: bool) -> TlsConfig {
        self.allow_plaintext = allow;
        self
    }

    /// Whether plaintext links are accepted.
    pub fn plaintext_allowed(&self) -> bool {
        self.allow_plaintext
    }

    /// The host id this node's certificate names.
    pub fn host_id(&self) -> HostId {
        self.host
    }
}

/// The host id a certificate names in its subject alternative names.
pub(crate) fn host_of(cert: &CertificateDer<'_>) -> std::result::Result<HostId, String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| format!("unreadable certificate: {e}"))?;
    let san = parsed.subject_alternative_name().map_err(|e| format!("unreadable certificate: {e}"))?;
    let names = san.map(|s| s.value.general_names.clone()).unwrap_or_default();
    names
        .iter()
        .find_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => {
                d.strip_suffix(HOST_NAME_SUFFIX)?.parse::<HostId>().ok()
            }
            _ => None,
        })
        .ok_or_else(|| format!("the certificate names no host id (a DNS name <16 hex digits>{HOST_NAME_SUFFIX})"))
}

/// The certificate's subject common name ("" when it has none): how access rules name
/// a peer.
pub(crate) fn name_of(cert: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .and_then(|(_, c)| c.subject().iter_common_name().next().and_then(|n| n.as_str().ok().map(str::to_string)))
        .unwrap_or_default()
}

/// Verifies a listening peer's certificate against the mesh CA, for the host name the
/// certificate itself carries (a joining node does not know beforehand which host it
/// reaches; the HANDSHAKE that follows must then match it).
#[derive(Debug)]
struct MeshVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for MeshVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let host = host_of(end_entity).map_err(rustls::Error::General)?;
        let name = ServerName::try_from(host_name(host)).map_err(|e| rustls::Error::General(e.to_string()))?;
        self.webpki.verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The name a joining node sends (SNI); the verifier does not use it.
pub(crate) fn sni() -> ServerName<'static> {
    ServerName::try_from("mesh.astranet").expect("a valid DNS name")
}

/// The first byte of a TLS connection (a handshake record).
pub(crate) const TLS_RECORD_HANDSHAKE: u8 = 0x16;
