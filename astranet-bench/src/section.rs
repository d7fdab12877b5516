//! Runs one benchmark section on each transport in turn.

use std::future::Future;
use std::io;
use std::time::Duration;

use crate::astra::{Astranet, AstranetTls, Relayed};
use crate::pair::{Kind, Transport};
use crate::report::{Recorder, Report};
use crate::tcp::Tcp;
use crate::yamux_peer::Yamux;

/// Pause after a transport is torn down, so the closing of its streams does not run
/// during the next transport's measurement.
const SETTLE: Duration = Duration::from_millis(300);

/// The share of the CPUs other processes may use during a measurement before its figures
/// are flagged as disturbed.
pub const BUSY_WARNING: f64 = 0.05;

pub trait Section {
    const NAME: &'static str;

    /// Whether the section measures `kind` (the original Go package only where the
    /// section says how, see [`Section::run_go`]).
    fn applies(&self, kind: Kind) -> bool {
        kind != Kind::GoOriginal
    }

    /// Measures transport `T`, which the section sets up and tears down itself.
    fn run<T: Transport>(&self, rec: &mut Recorder<'_>) -> impl Future<Output = io::Result<()>>;

    /// Measures the original Go package with the same workload, in its own process (see
    /// [`crate::go_original`]).
    fn run_go(&self, _rec: &mut Recorder<'_>) -> impl Future<Output = io::Result<()>> {
        async { Ok(()) }
    }
}

pub async fn across<S: Section>(section: &S, kinds: &[Kind], report: &mut Report) {
    for &kind in kinds.iter().filter(|k| section.applies(**k)) {
        let mut rec = report.recorder(S::NAME, kind);
        let clock = crate::sys::CpuClock::now();
        let result = match kind {
            Kind::Tcp => section.run::<Tcp>(&mut rec).await,
            Kind::Yamux => section.run::<Yamux>(&mut rec).await,
            Kind::Astranet => section.run::<Astranet>(&mut rec).await,
            Kind::Relayed => section.run::<Relayed>(&mut rec).await,
            Kind::Tls => section.run::<AstranetTls>(&mut rec).await,
            Kind::GoOriginal => section.run_go(&mut rec).await,
        };
        if let Err(e) = result {
            rec.error(e);
        }
        let others = clock.and_then(|c| c.others_busy_since());
        if let Some(busy) = others.filter(|b| *b > BUSY_WARNING) {
            rec.warn(format!("other processes kept {:.0}% of the CPUs busy during the measurement", busy * 100.0));
        }
        crate::sys::release_free_memory();
        tokio::time::sleep(SETTLE).await;
    }
}
