// The Go benchmark: this package against the original Go astranet, hashicorp/yamux
// and xtaci/smux (protocol v1), every one carrying its streams over one loopback TCP
// connection with both ends in this process, measured in the same run; and against
// its own second tier ("socketpair": each stream turned into a socket, the mechanism
// Conn does not use).
//
//	go run . [-bulk-mib 512] [-max-open 100000] [-pings 10000] [-rounds 3]
//	         [-only astranet,yamux] [-sections bulk,parallel,opens,latency]
//
// Rows: one stream's bulk throughput; 1,000 streams × 1 MiB at once; opens per second
// with 10k and 100k streams open (a stream counts once a byte went each way) and the
// memory each open stream holds (process RSS growth ÷ streams); the 64-byte round
// trip's median. Each row is measured `rounds` times per transport, the transports
// taking turns, and shows the medians (memory: the first round's, since a later round
// may reuse what an earlier one freed); it ends with this package's ratio to each peer
// (> 1 is better for MiB/s and opens/s, < 1 for µs and B/stream). Figures only:
// nothing is asserted.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	original "github.com/astranet/astranet"
	"github.com/hashicorp/yamux"
	"github.com/xtaci/smux"

	"astranet.dev/astranet"
)

// A transport: a fresh connected pair whose dialer opens streams the acceptor accepts.
type pair struct {
	dial   func() (net.Conn, error)
	accept func() (net.Conn, error)
	close  func()
}

type transport struct {
	name string
	make func() (*pair, error)
	// Descriptors each open stream holds, both ends together (this process has both).
	fdsPerStream int
}

func tcpPair() (net.Conn, net.Conn, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	c, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	s, err := l.Accept()
	return c, s, err
}

func ours() (*pair, error) {
	server, client := astranet.New(), astranet.New()
	addr, err := server.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if err := client.Join("tcp", addr.String()); err != nil {
		return nil, err
	}
	l, err := server.Bind("", "")
	if err != nil {
		return nil, err
	}
	target := l.Addr().String()
	return &pair{
		dial:   func() (net.Conn, error) { return client.Dial("", target) },
		accept: l.Accept,
		close:  func() { l.Close(); client.Close(); server.Close() },
	}, nil
}

// oursSockets: this package's second tier, every stream turned into a socketpair
// (Conn.ToSocket) on both ends: the mechanism the package does not use for Conn.
func oursSockets() (*pair, error) {
	p, err := ours()
	if err != nil {
		return nil, err
	}
	toSocket := func(c net.Conn, err error) (net.Conn, error) {
		if err != nil {
			return nil, err
		}
		return c.(*astranet.Conn).ToSocket()
	}
	dial, accept := p.dial, p.accept
	p.dial = func() (net.Conn, error) { return toSocket(dial()) }
	p.accept = func() (net.Conn, error) { return toSocket(accept()) }
	return p, nil
}

var originalPort = 15000

func goOriginal() (*pair, error) {
	originalPort++
	addr := "127.0.0.1:" + strconv.Itoa(originalPort)
	server := original.New().Server()
	if err := server.ListenAndServe("tcp4", addr); err != nil {
		return nil, err
	}
	client := original.New().Client()
	client.Join("tcp4", addr)
	name := "bench" + strconv.Itoa(originalPort)
	l, err := server.Bind("", name)
	if err != nil {
		return nil, err
	}
	// The original joins in the background: wait until the name answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := client.DialTimeout("", name, time.Second)
		if err == nil {
			a, _ := l.Accept()
			c.Close()
			a.Close()
			break
		}
		if time.Now().After(deadline) {
			return nil, err
		}
	}
	return &pair{
		dial:   func() (net.Conn, error) { return client.Dial("", name) },
		accept: l.Accept,
		close:  func() { l.Close() }, // the original has no way to stop a node
	}, nil
}

