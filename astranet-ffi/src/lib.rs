//! The C ABI of astranet: `libastranet.so` / `libastranet.a`, declared by
//! `include/astranet.h` (generated from this crate by cbindgen).
//!
//! Shape (after rustls-ffi): one file per concept, every export wrapped in [`ffi!`]
//! (catches panics, refuses to run in a forked child, hands errors to the optional
//! `astranet_error **`), one result enum mapping the core's errors 1:1.
//!
//! Handles (`astranet_node *`, `astranet_listener *`, `astranet_stream *`) are opaque
//! tokens looked up in a process-wide table ([`handles`]), never dereferenced: a
//! closed, freed or wrong-kind handle is an error code, not a crash.

#![allow(non_camel_case_types)]
// The exports are called from C: their pointer contracts are documented in the header
// (and NULL is checked everywhere); marking them `unsafe fn` would change nothing for C.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

#[cfg(not(target_pointer_width = "64"))]
compile_error!("astranet-ffi encodes handles in 64-bit pointers");

pub mod error;
mod handles;
pub mod listener;
pub mod node;
pub mod poll;
pub mod stream;

use error::{astranet_error, astranet_result, Failure};
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Major version of the library (equals `astranet_version()`'s).
pub const ASTRANET_VERSION_MAJOR: u32 = 0;
/// Minor version of the library.
pub const ASTRANET_VERSION_MINOR: u32 = 1;
/// Patch version of the library.
pub const ASTRANET_VERSION_PATCH: u32 = 0;

// The header's version macros are these constants: make sure they are the crate's.
const _: () = {
    const fn parse(s: &str) -> u32 {
        let b = s.as_bytes();
        let mut i = 0;
        let mut n = 0;
        while i < b.len() {
            n = n * 10 + (b[i] - b'0') as u32;
            i += 1;
        }
        n
    }
    assert!(parse(env!("CARGO_PKG_VERSION_MAJOR")) == ASTRANET_VERSION_MAJOR);
    assert!(parse(env!("CARGO_PKG_VERSION_MINOR")) == ASTRANET_VERSION_MINOR);
    assert!(parse(env!("CARGO_PKG_VERSION_PATCH")) == ASTRANET_VERSION_PATCH);
};

/// Runs the body of an export: refuses in a forked child, catches panics, and turns
/// `Err(Failure)` into its code (writing the optional error out-parameter).
macro_rules! ffi {
    ($err:expr, $body:block) => {{
        let err: *mut *mut $crate::error::astranet_error = $err;
        $crate::guard(err, move || -> Result<$crate::error::astranet_result, $crate::error::Failure> { $body })
    }};
}
pub(crate) use ffi;

/// The panic boundary of every export that returns a result code: refuses in a
/// forked child, and reports a panic as `ASTRANET_ERR_PANIC`.
#[doc(hidden)]
pub(crate) fn guard<F>(err: *mut *mut astranet_error, f: F) -> astranet_result
where
    F: FnOnce() -> Result<astranet_result, Failure>,
{
    let outcome = astranet_embed::runtime::check_fork()
        .and_then(|()| catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(panicked(&*panic))));
    match outcome {
        Ok(code) => code,
        Err(failure) => error::report(failure, err),
    }
}

/// The panic boundary of the few exports that return something else (a string, a
/// count, nothing): `fallback` when `f` panics.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> Failure {
    let what = astranet_embed::code::panic_message(payload);
    Failure::new(astranet_result::ASTRANET_ERR_PANIC, format!("internal panic: {what}"))
}

/// Reads a NUL-terminated UTF-8 argument.
pub(crate) fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(error::null(what));
    }
    // SAFETY: the caller passes a NUL-terminated string (documented for every such argument).
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// Writes an out-parameter, which must not be NULL.
pub(crate) fn out<T>(p: *mut T, what: &str) -> Result<OutPtr<T>, Failure> {
    if p.is_null() {
        return Err(error::null(what));
    }
    Ok(OutPtr(p))
}

/// A checked, non-NULL out-parameter; written only on success.
pub(crate) struct OutPtr<T>(*mut T);

impl<T> OutPtr<T> {
    pub(crate) fn set(self, v: T) {
        // SAFETY: non-NULL and, as documented, pointing to writable memory for a T.
        unsafe { self.0.write(v) }
    }
}

/// Copies up to `capacity` items into the caller's array `dst` (which may be NULL when
/// `capacity` is 0) and writes the full number of items to `count`, so that a caller
/// can retry with a larger array.
pub(crate) fn fill_array<T>(
    dst: *mut T,
    capacity: usize,
    what: &str,
    items: impl ExactSizeIterator<Item = T>,
    count: OutPtr<usize>,
) -> Result<(), Failure> {
    if capacity > 0 && dst.is_null() {
        return Err(error::null(what));
    }
    let total = items.len();
    for (i, item) in items.take(capacity).enumerate() {
        // SAFETY: the caller passes room for `capacity` items.
        unsafe { dst.add(i).write(item) };
    }
    count.set(total);
    Ok(())
}

/// The library's version, "MAJOR.MINOR.PATCH" (a static string: never NULL, never to be
/// freed). Equals the header's `ASTRANET_VERSION_MAJOR/MINOR/PATCH` when the header and
/// the library match.
///
/// Thread-safety: any thread. Works in a forked child.
#[no_mangle]
pub extern "C" fn astranet_version() -> *const c_char {
    const V: &std::ffi::CStr =
        match std::ffi::CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("the version has no NUL inside"),
        };
    guard_value(V.as_ptr(), || V.as_ptr())
}

#[cfg(test)]
mod tests {
    /// Every export goes through one of the two panic boundaries, whatever it returns:
    /// a panic must never unwind into C.
    #[test]
    fn every_export_has_a_panic_boundary() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut exports = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, chunk) in text.split("pub extern \"C\" fn ").enumerate().skip(1) {
                let name = chunk.split('(').next().unwrap();
                // The body: from the signature's `{` (the first at a line end) to the
                // function's closing brace.
                let body = &chunk[chunk.find("{\n").unwrap()..];
                let body = &body[..body.find("\n}\n").unwrap()];
                let guarded = body.contains("ffi!(") || body.contains("guard_value(");
                assert!(guarded, "{}: export #{i} {name} runs outside ffi! / guard_value", path.display());
                exports += 1;
            }
        }
        assert!(exports > 30, "found only {exports} exports");
    }
}
