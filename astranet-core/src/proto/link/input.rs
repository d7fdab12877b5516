//! What arrives on a link: frames are decoded from the bytes read and handled one by
//! one. Stream frames change their stream; everything that concerns the node (dials,
//! announcements, frames to relay, direct-connect requests) becomes an [`Event`].

use super::events::Event;
use super::policy::Unknown;
use super::table::StreamKey;
use super::{CloseReason, Link, Phase, Policy};
use crate::addr::{Addr, HostId};
use crate::proto::frame::{Command, Frame, Header, RstReason};
use crate::proto::handshake::{Handshake, CAP_RST};
use crate::proto::recv::PAYLOAD_OVERHEAD;
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::Instant;

/// DATA payloads shorter than this are copied out of the read buffer unless their
/// reader already waits: a payload kept as a slice pins its whole read buffer until it
/// is read, so a live slice then pins at most 16 times its size (and the I/O layer
/// bounds the pinned buffers, see [`Link::copy_payloads`]).
const COPY_BELOW: usize = 16 * 1024;

impl Link {
    /// Takes every complete frame off the front of `buf` (the bytes read so far) and
    /// handles it; wakers of streams that can make progress go to `wakers`. An
    /// incomplete frame stays in `buf` for the next call. On a protocol violation or a
    /// limit the link closes, and the reason is returned (and sent as
    /// [`Event::Closed`]).
    pub fn handle_input(
        &mut self,
        now: Instant,
        buf: &mut BytesMut,
        wakers: &mut Vec<Waker>,
    ) -> Result<(), CloseReason> {
        if let Phase::Closed(r) = &self.phase {
            return Err(r.clone());
        }
        self.timers.last_rx = now;
        let mut frames = 0u64;
        let result = loop {
            let decoded = self.decoder.decode_with(buf, |h| self.may_receive_oversized(h));
            match decoded {
                Ok(Some(frame)) => {
                    frames += 1;
                    self.timers.frame_started = None;
                    if let Err(reason) = self.on_frame(frame, now, wakers) {
                        break Err(reason);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(CloseReason::Protocol(e.to_string())),
            }
        };
        self.counters.frames_in.fetch_add(frames, Ordering::Relaxed);
        // Answers (most are control frames; PONG and FOLLOW queue behind data) pile up
        // faster than a peer that does not read them takes them. Data written by streams
        // stays below the write queue size, so it does not count; frames relayed for
        // other hosts are bounded by their receivers' windows (and the relay's own
        // limit), so they do not either.
        let result = result.and_then(|()| {
            let max = self.cfg.max_control_queue + 2 * self.cfg.write_queue;
            if self.out.own_queued() > max {
                return Err(CloseReason::Limit(format!(
                    "more than {} bytes of control frames queued",
                    self.cfg.max_control_queue
                )));
            }
            Ok(())
        });
        if let Err(reason) = result {
            self.close(reason.clone(), wakers);
            return Err(reason);
        }
        if !buf.is_empty() && self.timers.frame_started.is_none() {
            self.timers.frame_started = Some((now, crate::proto::frame::incomplete_frame_len(buf)));
        }
        Ok(())
    }

    /// Whether a frame over [`MAX_PAYLOAD`](crate::proto::MAX_PAYLOAD) may be read. A Go sender puts all the
    /// window it has into one DATA frame, so a stream whose window this node grew past
    /// 64 KiB receives frames up to that grant: from a v1 peer, or from a Go host behind
    /// a relay. Nothing else may be that large.
    fn may_receive_oversized(&self, h: &Header) -> bool {
        if h.cmd != Command::Data || self.peer().is_none() {
            return false;
        }
        if h.dst_host != self.local.0 {
            // Relayed: up to what the receiving end granted, in a WND_SIZE relayed here.
            let key = (HostId(h.src_host), h.src_port, HostId(h.dst_host), h.dst_port);
            return self.relay_grants.get(&key).is_some_and(|grant| *grant >= h.len);
        }
        let key = StreamKey { local_port: h.dst_port, remote_port: h.src_port, remote_host: HostId(h.src_host) };
        self.streams
            .find(&key)
            .and_then(|id| self.streams.get(id))
            .is_some_and(|slot| slot.state.recv.window.window() >= h.len)
    }

    fn on_frame(&mut self, frame: Frame, now: Instant, wakers: &mut Vec<Waker>) -> Result<(), CloseReason> {
        let h = frame.header;
        let policy = match self.phase {
            Phase::Up { policy, .. } => policy,
            Phase::Closed(ref r) => return Err(r.clone()),
            Phase::Handshaking => {
                match h.cmd {
                    Command::Handshake => self.on_handshake(&frame, now)?,
                    // Go answers PING even before the handshake.
                    Command::Ping => self.out.push(Header::link(Command::Pong, 0), &[]),
                    cmd => tracing::trace!(%cmd, "frame before handshake dropped"),
                }
                return Ok(());
            }
        };
        if !policy.may_receive(h.cmd) {
            return Err(CloseReason::Protocol(format!("{} from a peer that did not negotiate it", h.cmd)));
        }
        if h.dst_host != 0 && h.dst_host != self.local.0 && h.cmd.is_routed() {
            if matches!(h.cmd, Command::Fin2 | Command::Rst) {
                // The sender will send no more DATA on that stream.
                let key = (HostId(h.src_host), h.src_port, HostId(h.dst_host), h.dst_port);
                self.relay_grants.remove(&key);
            }
            self.events.push_back(Event::Forward(frame));
            return Ok(());
        }
        tracing::trace!(cmd = %h.cmd, src = h.src_port, dst = h.dst_port, len = h.len, "frame");
        match h.cmd {
            Command::Ping => self.out.push(Header::link(Command::Pong, 0), &[]),
            Command::Pong => self.on_pong(now),
            Command::Handshake => tracing::debug!("repeated HANDSHAKE ignored"),
            Command::Dial if self.for_us(&h) => self.events.push_back(Event::Dial(StreamKey {
                local_port: h.dst_port,
                remote_port: h.src_port,
                remote_host: HostId(h.src_host),
            })),
            cmd if cmd.is_stream_frame() && self.for_us(&h) => return self.on_stream_frame(frame, policy, now, wakers),
            Command::Service | Command::NoService => self.events.push_back(Event::Announcement {
                cmd: h.cmd,
                name: frame.payload,
                addr: Addr::new(HostId(h.src_host), h.src_port),
            }),
            Command::Reset if h.dst_host == 0 || h.dst_host == self.local.0 => {
                self.on_route_lost(HostId(h.src_host), wakers)
            }
            Command::Discover => self.events.push_back(Event::Discover { from: HostId(h.src_host) }),
            Command::Follow => self.events.push_back(Event::Follow { host: HostId(h.src_host), addr: frame.payload }),
            _ => self.dropped(),
        }
        Ok(())
    }

    fn dropped(&self) {
        self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a DIAL or stream frame is addressed to this node. Frames for other hosts
    /// were passed on already; what is left without a host id (0) is dropped, as Go
    /// drops it.
    fn for_us(&self, h: &Header) -> bool {
        if h.dst_host == self.local.0 {
            return true;
        }
        self.dropped();
        tracing::debug!(cmd = %h.cmd, "frame without a destination host dropped");
        false
    }

    /// Decodes the peer's HANDSHAKE: the link is up, its policy chosen.
    fn on_handshake(&mut self, frame: &Frame, now: Instant) -> Result<(), CloseReason> {
        let hs = Handshake::decode(&frame.payload).map_err(|e| CloseReason::Protocol(e.to_string()))?;
        let peer = HostId(frame.header.src_host);
        if peer.0 == 0 {
            return Err(CloseReason::Protocol("HANDSHAKE with host id 0".into()));
        }
        if peer == self.local {
            return Err(CloseReason::Protocol("the link leads back to this node".into()));
        }
        if let Some(certified) = self.authenticated {
            if certified != peer {
                return Err(CloseReason::Protocol(format!(
                    "the peer claims host id {peer}, its certificate names {certified}"
                )));
            }
        }
        let policy = if hs.has(CAP_RST) { Policy::Extended } else { Policy::V1 };
        tracing::debug!(%peer, ?policy, raddr = %hs.raddr, "handshake");
        self.phase = Phase::Up { peer, policy };
        self.timers.last_ping = now;
        // Measure the round trip from the start (the link's info reports it; the close
        // window of v1 streams allows for it).
        self.ping(now);
        self.events.push_back(Event::Up { peer, seen_as: hs.raddr });
        Ok(())
    }

    fn on_stream_frame(
        &mut self,
        frame: Frame,
        policy: Policy,
        now: Instant,
        wakers: &mut Vec<Waker>,
    ) -> Result<(), CloseReason> {
        let h = frame.header;
        let key = StreamKey { local_port: h.dst_port, remote_port: h.src_port, remote_host: HostId(h.src_host) };
        // Resets of streams the peer opened count against its budget (a refusal of a
        // DIAL of ours does not); an RST for no stream may cancel a backlogged DIAL.
        if h.cmd == Command::Rst {
            let theirs = self
                .streams
                .find(&key)
                .and_then(|id| self.streams.get(id))
                .is_none_or(|slot| slot.state.role() == crate::proto::stream::Role::Server);
            if theirs {
                self.charge_reset(now)?;
            }
        }
        let Some(id) = self.streams.find(&key) else {
            return self.on_unknown_stream(&key, h.cmd, policy);
        };
        if h.cmd == Command::Data {
            self.deadlines.touch(id, now);
        }
        let arg = match h.cmd {
            Command::Rewind | Command::WndSize => frame.u32_payload(),
            Command::Rst => u32::from(frame.payload[0]),
            _ => h.len,
        };
        let len = frame.payload.len();
        let max_buffer = self.cfg.max_buffer;
        if self.buffered + len + PAYLOAD_OVERHEAD > max_buffer {
            return Err(CloseReason::Limit(format!("more than {max_buffer} unread bytes buffered on the link")));
        }
        let before = self.streams.get(id).expect("indexed slot exists").state.recv.charge();
        // A host beyond the neighbour may be a Go host, whatever the neighbour is.
        let lenient = if self.peer() == Some(key.remote_host) { policy } else { Policy::V1 };
        let slot = self.streams.get_mut(id).expect("indexed slot exists");
        let fx = match slot.state.on_frame(h.cmd, arg) {
            Ok(fx) => fx,
            Err(v) if !lenient.is_fatal(&v) => {
                tracing::debug!(%v, "frame dropped");
                self.dropped();
                return Ok(());
            }
            Err(v) => return Err(CloseReason::Protocol(format!("stream {}: {v}", key.remote()))),
        };
        if h.cmd == Command::Data {
            slot.state.recv.window.on_arrival();
        }
        if fx.keep_data && len > 0 {
            // A small payload is copied unless its reader already waits on an empty
            // queue and takes it at once.
            let taken_at_once = slot.state.recv.is_empty() && slot.read_waker.is_some();
            let payload = if self.copy_payloads || (len < COPY_BELOW && !taken_at_once) {
                bytes::Bytes::copy_from_slice(&frame.payload)
            } else {
                frame.payload
            };
            slot.state.recv.push(payload);
        }
        if fx.wake_read {
            wakers.extend(slot.read_waker.take());
        }
        if fx.wake_write {
            wakers.extend(slot.write_waker.take());
        }
        let after = slot.state.recv.charge();
        self.buffered = self.buffered + after - before;
        match fx.reply {
            Some(Command::Rst) => self.refuse_dial(&key, RstReason::Aborted),
            Some(reply) => self.push_stream_frame(&key, reply, &[]),
            None => {}
        }
        if fx.fin2 {
            self.push_stream_frame(&key, Command::Fin2, &[]);
        }
        if fx.fin1 {
            self.push_stream_frame(&key, Command::Fin1, &[]);
        }
        if fx.start_close_window {
            self.start_close_window(id, key, now);
        }
        Ok(())
    }

    /// A stream frame that matches no stream, handled as the policy says.
    fn on_unknown_stream(&mut self, key: &StreamKey, cmd: Command, policy: Policy) -> Result<(), CloseReason> {
        self.dropped();
        let from_neighbour = self.peer() == Some(key.remote_host);
        match policy.unknown_stream(cmd, from_neighbour) {
            Unknown::Drop => tracing::debug!(%cmd, stream = %key.remote(), "frame for an unknown stream dropped"),
            Unknown::Refuse => self.refuse_dial(key, RstReason::Aborted),
            Unknown::CancelDial => self.events.push_back(Event::CancelDial(*key)),
        }
        Ok(())
    }

    /// One reset by the peer (an RST for a stream or a DIAL) against its budget: a
    /// token bucket of `max_resets_per_second`, as deep as one second of it. A peer
    /// that opens and resets streams faster makes this node work for nothing (the
    /// HTTP/2 rapid-reset attack) and is disconnected.
    fn charge_reset(&mut self, now: Instant) -> Result<(), CloseReason> {
        let rate = f64::from(self.cfg.max_resets_per_second);
        let (tokens, last) = self.timers.resets;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * rate).min(rate);
        if refilled < 1.0 {
            return Err(CloseReason::Limit(format!(
                "more than {} streams reset per second by the peer",
                self.cfg.max_resets_per_second
            )));
        }
        self.timers.resets = (refilled - 1.0, now);
        Ok(())
    }

    /// RESET from a relay: `lost` is out of reach. Every stream with it on this link
    /// fails, and its DIALs still waiting in a listener's backlog are dropped.
    fn on_route_lost(&mut self, lost: HostId, wakers: &mut Vec<Waker>) {
        tracing::debug!(host = %lost, "relay lost its route to the host");
        self.events.push_back(Event::RouteLost(lost));
        for (_, slot) in self.streams.iter_mut() {
            if slot.key.remote_host == lost && slot.state.fault().is_none() {
                slot.state.route_lost();
                slot.take_wakers(wakers);
            }
        }
    }
}
