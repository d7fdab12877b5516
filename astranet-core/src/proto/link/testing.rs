//! Two links wired back to back, for the unit tests of the link's parts.

use super::{Batch, Link, LinkConfig, Transmit};
use crate::addr::HostId;
use bytes::BytesMut;
use std::time::Instant;

/// Hands everything `from` has queued to `to`, written at `now`.
pub(super) fn pump(from: &mut Link, to: &mut Link, now: Instant) {
    let (mut batch, mut wakers) = (Batch::default(), Vec::new());
    if from.poll_transmit(&mut batch, &mut wakers) == Transmit::Write {
        let mut input = BytesMut::new();
        batch.parts().iter().for_each(|p| input.extend_from_slice(p));
        from.on_written(now, batch.len());
        to.handle_input(now, &mut input, &mut wakers).unwrap();
    }
}

/// Hosts 1 and 2, their handshakes exchanged at `now`.
pub(super) fn linked(cfg: LinkConfig, now: Instant) -> (Link, Link) {
    let (mut a, mut b) = (
        Link::new(HostId(1), cfg.clone(), String::new(), now, Default::default()),
        Link::new(HostId(2), cfg, String::new(), now, Default::default()),
    );
    pump(&mut a, &mut b, now);
    pump(&mut b, &mut a, now);
    (a, b)
}