func yamuxPair() (*pair, error) {
	c, s, err := tcpPair()
	if err != nil {
		return nil, err
	}
	cfg := yamux.DefaultConfig()
	cfg.AcceptBacklog = 4096
	cfg.LogOutput = io.Discard
	cs, err := yamux.Client(c, cfg)
	if err != nil {
		return nil, err
	}
	ss, err := yamux.Server(s, cfg)
	if err != nil {
		return nil, err
	}
	return &pair{
		dial:   func() (net.Conn, error) { return cs.Open() },
		accept: func() (net.Conn, error) { return ss.Accept() },
		close:  func() { cs.Close(); ss.Close() },
	}, nil
}

func smuxPair() (*pair, error) {
	c, s, err := tcpPair()
	if err != nil {
		return nil, err
	}
	cfg := smux.DefaultConfig() // protocol version 1
	cs, err := smux.Client(c, cfg)
	if err != nil {
		return nil, err
	}
	ss, err := smux.Server(s, cfg)
	if err != nil {
		return nil, err
	}
	return &pair{
		dial:   func() (net.Conn, error) { return cs.OpenStream() },
		accept: func() (net.Conn, error) { return ss.AcceptStream() },
		close:  func() { cs.Close(); ss.Close() },
	}, nil
}

// closeWrite ends the writing half where the stream can, else closes it (yamux and
// the original half-close on Close; smux closes both ways).
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// transfer sends `each` bytes on each of n streams at once; MiB/s until the last byte.
func transfer(p *pair, n int, each int64) (float64, error) {
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	wg.Add(n)
	go func() {
		for i := 0; i < n; i++ {
			s, err := p.accept()
			if err != nil {
				errs <- err
				wg.Done()
				continue
			}
			go func() {
				defer wg.Done()
				defer s.Close()
				got, err := io.Copy(io.Discard, s)
				if err != nil || got != each {
					errs <- fmt.Errorf("received %d of %d bytes: %v", got, each, err)
				}
			}()
		}
	}()
	// Dials complete once accepted (astranet) or at once (the others): accept first.
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := p.dial()
		if err != nil {
			return 0, err
		}
		conns[i] = c
	}
	chunk := make([]byte, 128<<10)
	started := time.Now()
	for _, c := range conns {
		go func(c net.Conn) {
			for left := each; left > 0; {
				k := int64(len(chunk))
				if left < k {
					k = left
				}
				if _, err := c.Write(chunk[:k]); err != nil {
					errs <- err
					return
				}
				left -= k
			}
			closeWrite(c)
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(started)
	for _, c := range conns {
		c.Close()
	}
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(int64(n)*each) / (1 << 20) / elapsed.Seconds(), nil
}

func rssBytes() float64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	pages, _ := strconv.ParseFloat(f[1], 64)
	return pages * float64(os.Getpagesize())
}

// opens keeps opening streams (a byte each way) in batches of 10k with 1,000 in
// flight; at each level in `levels` it reports opens/s of the last batch and the
// memory per open stream. A level that takes longer than `budget` ends the run.
func opens(p *pair, levels []int, budget time.Duration) (map[int][2]float64, error) {
	out := map[int][2]float64{}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			s, err := p.accept()
			if err != nil {
				return
			}
			go func() {
				var b [1]byte
				if _, err := io.ReadFull(s, b[:]); err == nil {
					s.Write(b[:])
				}
				mu.Lock()
				held = append(held, s)
				mu.Unlock()
			}()
		}
	}()
	runtime.GC()
	debug.FreeOSMemory()
	before := rssBytes()
	var mine []net.Conn
	const batch = 10000
	for _, level := range levels {
		for len(mine) < level {
			started := time.Now()
			sem := make(chan struct{}, 1000)
			results := make(chan net.Conn, batch)
			failed := make(chan error, batch)
			for i := 0; i < batch; i++ {
				sem <- struct{}{}
				go func() {
					defer func() { <-sem }()
					c, err := p.dial()
					if err != nil {
						failed <- err
						return
					}
					var b [1]byte
					c.Write([]byte{1})
					if _, err := io.ReadFull(c, b[:]); err != nil {
						failed <- err
						return
					}
					results <- c
				}()
				if time.Since(started) > budget {
					return out, fmt.Errorf("over %v for %d streams", budget, level)
				}
			}
			for i := 0; i < cap(sem); i++ {
				sem <- struct{}{}
			}
			close(results)
			for c := range results {
				mine = append(mine, c)
			}
			select {
			case err := <-failed:
				return out, err
			default:
			}
			if len(mine) >= level {
				rate := batch / time.Since(started).Seconds()
				runtime.GC()
				per := (rssBytes() - before) / float64(len(mine))
				out[level] = [2]float64{rate, per}
			}
		}
	}
	for _, c := range mine {
		c.Close()
	}
	mu.Lock()
	for _, s := range held {
		s.Close()
	}
	mu.Unlock()
	return out, nil
}

