//! Service discovery across links: announcing the names this node binds, storing what
//! neighbours announce, passing neighbours' services on (routers), and withdrawing
//! them when a listener closes or a link goes down.
//!
//! Registry changes never happen under a link lock, and frames are pushed into links
//! only after the registry lock is released.

use crate::addr::Addr;
use crate::link::Link;
use crate::node::NodeShared;
use crate::proto::{Command, Header};
use crate::registry::{self, Registry};
use std::sync::Arc;

/// An announcement to send: SERVICE or NO_SERVICE of `name` at `addr`.
struct Announcement {
    cmd: Command,
    name: String,
    addr: Addr,
    /// Every link but this one (the link the announcement came from).
    except: Option<u64>,
}

impl NodeShared {
    /// A listener bound `name` at `addr`: store it, announce it everywhere.
    pub(crate) fn service_bound(&self, name: &str, addr: Addr) {
        self.update_registry(|r| r.add_local(name, addr));
        if self.config.role.announces() {
            self.send(&[Announcement { cmd: Command::Service, name: name.into(), addr, except: None }]);
        }
    }

    /// The listener of `name` at `addr` closed: withdraw it everywhere.
    pub(crate) fn service_unbound(&self, name: &str, addr: Addr) {
        self.update_registry(|r| r.remove_local(name, addr));
        if self.config.role.announces() {
            self.send(&[Announcement { cmd: Command::NoService, name: name.into(), addr, except: None }]);
        }
    }

    /// A SERVICE or NO_SERVICE frame arrived on `link`.
    pub(crate) fn on_announcement(&self, link: &Link, cmd: Command, payload: &[u8], addr: Addr) {
        let Some(via) = link.peer.get().map(|p| p.host) else { return };
        let name = match registry::parse_name(payload) {
            Ok(name) => name,
            Err(e) => {
                tracing::warn!(link = link.id, peer = %via, error = %e, "announcement dropped");
                return;
            }
        };
        if addr.host.0 == 0 || addr.host == self.host_id() {
            return;
        }
        let limit = self.config.limits.max_announcements_per_link;
        let changed = match cmd {
            Command::Service => match self.update_registry(|r| r.add_remote(name, addr, link.id, via, limit)) {
                Ok(new) => new,
                Err(e) => {
                    tracing::warn!(link = link.id, peer = %via, service = name, error = %e, "announcement dropped");
                    return;
                }
            },
            _ => self.update_registry(|r| r.remove_remote(name, addr, link.id)),
        };
        if changed && cmd == Command::Service && addr.host != via {
            self.maybe_discover(link, addr.host, name);
        }
        // A router passes on what a neighbour says about its own services.
        if changed && self.config.role.routes() && addr.host == via {
            self.send(&[Announcement { cmd, name: name.into(), addr, except: Some(link.id) }]);
        }
    }

    /// A link came up: tell the neighbour what this node offers.
    pub(crate) fn announce_to(&self, link: &Arc<Link>) {
        let mut frames = Vec::new();
        {
            let registry = self.registry.lock();
            if self.config.role.announces() {
                frames.extend(registry.locals().map(|(n, a)| (n.to_string(), a)));
            }
            if self.config.role.routes() {
                frames.extend(
                    registry.direct_remotes().filter(|(_, _, l)| *l != link.id).map(|(n, a, _)| (n.to_string(), a)),
                );
            }
        }
        for (name, addr) in frames {
            push_announcement(link, Command::Service, &name, addr);
        }
    }

    /// A link went down: forget what came through it; a router withdraws what it had
    /// passed on.
    pub(crate) fn link_lost(&self, link_id: u64) {
        let gone = self.update_registry(|r| r.remove_link(link_id));
        if self.config.role.routes() {
            let withdrawals: Vec<Announcement> = gone
                .into_iter()
                .filter(|(_, _, direct)| *direct)
                .map(|(name, addr, _)| Announcement { cmd: Command::NoService, name, addr, except: Some(link_id) })
                .collect();
            self.send(&withdrawals);
        }
    }

    /// Applies a change and tells waiting dials and watchers.
    fn update_registry<T>(&self, change: impl FnOnce(&mut Registry) -> T) -> T {
        let (out, version) = {
            let mut registry = self.registry.lock();
            let out = change(&mut registry);
            (out, registry.version())
        };
        self.registry_version.send_if_modified(|v| {
            let changed = *v != version;
            *v = version;
            changed
        });
        out
    }

    fn send(&self, announcements: &[Announcement]) {
        if announcements.is_empty() {
            return;
        }
        for link in self.up_links() {
            for a in announcements.iter().filter(|a| a.except != Some(link.id)) {
                push_announcement(&link, a.cmd, &a.name, a.addr);
            }
        }
    }
}

/// Queues SERVICE / NO_SERVICE: link-level (dst host 0), the instance in src host/port.
fn push_announcement(link: &Link, cmd: Command, name: &str, addr: Addr) {
    let mut st = link.state.lock();
    if st.closed.is_some() {
        return;
    }
    let h =
        Header { cmd, dst_host: 0, src_host: addr.host.0, dst_port: 0, src_port: addr.port, len: name.len() as u32 };
    st.push(h, name.as_bytes());
    link.kick(&mut st);
}
