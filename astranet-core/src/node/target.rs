//! Dial and bind targets: the one parser of the forms users write (ours and the Go
//! package's). The C ABI, the Python binding and the Go package hand their strings
//! here, so every front accepts and refuses the same texts with the same reasons.
//!
//! The grammar (`port` is a decimal number from 0 to 4294967295, `hostid` exactly 16
//! hex digits, as [`Addr`] displays it):
//!
//! | text            | dial                               | bind                      |
//! |-----------------|------------------------------------|---------------------------|
//! | `hostid:port`   | that address                       | refused (not a name)      |
//! | `name:port`     | the instance of `name` on `port`   | `name` on a fixed port    |
//! | `name`          | any instance of `name`             | `name` on an automatic port |
//! | `:port`         | refused (nothing to dial)          | a port without a name     |
//! | empty           | refused                            | an automatic port         |
//!
//! A service name is 1 to 255 bytes (with the environment suffix), without `:`,
//! whitespace or control characters; a name of 16 hex digits would read as a host id
//! and is refused.

use crate::addr::{Addr, HostId, Port};
use crate::error::{Error, Result};
use crate::registry::{Selector, MAX_NAME_LEN};

/// Where to dial: a virtual address, or a service name (with an optional key for
/// consistent hashing).
///
/// Anything that converts with [`IntoTarget`] is accepted by [`Node::dial`]: an
/// [`Addr`], a `Target`, or a string — `"<16 hex digits>:<port>"` is an address,
/// `"name:port"` the instance of a service listening on that port, `"name"` any
/// instance (the node's environment suffix is appended to names). Text that is none
/// of these is refused at once with [`Error::InvalidTarget`].
///
/// ```
/// use astranet::{Addr, HostId, Target};
/// let by_name: Target = "db".parse().unwrap();
/// assert_eq!(by_name.service(), Some(("db", None)));
/// let addr: Target = "00000000000000ab:7".parse().unwrap();
/// assert_eq!(addr.addr(), Some(Addr::new(HostId(0xab), 7)));
/// assert!("db:7:8".parse::<Target>().is_err());
/// let sticky = Target::name("sessions").with_key("user-42");
/// // The Go package's forms: a `registry://` network hashes on the network string,
/// // `vport2registry` on the "port" part of "name:key".
/// let go1 = Target::from_go("registry://user-42", "sessions").unwrap();
/// let go2 = Target::from_go("vport2registry", "sessions:user-42").unwrap();
/// assert_eq!(go2, sticky);
/// # let _ = go1;
/// ```
///
/// [`Node::dial`]: crate::Node::dial
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
    /// A service name; each dial picks one of its instances at random. The name is
    /// checked when dialed (a bad one fails with [`Error::InvalidTarget`]).
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

    /// The address, if this target is one.
    pub fn addr(&self) -> Option<Addr> {
        match self.0 {
            TargetKind::Addr(a) => Some(a),
            TargetKind::Name { .. } => None,
        }
    }

    /// The service name and the instance's port if one was given, if this target is
    /// a name (without the environment suffix, which the node appends).
    pub fn service(&self) -> Option<(&str, Option<Port>)> {
        match &self.0 {
            TargetKind::Addr(_) => None,
            TargetKind::Name { name, port, .. } => Some((name, port.map(Port))),
        }
    }

    /// The Go package's `Dial(network, address)` arguments: a `registry://…` network
    /// hashes on the network string, `vport2registry` reads `address` as `name:key`,
    /// any other network dials `address` as [`Target`]'s `FromStr` reads it.
    pub fn from_go(network: &str, address: &str) -> Result<Target> {
        if network.starts_with("registry://") {
            check_name(address).map_err(|reason| invalid(address, reason))?;
            return Ok(Target::name(address).with_key(network));
        }
        if network == "vport2registry" {
            let (name, key) =
                address.rsplit_once(':').ok_or_else(|| invalid(address, "vport2registry takes \"name:key\""))?;
            check_name(name).map_err(|reason| invalid(address, reason))?;
            return Ok(Target::name(name).with_key(key));
        }
        address.parse()
    }

    /// Checks what a constructor could not (the name given to [`Target::name`]).
    pub(crate) fn check(&self) -> Result<()> {
        match &self.0 {
            TargetKind::Name { name, .. } => check_name(name).map_err(|reason| invalid(name, reason)),
            TargetKind::Addr(_) => Ok(()),
        }
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
        let fail = |reason: &str| invalid(s, reason);
        let Some((left, port)) = s.rsplit_once(':') else {
            if s.is_empty() {
                return Err(fail("nothing to dial: give a service name or \"<host id>:<port>\""));
            }
            check_name(s).map_err(fail)?;
            return Ok(Target::name(s));
        };
        let port = parse_port(port).map_err(fail)?;
        if left.is_empty() {
            return Err(fail("nothing to dial before ':': give a service name or a host id"));
        }
        if let Some(host) = host_id(left) {
            return Ok(Addr::new(host, port).into());
        }
        check_name(left).map_err(fail)?;
        Ok(Target(TargetKind::Name { name: left.to_string(), selector: Selector::Random, port: Some(port) }))
    }
}

