//! astranet-bench: measures astranet against raw TCP (the physical limit) and the `yamux`
//! crate in one run on loopback, and prints absolute figures and ratios as a table and
//! as JSON. Progress goes to stderr; the table and the JSON document to stdout.


mod latency;
mod opens;
mod pair;
mod report;
mod section;
mod sys;
mod tcp;
mod throughput;
mod units;
mod yamux_peer;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde::Serialize;
use serde_json::json;

use crate::latency::Latency;
use crate::opens::Opens;
use crate::pair::Kind;
use crate::report::Report;
use crate::section::across;
use crate::throughput::{Bulk, Parallel};
use crate::units::{fmt_count, fmt_size, parse_size, GIB, KIB, MIB};

#[derive(Parser)]
#[command(version, about = "astranet against raw TCP and yamux, on loopback, in one run")]
struct Args {
    /// Small sizes, whole run under a minute: a smoke test.
    #[arg(long)]
    quick: bool,
    /// Run only these sections.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Measure only these transports.
    #[arg(long, value_enum, value_delimiter = ',')]
    transports: Vec<Kind>,
    /// Bytes sent on the single bulk stream [default: 2GiB; quick: 128MiB].
    #[arg(long, value_parser = parse_size)]
    bulk_bytes: Option<u64>,
    /// Highest open-stream count of the opens test; levels are the powers of ten from
    /// the batch size up to it [default: 1000000; quick: 10000].
    #[arg(long)]
    max_open: Option<usize>,
    /// Same as --max-open 10000000.
    #[arg(long, conflicts_with = "max_open")]
    streams_10m: bool,
    /// Streams per timed batch in the opens test [default: 10000; quick: 1000].
    #[arg(long)]
    open_batch: Option<usize>,
    /// Dials in flight at once when opening many streams.
    #[arg(long, default_value_t = 1000)]
    dials_in_flight: usize,
    /// Seconds allowed per level of the opens test, filling included.
    #[arg(long)]
    level_budget_secs: Option<u64>,
    /// Seconds allowed to yamux per level of the opens test [default: 30; quick: 5].
    #[arg(long)]
    yamux_budget_secs: Option<u64>,
    /// Timed round trips per latency run [default: 20000; quick: 2000].
    #[arg(long)]
    pings: Option<usize>,
    /// Seconds allowed to each bulk, parallel or latency measurement.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Also write the JSON document to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Part {
    Bulk,
    Parallel,
    Opens,
    Latency,
}

#[derive(Serialize)]
struct Shape {
    streams: usize,
    bytes_per_stream: u64,
}

/// Everything a run was asked to do, resolved from the flags and the mode.
#[derive(Serialize)]
struct Settings {
    quick: bool,
    sections: Vec<Part>,
    transports: Vec<Kind>,
    bulk_bytes: u64,
    parallel: Vec<Shape>,
    open_levels: Vec<usize>,
    open_batch: usize,
    dials_in_flight: usize,
    level_budget_secs: u64,
    yamux_level_budget_secs: u64,
    pings: usize,
    timeout_secs: u64,
}

impl Settings {
    fn new(args: &Args) -> Self {
        let quick = args.quick;
        let max_open = if args.streams_10m { 10_000_000 } else { args.max_open.unwrap_or(pick(quick, 1_000_000, 10_000)) };
        let open_batch = args.open_batch.unwrap_or(pick(quick, 10_000, 1_000)).max(1);
        let parallel = if quick {
            [(100, MIB), (1_000, 100 * KIB)]
        } else {
            [(1_000, MIB), (10_000, 100 * KIB)]
        };
        Settings {
            quick,
            sections: if args.only.is_empty() { Part::value_variants().to_vec() } else { args.only.clone() },
            transports: if args.transports.is_empty() { Kind::ALL.to_vec() } else { args.transports.clone() },
            bulk_bytes: args.bulk_bytes.unwrap_or(pick(quick, 2 * GIB, 128 * MIB)),
            parallel: parallel.map(|(streams, bytes_per_stream)| Shape { streams, bytes_per_stream }).into(),
            open_levels: levels(open_batch, max_open),
            open_batch,
            dials_in_flight: args.dials_in_flight.max(1),
            level_budget_secs: args.level_budget_secs.unwrap_or(pick(quick, 300, 30)),
            yamux_level_budget_secs: args.yamux_budget_secs.unwrap_or(pick(quick, 30, 5)),
            pings: args.pings.unwrap_or(pick(quick, 20_000, 2_000)).max(1),
            timeout_secs: args.timeout_secs,
        }
    }

    fn runs(&self, part: Part) -> bool {
        self.sections.contains(&part)
    }

