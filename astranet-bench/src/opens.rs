//! Stream opens per second with many streams already open, and the memory an idle open
//! stream costs. Every stream stays open (both ends held) until the section ends.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::timeout_at;

use crate::pair::{Kind, Pair, Transport};
use crate::report::{Cell, Recorder, Unit};
use crate::section::Section;
use crate::sys::{release_free_memory, rss_bytes};
use crate::units::{fmt_count, group_thousands};

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub struct Opens {
    /// Open-stream counts at which to measure, ascending.
    pub levels: Vec<usize>,
    /// Streams opened per timed batch (and per step while filling up to a level).
    pub batch: usize,
    pub in_flight: usize,
    /// Time allowed per level, filling included; yamux gets less, as its opens slow down
    /// with every stream already open.
    pub budget: Duration,
    pub yamux_budget: Duration,
}

fn opens_metric(level: usize) -> String {
    format!("opens/s with {} open", fmt_count(level))
}

fn memory_metric(level: usize) -> String {
    format!("memory per idle stream, {} open", fmt_count(level))
}

impl Section for Opens {
    const NAME: &'static str = "opens";

    /// Raw TCP cannot hold these counts in one process (two descriptors per connection).
    fn applies(&self, kind: Kind) -> bool {
        matches!(kind, Kind::Yamux | Kind::Astranet | Kind::Tls | Kind::GoOriginal)
    }

    /// The Go program opens and holds the streams in its own process, with the yamux
    /// budget per level (its opens slow down as streams accumulate, too).
    async fn run_go(&self, rec: &mut Recorder<'_>) -> io::Result<()> {
        let levels: Vec<String> = self.levels.iter().map(|l| l.to_string()).collect();
        let args = [
            "opens".to_owned(),
            levels.join(","),
            self.batch.to_string(),
            self.in_flight.to_string(),
            self.yamux_budget.as_secs().to_string(),
        ];
        let limit = self.yamux_budget * self.levels.len() as u32 + Duration::from_secs(60);
        let answer = crate::go_original::measure(&args, limit).await?;
        let results = answer["levels"].as_array().cloned().unwrap_or_default();
        for &level in &self.levels {
            let found = results.iter().find(|r| r["level"].as_u64() == Some(level as u64));
            let error = found.and_then(|r| r["error"].as_str()).map(str::to_owned);
            let cell = |key: &str| match found.and_then(|r| r[key].as_f64()) {
                Some(v) => Cell::value(v),
                None => Cell::missing(error.clone().unwrap_or_else(|| "not reached".to_owned())),
            };
            rec.put(memory_metric(level), Unit::BytesPerStream, cell("bytes_per_stream"));
            rec.put(opens_metric(level), Unit::OpensPerSec, cell("opens_per_sec"));
        }
        Ok(())
    }

    async fn run<T: Transport>(&self, rec: &mut Recorder<'_>) -> io::Result<()> {
        let budget = if T::KIND == Kind::Yamux { self.yamux_budget } else { self.budget };
        let most = self.levels.last().copied().unwrap_or(0) + self.batch;
        // Reserved up front so that growing never copies the handles; the pages of the
        // reservation count towards the RSS only as handles are stored.
        let mut held = Held { opened: Vec::with_capacity(most), accepted: Vec::with_capacity(most) };
        let pair = Pair::<T>::connect().await?;
        release_free_memory();
        let baseline = rss_bytes()?;

        for (i, &level) in self.levels.iter().enumerate() {
            let deadline = Instant::now() + budget;
            let started = Instant::now();
            let stop = async {
                self.open_until(&pair, &mut held, level, deadline, budget).await?;
                let kind = T::KIND.label();
                eprintln!("[opens] {kind}: {} open after {:.1} s", fmt_count(level), started.elapsed().as_secs_f64());
                let grown = rss_bytes().map_err(|e| e.to_string())?.saturating_sub(baseline);
                rec.put(memory_metric(level), Unit::BytesPerStream, Cell::value(grown as f64 / level as f64));

                let timed = Instant::now();
                self.open_until(&pair, &mut held, level + self.batch, deadline, budget).await?;
                let rate = self.batch as f64 / timed.elapsed().as_secs_f64();
                rec.put(opens_metric(level), Unit::OpensPerSec, Cell::value(rate));
                Ok::<_, String>(())
            }
            .await;

            if let Err(why) = stop {
                for &level in &self.levels[i..] {
                    let rows = [(memory_metric(level), Unit::BytesPerStream), (opens_metric(level), Unit::OpensPerSec)];
                    for (metric, unit) in rows {
                        if !rec.has(&metric) {
                            rec.put(metric, unit, Cell::missing(why.clone()));
                        }
                    }
                }
                break;
            }
        }
        Ok(())
    }
}

/// Both ends of every stream opened so far.
struct Held<S> {
    opened: Vec<S>,
    accepted: Vec<S>,
}

impl Opens {
    /// Opens streams in batches until `target` are held, or says why it could not.
    async fn open_until<T: Transport>(
        &self,
        pair: &Arc<Pair<T>>,
        held: &mut Held<T::Stream>,
        target: usize,
        deadline: Instant,
        budget: Duration,
    ) -> Result<(), String> {
        let mut last_report = Instant::now();
        while held.opened.len() < target {
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                eprintln!("[opens] {}: {} open…", T::KIND.label(), group_thousands(held.opened.len() as f64, 0));
            }
            let count = (target - held.opened.len()).min(self.batch);
            match timeout_at(deadline.into(), pair.establish(count, self.in_flight)).await {
                Ok(Ok((opened, accepted))) => {
                    held.opened.extend(opened);
                    held.accepted.extend(accepted);
                }
                Ok(Err(e)) => return Err(format!("failed with {} open: {e}", held.opened.len())),
                Err(_) => return Err(reached(held.opened.len(), budget)),
            }
        }
        Ok(())
    }
}

fn reached(open: usize, budget: Duration) -> String {
    format!("reached {} open streams within the {} s budget", group_thousands(open as f64, 0), budget.as_secs())
}