// roundTrip: the median of `pings` 64-byte echoes on one stream, in µs.
func roundTrip(p *pair, pings int) (float64, error) {
	go func() {
		s, err := p.accept()
		if err != nil {
			return
		}
		defer s.Close()
		io.Copy(s, s)
	}()
	c, err := p.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msg := make([]byte, 64)
	samples := make([]float64, 0, pings)
	for i := 0; i < pings+pings/10; i++ {
		started := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			return 0, err
		}
		if i >= pings/10 {
			samples = append(samples, float64(time.Since(started).Nanoseconds())/1e3)
		}
	}
	sort.Float64s(samples)
	return samples[len(samples)/2], nil
}

type row struct {
	metric string
	unit   string
	values map[string]float64
	// Every measurement of the row, by transport: values holds their medians (for a
	// memory row, the first round's: a later round may reuse memory an earlier one
	// freed and not given back to the system).
	samples map[string][]float64
}

func (r *row) add(transport string, v float64) {
	r.samples[transport] = append(r.samples[transport], v)
}

// settle sets each transport's value to the median of its samples, or to the first
// for a memory row.
func (r *row) settle() {
	for t, vs := range r.samples {
		if r.unit == "B/stream" {
			r.values[t] = vs[0]
			continue
		}
		sort.Float64s(vs)
		r.values[t] = vs[len(vs)/2]
	}
}

