//! TLS 1.3 records once the handshake is over: frames are sealed into records on the
//! way out and records are opened in place on the way in.
//!
//! rustls runs the handshake and then hands over the traffic keys through its kernel
//! TLS interface ([`KernelConnection`]), which also derives new keys on a key update.
//! Opening records stays rustls's ([`MessageDecrypter`]: the nonce, additional data,
//! inner content type and padding); sealing uses rustls's nonce and additional data and
//! the AEAD of rustls's provider. What this module adds is where the bytes live. rustls's buffered connection copies every byte
//! it receives three times (into its record buffer, out of the decrypted record, into
//! the reader's buffer); here a record is read into one buffer, decrypted where it
//! lies, and copied once into the link's read buffer, while it is still in the cache.
//!
//! After the handshake a peer may send, besides application data: `close_notify` (the
//! end of the link), a `KeyUpdate` (new receiving keys; answered with our own when the
//! peer asks), and to a client a `NewSessionTicket` (kept by rustls). Anything else ends
//! the link with an error, as rustls would.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, UnboundKey};
use parking_lot::Mutex;
use rustls::client::ClientConnectionData;
use rustls::crypto::cipher::{make_tls13_aad, AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, Nonce};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{
    ConnectionTrafficSecrets, ContentType, HandshakeType, ProtocolVersion, SupportedCipherSuite, Tls13CipherSuite,
};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;

/// Largest plaintext of a record (RFC 8446 §5.1).
const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest ciphertext of a record: the plaintext, the inner content type and padding,
/// and the AEAD tag (RFC 8446 §5.2).
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
/// A record header: content type, legacy version, length.
const HEADER: usize = 5;
/// Largest record, header included.
pub(crate) const MAX_RECORD: usize = HEADER + MAX_CIPHERTEXT;
/// Bytes read from the socket at a time, at most: many records per system call.
const READ_BUFFER: usize = 256 * 1024;
/// Records short of the suite's confidentiality limit at which the sending keys are
/// replaced.
const KEY_UPDATE_MARGIN: u64 = 1 << 16;

/// The keys of a TLS connection after its handshake, shared by its two directions.
pub(crate) struct Keys {
    suite: &'static Tls13CipherSuite,
    kernel: Mutex<Kernel>,
    /// The peer asked for a key update; the sending side owes it one of ours.
    update_owed: AtomicBool,
}

/// rustls's side of the connection, which derives the next keys.
pub(crate) enum Kernel {
    Client(KernelConnection<ClientConnectionData>),
    Server(KernelConnection<ServerConnectionData>),
}

impl Kernel {
    fn suite(&self) -> SupportedCipherSuite {
        match self {
            Kernel::Client(k) => k.negotiated_cipher_suite(),
            Kernel::Server(k) => k.negotiated_cipher_suite(),
        }
    }

    fn next_tx(&mut self) -> Result<(u64, ConnectionTrafficSecrets), rustls::Error> {
        match self {
            Kernel::Client(k) => k.update_tx_secret(),
            Kernel::Server(k) => k.update_tx_secret(),
        }
    }

    fn next_rx(&mut self) -> Result<(u64, ConnectionTrafficSecrets), rustls::Error> {
        match self {
            Kernel::Client(k) => k.update_rx_secret(),
            Kernel::Server(k) => k.update_rx_secret(),
        }
    }
}

/// Splits a connection whose handshake is done into its two directions.
/// `ciphertext` is what was read past the handshake and not yet opened; `plaintext`,
/// application data rustls already opened.
pub(crate) fn split(
    kernel: Kernel,
    secrets: rustls::ExtractedSecrets,
    tcp: OwnedReadHalf,
    ciphertext: &[u8],
    plaintext: Vec<u8>,
) -> io::Result<(Opener, Sealer)> {
    let suite = kernel.suite().tls13().ok_or_else(|| invalid("TLS: links use TLS 1.3 only"))?;
    let (tx_seq, tx) = secrets.tx;
    let (rx_seq, rx) = secrets.rx;
    let keys = Arc::new(Keys { suite, kernel: Mutex::new(kernel), update_owed: AtomicBool::new(false) });
    let mut buf = vec![0; READ_BUFFER.max(ciphertext.len())];
    buf[..ciphertext.len()].copy_from_slice(ciphertext);
    let opener = Opener {
        tcp,
        decrypter: decrypter(suite, rx)?,
        seq: rx_seq,
        keys: keys.clone(),
        buf,
        start: 0,
        end: ciphertext.len(),
        plain: 0..0,
        early: plaintext,
        early_at: 0,
        closed: false,
    };
    let sealer = Sealer::new(keys, tx_seq, tx)?;
    Ok((opener, sealer))
}

