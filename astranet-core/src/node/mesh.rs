//! Service discovery across links: announcing the names this node binds, storing what
//! neighbours announce, passing neighbours' services on (routers), and withdrawing
//! them when a listener closes or a link goes down.
//!
//! Registry changes never happen under a link lock. A change and the announcements it
//! causes happen under one registry lock (lock order: registry, then links, then a
//! link's state), so announcements leave in the order of the changes.

use super::NodeShared;
use crate::addr::{Addr, LinkId};
use crate::link::LinkHandle;
use crate::proto::Command;
use crate::registry::{self, Registry};

/// An announcement to send: SERVICE or NO_SERVICE of `name` at `addr`.
struct Announcement {
    cmd: Command,
    name: String,
    addr: Addr,
    /// Every link but this one (the link the announcement came from).
    except: Option<LinkId>,
}

impl NodeShared {
    /// A listener bound `name` at `addr`: store it, announce it everywhere.
    pub(crate) fn service_bound(&self, name: &str, addr: Addr) {
        let announces = self.config.role.announces();
        self.change_registry(|r, out| {
            r.add_local(name, addr);
            if announces {
                out.push(Announcement { cmd: Command::Service, name: name.into(), addr, except: None });
            }
        });
    }

    /// The listener of `name` at `addr` closed: withdraw it everywhere.
    pub(crate) fn service_unbound(&self, name: &str, addr: Addr) {
        let announces = self.config.role.announces();
        self.change_registry(|r, out| {
            if r.remove_local(name, addr) && announces {
                out.push(Announcement { cmd: Command::NoService, name: name.into(), addr, except: None });
            }
        });
    }

    /// A SERVICE or NO_SERVICE frame arrived on `link`.
    pub(crate) fn on_announcement(&self, link: &LinkHandle, cmd: Command, payload: &[u8], addr: Addr) {
        let Some(via) = link.peer() else { return };
        let name = match registry::parse_name(payload) {
            Ok(name) => name,
            Err(e) => {
                tracing::warn!(link = %link.id, peer = %via, error = %e, "announcement dropped");
                return;
            }
        };
        if addr.host.0 == 0 || addr.host == self.host_id() {
            return;
        }
        // Withdrawals pass: a name that was never stored is not in the registry anyway.
        if cmd == Command::Service && !self.may_announce(link, addr.host, name) {
            tracing::warn!(link = %link.id, peer = %via, name, "announcement refused by the access policy");
            return;
        }
        let limit = self.config.limits.max_announcements_per_link;
        let routes = self.config.role.routes();
        let direct = addr.host == via;
        let mut discover = false;
        self.change_registry(|r, out| {
            // A router passes on what a neighbour says about its own services, once per
            // instance however many links lead to it.
            let was_known = r.has_direct(name, addr);
            match cmd {
                Command::Service => match r.add_remote(name, addr, link.id, via, limit) {
                    Ok(true) => discover = !direct,
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(link = %link.id, peer = %via, service = name, error = %e, "announcement dropped");
                        return;
                    }
                },
                _ => {
                    if !r.remove_remote(name, addr, link.id) {
                        return;
                    }
                }
            }
            if self.link(link.id).is_none() {
                // The link closed while this frame waited: its entries were removed
                // already, and must not come back.
                r.remove_link(link.id);
                discover = false;
                return;
            }
            if routes && direct && was_known != r.has_direct(name, addr) {
                out.push(Announcement { cmd, name: name.into(), addr, except: Some(link.id) });
            }
        });
        if discover {
            self.maybe_discover(link, addr.host, name);
        }
        if cmd == Command::NoService {
            self.forget_if_unknown(addr.host);
        }
    }

    /// A link came up: tell the neighbour what this node offers.
    pub(crate) fn announce_to(&self, link: &LinkHandle) {
        let registry = self.registry.lock();
        if self.config.role.announces() {
            for (name, addr) in registry.locals() {
                push_announcement(link, Command::Service, name, addr);
            }
        }
        if self.config.role.routes() {
            let mut passed = std::collections::HashSet::new();
            for (name, addr, via_link) in registry.direct_remotes() {
                if via_link != link.id && passed.insert((name, addr)) {
                    push_announcement(link, Command::Service, name, addr);
                }
            }
        }
    }

    /// A link went down: forget what came through it; a router withdraws what it had
    /// passed on, unless another link still leads to the instance.
    pub(crate) fn link_lost(&self, link_id: LinkId) {
        let routes = self.config.role.routes();
        let mut hosts = Vec::new();
        self.change_registry(|r, out| {
            for (name, addr, direct) in r.remove_link(link_id) {
                hosts.push(addr.host);
                if routes && direct && !r.has_direct(&name, addr) {
                    out.push(Announcement { cmd: Command::NoService, name, addr, except: Some(link_id) });
                }
            }
        });
        for host in hosts {
            self.forget_if_unknown(host);
        }
    }

    /// Applies a change and sends the announcements it calls for, under one registry
    /// lock, then tells waiting dials and watchers.
    fn change_registry(&self, change: impl FnOnce(&mut Registry, &mut Vec<Announcement>)) {
        let version = {
            let mut registry = self.registry.lock();
            let mut out = Vec::new();
            change(&mut registry, &mut out);
            if !out.is_empty() {
                for link in self.up_links() {
                    for a in out.iter().filter(|a| a.except != Some(link.id)) {
                        push_announcement(&link, a.cmd, &a.name, a.addr);
                    }
                }
            }
            registry.version()
        };
        self.registry_state.send_if_modified(|s| {
            let changed = s.version != version;
            s.version = version;
            changed
        });
    }
}

/// Queues SERVICE / NO_SERVICE: link-level (dst host 0), the instance in src host/port.
/// Announcements wait on each link until its data queue has room, coalesced per
/// instance, so a neighbour that toggles a name costs slow links nothing extra.
fn push_announcement(link: &LinkHandle, cmd: Command, name: &str, addr: Addr) {
    link.with(|l, _| l.announce(cmd, name, addr));
}
