//! The command line, and the settings a run resolves from it and from the mode.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::pair::Kind;
use crate::throughput::Shape;
use crate::units::{fmt_count, fmt_size, parse_size, GIB, KIB, MIB};

#[derive(Parser)]
#[command(version, about = "astranet against raw TCP and yamux, on loopback, in one run")]
pub struct Args {
    /// Small sizes, whole run under a minute: a smoke test.
    #[arg(long)]
    quick: bool,
    /// Run only these sections.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Measure only these transports (go: the original Go package, built with the Go
    /// toolchain from ../shared/peers/astranet-go).
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
    /// Runs per bulk, parallel and latency figure; the median is reported [default: 3;
    /// quick: 1].
    #[arg(long)]
    repeat: Option<usize>,
    /// Dials in flight at once when opening many streams.
    #[arg(long, default_value_t = 1000)]
    dials_in_flight: usize,
    /// Seconds allowed per level of the opens test, filling included [default: 300;
    /// quick: 30].
    #[arg(long)]
    level_budget_secs: Option<u64>,
    /// Seconds allowed to yamux per level of the opens test [default: 30; quick: 5].
    #[arg(long)]
    yamux_budget_secs: Option<u64>,
    /// Run the opens section in this process rather than in a child process per
    /// transport; its memory figures then depend on what ran before.
    #[arg(long)]
    in_process: bool,
    /// Timed round trips per latency run [default: 20000; quick: 2000].
    #[arg(long)]
    pings: Option<usize>,
    /// Seconds allowed to each bulk, parallel or latency measurement.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Also write the JSON document to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Bulk,
    Parallel,
    Opens,
    Latency,
    Discovery,
}

/// Everything a run was asked to do, resolved from the flags and the mode.
#[derive(Serialize)]
pub struct Settings {
    pub quick: bool,
    pub in_process: bool,
    pub sections: Vec<Part>,
    pub transports: Vec<Kind>,
    pub bulk_bytes: u64,
    pub parallel: Vec<Shape>,
    pub repeat: usize,
    pub open_levels: Vec<usize>,
    pub open_batch: usize,
    pub dials_in_flight: usize,
    pub level_budget_secs: u64,
    pub yamux_level_budget_secs: u64,
    pub pings: usize,
    pub discovery_runs: usize,
    pub timeout_secs: u64,
}

impl Settings {
    pub fn new(args: &Args) -> Self {
        let quick = args.quick;
        let max_open =
            if args.streams_10m { 10_000_000 } else { args.max_open.unwrap_or(pick(quick, 1_000_000, 10_000)) };
        let open_batch = args.open_batch.unwrap_or(pick(quick, 10_000, 1_000)).max(1);
        let parallel = if quick { [(100, MIB), (1_000, 100 * KIB)] } else { [(1_000, MIB), (10_000, 100 * KIB)] };
        Settings {
            quick,
            in_process: args.in_process,
            sections: if args.only.is_empty() { Part::value_variants().to_vec() } else { args.only.clone() },
            transports: if args.transports.is_empty() { Kind::ALL.to_vec() } else { args.transports.clone() },
            bulk_bytes: args.bulk_bytes.unwrap_or(pick(quick, 2 * GIB, 128 * MIB)),
            parallel: parallel.map(|(streams, bytes_per_stream)| Shape { streams, bytes_per_stream }).to_vec(),
            repeat: args.repeat.unwrap_or(pick(quick, 3, 1)).max(1),
            open_levels: levels(open_batch, max_open),
            open_batch,
            dials_in_flight: args.dials_in_flight.max(1),
            level_budget_secs: args.level_budget_secs.unwrap_or(pick(quick, 300, 30)),
            yamux_level_budget_secs: args.yamux_budget_secs.unwrap_or(pick(quick, 30, 5)),
            pings: args.pings.unwrap_or(pick(quick, 20_000, 2_000)).max(1),
            discovery_runs: pick(quick, 50, 10),
            timeout_secs: args.timeout_secs,
        }
    }

    pub fn runs(&self, part: Part) -> bool {
        self.sections.contains(&part)
    }

