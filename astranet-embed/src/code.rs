//! The error codes of every front, in one table.
//!
//! [`astranet_result`] is the C API's result type (`include/astranet.h` is generated
//! from this enum by cbindgen); its values are fixed and never reused. Names and the
//! list of codes come from the enum itself ([`strum`]), the errno a code stands for
//! (Python raises `OSError(errno, message)`, so `ConnectionRefusedError` and friends
//! work) from [`astranet_result::errno`].

use std::io;

/// What every function of the library returns.
///
/// `ASTRANET_OK` is 0; `ASTRANET_AGAIN` means "not now" (a non-blocking call would
/// block) and is not an error; every other value is an error, and when the caller
/// passed an `astranet_error **` it also receives an owned error object with the same
/// code and a message. The codes of the core's errors map one to one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray, strum::FromRepr)]
#[allow(non_camel_case_types)]
pub enum astranet_result {
    /// Success.
    ASTRANET_OK = 0,
    /// A non-blocking call would block: wait for the node fd (see `astranet_poll`).
    ASTRANET_AGAIN = 1,
    /// An argument is invalid: NULL where a value is required, a string that is not
    /// UTF-8, a buffer too small, a configuration value out of range.
    ASTRANET_ERR_INVALID_ARGUMENT = 2,
    /// The handle is not a live handle of the expected kind: closed or freed already,
    /// of another kind (a listener passed as a stream), or never returned by the library.
    ASTRANET_ERR_BAD_HANDLE = 3,
    /// The handle was closed (by another thread) while the call was using it.
    ASTRANET_ERR_CLOSED = 4,
    /// The remote node refused the dial (nobody listens, backlog full, stream limit).
    ASTRANET_ERR_REFUSED = 5,
    /// The operation did not complete within its timeout.
    ASTRANET_ERR_TIMED_OUT = 6,
    /// No link leads to the host.
    ASTRANET_ERR_NO_ROUTE = 7,
    /// The link the stream or dial travelled on went down, or a relay on the way lost
    /// its route to the far host.
    ASTRANET_ERR_LINK_CLOSED = 8,
    /// The peer reset (aborted) the stream.
    ASTRANET_ERR_RESET = 9,
    /// The stream was aborted locally.
    ASTRANET_ERR_ABORTED = 10,
    /// Writing after a local shutdown, or after the peer stopped reading.
    ASTRANET_ERR_BROKEN_PIPE = 11,
    /// The peer broke the protocol; the link was closed.
    ASTRANET_ERR_PROTOCOL = 12,
    /// A configured limit was hit.
    ASTRANET_ERR_LIMIT_EXCEEDED = 13,
    /// A dial or bind target that does not parse.
    ASTRANET_ERR_INVALID_TARGET = 14,
    /// The virtual port is already bound on this node.
    ASTRANET_ERR_ADDR_IN_USE = 15,
    /// The node was closed.
    ASTRANET_ERR_NODE_CLOSED = 16,
    /// The listener was closed.
    ASTRANET_ERR_LISTENER_CLOSED = 17,
    /// A socket or system call failed (the message has the OS error).
    ASTRANET_ERR_IO = 18,
    /// The process forked after the library started its runtime; the child cannot use
    /// anything created before the fork (start astranet after `fork`, or `exec`).
    ASTRANET_ERR_FORKED = 19,
    /// A bug: the library caught a panic. The message says where.
    ASTRANET_ERR_PANIC = 20,
    /// An error of the core this version of the C ABI does not know.
    ASTRANET_ERR_OTHER = 21,
    /// Nobody announced the dialed service name within the dial timeout.
    ASTRANET_ERR_NO_SUCH_SERVICE = 22,
    /// A TCP address to listen on or join is malformed, or its name did not resolve.
    ASTRANET_ERR_RESOLVE = 23,
}

use astranet_result as R;

