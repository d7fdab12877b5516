//! Dial targets: a virtual address, or a service name with an optional port and key,
//! parsed from the forms users write (ours and the Go package's).

use crate::addr::Addr;
use crate::error::{Error, Result};
use crate::registry::{self, Selector};

/// Where to dial: a virtual address, or a service name (with an optional key for
/// consistent hashing).
///
/// Anything that converts with [`IntoTarget`] is accepted by [`Node::dial`]: an
/// [`Addr`], a `Target`, or a string — `"<16 hex digits>:<port>"` is an address,
/// `"name:port"` the instance of a service listening on that port, anything else a
/// service name (the node's environment suffix is appended to names).
///
/// ```
/// use astranet::Target;
/// let by_name = Target::name("db");
/// let sticky = Target::name("sessions").with_key("user-42");
/// // The Go package's forms: a `registry://` network hashes on the network string,
/// // `vport2registry` on the "port" part of "name:key".
/// let go1 = Target::from_go("registry://user-42", "sessions").unwrap();
/// let go2 = Target::from_go("vport2registry", "sessions:user-42").unwrap();
/// assert_eq!(go2, Target::name("sessions").with_key("user-42"));
/// # let _ = (by_name, sticky, go1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target(pub(crate) TargetKind);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TargetKind {
    Addr(Addr),
    /// A service name, and optionally the port its instance listens on.
    Name {
        name: String,
        selector: Selector,
        port: Option<u32>,
    },
}

impl Target {
    /// A service name; each dial picks one of its instances at random.
    pub fn name(name: impl Into<String>) -> Target {
        Target(TargetKind::Name { name: name.into(), selector: Selector::Random, port: None })
    }

    /// Picks the instance by consistent hashing on `key`: every node maps the same key
    /// to the same instance (while the set of instances is the same). No effect on an
    /// address.
    pub fn with_key(self, key: impl Into<String>) -> Target {
        match self.0 {
            TargetKind::Name { name, port, .. } => {
                Target(TargetKind::Name { name, selector: Selector::Key(key.into()), port })
            }
            addr => Target(addr),
        }
    }

    /// The Go package's `Dial(network, address)` arguments: a `registry://…` network
    /// hashes on the network string, `vport2registry` reads `address` as `name:key`,
    /// any other network dials `address` as [`Target`]'s `FromStr` reads it.
    pub fn from_go(network: &str, address: &str) -> Result<Target> {
        if network.starts_with("registry://") {
            return Ok(Target::name(address).with_key(network));
        }
        if network == "vport2registry" {
            let (name, key) = address.rsplit_once(':').ok_or_else(|| Error::InvalidTarget {
                target: address.to_string(),
                reason: "vport2registry takes \"name:key\"".to_string(),
            })?;
            return Ok(Target::name(name).with_key(key));
        }
        address.parse()
    }
}

impl From<Addr> for Target {
    fn from(a: Addr) -> Target {
        Target(TargetKind::Addr(a))
    }
}

impl std::str::FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Target> {
        if let Ok(addr) = s.parse::<Addr>() {
            return Ok(addr.into());
        }
        let invalid =
            |e: registry::AnnouncementError| Error::InvalidTarget { target: s.to_string(), reason: e.to_string() };
        // "name:port": the instance of `name` that listens on `port`.
        if let Some((name, port)) = s.rsplit_once(':').and_then(|(n, p)| Some((n, p.parse::<u32>().ok()?))) {
            registry::parse_name(name.as_bytes()).map_err(invalid)?;
            let target = Target::name(name);
            return Ok(Target(match target.0 {
                TargetKind::Name { name, selector, .. } => TargetKind::Name { name, selector, port: Some(port) },
                addr => addr,
            }));
        }
        registry::parse_name(s.as_bytes()).map_err(invalid)?;
        Ok(Target::name(s))
    }
}

/// What [`Node::dial`] accepts: [`Target`], [`Addr`], `&str` and `String` (parsed as
/// [`Target`]'s `FromStr` does).
pub trait IntoTarget {
    /// The target, or [`Error::InvalidTarget`].
    fn into_target(self) -> Result<Target>;
}

impl IntoTarget for Target {
    fn into_target(self) -> Result<Target> {
        Ok(self)
    }
}

impl IntoTarget for Addr {
    fn into_target(self) -> Result<Target> {
        Ok(self.into())
    }
}

impl IntoTarget for &str {
    fn into_target(self) -> Result<Target> {
        self.parse()
    }
}

impl IntoTarget for String {
    fn into_target(self) -> Result<Target> {
        self.parse()
    }
}
