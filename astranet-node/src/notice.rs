//! What the command tells its operator on stderr besides the log (a signal taken, a
//! service withdrawn, the error it stops with): `astranet: ...` lines, or with
//! `--log-format json` log events like every other line, so that a log pipeline
//! reads one format.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Their target, which the log filter always lets through at `info` (see `main`).
pub const TARGET: &str = "astranet::notice";

/// Makes notices log events (`--log-format json`).
pub fn as_json() {
    JSON.store(true, Ordering::Relaxed);
}

/// Something the operator should see: a line on stderr, or an `info` event.
pub fn notice(what: impl Display) {
    if JSON.load(Ordering::Relaxed) {
        tracing::info!(target: TARGET, "{what}");
    } else {
        eprintln!("astranet: {what}");
    }
}

/// The error the command stops with: a line on stderr, or an `error` event.
pub fn failure(what: impl Display) {
    if JSON.load(Ordering::Relaxed) {
        tracing::error!(target: TARGET, "{what}");
    } else {
        eprintln!("astranet: {what}");
    }
}
