package main

import (
	"encoding/binary"
	"net"
	"sync"
)

// v1Commands is the command table of the protocol (PROTOCOL.md): every code a Go node
// knows. A node of the project must never send a Go peer anything else.
var v1Commands = map[byte]bool{
	2: true, 4: true, 6: true, 8: true, 16: true, 32: true,
	128: true, 129: true, 130: true, 160: true, 161: true,
	190: true, 191: true, 192: true, 193: true, 194: true, 195: true, 196: true,
}

// tap parses the frames a Go node receives on its links and counts their command codes.
type tap struct {
	mu      sync.Mutex
	header  [29]byte
	have    int
	skip    uint64
	counts  map[byte]int
	unknown map[byte]int
	maxLen  uint32
}

func newTap() *tap {
	return &tap{counts: map[byte]int{}, unknown: map[byte]int{}}
}

func (t *tap) feed(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(b) > 0 {
		if t.skip > 0 {
			n := uint64(len(b))
			if n > t.skip {
				n = t.skip
			}
			t.skip -= n
			b = b[n:]
			continue
		}
		n := copy(t.header[t.have:], b)
		t.have += n
		b = b[n:]
		if t.have < len(t.header) {
			return
		}
		t.have = 0
		cmd := t.header[0]
		size := binary.BigEndian.Uint32(t.header[25:29])
		t.counts[cmd]++
		if !v1Commands[cmd] {
			t.unknown[cmd]++
		}
		if size > t.maxLen {
			t.maxLen = size
		}
		t.skip = uint64(size)
	}
}

func (t *tap) stats() map[string]interface{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	counts := map[string]int{}
	for c, n := range t.counts {
		counts[itoa(int(c))] = n
	}
	unknown := map[string]int{}
	for c, n := range t.unknown {
		unknown[itoa(int(c))] = n
	}
	return map[string]interface{}{"counts": counts, "unknown": unknown, "max_payload": t.maxLen}
}

// tapConn is a net.Conn whose received bytes also go through a tap (it stays a net.Conn,
// so the Go node still learns the peer's address for its handshake).
type tapConn struct {
	net.Conn
	tap *tap
}

func (c *tapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.tap.feed(b[:n])
	}
	return n, err
}
