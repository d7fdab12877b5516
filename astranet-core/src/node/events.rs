//! The node's side of its links: every [`Event`] a link raises is handled here.

use super::NodeShared;
use crate::link::{LinkEvents, LinkHandle};
use crate::proto::link::{Event, StreamKey};
use crate::proto::RstReason;

impl LinkEvents for NodeShared {
    fn on_event(&self, link: &LinkHandle, event: Event) {
        match event {
            Event::Up { peer, seen_as } => {
                self.seen_as(&seen_as);
                self.link_up(link, peer);
            }
            Event::Dial(key) => self.offer_dial(link, key),
            Event::CancelDial(key) => {
                if let Some(listener) = self.listener(key.local_port) {
                    listener.cancel(link, &key);
                }
            }
            Event::Announcement { cmd, name, addr } => self.on_announcement(link, cmd, &name, addr),
            Event::Forward(frame) => self.forward(link, frame),
            Event::Discover { from } => self.on_discover(link, from),
            Event::Follow { host, addr } => self.on_follow(link, host, &addr),
            Event::Closed(_) => self.link_closed(link),
        }
    }
}

impl NodeShared {
    /// Hands a DIAL to the listener on its port, or refuses it.
    fn offer_dial(&self, link: &LinkHandle, key: StreamKey) {
        let refusal = match self.listener(key.local_port) {
            None => Err(RstReason::NoListener),
            Some(_) if link.load() >= self.config.limits.max_streams_per_link => Err(RstReason::StreamLimit),
            Some(listener) => listener.offer(link, key),
        };
        if let Err(reason) = refusal {
            tracing::debug!(link = %link.id, port = key.local_port, %reason, "dial refused");
            link.with(|l, _| l.refuse_dial(&key, reason));
        }
    }
}
