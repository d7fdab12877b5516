package astranet

import (
	"sync"
	"sync/atomic"
)

// waiter is what the goroutines blocked on a stream or listener wait on: a channel per
// direction, signalled without blocking by the node's poller and by whatever changes
// what a waiting call should do (Close, a new deadline, the node closing). The write
// channel is made when a write first has to wait, which most streams never do.
type waiter struct {
	read  chan struct{}
	write atomic.Pointer[chan struct{}]
}

func newWaiter() *waiter { return &waiter{read: make(chan struct{}, 1)} }

// writeChan returns the write channel, and whether this call made it: then an event
// reported before it existed was dropped, and the caller tries again before waiting.
func (w *waiter) writeChan() (chan struct{}, bool) {
	if p := w.write.Load(); p != nil {
		return *p, false
	}
	ch := make(chan struct{}, 1)
	if w.write.CompareAndSwap(nil, &ch) {
		return ch, true
	}
	return *w.write.Load(), false
}

func (w *waiter) wakeRead() { notify(w.read) }

func (w *waiter) wakeWrite() {
	if p := w.write.Load(); p != nil {
		notify(*p)
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waiters maps the ids that events carry to waiters. An id is a slot index, which
// costs a stream 8 bytes (a sync.Map spent over 100). A closed stream's slot is
// reused: an event still in flight for it may then wake the next owner's goroutines
// for nothing, which every wait tolerates (it tries its call again).
type waiters struct {
	mu    sync.Mutex
	slots []*waiter
	free  []uintptr
}

// add registers w; ids start at 1.
func (ws *waiters) add(w *waiter) uintptr {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if k := len(ws.free); k > 0 {
		id := ws.free[k-1]
		ws.free = ws.free[:k-1]
		ws.slots[id-1] = w
		return id
	}
	ws.slots = append(ws.slots, w)
	return uintptr(len(ws.slots))
}

// remove withdraws w, registered as id (once its slot is someone else's, nothing).
func (ws *waiters) remove(id uintptr, w *waiter) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if id == 0 || int(id) > len(ws.slots) || ws.slots[id-1] != w {
		return
	}
	ws.slots[id-1] = nil
	ws.free = append(ws.free, id)
}

// lookup sets out[i] to the waiter of ids[i] (nil if none), under one lock.
func (ws *waiters) lookup(ids []uintptr, out []*waiter) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for i, id := range ids {
		out[i] = nil
		if id != 0 && int(id) <= len(ws.slots) {
			out[i] = ws.slots[id-1]
		}
	}
}

// all returns every registered waiter.
func (ws *waiters) all() []*waiter {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	out := make([]*waiter, 0, len(ws.slots)-len(ws.free))
	for _, w := range ws.slots {
		if w != nil {
			out = append(out, w)
		}
	}
	return out
}
