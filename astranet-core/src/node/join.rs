//! Joining: keeping one TCP link up to every address a node was told to join,
//! re-dialing with exponential back-off, and re-resolving names periodically so that
//! new addresses get a link too.

use super::NodeShared;
use crate::addr::HostId;
use crate::error::{Error, Result};
use crate::link::LinkHandle;
use hashbrown::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::net::{lookup_host, ToSocketAddrs};

const FIRST_DELAY: Duration = Duration::from_millis(100);

impl NodeShared {
    /// Joins every address not joined yet: returns the first peer's host id, or the
    /// first error if none could be reached now. Addresses that fail while another
    /// succeeds are retried in the background.
    pub(crate) async fn join_all(self: &Arc<Self>, addrs: Vec<SocketAddr>) -> Result<Option<HostId>> {
        self.join_addrs(addrs, Persistence::Keep).await
    }

    /// [`NodeShared::join_all`] for addresses a relayed host gave (FOLLOW): the link is
    /// not re-dialed once it drops, and the host may be discovered again.
    pub(crate) async fn join_followed(self: &Arc<Self>, host: HostId, addr: SocketAddr) -> Result<Option<HostId>> {
        self.join_addrs(vec![addr], Persistence::UntilDropped(host)).await
    }

    async fn join_addrs(self: &Arc<Self>, addrs: Vec<SocketAddr>, keep: Persistence) -> Result<Option<HostId>> {
        let mut host = None;
        let mut first_err = None;
        let mut failed = Vec::new();
        let mut claims = Claims { shared: self, addrs: Vec::new() };
        for addr in addrs {
            if !self.joined.lock().insert(addr) {
                host = host.or_else(|| self.peer_at(addr));
                continue;
            }
            claims.addrs.push(addr);
            match connect_up(self, addr).await {
                Ok((link, peer)) => {
                    host.get_or_insert(peer);
                    claims.keep(addr);
                    self.spawn_background(keep_joined(Arc::downgrade(self), addr, Some(link), keep));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                    failed.push(addr);
                }
            }
        }
        if host.is_none() {
            if let Some(e) = first_err {
                return Err(e); // the claims go: joining these again tries again
            }
        }
        for addr in failed {
            claims.keep(addr);
            self.spawn_background(keep_joined(Arc::downgrade(self), addr, None, keep));
        }
        Ok(host)
    }

    /// The host at the other end of a link to `addr`, if one is up.
    fn peer_at(&self, addr: SocketAddr) -> Option<HostId> {
        self.up_links().into_iter().find(|l| l.remote_addr == Some(addr)).and_then(|l| l.peer())
    }
}

/// The addresses a join marked as joined and has not handed to a task that keeps them
/// up yet. Released when the join fails, or is given up (its future dropped: a
/// timeout, a cancelled context), so that joining them again tries again rather than
/// finding them "joined" with nothing trying.
struct Claims<'a> {
    shared: &'a NodeShared,
    addrs: Vec<SocketAddr>,
}

impl Claims<'_> {
    /// `addr` stays joined: a task keeps it up from now on.
    fn keep(&mut self, addr: SocketAddr) {
        self.addrs.retain(|a| *a != addr);
    }
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        let mut joined = self.shared.joined.lock();
        for addr in &self.addrs {
            joined.remove(addr);
        }
    }
}

/// Looks a joined name up again.
type Lookup = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> + Send + Sync>;

/// The names joined with [`Node::join`](crate::Node::join), resolved again by one task
/// per node, however often they were joined.
#[derive(Default)]
pub(crate) struct Resolution {
    names: HashMap<String, Lookup>,
    running: bool,
}