fn sealing_key(secrets: ConnectionTrafficSecrets) -> io::Result<(LessSafeKey, Iv)> {
    let algorithm = match &secrets {
        ConnectionTrafficSecrets::Aes128Gcm { .. } => &aead::AES_128_GCM,
        ConnectionTrafficSecrets::Aes256Gcm { .. } => &aead::AES_256_GCM,
        _ => &aead::CHACHA20_POLY1305,
    };
    let (key, iv) = key_and_iv(secrets)?;
    let key =
        UnboundKey::new(algorithm, key.as_ref()).map_err(|_| invalid("TLS: a traffic key of the wrong length"))?;
    Ok((LessSafeKey::new(key), iv))
}

fn decrypter(suite: &Tls13CipherSuite, secrets: ConnectionTrafficSecrets) -> io::Result<Box<dyn MessageDecrypter>> {
    let (key, iv) = key_and_iv(secrets)?;
    Ok(suite.aead_alg.decrypter(key, iv))
}

fn key_and_iv(secrets: ConnectionTrafficSecrets) -> io::Result<(AeadKey, Iv)> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => Ok((key, iv)),
        _ => Err(invalid("the negotiated cipher suite has no record protection here")),
    }
}

pub(crate) fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

pub(crate) fn tls_error(e: rustls::Error) -> io::Error {
    invalid(format!("TLS: {e}"))
}

/// The receiving direction: a byte stream of the plaintext the peer sent.
pub(crate) struct Opener {
    tcp: OwnedReadHalf,
    decrypter: Box<dyn MessageDecrypter>,
    seq: u64,
    keys: Arc<Keys>,
    /// Records as read; those before `start` are opened, `start..end` are not yet.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Opened plaintext in `buf` not yet handed out.
    plain: std::ops::Range<usize>,
    /// Plaintext rustls opened during the handshake, handed out first.
    early: Vec<u8>,
    early_at: usize,
    /// The peer sent `close_notify`.
    closed: bool,
}

impl Opener {
    /// Opens the next whole record in the buffer, if there is one.
    fn open_next(&mut self) -> io::Result<bool> {
        let pending = &self.buf[self.start..self.end];
        if pending.len() < HEADER {
            return Ok(false);
        }
        let len = u16::from_be_bytes([pending[3], pending[4]]) as usize;
        if pending[0] != u8::from(ContentType::ApplicationData) {
            return Err(invalid(format!("TLS: a record of content type {} after the handshake", pending[0])));
        }
        if len > MAX_CIPHERTEXT {
            return Err(invalid(format!("TLS: a record of {len} bytes (at most {MAX_CIPHERTEXT})")));
        }
        if pending.len() < HEADER + len {
            return Ok(false);
        }
        let body = self.start + HEADER..self.start + HEADER + len;
        self.start = body.end;
        let base = self.buf.as_ptr() as usize;
        let record =
            InboundOpaqueMessage::new(ContentType::ApplicationData, ProtocolVersion::TLSv1_2, &mut self.buf[body]);
        let opened = self.decrypter.decrypt(record, self.seq).map_err(tls_error)?;
        self.seq += 1;
        let at = opened.payload.as_ptr() as usize - base;
        let range = at..at + opened.payload.len();
        match opened.typ {
            ContentType::ApplicationData => self.plain = range,
            ContentType::Alert => self.alert(range)?,
            ContentType::Handshake => self.handshake(range)?,
            other => return Err(invalid(format!("TLS: an encrypted record of content type {other:?}"))),
        }
        Ok(true)
    }

