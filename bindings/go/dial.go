package astranet

/*
#include <stdint.h>
#include <astranet.h>
static astranet_result an_dial_start2(astranet_node *n, const char *target, const char *key, int32_t ms,
                                      uintptr_t id, astranet_stream **out, astranet_error **err) {
	return astranet_dial_start(n, target, key, ms, (void *)id, out, err);
}
// The stream's addresses in one cgo call (which costs more than the library's work):
// the local one's result, the peer's left as it was if unknown.
static astranet_result an_stream_addrs(astranet_stream *s, astranet_addr *local, astranet_addr *peer,
                                       astranet_error **err) {
	astranet_result r = astranet_stream_local_addr(s, local, err);
	if (r == ASTRANET_OK)
		astranet_stream_peer_addr(s, peer, NULL);
	return r;
}
*/
import "C"

import (
	"context"
	"net"
	"strings"
	"time"
)

// Dial opens a stream, as the original's Dial(network, address):
//   - address "name" or "name:port": an instance of the service (the node's
//     environment appended), picked at random; "<16 hex digits>:<port>": that address;
//   - network "registry://…": the instance is picked by consistent hashing on the
//     network string (every node maps it to the same instance, except a node that
//     hosts one: a node does not dial its own services);
//   - network "vport2registry": address is "name:key", hashed on key.
//
// Any other network is ignored. It waits up to the node's dial timeout (also for a
// name nobody announced yet), and returns once the listener accepted the stream.
func (n *Node) Dial(network, address string) (net.Conn, error) {
	return n.DialContext(context.Background(), network, address)
}

// DialTimeout is Dial with its own timeout (0: the node's dial timeout).
func (n *Node) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return n.DialContext(ctx, network, address)
}

// DialContext is Dial bounded by ctx: its deadline is the dial's timeout, and
// cancelling it gives the dial up.
func (n *Node) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := n.DialConn(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialConn is DialContext returning the *Conn.
func (n *Node) DialConn(ctx context.Context, network, address string) (*Conn, error) {
	fail := func(err error) (*Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "astranet", Addr: targetAddr(address), Err: err}
	}
	if err := n.start(); err != nil {
		return fail(err)
	}
	target, key := goTarget(network, address)
	t := cstring(target)
	defer free(t)
	var k *C.char
	if key != "" {
		k = cstring(key)
		defer free(k)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(n.cfg.dialTimeoutOrDefault())
	}
	ms := C.int32_t(clampMillis(time.Until(deadline)))
	id, w := n.register()
	var h *C.astranet_stream
	var e *C.astranet_error
	if err := callErr("dial", C.an_dial_start2(n.h, t, k, ms, C.uintptr_t(id), &h, &e), e); err != nil {
		n.unregister(id, w)
		return fail(err)
	}
	done := ctx.Done()
	for {
		// The dial's end is an event with both bits (wakeRead suffices), and Close
		// wakes every registered waiter: one channel, and the context's if it has one.
		// No dial is answered before its DIAL's round trip: wait first, then ask (an
		// event that came meanwhile waits in the channel).
		if done == nil {
			<-w.read
		} else {
			select {
			case <-w.read:
			case <-done:
				// Closing the handle gives the dial up (the listener forgets it at once).
				C.astranet_stream_close(h)
				n.unregister(id, w)
				return fail(ctx.Err())
			}
		}
		// The local address is known once the dial is answered.
		var local, peer C.astranet_addr
		r := C.an_stream_addrs(h, &local, &peer, &e)
		if r == C.ASTRANET_OK {
			return newConn(n, h, id, w, local, peer), nil
		}
		// Close wakes every waiter once, after marking the node closed: a dial it woke
		// that is still unanswered (its name never announced, say) must not wait again.
		if r == codeAgain && !n.closed.Load() {
			continue
		}
		err := errNodeClosed()
		if r != codeAgain {
			err = callErr("dial", r, e)
			// The library gives up at the deadline too (its timeout, rounded up), maybe
			// before the context's timer has run: whichever of the two comes first, a
			// dial that ran out of time fails as one, also when it waited for a name
			// nobody announced.
			if !time.Now().Before(deadline) && !isCode(err, CodeTimedOut) {
				err = &dialTimeout{err}
			}
		}
		C.astranet_stream_close(h)
		n.unregister(id, w)
		return fail(err)
	}
}

// dialTimeout is a dial failure that came at the dial's deadline: a timeout
// (errors.Is(err, context.DeadlineExceeded) holds, as for a context that expired
// first) that keeps the library's account of it.
type dialTimeout struct{ err error }

func (e *dialTimeout) Error() string   { return e.err.Error() }
func (e *dialTimeout) Unwrap() error   { return e.err }
func (e *dialTimeout) Timeout() bool   { return true }
func (e *dialTimeout) Temporary() bool { return false }

func (e *dialTimeout) Is(target error) bool { return target == context.DeadlineExceeded }

// HttpDial is the original's dialer for http.Transport: "name:80" dials the service
// "name", "name:8080" the service "name:8080" (a name with its port).
func (n *Node) HttpDial(network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if port != "80" {
		host = net.JoinHostPort(host, port)
	}
	return n.Dial(network, host)
}

// goTarget maps the original's (network, address) to the library's target and key.
func goTarget(network, address string) (string, string) {
	if strings.HasPrefix(network, "registry://") {
		return address, network
	}
	if network == "vport2registry" {
		if name, key, ok := cutLast(address, ':'); ok {
			return name, key
		}
	}
	return address, ""
}

func cutLast(s string, sep byte) (string, string, bool) {
	if i := strings.LastIndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// targetAddr is what an error names as the dialed address.
type targetAddr string

func (a targetAddr) Network() string { return "astranet" }
func (a targetAddr) String() string  { return string(a) }
