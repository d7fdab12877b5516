//! TLS 1.3 records once the handshake is over: frames are sealed into records on the
//! way out and records are opened in place on the way in.
//!
//! rustls runs the handshake and then hands over the traffic keys through its kernel
//! TLS interface ([`KernelConnection`]), which also derives new keys on a key update.
//! Opening records stays rustls's ([`MessageDecrypter`]: the nonce, additional data,
//! inner content type and padding); sealing uses rustls's nonce and additional data and
//! the AEAD of rustls's provider. What this module adds is where the bytes live.
//! rustls's buffered connection copies every byte it receives three times (into its
//! record buffer, out of the decrypted record, into the reader's buffer) and every byte
//! it sends once before sealing it. Here a record is read into one buffer, opened
//! where it lies and copied once into the link's read buffer while still in the cache;
//! on the way out it is sealed straight from the link's batch, and small frames are
//! sealed and sent by the streams that write them while the writer sleeps, as on a
//! plaintext link ([`SealedSocket`]).
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
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

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
/// Plaintext sealed into records at a time before they are sent: the records are still
/// in the cache when the socket copies them, and a TLS link keeps no larger buffer.
const SEAL_AT_ONCE: usize = 256 * 1024;
/// Key updates a peer may send in a row without application data (as many as rustls
/// allows).
const MAX_KEY_UPDATES: u32 = 32;
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
        key_updates: 0,
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
    /// Key updates since the last application data.
    key_updates: u32,
}