impl astranet_result {
    /// The code's name, as in C: `"ASTRANET_ERR_REFUSED"`.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Every code, in value order.
    pub fn all() -> &'static [astranet_result] {
        <Self as strum::VariantArray>::VARIANTS
    }

    /// The code with this value, if there is one.
    pub fn from_u32(v: u32) -> Option<astranet_result> {
        Self::from_repr(v)
    }

    /// The POSIX errno that means the same, for fronts that speak errno (Python's
    /// `OSError` picks its subclass from it).
    pub fn errno(self) -> i32 {
        match self {
            R::ASTRANET_OK => 0,
            R::ASTRANET_AGAIN => libc::EAGAIN,
            R::ASTRANET_ERR_INVALID_ARGUMENT | R::ASTRANET_ERR_INVALID_TARGET => libc::EINVAL,
            R::ASTRANET_ERR_BAD_HANDLE | R::ASTRANET_ERR_CLOSED => libc::EBADF,
            R::ASTRANET_ERR_REFUSED => libc::ECONNREFUSED,
            R::ASTRANET_ERR_TIMED_OUT => libc::ETIMEDOUT,
            R::ASTRANET_ERR_NO_ROUTE => libc::EHOSTUNREACH,
            R::ASTRANET_ERR_LINK_CLOSED => libc::ECONNABORTED,
            R::ASTRANET_ERR_RESET | R::ASTRANET_ERR_ABORTED => libc::ECONNRESET,
            R::ASTRANET_ERR_BROKEN_PIPE => libc::EPIPE,
            R::ASTRANET_ERR_PROTOCOL => libc::EPROTO,
            // Not EAGAIN: Python would raise BlockingIOError, which means "try again".
            R::ASTRANET_ERR_LIMIT_EXCEEDED => libc::ENOBUFS,
            R::ASTRANET_ERR_ADDR_IN_USE => libc::EADDRINUSE,
            R::ASTRANET_ERR_NODE_CLOSED | R::ASTRANET_ERR_LISTENER_CLOSED => libc::ENOTCONN,
            R::ASTRANET_ERR_NO_SUCH_SERVICE | R::ASTRANET_ERR_RESOLVE => libc::ENOENT,
            R::ASTRANET_ERR_IO | R::ASTRANET_ERR_FORKED | R::ASTRANET_ERR_PANIC | R::ASTRANET_ERR_OTHER => libc::EIO,
        }
    }

    /// The code of a core error.
    pub fn of(e: &astranet::Error) -> astranet_result {
        use astranet::Error as E;
        match e {
            E::Refused { .. } => R::ASTRANET_ERR_REFUSED,
            E::TimedOut { .. } => R::ASTRANET_ERR_TIMED_OUT,
            E::NoSuchService { .. } => R::ASTRANET_ERR_NO_SUCH_SERVICE,
            E::NoRoute(_) => R::ASTRANET_ERR_NO_ROUTE,
            E::LinkClosed { .. } | E::RouteLost { .. } => R::ASTRANET_ERR_LINK_CLOSED,
            E::Reset(_) => R::ASTRANET_ERR_RESET,
            E::Aborted => R::ASTRANET_ERR_ABORTED,
            E::BrokenPipe | E::PeerClosed(_) => R::ASTRANET_ERR_BROKEN_PIPE,
            E::Protocol { .. } => R::ASTRANET_ERR_PROTOCOL,
            E::LimitExceeded(_) => R::ASTRANET_ERR_LIMIT_EXCEEDED,
            E::InvalidTarget { .. } => R::ASTRANET_ERR_INVALID_TARGET,
            E::InvalidConfig(_) => R::ASTRANET_ERR_INVALID_ARGUMENT,
            E::AddrInUse(_) => R::ASTRANET_ERR_ADDR_IN_USE,
            E::NodeClosed => R::ASTRANET_ERR_NODE_CLOSED,
            E::ListenerClosed => R::ASTRANET_ERR_LISTENER_CLOSED,
            E::Resolve(_) => R::ASTRANET_ERR_RESOLVE,
            E::Io(e) => Self::of_io(e),
            _ => R::ASTRANET_ERR_OTHER,
        }
    }

    /// The code of an I/O error: a stream's errors carry the core error inside.
    pub fn of_io(e: &io::Error) -> astranet_result {
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<astranet::Error>()) {
            return Self::of(inner);
        }
        match e.kind() {
            io::ErrorKind::TimedOut => R::ASTRANET_ERR_TIMED_OUT,
            io::ErrorKind::ConnectionRefused => R::ASTRANET_ERR_REFUSED,
            io::ErrorKind::AddrInUse => R::ASTRANET_ERR_ADDR_IN_USE,
            io::ErrorKind::InvalidInput => R::ASTRANET_ERR_INVALID_ARGUMENT,
            _ => R::ASTRANET_ERR_IO,
        }
    }
}

/// A failed call: its code and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, as a code a program can match.
    pub code: astranet_result,
    /// The message, from the core's error where there is one.
    pub message: String,
    /// The OS error number of a failed system call, if that is what failed.
    pub os_errno: Option<i32>,
}

