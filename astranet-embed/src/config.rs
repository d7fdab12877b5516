//! The configuration every front accepts, flat: each field optional, defaults from
//! the core. The fronts fill it from their own shape (a C struct, Python keyword
//! arguments) and the core's builder validates it ([`astranet::Config::validate`]),
//! so a value is accepted or refused alike everywhere.

use crate::code::Failure;
use astranet::{AccessPolicy, AccessRule, HostId, NodeBuilder, Role};
use std::time::Duration;

/// A node's configuration; `None` keeps the core's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlatConfig {
    /// The node's role in the mesh.
    pub role: Option<Role>,
    /// The environment, dot-separated: `"prod.eu"` (Go's `WithEnv("prod", "eu")`).
    /// Empty means none.
    pub env: Option<String>,
    /// A fixed host id, from 1 to 2^63 - 1 (random by default).
    pub host_id: Option<u64>,
    /// Keep-alive period k (PING after k/2, write timeout k, idle timeout 10k).
    pub keepalive: Option<Duration>,
    /// Default dial timeout.
    pub dial_timeout: Option<Duration>,
    /// Handshake timeout of new links.
    pub handshake_timeout: Option<Duration>,
    /// How long a frame may take to arrive once its header did.
    pub frame_stall_timeout: Option<Duration>,
    /// How long closed streams are remembered.
    pub linger: Option<Duration>,
    /// Longest back-off of a join re-establishing its link.
    pub max_reconnect_delay: Option<Duration>,
    /// The idle timeout every stream starts with (none by default).
    pub stream_idle_timeout: Option<Duration>,
    /// Streams per link.
    pub max_streams_per_link: Option<u64>,
    /// Dials waiting for accept per listener.
    pub listener_backlog: Option<u64>,
    /// Bytes received but unread per link.
    pub max_link_buffer: Option<u64>,
    /// Bytes of data frames queued per link before writers wait.
    pub link_write_queue: Option<u64>,
    /// Bytes of control frames queued per link.
    pub max_control_queue: Option<u64>,
    /// Largest auto-tuned receive window per stream.
    pub max_stream_window: Option<u32>,
    /// Total receive-window growth per link.
    pub link_window_budget: Option<u64>,
    /// A receive window every stream is granted with its first credit.
    pub min_stream_window: Option<u32>,
    /// TLS links (see the core's `tls` module): the PEM text of the mesh CA's
    /// certificate, of this node's certificate chain and of its private key.
    pub tls: Option<TlsPem>,
    /// Who may join, announce, dial and relay (needs TLS; see [`access_from_toml`]).
    pub access: Option<AccessPolicy>,
}

/// An access policy written as the `[[access]]` tables of the `astranet` command's
/// configuration file (`peers`, `announce`, `dial`, `relay`; docs/OPERATIONS.md), the
/// form the C and Go fronts take it in. Other keys of the document are refused.
///
/// ```
/// let policy = astranet_embed::config::access_from_toml(
///     "[[access]]\npeers = \"web-*\"\ndial = [\"db\"]\n",
/// ).unwrap();
/// assert!(policy.rule_for("web-1").unwrap().allows_dial("db"));
/// ```
pub fn access_from_toml(text: &str) -> Result<AccessPolicy, Failure> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Document {
        #[serde(default)]
        access: Vec<AccessRule>,
    }
    let doc: Document = toml::from_str(text).map_err(|e| Failure::invalid(format!("access policy: {e}")))?;
    Ok(doc.access.into_iter().collect())
}

/// A node's TLS identity as PEM text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsPem {
    /// The mesh CA's certificate(s).
    pub ca: Vec<u8>,
    /// This node's certificate chain, its own first.
    pub cert: Vec<u8>,
    /// This node's private key.
    pub key: Vec<u8>,
    /// Also accept plaintext links.
    pub allow_plaintext: bool,
}

impl std::fmt::Debug for TlsPem {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem").field("allow_plaintext", &self.allow_plaintext).finish_non_exhaustive()
    }
}

fn size(v: u64, what: &str) -> Result<usize, Failure> {
    usize::try_from(v).map_err(|_| Failure::invalid(format!("{what} is too large")))
}

impl FlatConfig {
    /// The core builder with these values set (not yet validated: see
    /// [`build`](FlatConfig::build)).
    pub fn builder(&self) -> Result<NodeBuilder, Failure> {
        let mut b = astranet::Node::builder();
        if let Some(r) = self.role {
            b = b.role(r);
        }
        if let Some(env) = self.env.as_deref().filter(|e| !e.is_empty()) {
            b = b.env(env.split('.'));
        }
        // TLS first: it sets the host id to the certificate's, and a different
        // host_id given as well is then refused by validation.
        if let Some(t) = &self.tls {
            let tls = astranet::TlsConfig::from_pem(&t.ca, &t.cert, &t.key).map_err(Failure::from)?;
            b = b.tls(tls.allow_plaintext(t.allow_plaintext));
        }
        if let Some(id) = self.host_id {
            b = b.host_id(HostId(id));
        }
        if let Some(policy) = &self.access {
            b = b.access(policy.clone());
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { b = b.$field(v); } )* };
        }
        macro_rules! set_size {
            ($($field:ident),*) => {
                $( if let Some(v) = self.$field { b = b.$field(size(v, stringify!($field))?); } )*
            };
        }
        set!(keepalive, dial_timeout, handshake_timeout, frame_stall_timeout, linger, max_reconnect_delay);
        set!(stream_idle_timeout);
        set!(max_stream_window, link_window_budget, min_stream_window);
        set_size!(max_streams_per_link, listener_backlog, max_link_buffer, link_write_queue, max_control_queue);
        Ok(b)
    }

    /// The node, or `ASTRANET_ERR_INVALID_ARGUMENT` naming the value out of range.
    pub fn build(&self) -> Result<astranet::Node, Failure> {
        Ok(self.builder()?.try_build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::astranet_result;

    #[test]
    fn values_reach_the_node() {
        let c = FlatConfig {
            role: Some(Role::Router),
            env: Some("prod.eu".into()),
            host_id: Some(42),
            keepalive: Some(Duration::from_secs(4)),
            listener_backlog: Some(7),
            ..FlatConfig::default()
        };
        let node = c.build().unwrap();
        let config = node.config();
        assert_eq!((config.role, config.env.as_str(), node.host_id()), (Role::Router, ".prod.eu", HostId(42)));
        assert_eq!(config.keepalive.ping_after, Duration::from_secs(2));
        assert_eq!(config.limits.listener_backlog, 7);
    }

    #[test]
    fn values_out_of_range_are_invalid_arguments() {
        for bad in [
            FlatConfig { keepalive: Some(Duration::ZERO), ..Default::default() },
            FlatConfig { host_id: Some(0), ..Default::default() },
            FlatConfig { listener_backlog: Some(0), ..Default::default() },
            FlatConfig { env: Some("prod..eu".into()), ..Default::default() },
        ] {
            let e = bad.build().unwrap_err();
            assert_eq!(e.code, astranet_result::ASTRANET_ERR_INVALID_ARGUMENT, "{bad:?}: {e}");
        }
    }
}