    fn alert(&mut self, range: std::ops::Range<usize>) -> io::Result<()> {
        match self.buf[range] {
            [_, 0] => {
                self.closed = true;
                Ok(())
            }
            [_, description] => {
                Err(io::Error::new(io::ErrorKind::ConnectionAborted, format!("TLS: the peer sent alert {description}")))
            }
            _ => Err(invalid("TLS: a malformed alert")),
        }
    }

    fn handshake(&mut self, range: std::ops::Range<usize>) -> io::Result<()> {
        let mut messages = range;
        while !messages.is_empty() {
            let m = &self.buf[messages.clone()];
            let [typ, a, b, c, ..] = *m else {
                return Err(invalid("TLS: a handshake message split across records after the handshake"));
            };
            let len = u32::from_be_bytes([0, a, b, c]) as usize;
            if m.len() < 4 + len {
                return Err(invalid("TLS: a handshake message split across records after the handshake"));
            }
            let body = messages.start + 4..messages.start + 4 + len;
            messages.start = body.end;
            match HandshakeType::from(typ) {
                HandshakeType::KeyUpdate => {
                    // A key update ends its record: what follows is under the next key.
                    let (&[request], true) = (&self.buf[body], messages.is_empty()) else {
                        return Err(invalid("TLS: a malformed key update"));
                    };
                    if request > 1 {
                        return Err(invalid("TLS: a malformed key update"));
                    }
                    let (seq, secrets) = self.keys.kernel.lock().next_rx().map_err(tls_error)?;
                    self.decrypter = decrypter(self.keys.suite, secrets)?;
                    self.seq = seq;
                    if request == 1 {
                        self.keys.update_owed.store(true, Ordering::Release);
                    }
                }
                HandshakeType::NewSessionTicket => match &mut *self.keys.kernel.lock() {
                    Kernel::Client(k) => k.handle_new_session_ticket(&self.buf[body]).map_err(tls_error)?,
                    Kernel::Server(_) => return Err(invalid("TLS: a client sent a session ticket")),
                },
                other => return Err(invalid(format!("TLS: a {other:?} message after the handshake"))),
            }
        }
        Ok(())
    }
}

impl AsyncRead for Opener {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.early_at < this.early.len() {
            let n = out.remaining().min(this.early.len() - this.early_at);
            out.put_slice(&this.early[this.early_at..this.early_at + n]);
            this.early_at += n;
            if this.early_at == this.early.len() {
                this.early = Vec::new();
                this.early_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        // As many records as are whole in the buffer and fit, for one read.
        let mut produced = false;
        loop {
            if !this.plain.is_empty() {
                let n = out.remaining().min(this.plain.len());
                out.put_slice(&this.buf[this.plain.start..this.plain.start + n]);
                this.plain.start += n;
                produced = true;
                if out.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            if this.open_next()? {
                continue;
            }
            if produced {
                return Poll::Ready(Ok(()));
            }
            // Room for at least one whole record after the unopened bytes.
            if this.buf.len() - this.end < MAX_RECORD {
                this.buf.copy_within(this.start..this.end, 0);
                this.end -= this.start;
                this.start = 0;
            }
            let mut read = ReadBuf::new(&mut this.buf[this.end..]);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                // The connection ended without close_notify: possibly truncated.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "TLS: the peer closed the connection without close_notify",
                )));
            }
            this.end += n;
        }
    }
}

/// The sending direction: seals frames into records, in one buffer it keeps.
///
/// The nonce and additional data are rustls's ([`Nonce::new`], [`make_tls13_aad`]); the
/// AEAD is the one rustls's provider uses. Sealing here rather than through rustls's
/// encrypter spares an allocation per record.
pub(crate) struct Sealer {
    key: LessSafeKey,
    iv: Iv,
    seq: u64,
    /// The sequence number at which the keys are replaced.
    update_at: u64,
    keys: Arc<Keys>,
    out: Vec<u8>,
}

/// Where the keys first used at `seq` are replaced: a little short of the suite's
/// confidentiality limit, where rustls would replace them.
fn update_at(keys: &Keys, seq: u64) -> u64 {
    seq.saturating_add(keys.suite.common.confidentiality_limit.saturating_sub(KEY_UPDATE_MARGIN))
}

