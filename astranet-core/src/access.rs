//! Access control between authenticated nodes: who may join, which service names a
//! peer may announce, which of this node's services a peer may dial.
//!
//! Peers are named by their TLS certificate's common name (so it needs
//! [`NodeBuilder::tls`](crate::NodeBuilder::tls)); names and patterns may use `*` for any
//! run of characters. The first rule whose `peers` pattern matches a peer applies to it;
//! a peer no rule matches may not join. Service names are matched in full, the
//! environment suffix included.
//!
//! ```
//! use astranet::{AccessPolicy, AccessRule};
//! let policy = AccessPolicy::new()
//!     // Routers relay everything.
//!     .allow(AccessRule::peers("router-*").may_announce("*").may_dial("*").may_relay())
//!     // Web nodes announce web services and reach the database only.
//!     .allow(AccessRule::peers("web-*").may_announce("web*").may_dial("db.prod"));
//! assert!(policy.rule_for("web-3").unwrap().allows_dial("db.prod"));
//! assert!(!policy.rule_for("web-3").unwrap().allows_announce("db.prod"));
//! assert!(policy.rule_for("intruder").is_none());
//! ```
//!
//! Plaintext peers (accepted with [`TlsConfig::allow_plaintext`](crate::TlsConfig::allow_plaintext))
//! have no certificate and match no rule: under a policy they may neither announce nor
//! dial.
//!
//! A DIAL comes from the neighbour that delivers it: dials relayed by a router are
//! judged by the router's rule. A refused dial fails at the dialer with
//! [`RstReason::Forbidden`](crate::proto::RstReason::Forbidden) (a Go peer, which has no
//! such answer, times out); a refused announcement is dropped and logged.

/// Who may do what, by certificate common name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    rules: Vec<AccessRule>,
}

/// What the peers matching one pattern may do.
///
/// It also reads from a table with the keys `peers`, `announce`, `dial` and `relay`
/// (serde), as the `[[access]]` tables of the `astranet` command's configuration file:
///
/// ```toml
/// [[access]]
/// peers = "web-*"
/// announce = ["web*"]
/// dial = ["db.prod"]
/// relay = false
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AccessRule {
    peers: String,
    #[serde(default)]
    announce: Vec<String>,
    #[serde(default)]
    dial: Vec<String>,
    #[serde(default)]
    relay: bool,
}

impl AccessPolicy {
    /// A policy with no rule: no peer may join until rules allow some.
    pub fn new() -> AccessPolicy {
        AccessPolicy::default()
    }

    /// Adds a rule (rules are tried in the order they were added).
    pub fn allow(mut self, rule: AccessRule) -> AccessPolicy {
        self.rules.push(rule);
        self
    }

    /// Whether no rule was added (no peer may join).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that applies to the peer with this certificate name, if any.
    pub fn rule_for(&self, peer: &str) -> Option<&AccessRule> {
        self.rules.iter().find(|r| matches(&r.peers, peer))
    }
}

impl FromIterator<AccessRule> for AccessPolicy {
    /// The rules, tried in this order.
    fn from_iter<I: IntoIterator<Item = AccessRule>>(rules: I) -> AccessPolicy {
        AccessPolicy { rules: rules.into_iter().collect() }
    }
}

impl AccessRule {
    /// A rule for the peers whose certificate name matches `pattern`; by itself it
    /// lets them join, announce nothing and dial nothing.
    pub fn peers(pattern: impl Into<String>) -> AccessRule {
        AccessRule { peers: pattern.into(), announce: Vec::new(), dial: Vec::new(), relay: false }
    }

    /// They may announce the names matching `pattern`.
    pub fn may_announce(mut self, pattern: impl Into<String>) -> AccessRule {
        self.announce.push(pattern.into());
        self
    }

    /// They may dial this node's services whose names match `pattern`.
    pub fn may_dial(mut self, pattern: impl Into<String>) -> AccessRule {
        self.dial.push(pattern.into());
        self
    }

    /// They may speak for other hosts: pass on announcements of services on other
    /// hosts, and deliver DIALs from other hosts (what routers do). Without it, only
    /// their own services and their own dials are taken from them.
    pub fn may_relay(mut self) -> AccessRule {
        self.relay = true;
        self
    }

    /// Whether the rule lets its peers speak for other hosts.
    pub fn allows_relay(&self) -> bool {
        self.relay
    }

    /// Whether the rule lets its peers announce `name`.
    pub fn allows_announce(&self, name: &str) -> bool {
        self.announce.iter().any(|p| matches(p, name))
    }

    /// Whether the rule lets its peers dial the service `name` (a port bound without
    /// a name is dialed as the name "").
    pub fn allows_dial(&self, name: &str) -> bool {
        self.dial.iter().any(|p| matches(p, name))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn glob() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "anything", true),
            ("web-*", "web-1", true),
            ("web-*", "db-1", false),
            ("*.prod", "db.prod", true),
            ("*.prod", "db.prod.eu", false),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "acb", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(matches(p, t), want, "{p} vs {t}");
        }
    }
}
