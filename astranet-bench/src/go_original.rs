//! The original Go astranet package as a transport of the benchmark: a Go program
//! (`astranet-bench/goastranet`, built against `../shared/peers/astranet-go`) runs both
//! ends in a process of its own with the same workloads, and answers with JSON. One
//! process per measurement, so that its memory figures start from a fresh heap.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// The built program, or why there is none (no Go toolchain, a failed build).
fn binary() -> Result<&'static Path, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = here.join("../target/bench/goastranet");
        eprintln!("[go] building the original Go package's benchmark program");
        let status = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(here.join("goastranet"))
            .status()
            .map_err(|e| format!("the Go toolchain is needed (go: {e})"))?;
        if status.success() {
            Ok(out)
        } else {
            Err(format!("building goastranet failed ({status})"))
        }
    })
    .as_deref()
    .map_err(Clone::clone)
}

/// Runs one measurement (`goastranet <args>`), at most `limit`; its JSON answer.
pub async fn measure(args: &[String], limit: Duration) -> io::Result<Value> {
    let bin = binary().map_err(io::Error::other)?;
    let child = Command::new(bin).args(args).kill_on_drop(true).output();
    let output = tokio::time::timeout(limit, child).await.map_err(|_| {
        io::Error::new(io::ErrorKind::TimedOut, format!("still running after {} s; stopped", limit.as_secs()))
    })??;
    let answer: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| io::Error::other(format!("goastranet exited with {} and no result: {e}", output.status)))?;
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        return Err(io::Error::other(format!("goastranet: {error}")));
    }
    Ok(answer)
}

/// The `samples` of an answer, as MiB/s figures.
pub fn samples(answer: &Value) -> Vec<f64> {
    answer["samples"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}