impl Failure {
    /// A failure with this code and message.
    pub fn new(code: astranet_result, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into(), os_errno: None }
    }

    /// `ASTRANET_ERR_INVALID_ARGUMENT` with this message.
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(R::ASTRANET_ERR_INVALID_ARGUMENT, message)
    }

    /// `ASTRANET_ERR_TIMED_OUT` for an operation that waited `after`.
    pub fn timed_out(what: &str, after: Option<std::time::Duration>) -> Failure {
        // The caller gave it in milliseconds.
        let after = after.map(|d| format!(" after {} ms", d.as_millis())).unwrap_or_default();
        Failure::new(R::ASTRANET_ERR_TIMED_OUT, format!("{what} timed out{after}"))
    }

    /// `ASTRANET_ERR_FORKED`, with the advice every front gives.
    pub fn forked() -> Failure {
        Failure::new(
            R::ASTRANET_ERR_FORKED,
            "astranet was started before this process forked; the child cannot use it \
             (its runtime threads do not survive fork): start astranet after forking, \
             or exec / use a 'spawn' start method",
        )
    }

    /// The errno a front should report: the OS's own for a failed system call.
    pub fn errno(&self) -> i32 {
        self.os_errno.unwrap_or_else(|| self.code.errno())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<astranet::Error> for Failure {
    fn from(e: astranet::Error) -> Failure {
        match e {
            astranet::Error::Io(e) => e.into(),
            e => Failure::new(R::of(&e), e.to_string()),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        let os_errno = e.raw_os_error();
        let message = match (os_errno, e.get_ref()) {
            // "Connection refused", not "Connection refused (os error 111)".
            (Some(code), _) => {
                let m = io::Error::from_raw_os_error(code).to_string();
                m.split(" (os error").next().unwrap_or(&m).to_string()
            }
            (None, Some(inner)) => inner.to_string(),
            (None, None) => e.kind().to_string(),
        };
        Failure { code: R::of_io(&e), message, os_errno }
    }
}

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_named_and_found_by_value() {
        for (i, c) in astranet_result::all().iter().enumerate() {
            assert_eq!(*c as usize, i, "codes are dense and in order");
            assert_eq!(astranet_result::from_u32(i as u32), Some(*c));
            assert!(c.name().starts_with("ASTRANET_"));
        }
        assert_eq!(R::ASTRANET_ERR_REFUSED.name(), "ASTRANET_ERR_REFUSED");
        assert_eq!(astranet_result::from_u32(1000), None);
        assert_eq!(std::mem::size_of::<astranet_result>(), 4);
    }

    #[test]
    fn core_errors_map_to_their_codes_and_errnos() {
        let e: Failure = astranet::Error::NodeClosed.into();
        assert_eq!((e.code, e.errno()), (R::ASTRANET_ERR_NODE_CLOSED, libc::ENOTCONN));
        let io: io::Error = astranet::Error::BrokenPipe.into();
        assert_eq!(Failure::from(io).code, R::ASTRANET_ERR_BROKEN_PIPE);
        let raw = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::from(raw).errno(), libc::ECONNREFUSED);
        let os = Failure::from(io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!((os.code, os.errno()), (R::ASTRANET_ERR_IO, libc::EMFILE));
        assert!(!os.message.contains("os error"), "{}", os.message);
        let limit = Failure::from(astranet::Error::LimitExceeded("streams".into()));
        assert_eq!(limit.errno(), libc::ENOBUFS, "a limit is not a would-block");
        let config = Failure::from(astranet::Error::InvalidConfig("x".into()));
        assert_eq!(config.code, R::ASTRANET_ERR_INVALID_ARGUMENT);
    }

    #[test]
    fn the_errno_of_a_code_agrees_with_the_core_error_kind() {
        // Python raised OSError(errno of the io::ErrorKind) before this table existed:
        // the table must keep every subclass it picked.
        let cases = [
            astranet::Error::NoRoute(astranet::HostId(1)),
            astranet::Error::TimedOut { what: "x".into(), after: Default::default() },
            astranet::Error::NodeClosed,
            astranet::Error::Aborted,
            astranet::Error::BrokenPipe,
            astranet::Error::AddrInUse(1),
            astranet::Error::NoSuchService { name: "x".into(), port: None, after: Default::default() },
        ];
        for e in cases {
            let kind = e.kind();
            let errno = Failure::from(e).errno();
            assert_eq!(io::Error::from_raw_os_error(errno).kind(), kind, "errno {errno}");
        }
    }
}
