// gopeer runs the original Go astranet package as a node that the interop tests drive.
//
// It starts a node (flags), prints one JSON line {"event":"ready","host":"<16 hex>"},
// then reads commands from stdin, one per line: "<id> <verb> <args...>". Each command
// runs in its own goroutine and answers with one JSON line {"id":<id>,"ok":true,...} or
// {"id":<id>,"ok":false,"error":"..."}. The process exits when stdin closes, so a test
// that dies leaves nothing running.
//
// Verbs (TARGET is what a Go user passes to Dial: "name", "name:port", ...):
//
//	serve NAME MODE [ARGS]     Bind("", NAME) and handle every accepted stream with MODE:
//	                           echo (io.Copy back, then Close), reply-after MS (read to EOF,
//	                           wait, write it all back, Close), sink (read to EOF, answer
//	                           8-byte count + SHA-256, Close), source SIZE SEED (write the
//	                           pattern, Close), hold (read and drop until EOF, never write;
//	                           then print {"event":"held-ended","bytes":N}).
//	unserve NAME               Close that listener.
//	dial-echo TARGET SIZE SEED CLOSE STREAMS [TIMEOUT_S] [NETWORK]
//	                           STREAMS concurrent streams: write SIZE pattern bytes (seed
//	                           SEED+i), Close() right after writing when CLOSE=1 (the Go
//	                           idiom) and read to EOF; with CLOSE=0 read SIZE bytes, then
//	                           Close(). Compare with what was sent.
//	dial-send TARGET SIZE SEED write the pattern, Close(), read the sink's answer and check it.
//	dial-recv TARGET SIZE SEED [PAUSE_MS]
//	                           read to EOF and compare with the pattern (pausing PAUSE_MS
//	                           before the last 64 KiB: a slow reader).
//	dial-hold TARGET           dial and keep the stream open (until the process ends).
//	services | routes          what the node knows.
//	tap-stats                  command codes received on tapped links (-tap-listen, -attach).
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/astranet/astranet"
	"github.com/astranet/astranet/addr"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

var (
	node   astranet.AstraNet
	taps   = newTap()
	out    = json.NewEncoder(os.Stdout)
	outMu  sync.Mutex
	lnMu   sync.Mutex
	lns    = map[string]net.Listener{}
	heldMu sync.Mutex
	held   []net.Conn
)

func emit(v map[string]interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	_ = out.Encode(v)
}

func itoa(i int) string { return strconv.Itoa(i) }

func main() {
	role := flag.String("role", "peer", "peer (New), client, server or router")
	env := flag.String("env", "", "environment, comma separated (WithEnv)")
	listen := flag.String("listen", "", "ListenAndServe on this tcp4 address (port 0: a free one)")
	tapListen := flag.String("tap-listen", "", "accept links here and Attach them through the tap")
	var joins, attaches listFlag
	flag.Var(&joins, "join", "Join this address (repeatable)")
	flag.Var(&attaches, "attach", "dial this address and Attach the link through the tap (repeatable)")
	flag.Parse()

	node = astranet.New()
	if *env != "" {
		node = node.WithEnv(strings.Split(*env, ",")...)
	}
	switch *role {
	case "peer":
	case "client":
		node = node.Client()
	case "server":
		node = node.Server()
	case "router":
		node = node.Router()
	default:
		fail("unknown role " + *role)
	}

	// The host id is private to the package; a listener's address carries it.
	probe, err := node.Bind("", "")
	if err != nil {
		fail(err.Error())
	}
	host := probe.Addr().(*addr.Addr).VHost
	probe.Close()

	if *listen != "" {
		a := freeAddr(*listen)
		if err := node.ListenAndServe("tcp4", a); err != nil {
			fail(err.Error())
		}
		emit(map[string]interface{}{"event": "listening", "addr": a})
	}
	if *tapListen != "" {
		ln, err := net.Listen("tcp4", *tapListen)
		if err != nil {
			fail(err.Error())
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go node.Attach(&tapConn{c, taps})
			}
		}()
		emit(map[string]interface{}{"event": "listening", "addr": ln.Addr().String()})
	}
	for _, j := range joins {
		node.Join("tcp4", j)
	}
	for _, a := range attaches {
		c, err := net.Dial("tcp4", a)
		if err != nil {
			fail(err.Error())
		}
		go node.Attach(&tapConn{c, taps})
	}
	emit(map[string]interface{}{"event": "ready", "host": fmt.Sprintf("%016x", host)})

	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) < 2 {
			continue
		}
		go run(f[0], f[1], f[2:])
	}
	os.Exit(0)
}

func fail(msg string) {
	emit(map[string]interface{}{"event": "fatal", "error": msg})
	os.Exit(1)
}

