//! The handle table: C holds tokens, never pointers to Rust objects.
//!
//! A token encodes (generation << 32) | (index + 1) of a slot in the process-wide
//! table. Closing a handle empties its slot and bumps the generation, so a second close,
//! a use after close (from any thread) or a token of the wrong kind is found out by a
//! lookup and answered with `ASTRANET_ERR_BAD_HANDLE`. Calls clone the object's `Arc`
//! out of the table, so an object closed by another thread stays alive until the calls
//! using it return (and they see it closed).
//!
//! Every call looks its handle up, from whatever thread: the table is split into
//! shards with a lock each (on its own cache line), so that calls on different
//! handles from different cores do not all take turns at one lock word. The shard is
//! the index modulo [`SHARDS`]; each thread inserts into the shards in turn.

use crate::error::{astranet_result, Failure};
use crate::listener::ListenerH;
use crate::node::NodeH;
use crate::stream::StreamH;
use parking_lot::RwLock;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub(crate) enum Obj {
    Node(Arc<NodeH>),
    Listener(Arc<ListenerH>),
    Stream(Arc<StreamH>),
    Chunk(Arc<bytes::Bytes>),
}

struct Slot {
    generation: u32,
    obj: Option<Obj>,
}

struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// One shard's lock, alone on its cache line (128 bytes: adjacent-line prefetch).
#[repr(align(128))]
struct Shard(RwLock<Table>);

const SHARDS: usize = 64;

static TABLE: [Shard; SHARDS] = [const { Shard(RwLock::new(Table { slots: Vec::new(), free: Vec::new() })) }; SHARDS];

/// Where each thread starts inserting: spread out, so that threads that open many
/// handles at once do not share a shard.
static FIRST_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static NEXT_SHARD: Cell<usize> = Cell::new(FIRST_SHARD.fetch_add(7, Ordering::Relaxed));
}

/// `(shard, index in the shard, generation)` of a token.
fn decode(token: usize) -> Option<(usize, usize, u32)> {
    let t = token as u64;
    let index = (t & 0xffff_ffff).checked_sub(1)? as usize;
    Some((index % SHARDS, index / SHARDS, (t >> 32) as u32))
}

fn encode(shard: usize, local: usize, generation: u32) -> usize {
    let index = (local * SHARDS + shard) as u64;
    ((generation as u64) << 32 | (index + 1)) as usize
}

pub(crate) fn insert(obj: Obj) -> usize {
    let shard = NEXT_SHARD.with(|next| {
        let shard = next.get() % SHARDS;
        next.set(shard + 1);
        shard
    });
    let mut t = TABLE[shard].0.write();
    // An index must fit the token's 32 bits (with room for the + 1).
    assert!((t.slots.len() + 1) * SHARDS < u32::MAX as usize || !t.free.is_empty(), "too many handles open");
    let local = match t.free.pop() {
        Some(i) => {
            t.slots[i as usize].obj = Some(obj);
            i as usize
        }
        None => {
            t.slots.push(Slot { generation: 1, obj: Some(obj) });
            t.slots.len() - 1
        }
    };
    encode(shard, local, t.slots[local].generation)
}

fn bad(kind: &str) -> Failure {
    Failure::new(
        astranet_result::ASTRANET_ERR_BAD_HANDLE,
        format!("not a live {kind} handle (closed or freed already, of another kind, or not from astranet)"),
    )
}

/// Looks a handle up; `f` picks the expected kind.
pub(crate) fn get<T>(token: usize, kind: &str, f: impl FnOnce(&Obj) -> Option<Arc<T>>) -> Result<Arc<T>, Failure> {
    if token == 0 {
        return Err(crate::error::null(&format!("the {kind} handle")));
    }
    let (shard, local, generation) = decode(token).ok_or_else(|| bad(kind))?;
    let t = TABLE[shard].0.read();
    match t.slots.get(local) {
        Some(Slot { generation: g, obj: Some(obj) }) if *g == generation => f(obj).ok_or_else(|| bad(kind)),
        _ => Err(bad(kind)),
    }
}

/// Removes a handle from the table if it is of the expected kind; returns its object.
pub(crate) fn remove<T>(token: usize, kind: &str, f: impl FnOnce(&Obj) -> Option<Arc<T>>) -> Result<Arc<T>, Failure> {
    if token == 0 {
        return Err(crate::error::null(&format!("the {kind} handle")));
    }
    let (shard, local, generation) = decode(token).ok_or_else(|| bad(kind))?;
    let mut t = TABLE[shard].0.write();
    let slot = match t.slots.get_mut(local) {
        Some(s) if s.generation == generation && s.obj.is_some() => s,
        _ => return Err(bad(kind)),
    };
    let obj = f(slot.obj.as_ref().expect("checked")).ok_or_else(|| bad(kind))?;
    slot.obj = None;
    slot.generation = slot.generation.wrapping_add(1).max(1);
    t.free.push(local as u32);
    drop(t);
    Ok(obj)
}

pub(crate) fn node(o: &Obj) -> Option<Arc<NodeH>> {
    match o {
        Obj::Node(n) => Some(n.clone()),
        _ => None,
    }
}

pub(crate) fn listener(o: &Obj) -> Option<Arc<ListenerH>> {
    match o {
        Obj::Listener(l) => Some(l.clone()),
        _ => None,
    }
}

pub(crate) fn chunk(o: &Obj) -> Option<Arc<bytes::Bytes>> {
    match o {
        Obj::Chunk(c) => Some(c.clone()),
        _ => None,
    }
}

pub(crate) fn stream(o: &Obj) -> Option<Arc<StreamH>> {
    match o {
        Obj::Stream(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_obj(n: usize) -> Obj {
        Obj::Chunk(Arc::new(bytes::Bytes::from(vec![0u8; n])))
    }

    /// Tokens from many threads spread over the shards, each names its own object, and
    /// a removed one (or one from another kind of lookup) is found out.
    #[test]
    fn tokens_name_their_object_across_shards_and_die_with_it() {
        let tokens: Vec<(usize, usize)> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    (0..100).map(|i| (insert(chunk_obj(t * 100 + i)), t * 100 + i)).collect::<Vec<_>>()
                })
            })
            .flat_map(|h| h.join().unwrap())
            .collect();
        let shards: std::collections::HashSet<usize> = tokens.iter().map(|&(t, _)| decode(t).unwrap().0).collect();
        assert!(shards.len() > 1, "one thread's handles go to several shards");
        for &(token, len) in &tokens {
            assert_eq!(get(token, "chunk", chunk).unwrap().len(), len);
            assert!(get(token, "stream", stream).is_err(), "another kind");
        }
        for &(token, len) in &tokens {
            assert_eq!(remove(token, "chunk", chunk).unwrap().len(), len);
            assert!(get(token, "chunk", chunk).is_err(), "used after removal");
            assert!(remove(token, "chunk", chunk).is_err(), "removed twice");
        }
        // A slot reused has a new generation: the old token stays dead.
        let (old, _) = tokens[0];
        let new = NEXT_SHARD.with(|n| {
            n.set(decode(old).unwrap().0);
            insert(chunk_obj(1))
        });
        assert_ne!(new, old);
        assert!(get(old, "chunk", chunk).is_err());
        remove(new, "chunk", chunk).unwrap();
        assert!(get(0, "chunk", chunk).is_err() && get(12345 << 32, "chunk", chunk).is_err());
    }
}
