//! `ResourceWarning: unclosed <...>` for objects collected without `close()`, as
//! CPython's sockets and asyncio's event loops warn (shown under `python -X dev`,
//! `-W default` and by test runners that enable it; ignored otherwise).

use pyo3::exceptions::PyResourceWarning;
use pyo3::prelude::*;
use std::ffi::CString;

/// Warns that the object `repr` was collected open. Called from `Drop`, where the
/// object's deallocation holds the GIL, possibly while an exception propagates (an
/// object dropped by the unwinding): that exception is set aside and put back, as
/// CPython's finalizers do. A warning turned into an error is reported as
/// unraisable, since nothing can catch it there.
pub fn warn(repr: &str) {
    Python::attach(|py| {
        let (mut kind, mut value, mut traceback) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: the GIL is held; the three references are handed back below. Not
        // `PyErr::take`, which would resume a panic the exception carries.
        unsafe { pyo3::ffi::PyErr_Fetch(&mut kind, &mut value, &mut traceback) };
        let message = CString::new(format!("unclosed {repr}")).unwrap_or_default();
        let category = py.get_type::<PyResourceWarning>();
        if let Err(e) = PyErr::warn(py, &category, &message, 1) {
            e.write_unraisable(py, None);
        }
        // SAFETY: what PyErr_Fetch gave, restored once (nulls when nothing was set).
        unsafe { pyo3::ffi::PyErr_Restore(kind, value, traceback) };
    });
}
