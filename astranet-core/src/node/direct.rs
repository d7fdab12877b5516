//! The direct-connect upgrade: nodes that reach each other only through a relay try to
//! link directly. A node learns its own reachable addresses (its listening ports, at
//! the IPs its peers see it as); a following node that hears of a relayed service in
//! its environment sends DISCOVER to its host (through the relay); the host answers
//! with FOLLOW frames naming its addresses (and again when they change), and the
//! follower joins them. New streams
//! then prefer the direct link; relayed streams carry on, and when the direct address
//! cannot be reached (NAT) everything keeps flowing through the relay.

use super::NodeShared;
use crate::addr::{HostId, LinkId};
use crate::link::LinkHandle;
use crate::proto::{Command, Header};
use std::net::{IpAddr, SocketAddr};

impl NodeShared {
    /// A peer's handshake said how it sees this node (`ip:port`): the IP is one of
    /// this node's addresses.
    pub(crate) fn seen_as(&self, raddr: &str) {
        if let Ok(addr) = raddr.parse::<SocketAddr>() {
            if !addr.ip().is_unspecified() && self.seen_ips.lock().insert(addr.ip()) {
                self.tell_followers();
            }
        }
    }

    /// This node accepts links at `addr`.
    pub(crate) fn listening_at(&self, addr: SocketAddr) {
        self.listen_addrs.lock().push(addr);
        self.tell_followers();
    }

    /// The advertised addresses changed: hosts that asked for them hear again.
    fn tell_followers(&self) {
        let followers: Vec<(HostId, LinkId)> = self.followers.lock().iter().map(|(h, l)| (*h, *l)).collect();
        for (host, link) in followers {
            match self.link(link) {
                Some(link) => self.send_follow(&link, host),
                None => {
                    self.followers.lock().remove(&host);
                }
            }
        }
    }

