//! astranet-bench: measures astranet against raw TCP (the physical limit), the `yamux`
//! crate and the original Go astranet package in one run on loopback, and prints absolute figures and ratios as a table and
//! as JSON. Progress goes to stderr; the table and the JSON document to stdout.

mod astra;
mod child;
mod discovery;
mod go_original;
mod latency;
mod opens;
mod pair;
mod report;
mod section;
mod settings;
mod sys;
mod tcp;
mod throughput;
mod units;
mod yamux_peer;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

use crate::discovery::Discovery;
use crate::latency::{Latency, Placement};
use crate::opens::Opens;
use crate::pair::Kind;
use crate::report::Report;
use crate::section::{across, Section};
use crate::settings::{Args, Part, Settings};
use crate::throughput::{Bulk, Parallel};

/// How long the CPUs are watched at start for work of other processes.
const BUSY_SAMPLE: Duration = Duration::from_millis(250);

/// Time a child process gets beyond its budgets, to start and to tear its streams down.
const CHILD_MARGIN: Duration = Duration::from_secs(120);

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
    let clock = sys::CpuClock::now();
    std::thread::sleep(BUSY_SAMPLE);
    let others = clock.and_then(|c| c.others_busy_since());
    if let Some(busy) = others.filter(|b| *b > section::BUSY_WARNING) {
        eprintln!("warning: other processes keep {:.0}% of the CPUs busy; expect noisy figures", busy * 100.0);
    }
    let kinds = &settings.transports;
    let timeout = Duration::from_secs(settings.timeout_secs);
    let mut report = Report::default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    if settings.runs(Part::Bulk) {
        let bulk = Bulk { bytes: settings.bulk_bytes, repeat: settings.repeat, timeout };
        runtime.block_on(across(&bulk, kinds, &mut report));
    }
    if settings.runs(Part::Parallel) {
        let parallel = Parallel {
            shapes: settings.parallel.clone(),
            repeat: settings.repeat,
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
        if settings.in_process {
            runtime.block_on(across(&opens, kinds, &mut report));
        } else {
            let args = settings.opens_child_args();
            for &kind in kinds.iter().filter(|k| opens.applies(**k)) {
                if kind == Kind::GoOriginal {
                    // A child process of its own already.
                    runtime.block_on(across(&opens, &[kind], &mut report));
                    continue;
                }
                let budget = if kind == Kind::Yamux { opens.yamux_budget } else { opens.budget };
                // Every level may use its whole budget; tearing down gets a margin.
                let limit = budget * opens.levels.len() as u32 + CHILD_MARGIN;
                child::run(Opens::NAME, kind, &args, limit, &mut report);
            }
        }
    }
    if settings.runs(Part::Latency) {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let placements = [Placement::TwoCpus, Placement::OneCpu];
        for placement in placements.into_iter().filter(|p| cpus >= 2 || *p == Placement::OneCpu) {
            let latency = Latency { pings: settings.pings, repeat: settings.repeat, placement, timeout };
            runtime.block_on(across(&latency, kinds, &mut report));
        }
    }
    if settings.runs(Part::Discovery) {
        let discovery = Discovery { runs: settings.discovery_runs, timeout };
        runtime.block_on(across(&discovery, kinds, &mut report));
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
            "busy_with_other_work_at_start": others,
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