impl NodeShared {
    /// Resolves `target` every [`crate::Config::resolve_interval`] from now on, and
    /// joins the addresses that appear. `name` tells joins of the same target apart.
    pub(crate) fn keep_resolving<A>(self: &Arc<Self>, name: String, target: A)
    where
        A: ToSocketAddrs + Clone + Send + Sync + 'static,
    {
        let lookup: Lookup = Arc::new(move || {
            let target = target.clone();
            Box::pin(async move { lookup_host(target).await.map(Iterator::collect) })
        });
        let start = {
            let mut r = self.resolution.lock();
            r.names.entry(name).or_insert(lookup);
            !std::mem::replace(&mut r.running, true)
        };
        if start {
            self.spawn_background(re_resolve(Arc::downgrade(self)));
        }
    }
}

/// The node's resolution task: every interval, each joined name is resolved and new
/// addresses are joined.
async fn re_resolve(node: Weak<NodeShared>) {
    loop {
        let Some(interval) = node.upgrade().map(|n| n.config.resolve_interval) else { return };
        tokio::time::sleep(interval).await;
        let Some(lookups) = node.upgrade().map(|n| n.resolution.lock().names.values().cloned().collect::<Vec<_>>())
        else {
            return;
        };
        for lookup in lookups {
            let Ok(addrs) = lookup().await else { continue };
            let Some(shared) = node.upgrade() else { return };
            let fresh: Vec<SocketAddr> = addrs.into_iter().filter(|a| !shared.joined.lock().contains(a)).collect();
            if !fresh.is_empty() {
                tracing::info!(addresses = ?fresh, "joining newly resolved addresses");
                let _ = shared.join_all(fresh).await;
            }
        }
    }
}

async fn connect_up(node: &NodeShared, addr: SocketAddr) -> Result<(LinkHandle, HostId)> {
    // An address behind NAT may swallow the SYN: bound the attempt.
    let limit = node.config.handshake_timeout;
    let link = tokio::time::timeout(limit, super::connect(node, addr))
        .await
        .map_err(|_| Error::TimedOut { what: format!("connecting to {addr}"), after: limit })??;
    let host = link.wait_up().await?;
    Ok((link, host))
}

/// How long a joined address is kept linked.
#[derive(Clone, Copy, Debug)]
enum Persistence {
    /// Re-dialed whenever its link drops, until the node closes.
    Keep,
    /// Given up (and its host forgotten as discovered) when its link drops.
    UntilDropped(HostId),
}

/// Keeps a link to `addr` up: waits for it to drop, then re-dials with exponential
/// back-off, until the node is closed (which aborts this task).
async fn keep_joined(node: Weak<NodeShared>, addr: SocketAddr, mut link: Option<LinkHandle>, keep: Persistence) {
    let mut lost = false;
    loop {
        if let Some(up) = link.take() {
            let reason = up.wait_closed().await;
            if let Persistence::UntilDropped(host) = keep {
                tracing::info!(%addr, %reason, "direct link lost; traffic goes back to the relay");
                if let Some(shared) = node.upgrade() {
                    shared.joined.lock().remove(&addr);
                    shared.rediscover(host);
                }
                return;
            }
            // A warning: the default level of the command line shows it (a router
            // gone is what an operator wants to hear of), and then its return.
            tracing::warn!(%addr, %reason, "joined link lost, re-dialing");
            lost = true;
        }
        let mut delay = FIRST_DELAY;
        while link.is_none() {
            let Some(max) = node.upgrade().map(|n| n.config.max_reconnect_delay) else { return };
            tokio::time::sleep(delay).await;
            let Some(shared) = node.upgrade() else { return };
            match connect_up(&shared, addr).await {
                Ok((up, host)) => {
                    if lost {
                        tracing::warn!(%addr, peer = %host, "joined link up again");
                    } else {
                        tracing::info!(%addr, peer = %host, "link established");
                    }
                    link = Some(up);
                }
                Err(Error::NodeClosed) => return,
                Err(e) => tracing::debug!(%addr, error = %e, "join attempt failed"),
            }
            delay = (delay * 2).min(max);
        }
    }
}
