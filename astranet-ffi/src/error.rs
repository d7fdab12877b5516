//! Result codes and owned error objects.

use std::ffi::{c_char, CString};
use std::io;

/// What every function of the library returns.
///
/// `ASTRANET_OK` is 0; `ASTRANET_AGAIN` means "not now" (a non-blocking call would
/// block) and is not an error; every other value is an error, and when the caller
/// passed an `astranet_error **` it also receives an owned error object with the same
/// code and a message. The codes of the core's errors map one to one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// The link the stream or dial travelled on went down.
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
}

use astranet_result as R;

impl astranet_result {
    pub(crate) fn name(self) -> &'static std::ffi::CStr {
        match self {
            R::ASTRANET_OK => c"ASTRANET_OK",
            R::ASTRANET_AGAIN => c"ASTRANET_AGAIN",
            R::ASTRANET_ERR_INVALID_ARGUMENT => c"ASTRANET_ERR_INVALID_ARGUMENT",
            R::ASTRANET_ERR_BAD_HANDLE => c"ASTRANET_ERR_BAD_HANDLE",
            R::ASTRANET_ERR_CLOSED => c"ASTRANET_ERR_CLOSED",
            R::ASTRANET_ERR_REFUSED => c"ASTRANET_ERR_REFUSED",
            R::ASTRANET_ERR_TIMED_OUT => c"ASTRANET_ERR_TIMED_OUT",
            R::ASTRANET_ERR_NO_ROUTE => c"ASTRANET_ERR_NO_ROUTE",
            R::ASTRANET_ERR_LINK_CLOSED => c"ASTRANET_ERR_LINK_CLOSED",
            R::ASTRANET_ERR_RESET => c"ASTRANET_ERR_RESET",
            R::ASTRANET_ERR_ABORTED => c"ASTRANET_ERR_ABORTED",
            R::ASTRANET_ERR_BROKEN_PIPE => c"ASTRANET_ERR_BROKEN_PIPE",
            R::ASTRANET_ERR_PROTOCOL => c"ASTRANET_ERR_PROTOCOL",
            R::ASTRANET_ERR_LIMIT_EXCEEDED => c"ASTRANET_ERR_LIMIT_EXCEEDED",
            R::ASTRANET_ERR_INVALID_TARGET => c"ASTRANET_ERR_INVALID_TARGET",
            R::ASTRANET_ERR_ADDR_IN_USE => c"ASTRANET_ERR_ADDR_IN_USE",
            R::ASTRANET_ERR_NODE_CLOSED => c"ASTRANET_ERR_NODE_CLOSED",
            R::ASTRANET_ERR_LISTENER_CLOSED => c"ASTRANET_ERR_LISTENER_CLOSED",
            R::ASTRANET_ERR_IO => c"ASTRANET_ERR_IO",
            R::ASTRANET_ERR_FORKED => c"ASTRANET_ERR_FORKED",
            R::ASTRANET_ERR_PANIC => c"ASTRANET_ERR_PANIC",
            R::ASTRANET_ERR_OTHER => c"ASTRANET_ERR_OTHER",
            R::ASTRANET_ERR_NO_SUCH_SERVICE => c"ASTRANET_ERR_NO_SUCH_SERVICE",
        }
    }
}

/// An error with its code and message (opaque). Owned by the caller, who frees it with
/// `astranet_error_free`.
pub struct astranet_error {
    code: astranet_result,
    message: CString,
}

/// A failed call, before it is handed to C.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub code: astranet_result,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(code: astranet_result, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(R::ASTRANET_ERR_INVALID_ARGUMENT, message)
    }

    pub(crate) fn null(what: &str) -> Failure {
        Failure::invalid(format!("{what} is NULL"))
    }
}

pub(crate) fn code_of(e: &astranet::Error) -> astranet_result {
    use astranet::Error as E;
    match e {
        E::Refused { .. } => R::ASTRANET_ERR_REFUSED,
        E::TimedOut { .. } => R::ASTRANET_ERR_TIMED_OUT,
        E::NoSuchService { .. } => R::ASTRANET_ERR_NO_SUCH_SERVICE,
        E::NoRoute(_) => R::ASTRANET_ERR_NO_ROUTE,
        E::LinkClosed { .. } => R::ASTRANET_ERR_LINK_CLOSED,
        E::Reset(_) => R::ASTRANET_ERR_RESET,
        E::Aborted => R::ASTRANET_ERR_ABORTED,
        E::BrokenPipe | E::PeerClosed(_) => R::ASTRANET_ERR_BROKEN_PIPE,
        E::Protocol { .. } => R::ASTRANET_ERR_PROTOCOL,
        E::LimitExceeded(_) => R::ASTRANET_ERR_LIMIT_EXCEEDED,
        E::InvalidTarget { .. } => R::ASTRANET_ERR_INVALID_TARGET,
        E::AddrInUse(_) => R::ASTRANET_ERR_ADDR_IN_USE,
        E::NodeClosed => R::ASTRANET_ERR_NODE_CLOSED,
        E::ListenerClosed => R::ASTRANET_ERR_LISTENER_CLOSED,
        E::Io(e) => io_code(e),
        _ => R::ASTRANET_ERR_OTHER,
    }
}

fn io_code(e: &io::Error) -> astranet_result {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<astranet::Error>()) {
        return code_of(inner);
    }
    match e.kind() {
        io::ErrorKind::TimedOut => R::ASTRANET_ERR_TIMED_OUT,
        io::ErrorKind::ConnectionRefused => R::ASTRANET_ERR_REFUSED,
        io::ErrorKind::AddrInUse => R::ASTRANET_ERR_ADDR_IN_USE,
        io::ErrorKind::InvalidInput => R::ASTRANET_ERR_INVALID_ARGUMENT,
        _ => R::ASTRANET_ERR_IO,
    }
}

