package main

import "encoding/binary"

// pattern is the deterministic byte stream both ends of a transfer compute from a seed:
// xorshift64 words, little-endian. The Rust side of the interop tests implements the
// same generator, so either end can check what the other sent without shipping hashes.
type pattern struct {
	state uint64
	word  [8]byte
	used  int
}

func newPattern(seed uint64) *pattern {
	return &pattern{state: seed*0x9E3779B97F4A7C15 | 1, used: 8}
}

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		if p.used == 8 {
			x := p.state
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			p.state = x
			binary.LittleEndian.PutUint64(p.word[:], x)
			p.used = 0
		}
		b[i] = p.word[p.used]
		p.used++
	}
	return len(b), nil
}
