//! Service discovery: the time from `bind` on one node until a node two hops away
//! (through a router) has dialed the new name and the stream is accepted.

use std::io;
use std::time::{Duration, Instant};

use astranet::{Node, Role};

use crate::pair::{timed_out, Kind, Transport};
use crate::report::{Cell, Recorder, Unit};
use crate::section::Section;

pub struct Discovery {
    pub runs: usize,
    pub timeout: Duration,
}

impl Section for Discovery {
    const NAME: &'static str = "discovery";

    /// A property of astranet's mesh alone.
    fn applies(&self, kind: Kind) -> bool {
        kind == Kind::Astranet
    }

    async fn run<T: Transport>(&self, rec: &mut Recorder<'_>) -> io::Result<()> {
        let router = Node::builder().role(Role::Router).build();
        let at = router.listen("127.0.0.1:0").await.map_err(io::Error::other)?;
        let host = Node::new();
        // A server-role dialer never links to the host directly: two hops every time.
        let dialer = Node::builder().role(Role::Server).build();
        for node in [&host, &dialer] {
            node.join(at).await.map_err(io::Error::other)?;
        }
        let mut samples = Vec::with_capacity(self.runs);
        for run in 0..self.runs {
            let name = format!("discovery-{run}");
            let started = Instant::now();
            let listener = host.bind(&name).map_err(io::Error::other)?;
            let (dialed, accepted) = tokio::time::timeout(self.timeout, async {
                tokio::join!(dialer.dial_timeout(name.as_str(), self.timeout), listener.accept())
            })
            .await
            .map_err(|_| timed_out("dialing a new name"))?;
            dialed.map_err(io::Error::other)?;
            accepted.map_err(io::Error::other)?;
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
        rec.put("bind → dial by name, 2 hops away", Unit::Micros, Cell::median(samples));
        Ok(())
    }
}
