// goastranet measures the original Go astranet package with the workloads of
// astranet-bench, so that the benchmark can print it next to this project in one run.
// Both ends are Go nodes in this process, linked by one loopback TCP connection: the
// same setup as the Rust transports. One measurement per process; JSON on stdout.
//
//	goastranet bulk BYTES REPEAT                    MiB/s of one stream, per run
//	goastranet parallel STREAMS BYTES REPEAT IN_FLIGHT
//	                                                MiB/s of STREAMS streams at once
//	goastranet opens LEVELS BATCH IN_FLIGHT BUDGET_S
//	                                                per level (comma-separated counts):
//	                                                bytes of RSS per idle open stream,
//	                                                and opens/s of the next BATCH
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/astranet/astranet"
)

const chunk = 128 * 1024

var payload = make([]byte, chunk)

type pair struct {
	client   astranet.AstraNet
	accepted chan net.Conn
}

// newPair starts a server node with a listener "bench" that completes every stream's
// handshake with a one-byte exchange, and a client node joined to it.
func newPair() (*pair, error) {
	server := astranet.New()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	if err := server.ListenAndServe("tcp4", addr); err != nil {
		return nil, err
	}
	ln, err := server.Bind("", "bench")
	if err != nil {
		return nil, err
	}
	p := &pair{client: astranet.New(), accepted: make(chan net.Conn, 1024)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				var b [1]byte
				if _, err := io.ReadFull(c, b[:]); err != nil {
					return
				}
				if _, err := c.Write(b[:]); err != nil {
					return
				}
				p.accepted <- c
			}()
		}
	}()
	p.client.Join("tcp4", addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, s := range p.client.Services() {
			if s.Service == "bench" {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, errors.New("the client node never learned the server's service")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// open dials a stream and waits until it is established at both ends (a Go Dial returns
// before the server accepts): one byte there and back.
func (p *pair) open() (net.Conn, net.Conn, error) {
	c, err := p.client.Dial("", "bench")
	if err != nil {
		return nil, nil, err
	}
	var b = [1]byte{'!'}
	if _, err := c.Write(b[:]); err != nil {
		return nil, nil, err
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return nil, nil, err
	}
	return c, <-p.accepted, nil
}

// establish opens n streams with up to inFlight dials at once.
func (p *pair) establish(n, inFlight int) ([]net.Conn, []net.Conn, error) {
	opened := make([]net.Conn, 0, n)
	accepted := make([]net.Conn, 0, n)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	slots := make(chan struct{}, inFlight)
	for i := 0; i < n; i++ {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, s, err := p.open()
			<-slots
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			opened = append(opened, c)
			accepted = append(accepted, s)
		}()
	}
	wg.Wait()
	return opened, accepted, firstErr
}

func send(c net.Conn, bytes int64) error {
	for left := bytes; left > 0; {
		n := int64(chunk)
		if left < n {
			n = left
		}
		if _, err := c.Write(payload[:n]); err != nil {
			return err
		}
		left -= n
	}
	return c.Close()
}

func drain(c net.Conn) (int64, error) {
	return io.Copy(io.Discard, c)
}

func mibPerSec(bytes int64, d time.Duration) float64 {
	return float64(bytes) / (1 << 20) / d.Seconds()
}

// transfer times every opened end sending `size` bytes to its accepted end at once.
func transfer(opened, accepted []net.Conn, size int64) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, 2*len(opened))
	var received int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range opened {
		wg.Add(2)
		go func(c net.Conn) { defer wg.Done(); errs <- send(c, size) }(opened[i])
		go func(c net.Conn) {
			defer wg.Done()
			n, err := drain(c)
			mu.Lock()
			received += n
			mu.Unlock()
			errs <- err
		}(accepted[i])
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	if want := size * int64(len(opened)); received != want {
		return 0, fmt.Errorf("receivers counted %d bytes, senders wrote %d", received, want)
	}
	return elapsed, nil
}

func rss() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

func arg(i int) int64 {
	if i >= len(os.Args) {
		fail(fmt.Errorf("missing argument %d", i))
	}
	v, err := strconv.ParseInt(os.Args[i], 10, 64)
	if err != nil {
		fail(err)
	}
	return v
}

func fail(err error) {
	json.NewEncoder(os.Stdout).Encode(map[string]string{"error": err.Error()})
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: goastranet bulk|parallel|opens ..."))
	}
	p, err := newPair()
	if err != nil {
		fail(err)
	}
	out := map[string]interface{}{}
	switch os.Args[1] {
	case "bulk":
		bytes, repeat := arg(2), int(arg(3))
		var samples []float64
		for i := 0; i < repeat; i++ {
			opened, accepted, err := p.establish(1, 1)
			if err != nil {
				fail(err)
			}
			d, err := transfer(opened, accepted, bytes)
			if err != nil {
				fail(err)
			}
			samples = append(samples, mibPerSec(bytes, d))
		}
		out["samples"] = samples
	case "parallel":
		streams, size, repeat, inFlight := int(arg(2)), arg(3), int(arg(4)), int(arg(5))
		var samples []float64
		for i := 0; i < repeat; i++ {
			opened, accepted, err := p.establish(streams, inFlight)
			if err != nil {
				fail(err)
			}
			d, err := transfer(opened, accepted, size)
			if err != nil {
				fail(err)
			}
			samples = append(samples, mibPerSec(size*int64(streams), d))
		}
		out["samples"] = samples
	case "opens":
		out["levels"] = opens(p, os.Args[2], int(arg(3)), int(arg(4)), time.Duration(arg(5))*time.Second)
	default:
		fail(errors.New("unknown measurement " + os.Args[1]))
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

type level struct {
	Level          int     `json:"level"`
	BytesPerStream float64 `json:"bytes_per_stream,omitempty"`
	OpensPerSec    float64 `json:"opens_per_sec,omitempty"`
	Error          string  `json:"error,omitempty"`
}

// opens holds every stream it opens (both ends) and, at each level, measures the RSS
// growth per open stream and the rate of opening the next batch.
func opens(p *pair, levels string, batch, inFlight int, budget time.Duration) []level {
	var held []net.Conn
	settle()
	baseline := rss()
	var results []level
	fill := func(target int, deadline time.Time) error {
		for len(held)/2 < target {
			if time.Now().After(deadline) {
				return fmt.Errorf("reached %d open streams within the %d s budget", len(held)/2, int(budget.Seconds()))
			}
			n := target - len(held)/2
			if n > batch {
				n = batch
			}
			opened, accepted, err := p.establish(n, inFlight)
			if err != nil {
				return fmt.Errorf("failed with %d open: %v", len(held)/2, err)
			}
			held = append(held, opened...)
			held = append(held, accepted...)
		}
		return nil
	}
	for _, text := range strings.Split(levels, ",") {
		n, _ := strconv.Atoi(text)
		deadline := time.Now().Add(budget)
		if err := fill(n, deadline); err != nil {
			results = append(results, level{Level: n, Error: err.Error()})
			break
		}
		settle()
		perStream := float64(rss()-baseline) / float64(n)
		start := time.Now()
		if err := fill(n+batch, deadline); err != nil {
			results = append(results, level{Level: n, BytesPerStream: perStream, Error: err.Error()})
			break
		}
		results = append(results, level{Level: n, BytesPerStream: perStream, OpensPerSec: float64(batch) / time.Since(start).Seconds()})
	}
	return results
}
