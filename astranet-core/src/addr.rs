//! Virtual addresses: a 64-bit host id per node and a 32-bit port per listener or stream.

use std::fmt;
use std::str::FromStr;

/// The identity of a node in the mesh: random, positive 63-bit, like the Go package's.
///
/// Displayed and parsed as exactly 16 hexadecimal digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(pub u64);

impl HostId {
    /// A fresh random id (never 0: that value means "the node at the other end").
    pub fn random() -> HostId {
        loop {
            let id = rand::random::<u64>() >> 1;
            if id != 0 {
                return HostId(id);
            }
        }
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for HostId {
    type Err = ParseAddrError;
    fn from_str(s: &str) -> Result<HostId, ParseAddrError> {
        // Exactly 16 digits, as displayed: a shorter hex string ("db", "cafe") is a
        // service name, not a host id.
        if s.len() != 16 {
            return Err(ParseAddrError(format!("host id {s:?} is not 16 hex digits")));
        }
        u64::from_str_radix(s, 16).map(HostId).map_err(|_| ParseAddrError(format!("host id {s:?} is not hexadecimal")))
    }
}

/// A link of a node (a connection to a neighbour), numbered from 1 in the order the
/// node started them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link #{}", self.0)
    }
}

/// A virtual port on a node: 32 bits, as on the wire (Go's ports are `uint32`). Port 0
/// asks `bind` for a free one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(pub u32);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Port {
    type Err = ParseAddrError;
    fn from_str(s: &str) -> Result<Port, ParseAddrError> {
        s.parse().map(Port).map_err(|_| ParseAddrError(format!("port {s:?} is not a number from 0 to 4294967295")))
    }
}

impl From<u32> for Port {
    fn from(p: u32) -> Port {
        Port(p)
    }
}

impl From<Port> for u32 {
    fn from(p: Port) -> u32 {
        p.0
    }
}

impl PartialEq<u32> for Port {
    fn eq(&self, other: &u32) -> bool {
        self.0 == *other
    }
}

/// A virtual address: (host id, port), like an IP address and TCP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    /// The node's host id.
    pub host: HostId,
    /// The virtual port on that node.
    pub port: Port,
}

impl Addr {
    /// The address of `port` on node `host`.
    ///
    /// ```
    /// use astranet::{Addr, HostId, Port};
    /// let a = Addr::new(HostId(0xdb), 7);
    /// assert_eq!(a.port, Port(7));
    /// assert_eq!(a.to_string(), "00000000000000db:7");
    /// ```
    pub fn new(host: HostId, port: impl Into<Port>) -> Addr {
        Addr { host, port: port.into() }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// `"<16 hex digits>:<port>"`.
impl FromStr for Addr {
    type Err = ParseAddrError;
    fn from_str(s: &str) -> Result<Addr, ParseAddrError> {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| ParseAddrError(format!("{s:?} is not host:port")))?;
        Ok(Addr { host: host.parse()?, port: port.parse()? })
    }
}

/// A string that is not a valid host id or address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address: {0}")]
pub struct ParseAddrError(pub(crate) String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_roundtrip() {
        let a = Addr::new(HostId(0x1234_5678_9abc_def0), 42);
        assert_eq!(a.to_string(), "123456789abcdef0:42");
        assert_eq!(a.to_string().parse::<Addr>().unwrap(), a);
        assert!("xyz:1".parse::<Addr>().is_err());
        assert!("12:".parse::<Addr>().is_err());
        assert!("12".parse::<Addr>().is_err());
        assert!("db:5".parse::<Addr>().is_err(), "short hex is a name, not a host id");
        assert!("0000000000000001:4294967296".parse::<Addr>().is_err(), "ports are 32-bit");
        assert_eq!("0000000000000001:4294967295".parse::<Addr>().unwrap().port, Port(u32::MAX));
    }

    #[test]
    fn random_ids_are_positive_and_nonzero() {
        for _ in 0..1000 {
            let id = HostId::random();
            assert!(id.0 != 0 && id.0 >> 63 == 0);
        }
    }
}