impl From<astranet::Error> for Failure {
    fn from(e: astranet::Error) -> Failure {
        Failure { code: code_of(&e), message: e.to_string() }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure { code: io_code(&e), message: e.to_string() }
    }
}

/// Hands `f` to C through the optional out-parameter and returns its code.
pub(crate) fn report(f: Failure, err: *mut *mut astranet_error) -> astranet_result {
    if !err.is_null() {
        let message = CString::new(f.message.replace('\0', "\\0")).unwrap_or_default();
        let boxed = Box::new(astranet_error { code: f.code, message });
        // SAFETY: the caller passed a writable `astranet_error **` (documented).
        unsafe { *err = Box::into_raw(boxed) };
    }
    f.code
}

/// The code of an error object; `ASTRANET_ERR_INVALID_ARGUMENT` when `error` is NULL.
///
/// Thread-safety: any thread (the object is immutable).
#[no_mangle]
pub extern "C" fn astranet_error_code(error: *const astranet_error) -> astranet_result {
    // SAFETY: a non-NULL pointer is an error object from this library (documented).
    match unsafe { error.as_ref() } {
        Some(e) => e.code,
        None => R::ASTRANET_ERR_INVALID_ARGUMENT,
    }
}

/// The message of an error object, a NUL-terminated UTF-8 string owned by the error
/// (valid until `astranet_error_free`). Returns "" when `error` is NULL.
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_error_message(error: *const astranet_error) -> *const c_char {
    // SAFETY: as in astranet_error_code.
    match unsafe { error.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Frees an error object. NULL is accepted and ignored. Freeing the same error twice is
/// undefined behaviour, as with `free` (errors are plain heap objects, not handles).
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_error_free(error: *mut astranet_error) {
    if !error.is_null() {
        let _ = std::panic::catch_unwind(|| {
            // SAFETY: the pointer came from Box::into_raw in `report` (documented).
            drop(unsafe { Box::from_raw(error) });
        });
    }
}

/// The name of a result code as a static string ("ASTRANET_ERR_REFUSED"), or
/// "ASTRANET_UNKNOWN" for a value that is not a code. Never NULL; never to be freed.
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_result_name(result: u32) -> *const c_char {
    std::panic::catch_unwind(|| match all_codes().iter().find(|c| **c as u32 == result) {
        Some(c) => c.name().as_ptr(),
        None => c"ASTRANET_UNKNOWN".as_ptr(),
    })
    .unwrap_or(c"ASTRANET_UNKNOWN".as_ptr())
}

fn all_codes() -> &'static [astranet_result] {
    &[
        R::ASTRANET_OK,
        R::ASTRANET_AGAIN,
        R::ASTRANET_ERR_INVALID_ARGUMENT,
        R::ASTRANET_ERR_BAD_HANDLE,
        R::ASTRANET_ERR_CLOSED,
        R::ASTRANET_ERR_REFUSED,
        R::ASTRANET_ERR_TIMED_OUT,
        R::ASTRANET_ERR_NO_ROUTE,
        R::ASTRANET_ERR_LINK_CLOSED,
        R::ASTRANET_ERR_RESET,
        R::ASTRANET_ERR_ABORTED,
        R::ASTRANET_ERR_BROKEN_PIPE,
        R::ASTRANET_ERR_PROTOCOL,
        R::ASTRANET_ERR_LIMIT_EXCEEDED,
        R::ASTRANET_ERR_INVALID_TARGET,
        R::ASTRANET_ERR_ADDR_IN_USE,
        R::ASTRANET_ERR_NODE_CLOSED,
        R::ASTRANET_ERR_LISTENER_CLOSED,
        R::ASTRANET_ERR_IO,
        R::ASTRANET_ERR_FORKED,
        R::ASTRANET_ERR_PANIC,
        R::ASTRANET_ERR_OTHER,
        R::ASTRANET_ERR_NO_SUCH_SERVICE,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_name() {
        for (i, c) in all_codes().iter().enumerate() {
            assert_eq!(*c as usize, i, "codes are dense and in order");
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(astranet_result_name(*c as u32)) };
            assert_eq!(name, c.name());
            assert!(name.to_str().unwrap().starts_with("ASTRANET_"));
        }
        // SAFETY: as above.
        let unknown = unsafe { std::ffi::CStr::from_ptr(astranet_result_name(1000)) };
        assert_eq!(unknown, c"ASTRANET_UNKNOWN");
    }

    #[test]
    fn core_errors_map_to_their_codes() {
        let e: Failure = astranet::Error::NodeClosed.into();
        assert_eq!(e.code, R::ASTRANET_ERR_NODE_CLOSED);
        let io: std::io::Error = astranet::Error::BrokenPipe.into();
        assert_eq!(Failure::from(io).code, R::ASTRANET_ERR_BROKEN_PIPE);
        let raw = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::from(raw).code, R::ASTRANET_ERR_REFUSED);
    }

    #[test]
    fn errors_reach_the_out_parameter() {
        let mut err: *mut astranet_error = std::ptr::null_mut();
        let code = report(Failure::new(R::ASTRANET_ERR_TIMED_OUT, "slow\0er"), &mut err);
        assert_eq!(code, R::ASTRANET_ERR_TIMED_OUT);
        assert_eq!(astranet_error_code(err), R::ASTRANET_ERR_TIMED_OUT);
        // SAFETY: the message of a live error.
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(astranet_error_message(err)) }, c"slow\\0er");
        astranet_error_free(err);
        assert_eq!(report(Failure::invalid("x"), std::ptr::null_mut()), R::ASTRANET_ERR_INVALID_ARGUMENT);
    }
}
