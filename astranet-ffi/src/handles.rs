//! The handle table: C holds tokens, never pointers to Rust objects.
//!
//! A token encodes (generation << 32) | (index + 1) of a slot in one process-wide
//! table. Closing a handle empties its slot and bumps the generation, so a second close,
//! a use after close (from any thread) or a token of the wrong kind is found out by a
//! lookup and answered with `ASTRANET_ERR_BAD_HANDLE`. Calls clone the object's `Arc`
//! out of the table, so an object closed by another thread stays alive until the calls
//! using it return (and they see it closed).

use crate::error::{astranet_result, Failure};
use crate::listener::ListenerH;
use crate::node::NodeH;
use crate::stream::StreamH;
use parking_lot::RwLock;
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

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

static TABLE: RwLock<Table> = RwLock::new(Table { slots: Vec::new(), free: Vec::new() });

fn decode(token: usize) -> Option<(usize, u32)> {
    let t = token as u64;
    let index = (t & 0xffff_ffff).checked_sub(1)? as usize;
    Some((index, (t >> 32) as u32))
}

pub(crate) fn insert(obj: Obj) -> usize {
    let mut t = TABLE.write();
    let index = match t.free.pop() {
        Some(i) => {
            t.slots[i as usize].obj = Some(obj);
            i as usize
        }
        None => {
            t.slots.push(Slot { generation: 1, obj: Some(obj) });
            t.slots.len() - 1
        }
    };
    let generation = t.slots[index].generation;
    ((generation as u64) << 32 | (index as u64 + 1)) as usize
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
    let (index, generation) = decode(token).ok_or_else(|| bad(kind))?;
    let t = TABLE.read();
    match t.slots.get(index) {
        Some(Slot { generation: g, obj: Some(obj) }) if *g == generation => f(obj).ok_or_else(|| bad(kind)),
        _ => Err(bad(kind)),
    }
}

/// Removes a handle from the table if it is of the expected kind; returns its object.
pub(crate) fn remove<T>(token: usize, kind: &str, f: impl FnOnce(&Obj) -> Option<Arc<T>>) -> Result<Arc<T>, Failure> {
    if token == 0 {
        return Err(crate::error::null(&format!("the {kind} handle")));
    }
    let (index, generation) = decode(token).ok_or_else(|| bad(kind))?;
    let mut t = TABLE.write();
    let slot = match t.slots.get_mut(index) {
        Some(s) if s.generation == generation && s.obj.is_some() => s,
        _ => return Err(bad(kind)),
    };
    let obj = f(slot.obj.as_ref().expect("checked")).ok_or_else(|| bad(kind))?;
    slot.obj = None;
    slot.generation = slot.generation.wrapping_add(1).max(1);
    t.free.push(index as u32);
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
