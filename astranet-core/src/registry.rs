//! The service registry of a node: the names this node binds, and the announcements
//! (SERVICE / NO_SERVICE) received on each link, with instance selection for dial by
//! name.

use crate::addr::{Addr, HostId, LinkId};
use hashbrown::HashMap;
use std::fmt;

/// Longest service name accepted in an announcement (bytes).
pub const MAX_NAME_LEN: usize = 255;

/// How a service instance is reached from this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reach {
    /// Bound on this node.
    Local,
    /// Announced by the neighbour that hosts it.
    Direct,
    /// Announced through a neighbour that relays for its host.
    Relayed,
}

/// One instance of a named service, as listed by [`crate::Node::services`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceInfo {
    /// The full name, environment suffix included.
    pub name: String,
    /// Where the instance listens.
    pub addr: Addr,
    /// The neighbour whose link the announcement came through (`None` when local).
    pub via: Option<HostId>,
    /// Local, direct or relayed.
    pub reach: Reach,
}

impl fmt::Display for ServiceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            Some(via) => write!(f, "{} at {} via {} ({:?})", self.name, self.addr, via, self.reach),
            None => write!(f, "{} at {} (local)", self.name, self.addr),
        }
    }
}

/// How this node reaches another host, as listed by [`crate::Node::routes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteInfo {
    /// The host reached.
    pub host: HostId,
    /// The neighbour frames for it go to (the host itself when direct).
    pub via: HostId,
    /// A link to the host itself, rather than through a relay.
    pub direct: bool,
}

/// An announcement that is not stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnouncementError {
    /// Empty, longer than [`MAX_NAME_LEN`] bytes, or not UTF-8.
    #[error("invalid service name ({0})")]
    InvalidName(&'static str),
    /// The link already carries as many announcements as allowed.
    #[error("the link is over its limit of {0} announcements")]
    OverLimit(usize),
    /// The instance's host already has as many announcements as allowed, whatever
    /// links they came through.
    #[error("host {0} is over its limit of {1} announcements")]
    OverHostLimit(HostId, usize),
}