impl Opener {
    /// The cipher suite the handshake agreed on.
    #[cfg(test)]
    pub(crate) fn cipher_suite(&self) -> rustls::CipherSuite {
        self.keys.suite.common.suite
    }

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
            ContentType::ApplicationData => {
                self.plain = range;
                self.key_updates = 0;
            }
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
        if range.is_empty() {
            return Err(invalid("TLS: an empty handshake record"));
        }
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
                    // Each costs a key derivation: a peer may not send them for nothing.
                    self.key_updates += 1;
                    if self.key_updates > MAX_KEY_UPDATES {
                        return Err(invalid("TLS: key updates without application data in between"));
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

/// Sealed records, in a buffer kept from one batch to the next (sealing over the last
/// batch's bytes spares zeroing them).
#[derive(Default)]
pub(crate) struct Records {
    buf: Vec<u8>,
    len: usize,
}

impl Records {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// The next `n` bytes, for a record.
    fn grow(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        let at = std::mem::replace(&mut self.len, end);
        &mut self.buf[at..end]
    }
}

/// The sending direction: seals frames into records.
///
/// The nonce and additional data are rustls's ([`Nonce::new`], [`make_tls13_aad`]); the
/// AEAD is the one rustls's provider uses, reading the plaintext where it lies.
pub(crate) struct Sealer {
    key: LessSafeKey,
    iv: Iv,
    seq: u64,
    /// The sequence number at which the keys are replaced.
    update_at: u64,
    keys: Arc<Keys>,
    /// A record failed to seal: its sequence number may be spent, so nothing more is
    /// sealed and the link ends.
    failed: bool,
}

/// Where the keys first used at `seq` are replaced: a little short of the suite's
/// confidentiality limit, where rustls would replace them.
fn update_at(keys: &Keys, seq: u64) -> u64 {
    seq.saturating_add(keys.suite.common.confidentiality_limit.saturating_sub(KEY_UPDATE_MARGIN))
}

impl Sealer {
    fn new(keys: Arc<Keys>, seq: u64, secrets: ConnectionTrafficSecrets) -> io::Result<Sealer> {
        let (key, iv) = sealing_key(secrets)?;
        Ok(Sealer { key, iv, seq, update_at: update_at(&keys, seq), keys, failed: false })
    }

    /// Seals up to `max` bytes from the front of `parts` into `out`, in records of at
    /// most 16 KiB of plaintext (a record does not span two parts), and drops them from
    /// `parts`. Sealing a batch a part at a time keeps the records in the cache until
    /// the socket copies them.
    pub(crate) fn seal(&mut self, parts: &mut Vec<&[u8]>, max: usize, out: &mut Records) -> io::Result<()> {
        out.clear();
        let mut sealed = 0;
        for part in parts.iter() {
            for plaintext in part.chunks(MAX_PLAINTEXT) {
                if sealed >= max {
                    break;
                }
                self.push(ContentType::ApplicationData, &[plaintext], out)?;
                sealed += plaintext.len();
            }
        }
        super::sink::advance(parts, sealed);
        Ok(())
    }

    /// Seals one frame into `out`: its header and the start of its payload in one
    /// record, the rest of the payload (if any) in the next.
    pub(crate) fn seal_frame(&mut self, header: &[u8], payload: &[u8], out: &mut Records) -> io::Result<()> {
        out.clear();
        let (first, rest) = payload.split_at(payload.len().min(MAX_PLAINTEXT.saturating_sub(header.len())));
        self.push(ContentType::ApplicationData, &[header, first], out)?;
        for plaintext in rest.chunks(MAX_PLAINTEXT) {
            self.push(ContentType::ApplicationData, &[plaintext], out)?;
        }
        Ok(())
    }

    /// Seals the `close_notify` alert that ends the sending direction into `out`.
    pub(crate) fn close_notify(&mut self, out: &mut Records) -> io::Result<()> {
        out.clear();
        // level warning (1), description close_notify (0)
        self.push(ContentType::Alert, &[&[1, 0]], out)
    }

    /// Appends one record of `chunks` (at most 16 KiB in all) to `out`. One chunk is
    /// sealed on its way from the caller's buffer; several are gathered first.
    fn push(&mut self, typ: ContentType, chunks: &[&[u8]], out: &mut Records) -> io::Result<()> {
        if self.failed {
            return Err(invalid("TLS: an earlier record failed to seal"));
        }
        let pushed = self.seal_record(typ, chunks, out);
        self.failed = pushed.is_err();
        pushed
    }

    fn seal_record(&mut self, typ: ContentType, chunks: &[&[u8]], out: &mut Records) -> io::Result<()> {
        if typ == ContentType::ApplicationData {
            self.update_keys_if_due(out)?;
        }
        let plain: usize = chunks.iter().map(|c| c.len()).sum();
        let tag_len = self.key.algorithm().tag_len();
        let header = make_tls13_aad(plain + 1 + tag_len);
        let record = out.grow(HEADER + plain + 1 + tag_len);
        record[..HEADER].copy_from_slice(&header);
        let (ciphertext, type_and_tag) = record[HEADER..].split_at_mut(plain);
        let nonce = aead::Nonce::assume_unique_for_key(Nonce::new(&self.iv, self.seq).0);
        let sealed = match chunks {
            [plaintext] => self.key.seal_out_of_place_scatter(
                nonce,
                Aad::from(header),
                plaintext,
                ciphertext,
                &[u8::from(typ)],
                type_and_tag,
            ),
            _ => {
                let mut at = 0;
                for c in chunks {
                    ciphertext[at..at + c.len()].copy_from_slice(c);
                    at += c.len();
                }
                self.key.seal_in_place_scatter(nonce, Aad::from(header), ciphertext, &[u8::from(typ)], type_and_tag)
            }
        };
        sealed.map_err(|_| invalid("TLS: sealing a record failed"))?;
        self.seq += 1;
        Ok(())
    }

    /// Replaces the sending keys when the peer asked for it or the suite's
    /// confidentiality limit draws near: a `KeyUpdate` under the old key, then the new.
    fn update_keys_if_due(&mut self, out: &mut Records) -> io::Result<()> {
        let asked =
            self.keys.update_owed.load(Ordering::Acquire) && self.keys.update_owed.swap(false, Ordering::AcqRel);
        if !asked && self.seq < self.update_at {
            return Ok(());
        }
        // handshake type key_update (24), length 1, update_not_requested (0)
        self.push(ContentType::Handshake, &[&[u8::from(HandshakeType::KeyUpdate), 0, 0, 1, 0]], out)?;
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

    /// Seals `n` key updates in a row into `out`, switching keys after each.
    #[cfg(test)]
    pub(crate) fn key_updates(&mut self, n: usize, out: &mut Records) {
        out.clear();
        for _ in 0..n {
            self.update_at = self.seq;
            self.update_keys_if_due(out).unwrap();
        }
    }

    /// Seals one record of any content type into `out`.
    #[cfg(test)]
    pub(crate) fn record(&mut self, typ: ContentType, payload: &[u8], out: &mut Records) {
        out.clear();
        self.push(typ, &[payload], out).unwrap();
    }
}

/// A TLS link's sending side, shared by its writer and by the streams that write small
/// frames directly while the writer sleeps (as on a plaintext link): whoever seals a
/// record sends it before anyone seals the next, so records leave in sequence.
pub(crate) struct SealedSocket {
    tcp: super::sink::TcpOut,
    state: Mutex<SealState>,
}

struct SealState {
    sealer: Sealer,
    /// Where direct writes seal their frame.
    direct: Records,
    /// Records a direct write sealed that the socket did not take: the writer sends
    /// them before anything else, and no direct write is made until then.
    unsent: Vec<u8>,
}

impl SealedSocket {
    pub(crate) fn new(tcp: OwnedWriteHalf, sealer: Sealer) -> SealedSocket {
        let tcp = super::sink::TcpOut::Half(tcp);
        SealedSocket { tcp, state: Mutex::new(SealState { sealer, direct: Records::default(), unsent: Vec::new() }) }
    }

    /// A direct write of one frame (see [`crate::proto::link::DirectWrite`]): the bytes
    /// of the frame taken (all of it once sealed, or none), and whether the writer must
    /// wake to send what the socket did not take.
    pub(crate) fn write_frame(&self, header: &[u8], payload: &[u8]) -> (Option<usize>, bool) {
        let mut state = self.state.lock();
        let SealState { sealer, direct, unsent } = &mut *state;
        if !unsent.is_empty() || sealer.seal_frame(header, payload, direct).is_err() {
            // Queued instead; a sealing error ends the link at the writer.
            return (None, false);
        }
        let records = direct.as_slice();
        // A broken socket takes nothing: the writer meets the error when it sends the rest.
        let sent = super::sink::try_send(&self.tcp, &[IoSlice::new(records)]).unwrap_or_default();
        unsent.extend_from_slice(&records[sent..]);
        (Some(header.len() + payload.len()), !unsent.is_empty())
    }

    /// Seals `parts` (the writer's batch) into `out` a piece at a time and sends them,
    /// after what direct writes left unsent. See [`super::sink::Sink::write_all`].
    pub(crate) async fn write_all(&self, parts: &[&[u8]], out: &mut Records, stall: Duration) -> io::Result<()> {
        self.flush(stall).await?;
        let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        while !parts.is_empty() {
            self.state.lock().sealer.seal(&mut parts, SEAL_AT_ONCE, out)?;
            super::sink::send_frames(&self.tcp, &[out.as_slice()], stall).await?;
        }
        Ok(())
    }

    /// Sends what direct writes left unsent.
    pub(crate) async fn flush(&self, stall: Duration) -> io::Result<()> {
        loop {
            {
                let mut state = self.state.lock();
                if state.unsent.is_empty() {
                    return Ok(());
                }
                match super::sink::try_send(&self.tcp, &[IoSlice::new(&state.unsent)]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        state.unsent.drain(..n);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            super::sink::wait_writable(&self.tcp, stall).await?;
        }
    }

    /// Lets the next record reach the confidentiality limit.
    #[cfg(test)]
    pub(crate) fn near_confidentiality_limit(&self) {
        self.state.lock().sealer.near_confidentiality_limit();
    }

    /// Sends `close_notify` after everything else.
    pub(crate) async fn close(&self, stall: Duration) -> io::Result<()> {
        self.flush(stall).await?;
        let mut out = Records::default();
        self.state.lock().sealer.close_notify(&mut out)?;
        super::sink::send_frames(&self.tcp, &[out.as_slice()], stall).await
    }
}
