// A program of this package and the original Go package (github.com/astranet/astranet)
// in one mesh: each dials, by name, a service the other binds.
package interop

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	original "github.com/astranet/astranet"

	"astranet.dev/astranet"
)

func echo(l net.Listener) {
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
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %q %v", got, err)
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestOneMeshWithTheOriginal(t *testing.T) {
	// The original is the router; ours joins it.
	goRouter := original.New().Router()
	addr := freePort(t)
	if err := goRouter.ListenAndServe("tcp4", addr); err != nil {
		t.Fatal(err)
	}
	goServer := original.New().Server()
	goServer.Join("tcp4", addr)
	goListener, err := goServer.Bind("", "from-go")
	if err != nil {
		t.Fatal(err)
	}
	go echo(goListener)

	ours := astranet.New().Server()
	defer ours.Close()
	if err := ours.Join("tcp4", addr); err != nil {
		t.Fatal(err)
	}
	l, err := ours.Bind("", "from-rust")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go echo(l)

	// Ours dials the original's service (relayed by the original router).
	c, err := ours.DialTimeout("", "from-go", 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "hello Go, from the Go package over libastranet")

	// The original dials ours (it waits for the announcement itself).
	goClient := original.New().Client()
	goClient.Join("tcp4", addr)
	var gc net.Conn
	deadline := time.Now().Add(15 * time.Second)
	for {
		gc, err = goClient.DialTimeout("", "from-rust", 2*time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, gc, fmt.Sprintf("hello libastranet, from the original (%d)", time.Now().Unix()))
}
