//! Runs one section for one transport in a child process of this binary. The opens
//! section needs it: millions of streams leave a fragmented heap behind that would skew
//! the RSS-based memory figure of whatever is measured after them in the same process,
//! and their teardown would run during the next measurement.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::pair::Kind;
use crate::report::Report;

const POLL: Duration = Duration::from_millis(100);

/// Runs this binary with `args` plus `--transports <kind> --json <file>`, waiting at most
/// `limit`, and takes `section`'s rows from the JSON it writes. Its progress goes to our
/// stderr; its stdout (the table) is dropped.
pub fn run(section: &'static str, kind: Kind, args: &[String], limit: Duration, report: &mut Report) {
    if let Err(e) = run_child(section, kind, args, limit, report) {
        report.recorder(section, kind).error(format!("child process: {e}"));
    }
}

fn run_child(
    section: &'static str,
    kind: Kind,
    args: &[String],
    limit: Duration,
    report: &mut Report,
) -> io::Result<()> {
    let name = kind.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
    let json = std::env::temp_dir().join(format!("astranet-bench-{}-{section}-{name}.json", std::process::id()));
    // This very image, even when a rebuild has replaced the file on disk meanwhile.
    let mut child = Command::new("/proc/self/exe")
        .args(args)
        .arg("--transports")
        .arg(&name)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("still running after {} s; stopped", limit.as_secs()),
            ));
        }
        std::thread::sleep(POLL);
    };
    let document = read_and_remove(json)
        .map_err(|e| io::Error::other(format!("exited with {status} and left no results: {e}")))?;
    report.absorb(section, &document).map_err(io::Error::other)
}

fn read_and_remove(path: PathBuf) -> io::Result<String> {
    let text = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    text
}