/// Checks a name received on the wire.
pub fn parse_name(payload: &[u8]) -> Result<&str, AnnouncementError> {
    if payload.is_empty() {
        return Err(AnnouncementError::InvalidName("empty"));
    }
    if payload.len() > MAX_NAME_LEN {
        return Err(AnnouncementError::InvalidName("longer than 255 bytes"));
    }
    std::str::from_utf8(payload).map_err(|_| AnnouncementError::InvalidName("not UTF-8"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Remote {
    addr: Addr,
    link: LinkId,
    via: HostId,
    direct: bool,
}

/// How [`Registry::pick`] chooses among instances.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Any instance, at random.
    Random,
    /// The same instance for the same key on every node (consistent hashing).
    Key(String),
}

/// Where a dial by name goes: the instance, and the link to send the DIAL on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub addr: Addr,
    pub link: LinkId,
    /// The neighbour that link leads to.
    pub via: HostId,
}

/// Virtual points per instance on the hash ring: enough to spread keys evenly.
const RING_POINTS: u32 = 64;

#[derive(Default)]
pub struct Registry {
    local: HashMap<String, Vec<Addr>>,
    remote: HashMap<String, Vec<Remote>>,
    per_link: HashMap<LinkId, usize>,
    /// Announcements per instance host.
    per_host: HashMap<HostId, usize>,
    /// At most this many per instance host (0: no limit).
    per_host_limit: usize,
    /// Hash rings by name, valid for `version`.
    rings: HashMap<String, (u64, Vec<(u64, Addr)>)>,
    version: u64,
}

impl Registry {
    /// A registry storing at most `per_host` announcements of any one host (a router
    /// passes on announcements of many hosts over one link: a flood from one of them
    /// must not fill the link's share).
    pub fn with_host_limit(per_host: usize) -> Registry {
        Registry { per_host_limit: per_host, ..Registry::default() }
    }

    /// Bumped on every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn add_local(&mut self, name: &str, addr: Addr) {
        self.local.entry(name.to_string()).or_default().push(addr);
        self.version += 1;
    }

    /// Returns whether it was known.
    pub fn remove_local(&mut self, name: &str, addr: Addr) -> bool {
        let Some(list) = self.local.get_mut(name) else { return false };
        let before = list.len();
        list.retain(|a| *a != addr);
        let removed = list.len() < before;
        if list.is_empty() {
            self.local.remove(name);
        }
        if removed {
            self.version += 1;
            self.rings.remove(name);
        }
        removed
    }

    /// Whether some link carries the announcement of `name` at `addr` by its own host.
    pub fn has_direct(&self, name: &str, addr: Addr) -> bool {
        self.remote.get(name).is_some_and(|list| list.iter().any(|r| r.direct && r.addr == addr))
    }

    /// Whether any announcement names an instance on `host`.
    pub fn knows_host(&self, host: HostId) -> bool {
        self.per_host.contains_key(&host)
    }

    fn host_gone(&mut self, host: HostId, n: usize) {
        if let Some(c) = self.per_host.get_mut(&host) {
            *c -= n.min(*c);
            if *c == 0 {
                self.per_host.remove(&host);
            }
        }
    }

    /// A relayed announcement of `host`: the name, and the link it came through.
    pub fn relayed_entry(&self, host: HostId) -> Option<(String, LinkId)> {
        self.remote.iter().find_map(|(name, list)| {
            list.iter().find(|r| r.addr.host == host && !r.direct).map(|r| (name.clone(), r.link))
        })
    }

    /// Stores an announcement received on `link` from neighbour `via`. Returns false if
    /// it was already known.
    pub fn add_remote(
        &mut self,
        name: &str,
        addr: Addr,
        link: LinkId,
        via: HostId,
        limit: usize,
    ) -> Result<bool, AnnouncementError> {
        let list = self.remote.entry(name.to_string()).or_default();
        if list.iter().any(|r| r.addr == addr && r.link == link) {
            return Ok(false);
        }
        let host_count = self.per_host.get(&addr.host).copied().unwrap_or(0);
        let count = self.per_link.entry(link).or_default();
        let refusal = if *count >= limit {
            Some(AnnouncementError::OverLimit(limit))
        } else if self.per_host_limit > 0 && host_count >= self.per_host_limit {
            Some(AnnouncementError::OverHostLimit(addr.host, self.per_host_limit))
        } else {
            None
        };
        if let Some(e) = refusal {
            if list.is_empty() {
                self.remote.remove(name);
            }
            return Err(e);
        }
        *count += 1;
        *self.per_host.entry(addr.host).or_default() += 1;
        list.push(Remote { addr, link, via, direct: addr.host == via });
        self.version += 1;
        Ok(true)
    }

    /// Withdraws an announcement received on `link`. Returns whether it was known.
    pub fn remove_remote(&mut self, name: &str, addr: Addr, link: LinkId) -> bool {
        let Some(list) = self.remote.get_mut(name) else { return false };
        let before = list.len();
        list.retain(|r| !(r.addr == addr && r.link == link));
        let removed = before - list.len();
        if list.is_empty() {
            self.remote.remove(name);
            self.rings.remove(name);
        }
        if removed == 0 {
            return false;
        }
        if let Some(count) = self.per_link.get_mut(&link) {
            *count -= removed;
        }
        self.host_gone(addr.host, removed);
        self.version += 1;
        true
    }

    /// Forgets everything announced on a link that went down; returns what was
    /// withdrawn.
    pub fn remove_link(&mut self, link: LinkId) -> Vec<(String, Addr, bool)> {
        let mut gone = Vec::new();
        self.remote.retain(|name, list| {
            list.retain(|r| {
                let keep = r.link != link;
                if !keep {
                    gone.push((name.clone(), r.addr, r.direct));
                }
                keep
            });
            !list.is_empty()
        });
        let rings = &mut self.rings;
        rings.retain(|name, _| self.remote.contains_key(name));
        self.per_link.remove(&link);
        for (_, addr, _) in &gone {
            self.host_gone(addr.host, 1);
        }
        if !gone.is_empty() {
            self.version += 1;
        }
        gone
    }

    /// Names bound on this node, with their addresses.
    pub fn locals(&self) -> impl Iterator<Item = (&str, Addr)> {
        self.local.iter().flat_map(|(n, list)| list.iter().map(move |a| (n.as_str(), *a)))
    }

    /// Announcements a router passes on: those received from the service's own host.
    pub fn direct_remotes(&self) -> impl Iterator<Item = (&str, Addr, LinkId)> {
        self.remote
            .iter()
            .flat_map(|(n, list)| list.iter().filter(|r| r.direct).map(move |r| (n.as_str(), r.addr, r.link)))
    }

    /// Hosts known only through a relay, with the neighbour that relays for them.
    pub fn relayed_hosts(&self) -> Vec<(HostId, HostId)> {
        let mut out: Vec<(HostId, HostId)> =
            self.remote.values().flatten().filter(|r| !r.direct).map(|r| (r.addr.host, r.via)).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every known instance.
    pub fn list(&self) -> Vec<ServiceInfo> {
        let mut out: Vec<ServiceInfo> = self
            .locals()
            .map(|(name, addr)| ServiceInfo { name: name.to_string(), addr, via: None, reach: Reach::Local })
            .collect();
        for (name, list) in &self.remote {
            for r in list {
                out.push(ServiceInfo {
                    name: name.clone(),
                    addr: r.addr,
                    via: Some(r.via),
                    reach: if r.direct { Reach::Direct } else { Reach::Relayed },
                });
            }
        }
        out.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
        out
    }

    /// Picks an instance of `name` on another node (listening on `port`, if given), or
    /// `None` if there is none. (Like the Go package without its loop-back link, a node
    /// does not dial its own services by name.)
    pub fn pick(&mut self, name: &str, selector: &Selector, port: Option<u32>) -> Option<Pick> {
        let list = self.remote.get(name)?;
        let mut instances: Vec<Addr> =
            list.iter().map(|r| r.addr).filter(|a| port.is_none_or(|p| a.port == p)).collect();
        if instances.is_empty() {
            return None;
        }
        instances.sort();
        instances.dedup();
        let addr = match selector {
            // Among one port's instances: rendezvous hashing, equally stable across nodes.
            Selector::Key(key) if port.is_some() => *instances
                .iter()
                .max_by_key(|a| stable_hash(format!("{key}#{:016x}:{}", a.host.0, a.port).as_bytes()))?,
            Selector::Random => instances[rand::random::<usize>() % instances.len()],
            Selector::Key(key) => self.ring_pick(name, &instances, key),
        };
        // Prefer the instance's own link over a relay.
        let list = self.remote.get(name)?;
        let best = list.iter().filter(|r| r.addr == addr).max_by_key(|r| r.direct)?;
        Some(Pick { addr, link: best.link, via: best.via })
    }

    fn ring_pick(&mut self, name: &str, instances: &[Addr], key: &str) -> Addr {
        let version = self.version;
        let (built, ring) = self.rings.entry(name.to_string()).or_insert_with(|| (u64::MAX, Vec::new()));
        if *built != version {
            ring.clear();
            for addr in instances {
                for point in 0..RING_POINTS {
                    let id = format!("{:016x}:{}#{point}", addr.host.0, addr.port);
                    ring.push((stable_hash(id.as_bytes()), *addr));
                }
            }
            ring.sort();
            *built = version;
        }
        let h = stable_hash(key.as_bytes());
        let i = ring.partition_point(|(p, _)| *p < h);
        ring[i % ring.len()].1
    }
}

/// FNV-1a, 64-bit: the same on every node and every run (std's hasher is seeded).
fn stable_hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    // Finalise (murmur3's mix) so that similar ids land far apart on the ring.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(host: u64, port: u32) -> Addr {
        Addr::new(HostId(host), port)
    }

    #[test]
    fn names_are_validated() {
        assert!(parse_name(b"").is_err());
        assert!(parse_name(&[b'x'; 256]).is_err());
        assert!(parse_name(&[0xff, 0xfe]).is_err());
        assert_eq!(parse_name(b"db.prod").unwrap(), "db.prod");
    }

    #[test]
    fn link_loss_withdraws_its_announcements() {
        let mut r = Registry::default();
        r.add_remote("db", a(2, 5), LinkId(1), HostId(2), 10).unwrap();
        r.add_remote("db", a(3, 5), LinkId(2), HostId(9), 10).unwrap();
        assert_eq!(r.list().len(), 2);
        assert_eq!(r.list()[1].reach, Reach::Relayed);
        let gone = r.remove_link(LinkId(1));
        assert_eq!(gone, vec![("db".to_string(), a(2, 5), true)]);
        assert_eq!(
            r.pick("db", &Selector::Random, None),
            Some(Pick { addr: a(3, 5), link: LinkId(2), via: HostId(9) })
        );
    }

    #[test]
    fn per_host_limit_across_links() {
        let mut r = Registry::with_host_limit(2);
        r.add_remote("a", a(7, 1), LinkId(1), HostId(9), 100).unwrap();
        r.add_remote("b", a(7, 2), LinkId(2), HostId(8), 100).unwrap();
        let e = r.add_remote("c", a(7, 3), LinkId(3), HostId(5), 100).unwrap_err();
        assert_eq!(e, AnnouncementError::OverHostLimit(HostId(7), 2));
        // Other hosts are not affected, and a withdrawal frees a place.
        r.add_remote("c", a(6, 3), LinkId(1), HostId(9), 100).unwrap();
        assert!(r.remove_remote("a", a(7, 1), LinkId(1)));
        r.add_remote("c", a(7, 3), LinkId(3), HostId(5), 100).unwrap();
    }

    #[test]
    fn per_link_limit() {
        let mut r = Registry::default();
        r.add_remote("a", a(2, 1), LinkId(1), HostId(2), 2).unwrap();
        r.add_remote("b", a(2, 2), LinkId(1), HostId(2), 2).unwrap();
        assert_eq!(r.add_remote("c", a(2, 3), LinkId(1), HostId(2), 2), Err(AnnouncementError::OverLimit(2)));
        assert!(r.remove_remote("a", a(2, 1), LinkId(1)));
        r.add_remote("c", a(2, 3), LinkId(1), HostId(2), 2).unwrap();
    }

    #[test]
    fn consistent_hashing_agrees_across_registries_and_spreads() {
        let instances = [a(10, 1), a(11, 1), a(12, 7)];
        let mut r1 = Registry::default();
        let mut r2 = Registry::default();
        // Learned in different orders, over different links.
        for (i, addr) in instances.iter().enumerate() {
            r1.add_remote("svc", *addr, LinkId(1), addr.host, 10).unwrap();
            r2.add_remote("svc", instances[2 - i], LinkId(7), instances[2 - i].host, 10).unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        for k in 0..200 {
            let key = Selector::Key(format!("user-{k}"));
            let p1 = r1.pick("svc", &key, None).unwrap().addr;
            assert_eq!(p1, r2.pick("svc", &key, None).unwrap().addr);
            seen.insert(p1);
        }
        assert_eq!(seen.len(), 3, "every instance gets keys");
    }

    #[test]
    fn local_instances_are_listed_not_picked() {
        let mut r = Registry::default();
        r.add_local("web", a(1, 80));
        assert_eq!(r.list()[0].reach, Reach::Local);
        assert_eq!(r.pick("web", &Selector::Random, None), None);
        r.remove_local("web", a(1, 80));
        assert!(r.list().is_empty());
    }
}
