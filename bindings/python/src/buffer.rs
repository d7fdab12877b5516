//! The buffer protocol for `recv_into`/`send` without copies.
//!
//! pyo3 offers `PyBuffer` only for the limited API of Python 3.11+, but this wheel is
//! abi3 for 3.9+. `PyObject_GetBuffer`/`PyBuffer_Release` and the `Py_buffer` layout
//! have been exported and unchanged since Python 3.3 (3.11 froze them into the limited
//! API as they were), so they are declared here.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use std::os::raw::{c_char, c_int, c_void};

#[repr(C)]
struct PyBufferRaw {
    buf: *mut c_void,
    obj: *mut pyo3::ffi::PyObject,
    len: isize,
    itemsize: isize,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut isize,
    strides: *mut isize,
    suboffsets: *mut isize,
    internal: *mut c_void,
}

extern "C" {
    fn PyObject_GetBuffer(obj: *mut pyo3::ffi::PyObject, view: *mut PyBufferRaw, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut PyBufferRaw);
}

const PYBUF_SIMPLE: c_int = 0;
const PYBUF_WRITABLE: c_int = 1;

/// A held buffer export (C-contiguous bytes); released on drop (the GIL is taken
/// for that).
pub struct Buffer {
    view: Box<PyBufferRaw>,
}

// SAFETY: the export pins the memory; `Py_buffer` is only released with the GIL held.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    /// Exports `obj`'s memory, writable if asked.
    pub fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Buffer> {
        let mut view: Box<PyBufferRaw> = Box::new(unsafe { std::mem::zeroed() });
        let flags = if writable { PYBUF_WRITABLE } else { PYBUF_SIMPLE };
        // SAFETY: `obj` is a live object and the GIL is held (we have a `Bound`).
        let rc = unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) };
        if rc != 0 {
            let py = obj.py();
            let cause = PyErr::take(py);
            let name = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            let what = if writable { "a writable bytes-like object" } else { "a bytes-like object" };
            let e = PyTypeError::new_err(format!("{what} is required, not '{name}'"));
            if let Some(c) = cause {
                e.set_cause(py, Some(c));
            }
            return Err(e);
        }
        Ok(Buffer { view })
    }

    pub fn ptr(&self) -> usize {
        self.view.buf as usize
    }

    pub fn len(&self) -> usize {
        self.view.len.max(0) as usize
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        Python::attach(|_py| {
            // SAFETY: the view was filled by a successful PyObject_GetBuffer.
            unsafe { PyBuffer_Release(&mut *self.view) };
        });
    }
}
