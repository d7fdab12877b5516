//! The HANDSHAKE payload: a JSON object, `{"RAddr":"ip:port"}` in v1.
//!
//! Extensions are negotiated by adding fields (the Go decoder ignores unknown ones):
//! this implementation adds `"Ext": [...]`, the list of capabilities it speaks. A
//! capability is used on a link only when both sides listed it.

use serde::{Deserialize, Serialize};

/// Capability: the RST command (refused dials, aborted streams).
pub const CAP_RST: &str = "rst";

/// Capabilities this implementation announces.
pub const OUR_CAPS: &[&str] = &[CAP_RST];

/// The HANDSHAKE payload, sent by both sides as the first frame on a link:
/// `{"RAddr":"ip:port","Ext":[...]}`, with `Ext` left out when empty (v1 shape).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// The peer's address as the sender sees it (`ip:port`), empty when the link is not
    /// a TCP connection.
    #[serde(rename = "RAddr", default)]
    pub raddr: String,
    /// Extension capabilities; absent from v1 peers.
    #[serde(rename = "Ext", default, skip_serializing_if = "Vec::is_empty")]
    pub ext: Vec<String>,
}

/// A HANDSHAKE payload that does not decode into the object.
#[derive(Debug, thiserror::Error)]
#[error("malformed HANDSHAKE payload: {0}")]
pub struct HandshakeError(#[from] serde_json::Error);

impl Handshake {
    /// This implementation's handshake: `raddr` is the peer's address as this node sees
    /// it (empty when the link is not TCP), `ext` lists [`OUR_CAPS`].
    pub fn ours(raddr: String) -> Handshake {
        Handshake { raddr, ext: OUR_CAPS.iter().map(|s| s.to_string()).collect() }
    }

    /// The JSON payload; `Ext` is left out when empty.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings always serializes")
    }

    /// Decodes like Go's `json.Unmarshal` into the struct: `null` and unknown fields are
    /// accepted, a wrong type or an empty payload is an error.
    pub fn decode(payload: &[u8]) -> Result<Handshake, HandshakeError> {
        let parsed: Option<Handshake> = serde_json::from_slice(payload)?;
        Ok(parsed.unwrap_or_default())
    }

    /// Whether the sender announced the capability `cap` (e.g. [`CAP_RST`]).
    pub fn has(&self, cap: &str) -> bool {
        self.ext.iter().any(|c| c == cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_shape() {
        let h = Handshake { raddr: "127.0.0.1:4000".into(), ext: vec![] };
        assert_eq!(h.encode(), br#"{"RAddr":"127.0.0.1:4000"}"#);
    }

    #[test]
    fn ours_adds_ext() {
        let h = Handshake::ours("10.0.0.1:1".into());
        assert_eq!(h.encode(), br#"{"RAddr":"10.0.0.1:1","Ext":["rst"]}"#);
        assert!(Handshake::decode(&h.encode()).unwrap().has(CAP_RST));
    }

    #[test]
    fn go_decoding_rules() {
        assert_eq!(Handshake::decode(b"null").unwrap(), Handshake::default());
        assert_eq!(Handshake::decode(br#"{"RAddr":"a","Other":[1]}"#).unwrap().raddr, "a");
        assert!(Handshake::decode(b"").is_err());
        assert!(Handshake::decode(br#"{"RAddr":5}"#).is_err());
        assert!(!Handshake::decode(br#"{"RAddr":""}"#).unwrap().has(CAP_RST));
    }
}
