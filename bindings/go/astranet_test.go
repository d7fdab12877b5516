package astranet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pair returns two nodes linked over loopback TCP (server listens, client joins).
func pair(t *testing.T, server, client *Node) (*Node, *Node) {
	t.Helper()
	addr, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.JoinContext(ctx, "tcp", addr.String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}

// connected returns a listener of server and a stream from client accepted on it (both
// ends), closed when the test ends.
func connected(t *testing.T, server, client *Node) (l net.Listener, c, peer net.Conn) {
	t.Helper()
	l, err := server.Bind("", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		s, _ := l.Accept()
		accepted <- s
	}()
	if c, err = client.Dial("", l.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if peer = <-accepted; peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { peer.Close() })
	return l, c, peer
}

func echoServer(t *testing.T, l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

func TestEcho(t *testing.T) {
	server, client := pair(t, New(), New())
	l, err := server.Bind("", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echoServer(t, l)
	c, err := client.Dial("", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != l.Addr().String() {
		t.Fatalf("remote %v, listener %v", c.RemoteAddr(), l.Addr())
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.(*Conn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// Both ends know both addresses, mirrored, and still after Close (as a TCPConn does).
func TestAddresses(t *testing.T) {
	server, client := pair(t, New(), New())
	l, err := server.Bind("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		s, _ := l.Accept()
		accepted <- s
	}()
	c, err := client.Dial("", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	c.Close()
	s.Close()
	if c.LocalAddr().(Addr).Host != client.HostID() || s.LocalAddr().String() != l.Addr().String() {
		t.Fatalf("local addresses %v, %v (client host %x, listener %v)", c.LocalAddr(), s.LocalAddr(), client.HostID(), l.Addr())
	}
	if c.LocalAddr().String() != s.RemoteAddr().String() || c.RemoteAddr().String() != s.LocalAddr().String() {
		t.Fatalf("dialer %v -> %v, acceptor %v <- %v", c.LocalAddr(), c.RemoteAddr(), s.LocalAddr(), s.RemoteAddr())
	}
}

func Test64MiBChecksummed(t *testing.T) {
	server, client := pair(t, New(), New())
	l, _ := server.Bind("", "")
	defer l.Close()
	const total = 64 << 20
	sum := make(chan [32]byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		h := sha256.New()
		n, _ := io.Copy(h, c)
		if n != total {
			t.Errorf("received %d bytes", n)
		}
		var s [32]byte
		copy(s[:], h.Sum(nil))
		sum <- s
	}()
	c, err := client.Dial("", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for i := 0; i < total/len(buf); i++ {
		for j := range buf {
			buf[j] = byte(i*7 + j)
		}
		h.Write(buf)
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	var want [32]byte
	copy(want[:], h.Sum(nil))
	select {
	case got := <-sum:
		if got != want {
			t.Fatal("checksum differs")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("timed out")
	}
}

// failingWriter takes n bytes per Write, then fails.
type failingWriter struct {
	n   int
	err error
}

func (w failingWriter) Write(b []byte) (int, error) { return min(w.n, len(b)), w.err }

// TestWriteTo: io.Copy from a Conn lends the writer the library's bytes (64 MiB
// above goes that way too); deadlines, Close and the writer's errors end it.
func TestWriteTo(t *testing.T) {
	server, client := pair(t, New(), New())
	l, _ := server.Bind("", "")
	defer l.Close()
	peers := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			peers <- c
		}
	}()
	dial := func() (*Conn, net.Conn) {
		c, err := client.Dial("", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c.(*Conn), <-peers
	}
	var _ io.WriterTo = (*Conn)(nil)

	// Everything until the end of the stream, in order.
	c, peer := dial()
	go func() {
		peer.Write([]byte("lent, "))
		peer.Write([]byte("not copied"))
		peer.Close()
	}()
	var got bytes.Buffer
	if n, err := io.Copy(&got, c); err != nil || n != 16 || got.String() != "lent, not copied" {
		t.Fatalf("copied %d bytes %q: %v", n, got.String(), err)
	}
	c.Close()

	// A read deadline ends it as a timeout.
	c, peer = dial()
	defer peer.Close()
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := c.WriteTo(io.Discard); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	// Close from another goroutine ends it.
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := c.WriteTo(io.Discard); done <- err }()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WriteTo still blocked after Close")
	}

	// The writer's error, and a short write, end it with what was written.
	c, peer = dial()
	defer peer.Close()
	defer c.Close()
	peer.Write([]byte("abcdef"))
	boom := errors.New("boom")
	if n, err := c.WriteTo(failingWriter{n: 2, err: boom}); !errors.Is(err, boom) || n != 2 {
		t.Fatalf("failing writer: %d, %v", n, err)
	}
	peer.Write([]byte("ghij"))
	if n, err := c.WriteTo(failingWriter{n: 1}); !errors.Is(err, io.ErrShortWrite) || n != 1 {
		t.Fatalf("short writer: %d, %v", n, err)
	}
}

func Test10000ConcurrentStreams(t *testing.T) {
	server, client := pair(t, New(), New())
	l, _ := server.Bind("", "")
	defer l.Close()
	echoServer(t, l)
	const n = 10000
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range conns {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := client.Dial("", l.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// All open at once; each echoes its own message.
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			msg := []byte(fmt.Sprintf("stream %d", i))
			c.Write(msg)
			got := make([]byte, len(msg))
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				t.Errorf("stream %d: %q %v", i, got, err)
			}
			c.Close()
		}(i, c)
	}
	wg.Wait()
}

func TestDeadlines(t *testing.T) {
	server, client := pair(t, New(), New())
	_, c, _ := connected(t, server, client)

	// A read deadline fires on time, as a timeout.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	started := time.Now()
	_, err := c.Read(make([]byte, 10))
	took := time.Since(started)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v", err)
	}
	if took < 150*time.Millisecond || took > 2*time.Second {
		t.Fatalf("read deadline fired after %v", took)
	}
	// Moving the deadline wakes a blocked Read.
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 10)); done <- err }()
	time.Sleep(100 * time.Millisecond)
	c.SetReadDeadline(time.Now())
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("moved deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})

	// A write deadline fires while the peer does not read (its window is full).
	c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	started = time.Now()
	_, err = c.Write(make([]byte, 64<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v", err)
	}
	if took := time.Since(started); took > 3*time.Second {
		t.Fatalf("write deadline fired after %v", took)
	}
	// Moving the deadline wakes a blocked Write.
	c.SetWriteDeadline(time.Time{})
	go func() { _, err := c.Write(make([]byte, 1<<20)); done <- err }()
	time.Sleep(100 * time.Millisecond)
	c.SetWriteDeadline(time.Now())
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("moved write deadline: %v", err)
	}
}

// As with TCP, a deadline already passed fails the call even when it could complete
// at once: a Read with bytes waiting, a Write with window, an Accept with a dial queued.
func TestPassedDeadlines(t *testing.T) {
	server, client := pair(t, New(), New())
	l, c, peer := connected(t, server, client)
	peer.Write([]byte("ab"))
	one := make([]byte, 1)
	if _, err := io.ReadFull(c, one); err != nil { // "b" is there now
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if n, err := c.Read(one); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %d, %v", n, err)
	}
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if n, err := c.Write(one); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past its deadline: %d, %v", n, err)
	}
	c.SetDeadline(time.Time{})
	if n, err := c.Read(one); n != 1 || err != nil || one[0] != 'b' {
		t.Fatalf("read without a deadline: %d %q, %v", n, one, err)
	}

	// A dial queued in the backlog, with Accept's deadline passed.
	dialed := make(chan error, 1)
	go func() {
		c, err := client.DialTimeout("", l.Addr().String(), 5*time.Second)
		if err == nil {
			defer c.Close()
			_, err = c.Read(one) // ends when the listener closes
			if err == io.EOF {
				err = nil
			}
		}
		dialed <- err
	}()
	time.Sleep(100 * time.Millisecond)
	l.(*Listener).SetDeadline(time.Now().Add(-time.Second))
	if _, err := l.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("accept past its deadline: %v", err)
	}
	l.(*Listener).SetDeadline(time.Time{})
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := <-dialed; err != nil {
		t.Fatalf("the dial accepted later: %v", err)
	}
}

// Setting a deadline on a closed stream or listener fails as TCP's do, and so does
// closing a listener twice.
func TestClosedErrorsNameTheirOperation(t *testing.T) {
	server, client := pair(t, New(), New())
	l, c, _ := connected(t, server, client)
	c.Close()
	l.Close()
	check := func(what, op string, err error) {
		t.Helper()
		var oe *net.OpError
		if !errors.Is(err, net.ErrClosed) || !errors.As(err, &oe) || oe.Op != op {
			t.Fatalf("%s: %v (want a %q error wrapping net.ErrClosed)", what, err, op)
		}
	}
	check("stream SetDeadline", "set", c.SetDeadline(time.Now()))
	check("stream SetReadDeadline", "set", c.SetReadDeadline(time.Now()))
	check("stream SetWriteDeadline", "set", c.SetWriteDeadline(time.Now()))
	check("listener SetDeadline", "set", l.(*Listener).SetDeadline(time.Now()))
	check("listener Close", "close", l.Close())
	check("listener Accept", "accept", func() error { _, err := l.Accept(); return err }())
}

// A dial that runs out of time fails as a timeout, whether it waited for an answer or
// for a name to be announced, and whichever timer (the library's, the context's)
// fires first.
func TestDialTimeoutsAreTimeouts(t *testing.T) {
	_, client := pair(t, New(), New(WithDialTimeout(25*time.Millisecond)))
	check := func(what string, err error) {
		t.Helper()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), `no such service "nobody-serves-this"`) &&
				!strings.Contains(err.Error(), "deadline exceeded") {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for i := 0; i < 30; i++ {
		timeout := time.Duration(20+i%7) * time.Millisecond
		_, err := client.DialTimeout("", "nobody-serves-this", timeout)
		check(fmt.Sprintf("dial %d (%v)", i, timeout), err)
	}
	// Without a timeout of its own: the node's.
	for i := 0; i < 5; i++ {
		_, err := client.Dial("", "nobody-serves-this")
		check(fmt.Sprintf("dial %d with the node's timeout", i), err)
	}
}

// A closed stream's slot goes to the next one; what still refers to the old one
// (a late remove, a late event's id) cannot touch the new owner's registration.
func TestWaiterSlotsAreReused(t *testing.T) {
	var ws waiters
	a, b := newWaiter(), newWaiter()
	ida := ws.add(a)
	ws.remove(ida, a)
	idb := ws.add(b)
	if idb != ida {
		t.Fatalf("slot %d not reused (got %d)", ida, idb)
	}
	ws.remove(ida, a)
	out := make([]*waiter, 3)
	ws.lookup([]uintptr{idb, 0, 99}, out)
	if out[0] != b || out[1] != nil || out[2] != nil {
		t.Fatalf("lookup: %v", out)
	}
	if all := ws.all(); len(all) != 1 || all[0] != b {
		t.Fatalf("all: %v", all)
	}
	// The write channel is made once, by whoever first needs it.
	if _, made := b.writeChan(); !made {
		t.Fatal("first writeChan did not make the channel")
	}
	if _, made := b.writeChan(); made {
		t.Fatal("second writeChan made another channel")
	}
}

func TestIdleTimeout(t *testing.T) {
	server, client := pair(t, New(WithStreamIdleTimeout(200*time.Millisecond)), New())
	l, _ := server.Bind("", "")
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() (*Conn, *Conn) {
		c, err := client.Dial("", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c.(*Conn), (<-accepted).(*Conn)
	}

	// The server's default resets the first stream; the client's read says so.
	c, peer := dial()
	defer c.Close()
	defer peer.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	started := time.Now()
	if _, err := c.Read(make([]byte, 10)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a stream reset by the peer's idle timeout: %v", err)
	}
	if took := time.Since(started); took > 2*time.Second {
		t.Fatalf("reset after %v", took)
	}
	var ne net.Error
	if _, err := peer.Read(make([]byte, 10)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("the side that timed out: %v", err)
	}

	// Turned off on the accepted side, the second one outlives it.
	c2, peer2 := dial()
	defer c2.Close()
	defer peer2.Close()
	if err := peer2.SetIdleTimeout(0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := c2.Write([]byte("alive")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(peer2, buf); err != nil || string(buf) != "alive" {
		t.Fatalf("%q %v", buf, err)
	}
	peer2.Close()
	if err := peer2.SetIdleTimeout(time.Second); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("on a closed conn: %v", err)
	}
}

func TestHalfClose(t *testing.T) {
	server, client := pair(t, New(), New())
	l, _ := server.Bind("", "")
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ := io.ReadAll(c) // until the client's CloseWrite
		c.Write([]byte(fmt.Sprintf("got %d bytes", len(got))))
	}()
	c, err := client.Dial("", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(make([]byte, 1000))
	if err := c.(*Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got 1000 bytes" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after CloseWrite succeeded")
	}
}

func TestToSocket(t *testing.T) {
	server, client := pair(t, New(), New())
	l, _ := server.Bind("", "")
	defer l.Close()
	echoServer(t, l)
	dial := func() *Conn {
		c, err := client.Dial("", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c.(*Conn)
	}
	// A Read in progress keeps the stream as it is.
	busy := dial()
	blocked := make(chan error, 1)
	go func() { _, err := busy.Read(make([]byte, 1)); blocked <- err }()
	time.Sleep(50 * time.Millisecond)
	if _, err := busy.ToSocket(); err == nil || errors.Is(err, net.ErrClosed) {
		t.Fatalf("ToSocket during a Read: %v", err)
	}
	busy.Close()
	if err := <-blocked; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}

	c := dial()
	sock, err := c.ToSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of the converted Conn: %v", err)
	}
	if _, err := c.ToSocket(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second ToSocket: %v", err)
	}
	sock.SetDeadline(time.Now().Add(10 * time.Second))
	msg := bytes.Repeat([]byte("through a socketpair "), 10000)
	go func() {
		sock.Write(msg)
		sock.CloseWrite() // half-closes the stream: the echo ends, and so does our read
	}()
	got, err := io.ReadAll(sock)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echoed %d of %d bytes: %v", len(got), len(msg), err)
	}
}

func TestRefusedAndTimedOutDials(t *testing.T) {
	server, client := pair(t, New(), New())
	_, err := client.Dial("", Addr{Host: server.HostID(), Port: 4242}.String())
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("refused: %v", err)
	}
	l, _ := server.Bind("", "") // never accepts
	defer l.Close()
	started := time.Now()
	_, err = client.DialTimeout("", l.Addr().String(), 200*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("timed out: %v", err)
	}
	if took := time.Since(started); took > 3*time.Second {
		t.Fatalf("dial timeout after %v", took)
	}
	// A cancelled context gives the dial up.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if _, err := client.DialContext(ctx, "", l.Addr().String()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if _, err := client.Dial("", "db:7:8"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("invalid target: %v", err)
	}
}

