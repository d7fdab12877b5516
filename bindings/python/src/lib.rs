//! The compiled part of the `astranet` Python package (`astranet._astranet`).
//!
//! It links the Rust core directly. One tokio multi-thread runtime, started lazily,
//! runs the links; blocking calls poll their futures on the calling thread with the
//! GIL released and wake every 50 ms to run Python's signal handlers; asyncio calls
//! run on the runtime and hand their results to the event loop with
//! `loop.call_soon_threadsafe` (see `python/astranet/_aio.py`), which works with any
//! event loop, uvloop included.

mod buffer;
mod node;
mod ready;
mod runtime;
mod stream;
mod unclosed;

use pyo3::prelude::*;

/// The compiled core of the ``astranet`` package; use ``astranet`` instead.
#[pymodule]
fn _astranet(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<node::Node>()?;
    m.add_class::<node::Listener>()?;
    m.add_class::<node::Task>()?;
    m.add_class::<stream::Stream>()?;
    m.add_class::<ready::Notifier>()?;
    m.add_class::<ready::StreamWaker>()?;
    m.add_function(wrap_pyfunction!(_at_exit, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// (internal) Registered with ``atexit`` by the package: the interpreter is exiting.
#[pyfunction]
fn _at_exit(py: Python<'_>) {
    runtime::set_exiting(py);
}