func main() {
	bulkMiB := flag.Int("bulk-mib", 512, "bytes on the single bulk stream, MiB")
	maxOpen := flag.Int("max-open", 100000, "highest open-stream level (10k steps)")
	pings := flag.Int("pings", 10000, "timed round trips")
	rounds := flag.Int("rounds", 3, "measurements of each row per transport (the median is shown)")
	only := flag.String("only", "astranet,socketpair,original,yamux,smux", "transports to measure")
	sections := flag.String("sections", "bulk,parallel,opens,latency", "what to measure")
	budget := flag.Duration("level-budget", 60*time.Second, "time allowed per 10k-stream batch")
	flag.Parse()

	all := []transport{{"astranet", ours, 0}, {"socketpair", oursSockets, 4}, {"original", goOriginal, 0}, {"yamux", yamuxPair, 0}, {"smux", smuxPair, 0}}
	var chosen []transport
	for _, t := range all {
		if strings.Contains(","+*only+",", ","+t.name+",") {
			chosen = append(chosen, t)
		}
	}
	levels := []int{10000}
	if *maxOpen >= 100000 {
		levels = append(levels, 100000)
	}
	rows := []*row{
		{metric: fmt.Sprintf("1 stream × %d MiB", *bulkMiB), unit: "MiB/s"},
		{metric: "1,000 streams × 1 MiB", unit: "MiB/s"},
	}
	for _, l := range levels {
		rows = append(rows, &row{metric: fmt.Sprintf("opens/s with %dk open", l/1000), unit: "opens/s"})
		rows = append(rows, &row{metric: fmt.Sprintf("memory per stream, %dk open", l/1000), unit: "B/stream"})
	}
	rows = append(rows, &row{metric: "64 B round trip p50", unit: "µs"})
	for _, r := range rows {
		r.values = map[string]float64{}
		r.samples = map[string][]float64{}
	}
	// Each measurement on a fresh pair, the transports in turns within each round: on
	// a shared machine whose speed drifts over minutes, no transport gets all of a
	// slow patch.
	measure := func(t transport, what string, f func(*pair) error) {
		p, err := t.make()
		if err == nil {
			err = f(p)
			p.close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "[%s] %s: %v\n", t.name, what, err)
		}
		runtime.GC()
	}
	section := func(what string, f func(t transport) func(*pair) error) {
		if !strings.Contains(","+*sections+",", ","+what+",") {
			return
		}
		for round := 0; round < max(*rounds, 1); round++ {
			for _, t := range chosen {
				if g := f(t); g != nil {
					measure(t, what, g)
				}
			}
		}
		fmt.Fprintf(os.Stderr, "[%s] done\n", what)
	}
	// Opens first: the memory rows measure what holding streams costs a process that
	// did not free memory of that kind before (see row.settle).
	skipped := map[string]bool{}
	section("opens", func(t transport) func(*pair) error {
		if need := t.fdsPerStream * levels[0]; need > 0 && need > fdLimit() {
			if !skipped[t.name] {
				fmt.Fprintf(os.Stderr, "[%s] opens: skipped: %d streams hold %d descriptors here, the limit is %d\n",
					t.name, levels[0], need, fdLimit())
				skipped[t.name] = true
			}
			return nil
		}
		return func(p *pair) error {
			res, err := opens(p, levels, *budget)
			for i, l := range levels {
				if v, ok := res[l]; ok {
					rows[2+2*i].add(t.name, v[0])
					rows[3+2*i].add(t.name, v[1])
				}
			}
			return err
		}
	})
	section("bulk", func(t transport) func(*pair) error {
		return func(p *pair) error {
			v, err := transfer(p, 1, int64(*bulkMiB)<<20)
			if err == nil {
				rows[0].add(t.name, v)
			}
			return err
		}
	})
	section("parallel", func(t transport) func(*pair) error {
		return func(p *pair) error {
			v, err := transfer(p, 1000, 1<<20)
			if err == nil {
				rows[1].add(t.name, v)
			}
			return err
		}
	})
	section("latency", func(t transport) func(*pair) error {
		return func(p *pair) error {
			v, err := roundTrip(p, *pings)
			if err == nil {
				rows[len(rows)-1].add(t.name, v)
			}
			return err
		}
	})
	for _, r := range rows {
		r.settle()
	}
	print(rows, chosen, *rounds)
}

// fdLimit is the process's descriptor limit (RLIMIT_NOFILE).
func fdLimit() int {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	return int(l.Cur)
}

func print(rows []*row, ts []transport, rounds int) {
	cell := func(v float64, ok bool) string {
		if !ok {
			return "-"
		}
		if v >= 100 {
			return commas(int64(v + 0.5))
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	header := "| metric | unit |"
	sep := "|---|---|"
	for _, t := range ts {
		header += " " + t.name + " |"
		sep += "---:|"
	}
	for _, t := range ts[1:] {
		if ts[0].name == "astranet" {
			header += " astranet/" + t.name + " |"
			sep += "---:|"
		}
	}
	os.Stdout.WriteString(header + "\n" + sep + "\n")
	for _, r := range rows {
		line := "| " + r.metric + " | " + r.unit + " |"
		for _, t := range ts {
			v, ok := r.values[t.name]
			line += " " + cell(v, ok) + " |"
		}
		if ts[0].name == "astranet" {
			ours, ok := r.values["astranet"]
			for _, t := range ts[1:] {
				other, ok2 := r.values[t.name]
				if ok && ok2 && other > 0 {
					line += " " + strconv.FormatFloat(ours/other, 'f', 2, 64) + "× |"
				} else {
					line += " - |"
				}
			}
		}
		os.Stdout.WriteString(line + "\n")
	}
	os.Stdout.WriteString(fmt.Sprintf("\nEach figure is the median of %d measurements, the transports taking turns "+
		"(memory: the first). ", max(rounds, 1)) +
		"Ratios are astranet ÷ other: above 1 is better for MiB/s and opens/s, below 1 for B/stream and µs.\n")
}

func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