/// What [`Node::bind`](crate::Node::bind) reads: an optional service name and a port
/// (0: pick one).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BindTarget<'a> {
    pub name: Option<&'a str>,
    pub port: u32,
}

impl<'a> BindTarget<'a> {
    pub fn parse(s: &'a str) -> Result<BindTarget<'a>> {
        let fail = |reason: &str| invalid(s, reason);
        let (name, port) = match s.rsplit_once(':') {
            None => (s, 0),
            Some((name, port)) => (name, parse_port(port).map_err(fail)?),
        };
        if name.is_empty() {
            return Ok(BindTarget { name: None, port });
        }
        check_name(name).map_err(fail)?;
        Ok(BindTarget { name: Some(name), port })
    }
}

/// A service name as users may write it (what arrives on the wire is checked more
/// loosely, by [`crate::registry::parse_name`]: other implementations name freely).
pub(crate) fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("the service name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("the service name is longer than 255 bytes");
    }
    if name.contains(':') {
        return Err("a service name cannot contain ':' (one ':' separates the port)");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a service name cannot contain whitespace or control characters");
    }
    if host_id(name).is_some() {
        return Err("16 hex digits read as a host id, not a service name");
    }
    Ok(())
}

/// `name` with the environment suffix, checked again for length.
pub(crate) fn with_env(name: &str, env: &str) -> Result<String> {
    let full = format!("{name}{env}");
    if full.len() > MAX_NAME_LEN {
        return Err(invalid(name, "the service name with the environment suffix is longer than 255 bytes"));
    }
    Ok(full)
}

fn host_id(s: &str) -> Option<HostId> {
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.parse().ok()).flatten()
}

fn parse_port(s: &str) -> std::result::Result<u32, &'static str> {
    if s.is_empty() {
        return Err("no port after ':'");
    }
    // Digits only: `u32::from_str` would also take a leading '+'.
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not a decimal number");
    }
    s.parse().map_err(|_| "the port is not a number from 0 to 4294967295")
}

/// [`Error::InvalidTarget`] quoting at most a bounded prefix of what was given.
pub(crate) fn invalid(target: &str, reason: &str) -> Error {
    const QUOTED: usize = 64;
    let quoted = match target.char_indices().nth(QUOTED) {
        Some((cut, _)) => format!("{}… ({} bytes)", &target[..cut], target.len()),
        None => target.to_string(),
    };
    Error::InvalidTarget { target: quoted, reason: reason.to_string() }
}

/// What [`Node::dial`](crate::Node::dial) accepts: [`Target`], [`Addr`], `&str` and
/// `String` (parsed as [`Target`]'s `FromStr` does).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_quoted_by_a_bounded_prefix() {
        let long = "a".repeat(100_000);
        let msg = long.parse::<Target>().unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(msg.contains("100000 bytes"), "{msg}");
        let nul = "\0".parse::<Target>().unwrap_err().to_string();
        assert!(nul.contains("\\0"), "control characters are escaped: {nul}");
    }

    #[test]
    fn bind_forms() {
        let b = |s| BindTarget::parse(s).map(|t| (t.name, t.port)).map_err(|_| ());
        assert_eq!(b(""), Ok((None, 0)));
        assert_eq!(b(":7"), Ok((None, 7)));
        assert_eq!(b("db"), Ok((Some("db"), 0)));
        assert_eq!(b("db:7"), Ok((Some("db"), 7)));
        for bad in [":", "db:", "db:x", "db:-1", "db:+1", "db:7:8", " ", "0000000000000001:5", "a b"] {
            assert_eq!(b(bad), Err(()), "{bad:?}");
        }
    }
}
