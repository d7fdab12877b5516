//! The cap on links accepted from one source address: one host (or a flood from it)
//! cannot take every link a router can hold. Connections still in their handshake
//! count too, so a burst of half-open connections is capped as well.

use super::NodeShared;
use crate::addr::LinkId;
use crate::link::LinkHandle;
use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Weak;

#[derive(Default)]
pub(crate) struct Inbound {
    /// Links and handshakes per source address.
    per_address: HashMap<IpAddr, usize>,
    /// Accepted links, and the address each counts against.
    links: HashMap<LinkId, IpAddr>,
}

impl Inbound {
    fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
        }
    }
}

/// A place taken for a connection from `ip`; given back when dropped unless the
/// connection became a link ([`Admission::into_link`]).
pub(crate) struct Admission {
    node: Weak<NodeShared>,
    ip: IpAddr,
    kept: bool,
}

impl NodeShared {
    /// Takes a place for a connection from `ip`, or `None` when the address holds its
    /// limit of links already.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<Admission> {
        let mut inbound = self.inbound.lock();
        let n = inbound.per_address.entry(ip).or_default();
        if *n >= self.config.limits.max_links_per_address {
            return None;
        }
        *n += 1;
        Some(Admission { node: self.me.clone(), ip, kept: false })
    }

    /// A link closed: the place it held is free.
    pub(super) fn inbound_closed(&self, link: LinkId) {
        let mut inbound = self.inbound.lock();
        if let Some(ip) = inbound.links.remove(&link) {
            inbound.release(ip);
        }
    }
}

impl Admission {
    /// The connection became `link`: the place is held until it closes.
    pub(crate) fn into_link(mut self, node: &NodeShared, link: &LinkHandle) {
        self.kept = true;
        node.inbound.lock().links.insert(link.id, self.ip);
        // It may have closed already, its close handled before the line above.
        if link.is_closed() {
            node.inbound_closed(link.id);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.kept {
            if let Some(node) = self.node.upgrade() {
                node.inbound.lock().release(self.ip);
            }
        }
    }
}