    /// The flags that make a child process run this opens section for one transport.
    pub fn opens_child_args(&self) -> Vec<String> {
        let max_open = self.open_levels.last().copied().unwrap_or(self.open_batch);
        [
            "--in-process".to_owned(),
            "--only".to_owned(),
            "opens".to_owned(),
            "--max-open".to_owned(),
            max_open.to_string(),
            "--open-batch".to_owned(),
            self.open_batch.to_string(),
            "--dials-in-flight".to_owned(),
            self.dials_in_flight.to_string(),
            "--level-budget-secs".to_owned(),
            self.level_budget_secs.to_string(),
            "--yamux-budget-secs".to_owned(),
            self.yamux_level_budget_secs.to_string(),
        ]
        .into()
    }

    /// How each figure of the sections run was obtained, printed under the table and kept
    /// in the JSON.
    pub fn methods(&self) -> Vec<String> {
        let runs = match self.repeat {
            1 => "one run".to_owned(),
            n => format!("median of {n} runs"),
        };
        let all = [
            (
                Part::Bulk,
                format!(
                    "bulk: one stream; {} written in 128 KiB chunks, then a half-close; timed from \
                     the first write until the reader sees the end of the stream; {runs}, each run on \
                     its own new link; both ends share one multi-thread runtime.",
                    fmt_size(self.bulk_bytes)
                ),
            ),
            (
                Part::Parallel,
                format!(
                    "parallel: all streams are opened first (untimed), then every one sends at \
                     once; timed until the last byte is read; {runs}. yamux, astranet and Go \
                     astranet carry all streams over one TCP connection; raw TCP uses a connection per stream, as \
                     many as the descriptor limit allows with both ends in this process (a capped \
                     count is noted on its cell)."
                ),
            ),
            (
                Part::Opens,
                format!(
                    "opens: streams are opened in batches of {} with up to {} dials in flight and \
                     kept open at both ends; at each level the next batch is timed. A stream \
                     counts once it is established at both ends (for yamux a byte each way, which \
                     carries its SYN and ACK). Memory per stream is the growth of the process RSS \
                     since before the first stream (both ends, and the handles the benchmark \
                     holds) divided by the open count{}. yamux gets {} s per level, astranet {} \
                     s. Raw TCP cannot hold these counts in one process and is not measured.",
                    fmt_count(self.open_batch),
                    self.dials_in_flight,
                    if self.in_process {
                        ", in the benchmark's own process"
                    } else {
                        ", in a fresh child process per transport"
                    },
                    self.yamux_level_budget_secs,
                    self.level_budget_secs
                ),
            ),
            (
                Part::Latency,
                format!(
                    "latency: a 64-byte message echoed on one stream, {} timed round trips after \
                     {} untimed; p50 and p99 {}. Each end runs on its own thread with a \
                     current-thread runtime, as two processes would: first on CPUs 0 and 1, then \
                     both on CPU 0. Threads are pinned because, left to the scheduler, the ends \
                     share a core in some runs and not in others, and the figure swings tenfold \
                     between runs.",
                    fmt_count(self.pings),
                    fmt_count(self.pings / 10),
                    match self.repeat {
                        1 => "from one run".to_owned(),
                        n => format!("each the median over {n} runs"),
                    }
                ),
            ),
            (
                Part::Discovery,
                format!(
                    "discovery: a router and two nodes joined to it; one binds a new name, the \
                     other dials it by name (waiting for the announcement through the router) \
                     until the stream is accepted; median of {} names.",
                    self.discovery_runs
                ),
            ),
        ];
        let mut methods: Vec<String> =
            all.into_iter().filter(|(part, _)| self.runs(*part)).map(|(_, text)| text).collect();
        if self.transports.contains(&Kind::GoOriginal) {
            methods.push(
                "Go astranet: the original Go package (../shared/peers/astranet-go) measured by \
                 astranet-bench/goastranet with the same workloads, both ends in one Go process \
                 of its own per measurement (GOMAXPROCS = CPUs), linked by one loopback TCP \
                 connection; a Go Dial returns before the stream exists, so a stream counts once \
                 a byte went each way; its opens get the yamux budget per level. Not measured \
                 for latency and discovery."
                    .to_owned(),
            );
        }
        methods
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