func TestDialByNameWithEnvServicesRoutes(t *testing.T) {
	router := New().Router()
	server := New().WithEnv("prod").Server()
	client := New().WithEnv("prod").Client()
	addr, err := router.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	for _, n := range []*Node{server, client} {
		if err := n.Join("tcp", addr.String()); err != nil {
			t.Fatal(err)
		}
		defer n.Close()
	}
	l, err := server.Bind("", "db")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echoServer(t, l)
	c, err := client.DialTimeout("", "db", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("%q %v", got, err)
	}
	c.Close()
	found := false
	for _, s := range client.Services() {
		if s.Service == "db.prod" && s.Host == server.HostID() && s.Reach == "relayed" {
			found = true
		}
	}
	if !found {
		t.Fatalf("services: %+v", client.Services())
	}
	routes := client.Routes()
	direct := false
	for _, r := range routes {
		if r.Host == router.HostID() && r.Direct {
			direct = true
		}
	}
	if !direct {
		t.Fatalf("routes: %+v", routes)
	}
	// A keyed dial reaches the one instance (TestKeyedDialsPickOneInstanceEach: two).
	c, err = client.Dial("vport2registry", "db:user-42")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestHTTPOverAstranet(t *testing.T) {
	server, client := pair(t, New(), New())
	l, err := server.Bind("", "web")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s over astranet", r.URL.Path)
	})}
	go srv.Serve(l)
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			return client.DialContext(ctx, "", host)
		},
	}}
	// And the original's way: HttpDial as the transport's Dial ("web:80" dials "web").
	viaHttpDial := &http.Client{Transport: &http.Transport{Dial: client.HttpDial}}
	for _, c := range []*http.Client{hc, viaHttpDial} {
		for i := 0; i < 3; i++ { // kept-alive connection reused
			resp, err := c.Get("http://web/x")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello /x over astranet" {
				t.Fatalf("%q", body)
			}
		}
	}
}

