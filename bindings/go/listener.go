package astranet

/*
#include <stdint.h>
#include <astranet.h>
static astranet_result an_listener_set_id2(astranet_listener *l, uintptr_t id, astranet_error **err) {
	return astranet_listener_set_userdata(l, (void *)id, err);
}
// Accepts a stream, tags it with its waiter's id and reads its addresses: one cgo
// call instead of four.
static astranet_result an_accept2(astranet_listener *l, uintptr_t id, astranet_stream **out,
                                  astranet_addr *local, astranet_addr *peer, astranet_error **err) {
	astranet_result r = astranet_accept(l, out, err);
	if (r != ASTRANET_OK)
		return r;
	astranet_stream_set_userdata(*out, (void *)id, NULL);
	astranet_stream_local_addr(*out, local, NULL);
	astranet_stream_peer_addr(*out, peer, NULL);
	return r;
}
*/
import "C"

import (
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Listener is a bound virtual port (and service name): a net.Listener.
type Listener struct {
	node      *Node
	h         *C.astranet_listener
	id        uintptr
	w         *waiter
	addr      Addr
	name      string
	dl        deadline
	closed    atomic.Bool
	closeOnce sync.Once
}

// Bind binds a listener, as the original's Bind: "name" (a service name on an
// automatic port, announced to the mesh), "name:port", ":port", or "" for an automatic
// port. The node's environment is appended to names. network is ignored, as in the
// original.
func (n *Node) Bind(network, address string) (net.Listener, error) {
	return n.BindListener(address)
}

// BindListener is Bind returning the *Listener.
func (n *Node) BindListener(address string) (*Listener, error) {
	if err := n.start(); err != nil {
		return nil, err
	}
	a := cstring(address)
	defer free(a)
	var h *C.astranet_listener
	var e *C.astranet_error
	if err := callErr("bind", C.astranet_bind(n.h, a, &h, &e), e); err != nil {
		return nil, err
	}
	id, w := n.register()
	C.an_listener_set_id2(h, C.uintptr_t(id), nil)
	l := &Listener{node: n, h: h, id: id, w: w}
	var addr C.astranet_addr
	if C.astranet_listener_addr(h, &addr, nil) == C.ASTRANET_OK {
		l.addr = addrOf(addr)
	}
	if host, _, ok := cutLast(address, ':'); ok {
		l.name = host
	} else {
		l.name = address
	}
	runtime.SetFinalizer(l, (*Listener).Close)
	return l, nil
}

// Accept waits for the next stream dialed to the listener (in Go: no OS thread is held).
func (l *Listener) Accept() (net.Conn, error) { return l.AcceptConn() }

// AcceptConn is Accept returning the *Conn.
func (l *Listener) AcceptConn() (*Conn, error) {
	// The next stream's registration, made before it is accepted.
	id, w := l.node.register()
	accepted := false
	defer func() {
		if !accepted {
			l.node.unregister(id, w)
		}
	}()
	if l.dl.passed() && !l.closed.Load() {
		return nil, l.opErr(os.ErrDeadlineExceeded) // as TCP, even with a stream waiting
	}
	for {
		if l.closed.Load() {
			return nil, l.opErr(net.ErrClosed)
		}
		var h *C.astranet_stream
		var local, peer C.astranet_addr
		var e *C.astranet_error
		r := C.an_accept2(l.h, C.uintptr_t(id), &h, &local, &peer, &e)
		switch r {
		case C.ASTRANET_OK:
			accepted = true
			return newConn(l.node, h, id, w, local, peer), nil
		case codeAgain:
			if err := l.node.wait(l.w.read, &l.dl); err != nil {
				return nil, l.opErr(err)
			}
		default:
			err := callErr("accept", r, e)
			if l.closed.Load() || isCode(err, CodeBadHandle) {
				err = net.ErrClosed
			}
			return nil, l.opErr(err)
		}
	}
}

func (l *Listener) opErr(err error) error { return l.opErrAs("accept", err) }

func (l *Listener) opErrAs(op string, err error) error {
	return &net.OpError{Op: op, Net: "astranet", Addr: l.addr, Err: err}
}

// SetDeadline bounds Accept calls, also one already waiting; zero means none. A
// deadline already passed fails Accept even with a stream waiting, as with TCP.
func (l *Listener) SetDeadline(t time.Time) error {
	if l.closed.Load() {
		return l.opErrAs("set", net.ErrClosed)
	}
	l.dl.set(t)
	l.w.wakeRead()
	return nil
}

// Close unbinds the port and withdraws the name; a blocked Accept fails with
// net.ErrClosed. Streams accepted earlier go on. Safe from any goroutine.
func (l *Listener) Close() error {
	first := false
	l.closeOnce.Do(func() {
		first = true
		l.closed.Store(true)
		runtime.SetFinalizer(l, nil)
		C.astranet_listener_close(l.h)
		l.node.unregister(l.id, l.w)
		l.w.wakeRead() // a waiting Accept wakes and sees closed
	})
	if !first {
		return l.opErrAs("close", net.ErrClosed)
	}
	return nil
}

// Addr is the bound virtual address.
func (l *Listener) Addr() net.Addr { return l.addr }

var _ net.Listener = (*Listener)(nil)