    /// How each figure was obtained, printed under the table and kept in the JSON.
    fn methods(&self) -> Vec<String> {
        vec![
            format!(
                "bulk: one stream; {} written in 128 KiB chunks, then a half-close; timed from the \
                 first write until the reader sees the end of the stream.",
                fmt_size(self.bulk_bytes)
            ),
            "parallel: all streams are opened first (untimed), then every one sends at once; timed \
             until the last byte is read. yamux and astranet carry all streams over one TCP \
             connection; raw TCP uses a connection per stream, as many as the descriptor limit \
             allows with both ends in this process (a capped count is noted on its cell)."
                .to_owned(),
            format!(
                "opens: streams are opened in batches of {} with up to {} dials in flight and kept \
                 open at both ends; at each level the next batch is timed. A stream counts once it \
                 is established at both ends (for yamux a byte each way, which carries its SYN and \
                 ACK). Memory per stream is the growth of the process RSS since before the first \
                 stream (both ends, the handles the benchmark holds) divided by the open count. \
                 yamux gets {} s per level, astranet {} s. Raw TCP cannot hold these counts in one \
                 process and is not measured.",
                fmt_count(self.open_batch),
                self.dials_in_flight,
                self.yamux_level_budget_secs,
                self.level_budget_secs
            ),
            format!(
                "latency: a 64-byte message echoed on one stream, {} timed round trips after {} \
                 untimed. Each end runs on its own thread with a current-thread runtime (as two \
                 processes would); first as the scheduler places them, then with both threads \
                 pinned to CPU 0.",
                fmt_count(self.pings),
                fmt_count(self.pings / 10)
            ),
        ]
    }
}

/// The full-run or the quick-run default.
fn pick<T>(quick: bool, full: T, small: T) -> T {
    if quick {
        small
    } else {
        full
    }
}

/// The powers of ten from `batch` up to `max`, and `max` itself.
fn levels(batch: usize, max: usize) -> Vec<usize> {
    let mut levels: Vec<usize> = std::iter::successors(Some(1usize), |p| p.checked_mul(10))
        .skip_while(|&p| p < batch)
        .take_while(|&p| p <= max)
        .collect();
    if levels.last() != Some(&max) {
        levels.push(max);
    }
    levels
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = Settings::new(&args);
    sys::raise_fd_limit();
    match run(&settings, args.json.as_ref()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("astranet-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen sections and prints the results; Ok(false) when a measurement failed.
fn run(settings: &Settings, json_path: Option<&PathBuf>) -> io::Result<bool> {
    let started = Instant::now();
    let kinds = &settings.transports;
    let timeout = Duration::from_secs(settings.timeout_secs);
    let mut report = Report::default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    if settings.runs(Part::Bulk) {
        let bulk = Bulk { bytes: settings.bulk_bytes, timeout };
        runtime.block_on(across(&bulk, kinds, &mut report));
    }
    if settings.runs(Part::Parallel) {
        let parallel = Parallel {
            shapes: settings.parallel.iter().map(|s| (s.streams, s.bytes_per_stream)).collect(),
            in_flight: settings.dials_in_flight,
            timeout,
        };
        runtime.block_on(across(&parallel, kinds, &mut report));
    }
    if settings.runs(Part::Opens) {
        let opens = Opens {
            levels: settings.open_levels.clone(),
            batch: settings.open_batch,
            in_flight: settings.dials_in_flight,
            budget: Duration::from_secs(settings.level_budget_secs),
            yamux_budget: Duration::from_secs(settings.yamux_level_budget_secs),
        };
        runtime.block_on(across(&opens, kinds, &mut report));
    }
    if settings.runs(Part::Latency) {
        for pinned in [false, true] {
            let latency = Latency { pings: settings.pings, pinned, timeout };
            runtime.block_on(across(&latency, kinds, &mut report));
        }
    }
    // Tasks a transport left behind must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));

    let methods = settings.methods();
    let context = json!({
        "tool": "astranet-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "fd_limit": sys::fd_limit(),
        },
        "settings": settings,
        "methods": methods,
        "elapsed_secs": started.elapsed().as_secs_f64(),
    });
    let document = serde_json::to_string_pretty(&report.json(context)).map_err(io::Error::other)?;
    println!("{}", report.table());
    for method in &methods {
        println!("- {method}");
    }
    println!("\n{document}");
    if let Some(path) = json_path {
        std::fs::write(path, format!("{document}\n"))?;
        eprintln!("JSON written to {}", path.display());
    }
    Ok(report.is_clean())
}

#[cfg(test)]
mod tests {
    use super::levels;

    #[test]
    fn levels_are_powers_of_ten_then_the_maximum() {
        assert_eq!(levels(10_000, 1_000_000), [10_000, 100_000, 1_000_000]);
        assert_eq!(levels(1_000, 10_000), [1_000, 10_000]);
        assert_eq!(levels(10_000, 250_000), [10_000, 100_000, 250_000]);
        assert_eq!(levels(10_000, 5_000), [5_000]);
    }
}