func TestKeyedDialsPickOneInstanceEach(t *testing.T) {
	router := New().Router()
	addr, err := router.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	client := New().Client()
	instances := []*Node{New().Server(), New().Server()}
	for _, n := range append(instances, client) {
		if err := n.Join("tcp", addr.String()); err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		if n == client {
			continue
		}
		l, err := n.Bind("", "kv")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		echoServer(t, l)
	}
	// Both instances announced to the client.
	deadline := time.Now().Add(10 * time.Second)
	for count := 0; count < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("services: %+v", client.Services())
		}
		count = 0
		for _, s := range client.Services() {
			if s.Service == "kv" {
				count++
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Which instance a dial reached.
	host := func(network, address string) uint64 {
		c, err := client.DialTimeout(network, address, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.RemoteAddr().(Addr).Host
	}
	picked := map[uint64]bool{}
	for i := 0; i < 16; i++ {
		byKey := host("vport2registry", fmt.Sprintf("kv:user-%d", i))
		byNetwork := fmt.Sprintf("registry://user-%d", i)
		byRegistry := host(byNetwork, "kv")
		for try := 0; try < 2; try++ {
			if h := host("vport2registry", fmt.Sprintf("kv:user-%d", i)); h != byKey {
				t.Fatalf("key user-%d: instance %016x, then %016x", i, byKey, h)
			}
			if h := host(byNetwork, "kv"); h != byRegistry {
				t.Fatalf("%s: instance %016x, then %016x", byNetwork, byRegistry, h)
			}
		}
		picked[byKey] = true
	}
	if len(picked) != 2 {
		t.Fatalf("16 keys all picked %v: hashing should spread them over both instances", picked)
	}
}

func TestUseAfterCloseAndConcurrentClose(t *testing.T) {
	server, client := pair(t, New(), New())
	l, _ := server.Bind("", "")
	echoServer(t, l)
	c, err := client.Dial("", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); blocked <- err }()
	time.Sleep(50 * time.Millisecond)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
	if err := <-blocked; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked read: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	// A listener closed under a blocked Accept.
	accepted := make(chan error, 1)
	l2, _ := server.Bind("", "")
	go func() { _, err := l2.Accept(); accepted <- err }()
	time.Sleep(50 * time.Millisecond)
	l2.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after close: %v", err)
	}
	// A Read and an Accept blocked when their nodes close end with an error.
	c2, err := client.Dial("", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	read := make(chan error, 1)
	go func() { _, err := c2.Read(make([]byte, 1)); read <- err }()
	l3, _ := server.Bind("", "")
	go func() { _, err := l3.Accept(); accepted <- err }()
	// And a Dial still waiting for a name to be announced (no context deadline).
	dialed := make(chan error, 1)
	go func() { _, err := client.Dial("", "nobody-serves-this"); dialed <- err }()
	time.Sleep(50 * time.Millisecond)
	client.Close()
	server.Close()
	for what, ch := range map[string]chan error{"read": read, "accept": accepted, "dial": dialed} {
		select {
		case err := <-ch:
			if err == nil {
				t.Fatalf("%s succeeded on a closed node", what)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still blocked 5 s after its node closed", what)
		}
	}
	// A closed node refuses work.
	client.Close()
	client.Close()
	if _, err := client.Dial("", l.Addr().String()); err == nil {
		t.Fatal("dial on a closed node succeeded")
	}
	l.Close()
}

func TestGOMAXPROCS1(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	server, client := pair(t, New(), New())
	l, _ := server.Bind("", "")
	defer l.Close()
	echoServer(t, l)
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.Dial("", l.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Write(make([]byte, 100<<10))
			c.(*Conn).CloseWrite()
			n, err := io.Copy(io.Discard, c)
			if n != 100<<10 || err != nil {
				t.Errorf("%d %v", n, err)
			}
		}()
	}
	wg.Wait()
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../tests/fixtures/tls/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTLS(t *testing.T) {
	ca := fixture(t, "ca.pem")
	node := func(who string, plaintext bool) *Node {
		return New(WithTLS(ca, fixture(t, who+".pem"), fixture(t, who+".key"), plaintext))
	}
	server, client := pair(t, node("a", false), node("b", false))
	if server.HostID() != 0xa || client.HostID() != 0xb {
		t.Fatalf("host ids %x %x: not the certificates'", server.HostID(), client.HostID())
	}
	l, _ := server.Bind("", "")
	defer l.Close()
	echoServer(t, l)
	c, err := client.Dial("", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("over TLS"))
	got := make([]byte, 8)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "over TLS" {
		t.Fatalf("%q %v", got, err)
	}
	c.Close()

	// A plaintext node and a node of another CA are refused.
	addr, _ := server.Listen("tcp", "127.0.0.1:0")
	for _, n := range []*Node{New(), node("intruder", false)} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := n.JoinContext(ctx, "tcp", addr.String()); err == nil {
			t.Fatal("joined a TLS mesh without a certificate of its CA")
		}
		cancel()
		n.Close()
	}
	bad := New(WithTLS([]byte("not pem"), nil, nil, false))
	if _, err := bad.Dial("", "x"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("invalid TLS settings: %v", err)
	}
	// A node that never started closes at once.
	closed := make(chan struct{})
	go func() { bad.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close of a node that failed to start hangs")
	}
}

func TestAccessPolicy(t *testing.T) {
	ca := fixture(t, "ca.pem")
	node := func(who string, opts ...Option) *Node {
		return New(append(opts, WithTLS(ca, fixture(t, who+".pem"), fixture(t, who+".key"), false))...)
	}
	policy := WithAccess(AccessRule{Peers: "b", Dial: []string{"open"}})
	server, client := pair(t, node("a", policy), node("b"))
	open, err := server.Bind("", "open")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	secret, _ := server.Bind("", "secret")
	defer secret.Close()
	echoServer(t, open)
	c, err := client.Dial("", "open")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := client.Dial("", "secret"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a dial the policy forbids: %v", err)
	}
	// Names with quotes and backslashes survive the trip to the library.
	if got := accessTOML([]AccessRule{{Peers: `we"b\1`, Relay: true}}); got !=
		"[[access]]\npeers = \"we\\\"b\\\\1\"\nannounce = []\ndial = []\nrelay = true\n" {
		t.Fatalf("%q", got)
	}
	bad := New(WithAccess(AccessRule{Peers: "b"}))
	if _, err := bad.Dial("", "x"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("a policy without TLS: %v", err)
	}
	bad.Close()
}

// windowGranted returns the window that the streams of receiver end up granting a
// sender: a stream is read fast for 8 MiB, then not at all, and what the sender can
// still write is what the window lets it have in flight.
func windowGranted(t *testing.T, receiver *Node) int {
	t.Helper()
	server, client := pair(t, receiver, New())
	l, err := server.Bind("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const fast = 8 << 20
	read, hold := make(chan error, 1), make(chan struct{})
	defer close(hold)
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			_, err = io.CopyN(io.Discard, c, fast)
		}
		read <- err
		<-hold
	}()
	c, err := client.Dial("", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	for sent := 0; sent < fast; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	// Everything sent was read: from here the sender writes as far as its window goes.
	c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	granted := 0
	for {
		n, err := c.Write(buf)
		granted += n
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return granted
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestWindowOptions(t *testing.T) {
	const initial = 64 << 10
	// A window grows to about twice what the stream moves per credit loop: a few
	// hundred KiB over loopback here, one doubling at least (tried three times: on a
	// busy machine a run may move too little).
	grown := false
	for try := 0; try < 3 && !grown; try++ {
		got := windowGranted(t, New())
		t.Logf("default: %d bytes granted", got)
		grown = got > initial
	}
	if !grown {
		t.Errorf("default: a stream read fast kept its initial window, want it grown")
	}
	// Each option alone keeps the window where it starts.
	if got := windowGranted(t, New(WithMaxStreamWindow(initial))); got > initial {
		t.Errorf("WithMaxStreamWindow(64 KiB): granted %d bytes, want the initial 64 KiB at most", got)
	}
	if got := windowGranted(t, New(WithLinkWindowBudget(0))); got > initial {
		t.Errorf("WithLinkWindowBudget(0): granted %d bytes, want the initial 64 KiB at most", got)
	}
	// A minimum is granted whatever the loop says. The sender sees it less what the
	// receiver read and has not credited back yet: credit returns once a quarter of
	// the window was read, so three quarters at least (without the option: a few
	// hundred KiB).
	const min = 4 << 20
	if got := windowGranted(t, New(WithMinStreamWindow(min))); got < min*3/4 {
		t.Errorf("WithMinStreamWindow(4 MiB): %d bytes granted, want 3 MiB at least", got)
	}
}

// dialEcho binds name on to, echoing, and dials it from from: by name, the dial
// waits for the link between them to come up and the announcement to arrive.
func dialEcho(t *testing.T, from, to *Node, name string) net.Conn {
	t.Helper()
	l, err := to.Bind("", name)
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, l)
	c, err := from.DialTimeout("", name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pipeLoop is one end of the original README's loopback: a pair of io.Pipes.
type pipeLoop struct {
	*io.PipeReader
	*io.PipeWriter
}

func (p pipeLoop) Close() error {
	p.PipeReader.Close()
	return p.PipeWriter.Close()
}

func TestAttachOverPipes(t *testing.T) {
	a, b := New(), New()
	defer a.Close()
	defer b.Close()
	ar, bw := io.Pipe()
	br, aw := io.Pipe()
	attached := make(chan error, 2)
	go func() { attached <- a.Attach(pipeLoop{ar, aw}) }()
	go func() { attached <- b.Attach(pipeLoop{br, bw}) }()

	c := dialEcho(t, a, b, "piped")
	msg := bytes.Repeat([]byte("over a pipe "), 10000)
	go c.Write(msg)
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo over attached pipes: %v", err)
	}
	c.Close()

	// One node goes: both Attach calls return, nil (their links were established).
	b.Close()
	for i := 0; i < 2; i++ {
		select {
		case err := <-attached:
			if err != nil {
				t.Fatalf("Attach of an established link returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Attach did not return once the link ended")
		}
	}
}

// eofConn ends at once: its reads return io.EOF, its writes are discarded.
type eofConn struct{ closed chan struct{} }

func (eofConn) Read([]byte) (int, error)    { return 0, io.EOF }
func (eofConn) Write(b []byte) (int, error) { return len(b), nil }
func (c eofConn) Close() error              { close(c.closed); return nil }

func TestAttachFailures(t *testing.T) {
	n := New()
	defer n.Close()
	// A pipe that ends before any handshake: an error, quickly, and conn closed.
	conn := eofConn{closed: make(chan struct{})}
	start := time.Now()
	if err := n.Attach(conn); err == nil {
		t.Fatal("Attach over a pipe that ended returned nil")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Attach took %v to fail", time.Since(start))
	}
	select {
	case <-conn.closed:
	default:
		t.Fatal("conn was not closed")
	}
	// A silent pipe: a timeout, after the node's dial timeout.
	quick := New(WithDialTimeout(300 * time.Millisecond))
	defer quick.Close()
	silence, kept := io.Pipe() // nothing is ever written to kept
	defer kept.Close()
	sent, w := io.Pipe()
	go io.Copy(io.Discard, sent)
	err := quick.Attach(pipeLoop{silence, w})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Attach over a silent pipe: %v, want a timeout", err)
	}
	// A closed node.
	n.Close()
	if err := n.Attach(eofConn{closed: make(chan struct{})}); err == nil {
		t.Fatal("Attach on a closed node returned nil")
	}
}

// stallingConn is a net.Conn whose writes block, once stall is set, until it is closed.
type stallingConn struct {
	net.Conn
	stall  atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func (c *stallingConn) Write(b []byte) (int, error) {
	if c.stall.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (c *stallingConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func TestCloseEndsAnAttachWhoseConnBlocks(t *testing.T) {
	a, b := New(), New()
	defer b.Close()
	ca, cb := net.Pipe()
	stalling := &stallingConn{Conn: ca, closed: make(chan struct{})}
	attached := make(chan error, 1)
	go func() { attached <- a.Attach(stalling) }()
	go b.Attach(cb)
	c := dialEcho(t, a, b, "stalled")
	// The link's next bytes towards b block in conn.Write, for good.
	stalling.stall.Store(true)
	c.Write([]byte("stuck"))
	time.Sleep(100 * time.Millisecond)
	a.Close()
	select {
	case <-attached:
	case <-time.After(3 * time.Second): // at once: no waiting for the peer to write
		t.Fatal("Attach did not return after Close while its conn's Write blocked")
	}
}
