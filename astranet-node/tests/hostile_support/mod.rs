//! What the hostile-peer tests share: the node under attack as a child process, its
//! memory and CPU from /proc, a raw protocol peer to attack it with, and a
//! well-behaved client on another link.

pub mod good;
pub mod raw;
pub mod target;
pub mod usage;

use std::sync::{mpsc, Mutex};
use std::time::Duration;

/// One attack at a time: each measures its node's CPU and latencies, which a second
/// attack on the same two cores would distort.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `body` with the machine to itself, failing the test if it takes longer than
/// `limit`. A body that hangs is left behind, but its node dies with this process
/// (see [`target::Target::start`]).
pub fn within(limit: Duration, body: impl FnOnce() + Send + 'static) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (done, finished) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => runner.join().unwrap(),
        // The body panicked: re-raise its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(runner.join().unwrap_err()),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test did not finish within {limit:?}"),
    }
}

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
