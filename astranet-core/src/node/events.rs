//! The node's side of its links: every [`Event`] a link raises is handled here.

use super::NodeShared;
use crate::addr::HostId;
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
            Event::RouteLost(host) => {
                let listeners: Vec<_> = self.listeners.read().values().cloned().collect();
                for listener in listeners {
                    listener.cancel_host(link, host);
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
    /// The access rule of the peer of `link`: `None` when there is a policy and no
    /// rule applies (also for a plaintext peer); `Some(None)` without a policy.
    fn rule<'a>(&'a self, link: &LinkHandle) -> Option<Option<&'a crate::access::AccessRule>> {
        match &self.config.access {
            None => Some(None),
            Some(policy) => link.identity.as_ref().and_then(|id| policy.rule_for(&id.name)).map(Some),
        }
    }

    /// Whether the access policy lets the peer of `link` deliver a DIAL from `from` to
    /// the service `name` (always, without a policy).
    fn may_dial(&self, link: &LinkHandle, from: HostId, name: &str) -> bool {
        match self.rule(link) {
            Some(None) => true,
            Some(Some(r)) => r.allows_dial(name) && (Some(from) == link.peer() || r.allows_relay()),
            None => false,
        }
    }

    /// Whether the access policy lets the peer of `link` announce `name` on `host`.
    pub(super) fn may_announce(&self, link: &LinkHandle, host: HostId, name: &str) -> bool {
        match self.rule(link) {
            Some(None) => true,
            Some(Some(r)) => r.allows_announce(name) && (Some(host) == link.peer() || r.allows_relay()),
            None => false,
        }
    }

    /// Hands a DIAL to the listener on its port, or refuses it.
    fn offer_dial(&self, link: &LinkHandle, key: StreamKey) {
        let refusal = match self.listener(key.local_port) {
            None => Err(RstReason::NoListener),
            Some(listener) if !self.may_dial(link, key.remote_host, listener.name().unwrap_or("")) => {
                tracing::warn!(peer = ?link.identity.as_ref().map(|i| &i.name), service = listener.name().unwrap_or(""),
                    "dial refused by the access policy");
                Err(RstReason::Forbidden)
            }
            Some(_) if link.load() >= self.config.limits.max_streams_per_link => Err(RstReason::StreamLimit),
            Some(listener) => listener.offer(link, key),
        };
        if let Err(reason) = refusal {
            tracing::debug!(link = %link.id, port = key.local_port, %reason, "dial refused");
            link.with(|l, _| l.refuse_dial(&key, reason));
        }
    }
}
