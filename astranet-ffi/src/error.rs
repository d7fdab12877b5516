//! Result codes and owned error objects.

use std::ffi::{c_char, CString};

pub use astranet_embed::code::astranet_result;
pub(crate) use astranet_embed::Failure;
use astranet_result as R;

/// An error with its code and message (opaque). Owned by the caller, who frees it with
/// `astranet_error_free`.
pub struct astranet_error {
    code: astranet_result,
    message: CString,
}

/// `ASTRANET_ERR_INVALID_ARGUMENT` for a NULL argument.
pub(crate) fn null(what: &str) -> Failure {
    Failure::invalid(format!("{what} is NULL"))
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
    crate::guard_value(R::ASTRANET_ERR_PANIC, || {
        // SAFETY: a non-NULL pointer is an error object from this library (documented).
        match unsafe { error.as_ref() } {
            Some(e) => e.code,
            None => R::ASTRANET_ERR_INVALID_ARGUMENT,
        }
    })
}

/// The message of an error object, a NUL-terminated UTF-8 string owned by the error
/// (valid until `astranet_error_free`). Returns "" when `error` is NULL.
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_error_message(error: *const astranet_error) -> *const c_char {
    crate::guard_value(c"".as_ptr(), || {
        // SAFETY: as in astranet_error_code.
        match unsafe { error.as_ref() } {
            Some(e) => e.message.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// Frees an error object. NULL is accepted and ignored. Freeing the same error twice is
/// undefined behaviour, as with `free` (errors are plain heap objects, not handles).
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_error_free(error: *mut astranet_error) {
    crate::guard_value((), || {
        if !error.is_null() {
            // SAFETY: the pointer came from Box::into_raw in `report` (documented).
            drop(unsafe { Box::from_raw(error) });
        }
    })
}

/// The name of a result code as a static string ("ASTRANET_ERR_REFUSED"), or
/// "ASTRANET_UNKNOWN" for a value that is not a code. Never NULL; never to be freed.
///
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_result_name(result: u32) -> *const c_char {
    static NAMES: std::sync::OnceLock<Vec<CString>> = std::sync::OnceLock::new();
    crate::guard_value(c"ASTRANET_UNKNOWN".as_ptr(), || {
        let names = NAMES.get_or_init(|| R::all().iter().map(|c| CString::new(c.name()).unwrap_or_default()).collect());
        match names.get(result as usize) {
            Some(name) => name.as_ptr(),
            None => c"ASTRANET_UNKNOWN".as_ptr(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_name() {
        for c in R::all() {
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(astranet_result_name(*c as u32)) };
            assert_eq!(name.to_str().unwrap(), c.name());
            assert!(name.to_str().unwrap().starts_with("ASTRANET_"));
        }
        // SAFETY: as above.
        let unknown = unsafe { std::ffi::CStr::from_ptr(astranet_result_name(1000)) };
        assert_eq!(unknown, c"ASTRANET_UNKNOWN");
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