// freeAddr turns "host:0" into a free port on host (ListenAndServe does not say which
// port it bound).
func freeAddr(a string) string {
	h, p, err := net.SplitHostPort(a)
	if err != nil || p != "0" {
		return a
	}
	l, err := net.Listen("tcp4", net.JoinHostPort(h, "0"))
	if err != nil {
		fail(err.Error())
	}
	defer l.Close()
	return l.Addr().String()
}

func run(id, verb string, args []string) {
	res, err := dispatch(verb, args)
	if res == nil {
		res = map[string]interface{}{}
	}
	res["id"], _ = strconv.Atoi(id)
	res["ok"] = err == nil
	if err != nil {
		res["error"] = err.Error()
	}
	emit(res)
}

func argInt(args []string, i int, def int64) int64 {
	if i >= len(args) {
		return def
	}
	v, err := strconv.ParseInt(args[i], 10, 64)
	if err != nil {
		return def
	}
	return v
}

func dispatch(verb string, args []string) (map[string]interface{}, error) {
	need := func(n int) error {
		if len(args) < n {
			return fmt.Errorf("%s needs %d arguments", verb, n)
		}
		return nil
	}
	switch verb {
	case "serve":
		if err := need(2); err != nil {
			return nil, err
		}
		return serve(args[0], args[1], args[2:])
	case "unserve":
		if err := need(1); err != nil {
			return nil, err
		}
		lnMu.Lock()
		l := lns[args[0]]
		delete(lns, args[0])
		lnMu.Unlock()
		if l == nil {
			return nil, errors.New("not serving " + args[0])
		}
		return nil, l.Close()
	case "dial-echo":
		if err := need(5); err != nil {
			return nil, err
		}
		network := ""
		if len(args) > 6 {
			network = args[6]
		}
		return dialEcho(network, args[0], argInt(args, 1, 0), uint64(argInt(args, 2, 0)), args[3] == "1",
			int(argInt(args, 4, 1)), time.Duration(argInt(args, 5, 60))*time.Second)
	case "dial-send":
		if err := need(3); err != nil {
			return nil, err
		}
		return dialSend(args[0], argInt(args, 1, 0), uint64(argInt(args, 2, 0)))
	case "dial-recv":
		if err := need(3); err != nil {
			return nil, err
		}
		return dialRecv(args[0], argInt(args, 1, 0), uint64(argInt(args, 2, 0)),
			time.Duration(argInt(args, 3, 0))*time.Millisecond)
	case "dial-hold":
		if err := need(1); err != nil {
			return nil, err
		}
		c, err := node.Dial("", args[0])
		if err != nil {
			return nil, err
		}
		heldMu.Lock()
		held = append(held, c)
		heldMu.Unlock()
		return nil, nil
	case "services":
		var list []map[string]interface{}
		for _, s := range node.Services() {
			list = append(list, map[string]interface{}{
				"name": s.Service, "host": fmt.Sprintf("%016x", s.Host), "port": s.Port, "priority": s.Priority,
			})
		}
		return map[string]interface{}{"services": list}, nil
	case "routes":
		var list []map[string]interface{}
		for _, r := range node.Routes() {
			list = append(list, map[string]interface{}{"host": fmt.Sprintf("%016x", r.Host), "distance": r.Distance})
		}
		return map[string]interface{}{"routes": list}, nil
	case "tap-stats":
		return taps.stats(), nil
	}
	return nil, errors.New("unknown verb " + verb)
}

func serve(name, mode string, args []string) (map[string]interface{}, error) {
	handler, err := handlerFor(mode, args)
	if err != nil {
		return nil, err
	}
	l, err := node.Bind("", name)
	if err != nil {
		return nil, err
	}
	lnMu.Lock()
	lns[name] = l
	lnMu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handler(c)
		}
	}()
	return map[string]interface{}{"port": l.Addr().(*addr.Addr).VPort}, nil
}

func handlerFor(mode string, args []string) (func(net.Conn), error) {
	switch mode {
	case "echo":
		// As the original's example/echo does.
		return func(c net.Conn) {
			io.Copy(c, c)
			c.Close()
		}, nil
	case "reply-after":
		delay := time.Duration(argInt(args, 0, 0)) * time.Millisecond
		return func(c net.Conn) {
			data, _ := io.ReadAll(c)
			time.Sleep(delay)
			c.Write(data)
			c.Close()
		}, nil
	case "sink":
		return func(c net.Conn) {
			h := sha256.New()
			n, _ := io.Copy(h, c)
			var answer [8]byte
			binary.BigEndian.PutUint64(answer[:], uint64(n))
			c.Write(append(answer[:], h.Sum(nil)...))
			c.Close()
		}, nil
	case "source":
		size, seed := argInt(args, 0, 0), uint64(argInt(args, 1, 0))
		return func(c net.Conn) {
			io.CopyN(c, newPattern(seed), size)
			c.Close()
		}, nil
	case "hold":
		return func(c net.Conn) {
			n, err := io.Copy(io.Discard, c)
			// Tells the test when the stream ended, as the Go application saw it.
			ev := map[string]interface{}{"event": "held-ended", "bytes": n}
			if err != nil {
				ev["error"] = err.Error()
			}
			emit(ev)
		}, nil
	}
	return nil, errors.New("unknown serve mode " + mode)
}

