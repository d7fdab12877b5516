package astranet

/*
#include <astranet.h>
*/
import "C"

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Attach runs a link over conn, any ordered, reliable byte pipe (a pair of io.Pipes,
// a serial line, a connection a program relays), as the original's Attach does: it
// returns once the link has ended, nil if it was established. It fails if the node
// is closed or the handshake does not complete within the node's dial timeout (and
// its handshake timeout, 10 s by default).
//
// When Attach returns, conn is closed if it is an io.Closer; Node.Close makes it
// return. A conn that is not an io.Closer may still be read by a goroutine, which
// ends when its Read returns.
//
// The library takes links as descriptors: two goroutines copy conn's bytes to and
// from one end of a socketpair whose other end the link runs over.
func (n *Node) Attach(conn io.ReadWriter) error {
	if err := n.start(); err != nil {
		return err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socketpair", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "astranet-attach")
	pipe, err := net.FileConn(ours) // a descriptor of its own, in the netpoller
	ours.Close()
	if err != nil {
		syscall.Close(fds[1])
		return err
	}
	a := &attachment{pipe: pipe.(*net.UnixConn), conn: conn}
	if !n.attached.add(a) {
		a.end()
		syscall.Close(fds[1])
		return errNodeClosed()
	}
	defer n.attached.remove(a)
	// Both ways from the start: the handshakes cross during the call below.
	linkEnded := make(chan struct{})
	go func() {
		_, _ = io.Copy(conn, a.pipe)
		close(linkEnded)
	}()
	go a.feed()
	var peer C.uint64_t
	var e *C.astranet_error
	ms := C.int32_t(clampMillis(n.cfg.dialTimeoutOrDefault()))
	// Blocks for the handshake, as Join does. The library owns fds[1] from here, and
	// closes it when the link ends: the copy above then reads end of file.
	err = callErr("attach", C.astranet_attach(n.h, C.int(fds[1]), ms, &peer, &e), e)
	if err == nil {
		<-linkEnded
	}
	a.end()
	return err
}

// attachment is the conn of an Attach call, and our end of its socketpair.
type attachment struct {
	pipe *net.UnixConn
	conn io.ReadWriter
	once sync.Once
}

// feed copies conn to the link. At conn's end the link reads end of file; once the
// link is gone (a write to it fails), conn is closed, so that a Write blocked in it
// returns.
func (a *attachment) feed() {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := a.conn.Read(buf)
		if n > 0 {
			if _, werr := a.pipe.Write(buf[:n]); werr != nil {
				a.end()
				return
			}
		}
		if rerr != nil {
			_ = a.pipe.CloseWrite()
			return
		}
	}
}

// end closes our end of the socketpair and conn, if it can be closed: the copies
// return.
func (a *attachment) end() {
	a.once.Do(func() {
		_ = a.pipe.Close()
		if c, ok := a.conn.(io.Closer); ok {
			_ = c.Close()
		}
	})
}

// attachments are a node's Attach calls in progress, which Node.Close ends.
type attachments struct {
	mu     sync.Mutex
	set    map[*attachment]struct{}
	closed bool
}

// add registers a; false once the node is closed.
func (as *attachments) add(a *attachment) bool {
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.closed {
		return false
	}
	if as.set == nil {
		as.set = make(map[*attachment]struct{})
	}
	as.set[a] = struct{}{}
	return true
}

func (as *attachments) remove(a *attachment) {
	as.mu.Lock()
	defer as.mu.Unlock()
	delete(as.set, a)
}

// closeAll ends every attachment, and refuses new ones.
func (as *attachments) closeAll() {
	as.mu.Lock()
	as.closed = true
	set := as.set
	as.set = nil
	as.mu.Unlock()
	for a := range set {
		a.end()
	}
}