impl Sealer {
    fn new(keys: Arc<Keys>, seq: u64, secrets: ConnectionTrafficSecrets) -> io::Result<Sealer> {
        let (key, iv) = sealing_key(secrets)?;
        Ok(Sealer { key, iv, seq, update_at: update_at(&keys, 0), keys, out: Vec::new() })
    }

    /// Seals up to `max` bytes from the front of `parts` into records of at most
    /// 16 KiB of plaintext each, and drops them from `parts`. Sealing a batch a part at
    /// a time keeps the records in the cache until the socket copies them.
    pub(crate) fn seal(&mut self, parts: &mut Vec<&[u8]>, max: usize) -> io::Result<&[u8]> {
        self.out.clear();
        let mut sealed = 0;
        let mut next = 0;
        let mut rest: &[u8] = &[];
        let mut chunks: Vec<&[u8]> = Vec::new();
        while sealed < max {
            chunks.clear();
            let mut room = MAX_PLAINTEXT.min(max - sealed);
            while room > 0 {
                if rest.is_empty() {
                    match parts.get(next) {
                        Some(p) => rest = p,
                        None => break,
                    }
                    next += 1;
                }
                let (now, later) = rest.split_at(rest.len().min(room));
                chunks.push(now);
                room -= now.len();
                rest = later;
            }
            let len: usize = chunks.iter().map(|c| c.len()).sum();
            if len == 0 {
                break;
            }
            self.update_keys_if_due()?;
            self.push(ContentType::ApplicationData, &chunks)?;
            sealed += len;
        }
        super::sink::advance(parts, sealed);
        Ok(&self.out)
    }

    /// The `close_notify` alert that ends the sending direction.
    pub(crate) fn close_notify(&mut self) -> io::Result<&[u8]> {
        self.out.clear();
        // level warning (1), description close_notify (0)
        self.push(ContentType::Alert, &[&[1, 0]])?;
        Ok(&self.out)
    }

    /// Appends one record of `chunks` to the buffer.
    fn push(&mut self, typ: ContentType, chunks: &[&[u8]]) -> io::Result<()> {
        let plain: usize = chunks.iter().map(|c| c.len()).sum();
        let tag_len = self.key.algorithm().tag_len();
        let header = make_tls13_aad(plain + 1 + tag_len);
        let start = self.out.len();
        self.out.reserve(HEADER + plain + 1 + tag_len);
        self.out.extend_from_slice(&header);
        for c in chunks {
            self.out.extend_from_slice(c);
        }
        self.out.push(u8::from(typ));
        let nonce = aead::Nonce::assume_unique_for_key(Nonce::new(&self.iv, self.seq).0);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut self.out[start + HEADER..])
            .map_err(|_| invalid("TLS: sealing a record failed"))?;
        self.out.extend_from_slice(tag.as_ref());
        self.seq += 1;
        Ok(())
    }

    /// Replaces the sending keys when the peer asked for it or the suite's
    /// confidentiality limit draws near: a `KeyUpdate` under the old key, then the new.
    fn update_keys_if_due(&mut self) -> io::Result<()> {
        let asked =
            self.keys.update_owed.load(Ordering::Acquire) && self.keys.update_owed.swap(false, Ordering::AcqRel);
        if !asked && self.seq < self.update_at {
            return Ok(());
        }
        // handshake type key_update (24), length 1, update_not_requested (0)
        self.push(ContentType::Handshake, &[&[u8::from(HandshakeType::KeyUpdate), 0, 0, 1, 0]])?;
        let (seq, secrets) = self.keys.kernel.lock().next_tx().map_err(tls_error)?;
        (self.key, self.iv) = sealing_key(secrets)?;
        self.seq = seq;
        self.update_at = update_at(&self.keys, seq);
        Ok(())
    }

    /// Lets the next record reach the confidentiality limit.
    #[cfg(test)]
    pub(crate) fn near_confidentiality_limit(&mut self) {
        self.update_at = self.seq;
    }
}