    /// The addresses this node can be joined at: each listening address, with an
    /// unspecified IP (`0.0.0.0`, `::`) replaced by the IPs peers see this node as.
    pub(crate) fn advertised(&self) -> Vec<SocketAddr> {
        let seen = self.seen_ips.lock().clone();
        let mut out = Vec::new();
        for listen in self.listen_addrs.lock().iter() {
            if listen.ip().is_unspecified() {
                let same_family = seen.iter().filter(|ip| ip.is_ipv4() == listen.is_ipv4());
                out.extend(same_family.map(|ip| SocketAddr::new(*ip, listen.port())));
            } else {
                out.push(*listen);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// A relayed announcement of `host`'s service: ask `host` (through `link`) where
    /// it can be reached directly, once.
    pub(crate) fn maybe_discover(&self, link: &LinkHandle, host: HostId, name: &str) {
        if !self.config.role.follows() || !name.ends_with(self.config.env.as_str()) || self.route(host).is_some() {
            return;
        }
        {
            let mut discovered = self.discovered.lock();
            if discovered.contains_key(&host) || discovered.len() >= MAX_DISCOVERED {
                return;
            }
            discovered.insert(host, (link.id, 0));
        }
        tracing::debug!(link = %link.id, %host, "asking a relayed host for its direct addresses");
        let h = Header {
            cmd: Command::Discover,
            dst_host: host.0,
            src_host: self.host_id().0,
            dst_port: 0,
            src_port: 0,
            len: 0,
        };
        push(link, h, &[]);
    }

    /// A followed host's direct link dropped: ask it again through a relay that still
    /// announces it.
    pub(crate) fn rediscover(&self, host: HostId) {
        self.discovered.lock().remove(&host);
        let entry = self.registry.lock().relayed_entry(host);
        if let Some((name, link)) = entry {
            if let Some(link) = self.link(link) {
                self.maybe_discover(&link, host, &name);
            }
        }
    }

    /// No announcement names `host` any more: forget having asked it, so that it is
    /// asked again if it comes back.
    pub(crate) fn forget_if_unknown(&self, host: HostId) {
        if !self.registry.lock().knows_host(host) {
            self.discovered.lock().remove(&host);
        }
    }

    /// `from` asked (DISCOVER) for this node's direct addresses: answer on the link it
    /// came through.
    pub(crate) fn on_discover(&self, link: &LinkHandle, from: HostId) {
        {
            let mut followers = self.followers.lock();
            if followers.len() < MAX_DISCOVERED || followers.contains_key(&from) {
                followers.insert(from, link.id);
            }
        }
        self.send_follow(link, from);
    }

    /// A link went down: hosts that asked through it are no longer told.
    pub(crate) fn followers_lost(&self, link_id: LinkId) {
        self.followers.lock().retain(|_, l| *l != link_id);
    }

    /// FOLLOW frames for every advertised address, to `to` through `link`.
    fn send_follow(&self, link: &LinkHandle, to: HostId) {
        for addr in self.advertised() {
            let text = addr.to_string();
            let h = Header {
                cmd: Command::Follow,
                dst_host: to.0,
                src_host: self.host_id().0,
                dst_port: 0,
                src_port: 0,
                len: text.len() as u32,
            };
            push(link, h, text.as_bytes());
        }
    }

    /// `host` can be reached at `addr` (FOLLOW): a following node without a direct link
    /// to it joins there. A failed attempt leaves the traffic on the relay.
    pub(crate) fn on_follow(&self, link: &LinkHandle, host: HostId, addr: &[u8]) {
        if !self.config.role.follows() || host == self.host_id() || self.route(host).is_some() {
            return;
        }
        // Only hosts this node asked, answering through the link it asked on, and a few
        // addresses each: a peer cannot make it connect anywhere it likes.
        {
            let mut discovered = self.discovered.lock();
            match discovered.get_mut(&host) {
                Some((asked_on, tries)) if *asked_on == link.id && *tries < MAX_FOLLOWED_ADDRESSES => *tries += 1,
                _ => {
                    tracing::debug!(%host, "FOLLOW not asked for, or too many: dropped");
                    return;
                }
            }
        }
        let Some(addr) = std::str::from_utf8(addr).ok().and_then(|a| a.parse::<SocketAddr>().ok()) else {
            tracing::warn!(%host, "FOLLOW with an address that does not parse dropped");
            return;
        };
        if is_forbidden(addr.ip()) {
            return;
        }
        // One address at a time: a host names several, and one link to it is enough.
        {
            let mut following = self.following.lock();
            if let Some(waiting) = following.get_mut(&host) {
                waiting.push_back(addr);
                return;
            }
            following.insert(host, Default::default());
        }
        let Some(node) = self.weak().upgrade() else { return };
        self.spawn_background(async move {
            let mut addr = addr;
            loop {
                tracing::info!(%host, %addr, "joining a relayed host directly");
                match node.join_followed(host, addr).await {
                    Ok(_) => {
                        node.following.lock().remove(&host);
                        return;
                    }
                    Err(e) => tracing::info!(%host, %addr, error = %e, "direct address unreachable"),
                }
                let mut following = node.following.lock();
                match following.get_mut(&host).and_then(|w| w.pop_front()) {
                    Some(next) => addr = next,
                    None => {
                        following.remove(&host);
                        tracing::info!(%host, "no direct address reachable: staying on the relay");
                        return;
                    }
                }
            }
        });
    }
}

/// Relayed hosts this node asks for their addresses, and hosts it tells its own.
const MAX_DISCOVERED: usize = 65_536;

/// Addresses joined per relayed host, at most.
const MAX_FOLLOWED_ADDRESSES: u32 = 8;

/// Addresses never dialed on a peer's word.
fn is_forbidden(ip: IpAddr) -> bool {
    ip.is_unspecified() || ip.is_multicast()
}

fn push(link: &LinkHandle, h: Header, payload: &[u8]) {
    link.with(|l, _| l.queue_frame(h, payload));
}