// dialEcho runs `streams` echo exchanges at once and reports how many came back whole.
func dialEcho(network, target string, size int64, seed uint64, closeFirst bool, streams int,
	limit time.Duration) (map[string]interface{}, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var okCount int
	var received int64
	var errs []string
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n, err := echoOnce(network, target, size, seed+uint64(i), closeFirst, limit)
			mu.Lock()
			defer mu.Unlock()
			received += n
			if err == nil {
				okCount++
			} else if len(errs) < 5 {
				errs = append(errs, fmt.Sprintf("stream %d: %v", i, err))
			}
		}(i)
	}
	wg.Wait()
	res := map[string]interface{}{"streams": streams, "whole": okCount, "received": received, "errors": errs}
	if okCount != streams {
		return res, fmt.Errorf("%d of %d echoes incomplete (%d bytes received): %v", streams-okCount, streams, received, errs)
	}
	return res, nil
}

func echoOnce(network, target string, size int64, seed uint64, closeFirst bool, limit time.Duration) (int64, error) {
	c, err := node.DialTimeout(network, target, limit)
	if err != nil {
		return 0, err
	}
	c.SetDeadline(time.Now().Add(limit))
	writeErr := make(chan error, 1)
	go func() {
		_, err := io.CopyN(c, newPattern(seed), size)
		if closeFirst {
			c.Close()
		}
		writeErr <- err
	}()
	got := sha256.New()
	var n int64
	var readErr error
	if closeFirst {
		n, readErr = io.Copy(got, c)
	} else {
		// The server closes only after our EOF: read the echo, then Close().
		n, readErr = io.CopyN(got, c, size)
		c.Close()
	}
	if err := <-writeErr; err != nil {
		return n, fmt.Errorf("write: %v", err)
	}
	if readErr != nil {
		return n, fmt.Errorf("read after %d bytes: %v", n, readErr)
	}
	if n != size {
		return n, fmt.Errorf("echo has %d of %d bytes", n, size)
	}
	want := sha256.New()
	io.CopyN(want, newPattern(seed), size)
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		return n, errors.New("echo differs from what was sent")
	}
	return n, nil
}

func dialSend(target string, size int64, seed uint64) (map[string]interface{}, error) {
	c, err := node.Dial("", target)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(120 * time.Second))
	want := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(c, want), newPattern(seed), size); err != nil {
		return nil, fmt.Errorf("write: %v", err)
	}
	c.Close()
	answer, err := io.ReadAll(c)
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %v", err)
	}
	if len(answer) != 40 {
		return nil, fmt.Errorf("answer of %d bytes, want 40", len(answer))
	}
	if n := binary.BigEndian.Uint64(answer[:8]); n != uint64(size) {
		return nil, fmt.Errorf("the server received %d of %d bytes", n, size)
	}
	if !bytes.Equal(answer[8:], want.Sum(nil)) {
		return nil, errors.New("the server received other bytes than were sent")
	}
	return map[string]interface{}{"sent": size}, nil
}

func dialRecv(target string, size int64, seed uint64, pause time.Duration) (map[string]interface{}, error) {
	c, err := node.Dial("", target)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(120 * time.Second))
	got := sha256.New()
	var first int64
	if pause > 0 && size > 65536 {
		// A slow reader: everything but the last window (64 KiB), then nothing for a
		// while, as the sender finishes and closes.
		first, err = io.CopyN(got, c, size-65536)
		if err != nil {
			return nil, fmt.Errorf("first read: %v", err)
		}
		time.Sleep(pause)
	}
	n, err := io.Copy(got, c)
	n += first
	if err != nil {
		return nil, fmt.Errorf("read after %d bytes: %v", n, err)
	}
	want := sha256.New()
	io.CopyN(want, newPattern(seed), size)
	if n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		return map[string]interface{}{"received": n}, fmt.Errorf("received %d bytes, want %d of the pattern", n, size)
	}
	return map[string]interface{}{"received": n}, nil
}
