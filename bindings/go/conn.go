package astranet

/*
#include <astranet.h>

// Frees the chunk WriteTo wrote out (if any), then reads the next: one cgo call
// instead of two between a chunk's write and the next.
static astranet_result an_read_chunk_after(astranet_stream *s, astranet_chunk *done, size_t max,
                                           astranet_chunk **chunk, const uint8_t **data, size_t *len,
                                           astranet_error **err) {
	if (done != NULL)
		astranet_chunk_free(done);
	return astranet_stream_read_chunk(s, max, chunk, data, len, err);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Addr is a virtual address: a node's host id and a port on it.
type Addr struct {
	Host uint64
	Port uint32
}

// Network is "astranet".
func (a Addr) Network() string { return "astranet" }

// String is "<16 hex digits>:<port>", the form Dial takes.
func (a Addr) String() string { return fmt.Sprintf("%016x:%d", a.Host, a.Port) }

func addrOf(a C.astranet_addr) Addr { return Addr{Host: uint64(a.host), Port: uint32(a.port)} }

// Conn is a stream: a net.Conn. Deadlines, CloseWrite (a half-close, as
// *net.TCPConn's) and concurrent use by one reader and one writer work as with TCP;
// io.EOF ends a read once the peer closed or half-closed.
type Conn struct {
	node          *Node
	h             *C.astranet_stream
	id            uintptr
	w             *waiter
	local, remote Addr
	rmu, wmu      sync.Mutex // one reader, one writer at a time (the library's rule)
	rdl, wdl      deadline
	closed        atomic.Bool
	handleMu      sync.Mutex // Close, Abort and ToSocket give the handle back once
}

func newConn(n *Node, h *C.astranet_stream, id uintptr, w *waiter, local, remote C.astranet_addr) *Conn {
	c := &Conn{node: n, h: h, id: id, w: w, local: addrOf(local), remote: addrOf(remote)}
	// A stream nobody closed is closed when collected (gracefully: what was written
	// is still delivered).
	runtime.SetFinalizer(c, (*Conn).Close)
	return c
}

func (c *Conn) opErr(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: "astranet", Source: c.local, Addr: c.remote, Err: err}
}

func (c *Conn) closedErr(op string) error { return c.opErr(op, net.ErrClosed) }

// Read reads what has arrived, waiting (in Go, not in the library) until something
// has, the read deadline passes, or the stream is closed.
func (c *Conn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(b) == 0 {
		return 0, nil
	}
	if err := c.passedErr("read", &c.rdl); err != nil {
		return 0, err
	}
	for {
		if c.closed.Load() {
			return 0, c.closedErr("read")
		}
		var n C.size_t
		var e *C.astranet_error
		r := C.astranet_stream_read(c.h, (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b)), &n, &e)
		switch {
		case r == C.ASTRANET_OK && n == 0:
			return 0, io.EOF
		case r == C.ASTRANET_OK:
			return int(n), nil
		case r == codeAgain:
			if err := c.node.wait(c.w.read, &c.rdl); err != nil {
				return 0, c.opErr("read", err)
			}
		default:
			return 0, c.opErr("read", c.streamErr(callErr("read", r, e)))
		}
	}
}

// chunkMax bounds the bytes WriteTo lends w at a time.
const chunkMax = 1 << 20

// WriteTo writes what arrives to w until the end of the stream, without copying it
// first: w.Write gets the bytes where the library read them. io.Copy(w, conn) uses
// it. As io.Writer requires, w must not keep the slice it is given. Deadlines and
// Close end it as they end Read.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	// The chunk last handed to w: freed by the next read, or here if w panics or the
	// loop ends.
	var done *C.astranet_chunk
	defer func() {
		if done != nil {
			C.astranet_chunk_free(done)
		}
	}()
	var total int64
	if err := c.passedErr("read", &c.rdl); err != nil {
		return 0, err
	}
	for {
		if c.closed.Load() {
			return total, c.closedErr("read")
		}
		var chunk *C.astranet_chunk
		var data *C.uint8_t
		var n C.size_t
		var e *C.astranet_error
		r := C.an_read_chunk_after(c.h, done, chunkMax, &chunk, &data, &n, &e)
		done = nil
		switch {
		case r == C.ASTRANET_OK && n == 0:
			return total, nil
		case r == C.ASTRANET_OK:
			done = chunk
			k, err := w.Write(unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n)))
			total += int64(k)
			if err == nil && k < int(n) {
				err = io.ErrShortWrite
			}
			if err != nil {
				return total, err
			}
		case r == codeAgain:
			if err := c.node.wait(c.w.read, &c.rdl); err != nil {
				return total, c.opErr("read", err)
			}
		default:
			return total, c.opErr("read", c.streamErr(callErr("read", r, e)))
		}
	}
}

// Write writes all of b, waiting while the peer's window is full.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	done := 0
	if err := c.passedErr("write", &c.wdl); err != nil {
		return 0, err
	}
	for done < len(b) {
		if c.closed.Load() {
			return done, c.closedErr("write")
		}
		var n C.size_t
		var e *C.astranet_error
		rest := b[done:]
		r := C.astranet_stream_write(c.h, (*C.uint8_t)(unsafe.Pointer(&rest[0])), C.size_t(len(rest)), &n, &e)
		switch r {
		case C.ASTRANET_OK:
			done += int(n)
		case codeAgain:
			ch, made := c.w.writeChan()
			if made {
				continue // the event of this AGAIN may have come before the channel
			}
			if err := c.node.wait(ch, &c.wdl); err != nil {
				return done, c.opErr("write", err)
			}
		default:
			return done, c.opErr("write", c.streamErr(callErr("write", r, e)))
		}
	}
	return done, nil
}

// passedErr fails a call made once its deadline passed (on an open stream): TCP does,
// even when the call could complete at once.
func (c *Conn) passedErr(op string, dl *deadline) error {
	if dl.passed() && !c.closed.Load() {
		return c.opErr(op, os.ErrDeadlineExceeded)
	}
	return nil
}

// streamErr: a handle closed by another goroutine reads as net.ErrClosed.
func (c *Conn) streamErr(err error) error {
	if c.closed.Load() || isCode(err, CodeBadHandle) || isCode(err, CodeClosed) {
		return net.ErrClosed
	}
	return err
}

// wait parks until ch is signalled or the deadline passes (os.ErrDeadlineExceeded).
// Everything that changes what a waiting call should do signals its channel: the
// node's readiness events, Close, a new deadline, the node closing. The caller then
// tries again and finds out which it was: one channel, no select over five. Once the
// node is closed nothing signals any more, so nothing waits.
func (n *Node) wait(ch chan struct{}, dl *deadline) error {
	if n.closed.Load() {
		return errNodeClosed()
	}
	at := dl.get()
	if at.IsZero() {
		<-ch
		return nil
	}
	left := time.Until(at)
	if left <= 0 {
		return os.ErrDeadlineExceeded
	}
	timer := time.NewTimer(left)
	defer timer.Stop()
	select {
	case <-ch:
		return nil
	case <-timer.C:
		return os.ErrDeadlineExceeded
	}
}

// CloseWrite half-closes: the peer reads io.EOF after what was written; this side
// can still read.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return c.closedErr("close")
	}
	var e *C.astranet_error
	return c.opErr("close", c.streamErr(callErr("shutdown", C.astranet_stream_shutdown(c.h, &e), e)))
}

// Close closes the stream gracefully (what was written is still delivered) and wakes
// a Read or Write blocked in another goroutine, which fail with net.ErrClosed. Safe
// from any goroutine; a second call returns an error wrapping net.ErrClosed.
func (c *Conn) Close() error {
	return c.release("close", func(h *C.astranet_stream) { C.astranet_stream_close(h) })
}

// Abort resets the stream: unsent and unread data is dropped, the peer's reads and
// writes fail (a TCP RST's counterpart).
func (c *Conn) Abort() error {
	return c.release("abort", func(h *C.astranet_stream) { C.astranet_stream_abort(h) })
}

// release gives the handle back to the library with `free`, once.
func (c *Conn) release(op string, free func(*C.astranet_stream)) error {
	c.handleMu.Lock()
	defer c.handleMu.Unlock()
	if c.closed.Load() {
		return c.closedErr(op)
	}
	free(c.h)
	c.forget()
	return nil
}

// forget marks the handle gone (under handleMu) and wakes a Read or Write waiting in
// another goroutine, which then sees closed.
func (c *Conn) forget() {
	c.closed.Store(true)
	runtime.SetFinalizer(c, nil)
	c.node.unregister(c.id, c.w)
	c.w.wakeRead()
	c.w.wakeWrite()
}

// ToSocket turns the stream into a real socket, the library's second tier: one end
// of a Unix socketpair whose other end the library pumps to and from the stream. For
// code that needs a descriptor (a child process's stdin, a poller of its own); it
// costs two descriptors, a pump task and two more copies per byte, so keep Conn for
// many streams. On success c is closed (its methods fail with net.ErrClosed) and the
// socket carries the stream: CloseWrite half-closes it, Close after reading everything
// closes it gracefully, with data unread resets it. It fails, leaving c as it was,
// while a Read or Write of c is in progress, and when no descriptors are left.
func (c *Conn) ToSocket() (*net.UnixConn, error) {
	// The library converts a stream only while no read or write of it runs.
	if !c.rmu.TryLock() {
		return nil, c.opErr("to socket", errBusy)
	}
	defer c.rmu.Unlock()
	if !c.wmu.TryLock() {
		return nil, c.opErr("to socket", errBusy)
	}
	defer c.wmu.Unlock()
	c.handleMu.Lock()
	defer c.handleMu.Unlock()
	if c.closed.Load() {
		return nil, c.closedErr("to socket")
	}
	var fd C.int32_t
	var e *C.astranet_error
	if err := callErr("to socket", C.astranet_stream_into_fd(c.h, &fd, &e), e); err != nil {
		return nil, c.opErr("to socket", c.streamErr(err))
	}
	c.forget() // the library took the handle
	f := os.NewFile(uintptr(fd), "astranet-stream")
	defer f.Close() // FileConn holds a duplicate
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, c.opErr("to socket", err)
	}
	return conn.(*net.UnixConn), nil
}

var errBusy = errors.New("a Read or Write of the stream is in progress")

// LocalAddr is this end's virtual address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the other end's virtual address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline bounds Read calls, also one already waiting; zero means none. As
// with TCP, a deadline already passed fails a Read even when bytes are there.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.closedErr("set")
	}
	c.rdl.set(t)
	c.w.wakeRead()
	return nil
}

// SetWriteDeadline bounds Write calls, also one already waiting; zero means none. As
// with TCP, a deadline already passed fails a Write even when the window has room.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.closedErr("set")
	}
	c.wdl.set(t)
	c.w.wakeWrite()
	return nil
}

// SetIdleTimeout resets the stream when no data moved on it either way for d, counted
// from now (0: never; the default unless WithStreamIdleTimeout set one). Read and Write
// then fail with an error whose Timeout() is true; the peer's fail as after Abort.
// Deadlines bound single calls; the idle timeout bounds a stream nobody uses.
func (c *Conn) SetIdleTimeout(d time.Duration) error {
	if c.closed.Load() {
		return c.closedErr("set idle timeout")
	}
	ms := C.int32_t(-1)
	if d > 0 {
		ms = C.int32_t(min(max(d/time.Millisecond, 1), math.MaxInt32))
	}
	var e *C.astranet_error
	r := C.astranet_stream_set_idle_timeout(c.h, ms, &e)
	return c.opErr("set idle timeout", c.streamErr(callErr("set idle timeout", r, e)))
}

// deadline is a time that a waiting call re-reads whenever it changes (whoever sets
// it wakes the waiting call).
type deadline struct {
	at atomic.Pointer[time.Time] // nil: none
}

func (d *deadline) get() time.Time {
	if at := d.at.Load(); at != nil {
		return *at
	}
	return time.Time{}
}

// passed reports whether the deadline is set and has passed.
func (d *deadline) passed() bool {
	at := d.at.Load()
	return at != nil && !time.Now().Before(*at)
}

func (d *deadline) set(t time.Time) {
	if t.IsZero() {
		d.at.Store(nil)
	} else {
		d.at.Store(&t)
	}
}

var _ net.Conn = (*Conn)(nil)
