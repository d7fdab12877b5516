package astranet

/*
#include <stdlib.h>
#include <astranet.h>
static uintptr_t an_event_id2(const astranet_event *e) { return (uintptr_t)e->userdata; }
*/
import "C"

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Node is an astranet node: the counterpart of the original package's AstraNet. It
// starts on first use (as the original's multiplexer does): WithEnv, Client, Server,
// Router and the With* options return a configured copy and must be called before.
//
// Every call into the library returns at once, except Join (it waits for the first
// handshake). Streams wait in Go: one goroutine per node watches the node's readiness
// descriptor with Go's netpoller, reads the node's links when their sockets have
// bytes, and wakes the goroutines whose streams became ready, so a blocked Read or
// Accept holds no OS thread.
type Node struct {
	cfg config

	once     sync.Once
	startErr error
	h        *C.astranet_node
	file     *os.File // our duplicate of the node's readiness fd
	closed   atomic.Bool
	waiters  waiters
	attached attachments
	done     chan struct{}
	closeMu  sync.Mutex
}

// defaultDialTimeout is the original's: Dial and DialTimeout(…, 0) wait this long.
const defaultDialTimeout = 10 * time.Second

type config struct {
	role        uint32
	env         string
	hostID      uint64
	keepalive   time.Duration
	dialTimeout time.Duration
	streamIdle  time.Duration
	// Receive-window auto-tuning; nil: the library's default.
	maxWindow    *uint32
	windowBudget *uint64
	minWindow    uint32 // 0: none, the library's default
	tls          *tlsPEM
	access       []AccessRule
}

func (c *config) dialTimeoutOrDefault() time.Duration {
	if c.dialTimeout > 0 {
		return c.dialTimeout
	}
	return defaultDialTimeout
}

// AccessRule says what the peers whose certificate common name matches Peers may do
// (`*` matches any run of characters): announce the service names matching one of
// Announce, dial this node's services matching one of Dial, and with Relay speak for
// other hosts (what routers do).
type AccessRule struct {
	Peers    string
	Announce []string
	Dial     []string
	Relay    bool
}

type tlsPEM struct {
	ca, cert, key  []byte
	allowPlaintext bool
}

// Option sets up a node created by New.
type Option func(*config)

// WithHostID gives the node a fixed host id (a random one otherwise; 0 is refused).
func WithHostID(id uint64) Option { return func(c *config) { c.hostID = id } }

// WithKeepAlive sets the keep-alive period (PING after half of it; a link silent for
// ten times it is dead).
func WithKeepAlive(d time.Duration) Option { return func(c *config) { c.keepalive = d } }

// WithDialTimeout sets how long Dial waits by default (also for a name to be
// announced): 10 s unless set, as in the original.
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithStreamIdleTimeout gives every stream an idle timeout: a stream on which no data
// moved either way for d is reset (see Conn.SetIdleTimeout). None by default.
func WithStreamIdleTimeout(d time.Duration) Option { return func(c *config) { c.streamIdle = d } }

// WithMaxStreamWindow caps the receive window a stream of this node may be granted
// (default 16 MiB; values below the initial 64 KiB count as 64 KiB). Every stream
// starts at 64 KiB, and a stream that is read fast has its window doubled until it
// holds about twice what the stream moves per credit loop (from a window update to
// the next, once the data it let through was read), up to this cap: a stream moves at most one window per
// loop (16 MiB over a 50 ms link: 320 MiB/s).
func WithMaxStreamWindow(bytes uint32) Option {
	return func(c *config) { c.maxWindow = &bytes }
}

// WithLinkWindowBudget bounds the window growth (beyond 64 KiB per stream) that the
// streams of one link may be granted in all, which bounds the memory a link's unread
// data may take (default 256 MiB; 0 turns window growth off).
func WithLinkWindowBudget(bytes uint64) Option {
	return func(c *config) { c.windowBudget = &bytes }
}

// WithMinStreamWindow grants every stream of this node a receive window of this many
// bytes with its first window update, whatever its credit loop says (at most the
// WithMaxStreamWindow cap, within the WithLinkWindowBudget budget; 0, the default:
// none). Throughput rather than room for a link's other streams: a fast stream's
// sender then waits for credit less often, and more of its data may be in flight
// ahead of a small message on another stream of the same link.
func WithMinStreamWindow(bytes uint32) Option {
	return func(c *config) { c.minWindow = bytes }
}

// WithAccess sets the node's access policy (it needs WithTLS: peers are named by their
// certificates): the first rule whose Peers pattern matches a peer applies to it, and
// a peer no rule matches may not join. A dial the policy refuses fails at the dialer
// with an error wrapping syscall.ECONNREFUSED.
func WithAccess(rules ...AccessRule) Option {
	return func(c *config) { c.access = append([]AccessRule(nil), rules...) }
}

// accessTOML writes rules as the `[[access]]` tables the library reads.
func accessTOML(rules []AccessRule) string {
	var b strings.Builder
	list := func(names []string) string {
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = tomlString(n)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	for _, r := range rules {
		fmt.Fprintf(&b, "[[access]]\npeers = %s\nannounce = %s\ndial = %s\nrelay = %t\n",
			tomlString(r.Peers), list(r.Announce), list(r.Dial), r.Relay)
	}
	return b.String()
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// WithTLS makes every link of the node TLS 1.3, both sides authenticated by the mesh
// CA: the PEM text of the CA's certificate, of this node's certificate chain and of its
// private key (made by `astranet keys`). The node's host id becomes the one its
// certificate names. allowPlaintext also accepts links from nodes without TLS (the
// original Go package has none).
func WithTLS(caPEM, certPEM, keyPEM []byte, allowPlaintext bool) Option {
	return func(c *config) {
		c.tls = &tlsPEM{ca: caPEM, cert: certPEM, key: keyPEM, allowPlaintext: allowPlaintext}
	}
}

// New returns a node (a peer: it serves and dials, and does not relay). It starts on
// first use.
func New(opts ...Option) *Node {
	n := &Node{done: make(chan struct{})}
	for _, o := range opts {
		o(&n.cfg)
	}
	return n
}

func (n *Node) with(f func(*config)) *Node {
	c := n.cfg
	f(&c)
	return &Node{cfg: c, done: make(chan struct{})}
}

// WithEnv returns a copy of the node whose names carry the environment suffix
// ".a.b" for WithEnv("a", "b"), as the original's WithEnv.
func (n *Node) WithEnv(env ...string) *Node {
	return n.with(func(c *config) {
		if len(env) > 0 {
			c.env = strings.Join(env, ".")
		}
	})
}

// Client returns a copy that dials services and does not announce its own.
func (n *Node) Client() *Node { return n.with(func(c *config) { c.role = C.ASTRANET_ROLE_CLIENT }) }

// Server returns a copy that announces its services.
func (n *Node) Server() *Node { return n.with(func(c *config) { c.role = C.ASTRANET_ROLE_SERVER }) }

// Router returns a copy that relays streams and announcements between its neighbours.
func (n *Node) Router() *Node { return n.with(func(c *config) { c.role = C.ASTRANET_ROLE_ROUTER }) }

func (n *Node) start() error {
	n.once.Do(func() {
		var cfg C.astranet_node_config
		if r := C.astranet_node_config_init(&cfg); r != C.ASTRANET_OK {
			n.startErr = callErr("new", r, nil)
			return
		}
		cfg.role = C.uint32_t(n.cfg.role)
		// The poll goroutine reads and writes the links itself (see "How it waits" in
		// README.md).
		cfg.read_links_in_poll = 2
		cfg.host_id = C.uint64_t(n.cfg.hostID)
		if n.cfg.keepalive > 0 {
			cfg.keepalive_ms = C.uint32_t(n.cfg.keepalive / time.Millisecond)
		}
		cfg.dial_timeout_ms = C.uint32_t(clampMillis(n.cfg.dialTimeoutOrDefault()))
		if n.cfg.streamIdle > 0 {
			cfg.stream_idle_timeout_ms = C.uint32_t(max(n.cfg.streamIdle/time.Millisecond, 1))
		}
		if w := n.cfg.maxWindow; w != nil {
			cfg.max_stream_window = C.uint32_t(*w)
		}
		if b := n.cfg.windowBudget; b != nil {
			cfg.link_window_budget = C.uint64_t(*b)
		}
		cfg.min_stream_window = C.uint32_t(n.cfg.minWindow)
		if n.cfg.access != nil {
			policy := C.CString(accessTOML(n.cfg.access))
			defer free(policy)
			cfg.access_toml = policy
		}
		if t := n.cfg.tls; t != nil {
			ca, cert, key := C.CString(string(t.ca)), C.CString(string(t.cert)), C.CString(string(t.key))
			defer free(ca)
			defer free(cert)
			defer free(key)
			cfg.tls_ca_pem, cfg.tls_cert_pem, cfg.tls_key_pem = ca, cert, key
			if t.allowPlaintext {
				cfg.tls_allow_plaintext = 1
			}
		}
		var env *C.char
		if n.cfg.env != "" {
			env = cstring(n.cfg.env)
			defer free(env)
			cfg.environment = env
		}
		var e *C.astranet_error
		if err := callErr("new", C.astranet_node_new(&cfg, &n.h, &e), e); err != nil {
			n.startErr = err
			return
		}
		var fd C.int32_t
		if err := callErr("node fd", C.astranet_node_fd(n.h, &fd, &e), e); err != nil {
			n.startErr = err
			return
		}
		// Our own descriptor for the node fd (an epoll fd watching the link sockets
		// and the readiness eventfd): the node keeps its own, and os.File registers
		// this one with the netpoller (it is non-blocking).
		dup, err := syscall.Dup(int(fd))
		if err != nil {
			n.startErr = fmt.Errorf("astranet: %w", err)
			return
		}
		syscall.CloseOnExec(dup)
		n.file = os.NewFile(uintptr(dup), "astranet-node")
		go n.poll()
	})
	if n.startErr != nil {
		return n.startErr
	}
	if n.closed.Load() {
		return errNodeClosed()
	}
	return nil
}

func errNodeClosed() error { return &Error{Op: "use", Code: CodeNodeClosed, Msg: "node closed"} }

func (n *Node) register() (uintptr, *waiter) {
	w := newWaiter()
	return n.waiters.add(w), w
}

func (n *Node) unregister(id uintptr, w *waiter) { n.waiters.remove(id, w) }

const eventBatch = 256

// poll runs until the node is closed: waits (in the netpoller) for the readiness fd,
// then takes every pending event and wakes their goroutines.
func (n *Node) poll() {
	defer close(n.done)
	raw, err := n.file.SyscallConn()
	if err != nil {
		return
	}
	// C memory: the library writes integers into the events' pointer fields.
	buf := (*C.astranet_event)(C.malloc(C.size_t(eventBatch) * C.size_t(unsafe.Sizeof(C.astranet_event{}))))
	defer C.free(unsafe.Pointer(buf))
	events := unsafe.Slice(buf, eventBatch)
	var ids [eventBatch]uintptr
	var ws [eventBatch]*waiter
	stop := false
	for !stop {
		err := raw.Read(func(uintptr) bool {
			for {
				if n.closed.Load() {
					stop = true
					return true
				}
				var count C.size_t
				var e *C.astranet_error
				if callErr("poll", C.astranet_poll(n.h, buf, eventBatch, &count, &e), e) != nil {
					stop = true
					return true
				}
				for i := 0; i < int(count); i++ {
					ids[i] = uintptr(C.an_event_id2(&events[i]))
				}
				n.waiters.lookup(ids[:count], ws[:count])
				for i, w := range ws[:count] {
					if w == nil {
						continue
					}
					bits := events[i].events
					if bits&(C.ASTRANET_EVENT_READABLE|C.ASTRANET_EVENT_ACCEPTABLE) != 0 {
						w.wakeRead()
					}
					if bits&C.ASTRANET_EVENT_WRITABLE != 0 {
						w.wakeWrite()
					}
				}
				if count < eventBatch {
					return false // wait for the fd again
				}
			}
		})
		if err != nil {
			return
		}
	}
}

// Close closes every listener and link of the node; its streams fail. Safe from any
// goroutine, more than once.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed.Swap(true) {
		return nil
	}
	n.once.Do(func() { n.startErr = errNodeClosed() })
	if n.h != nil {
		C.astranet_node_free(n.h)
	}
	// The poller runs only if starting got as far as the readiness descriptor.
	if n.file != nil {
		// Wakes the poller (its wait fails), which then exits.
		_ = n.file.Close()
		<-n.done
	}
	// Attach calls return, also those whose conn blocks in a Write.
	n.attached.closeAll()
	// Whatever still waits learns that the node is gone.
	for _, w := range n.waiters.all() {
		w.wakeRead()
		w.wakeWrite()
	}
	return nil
}

// HostID is the node's host id (starting the node if needed).
func (n *Node) HostID() uint64 {
	if n.start() != nil {
		return 0
	}
	var id C.uint64_t
	var e *C.astranet_error
	if callErr("host id", C.astranet_node_host_id(n.h, &id, &e), e) != nil {
		return 0
	}
	return uint64(id)
}

// ListenAndServe accepts links on a TCP address ("0.0.0.0:7000", ":0") in the
// background and returns once listening, as the original does. network must be a TCP
// network ("tcp", "tcp4", "tcp6" or "").
func (n *Node) ListenAndServe(network, address string) error {
	_, err := n.Listen(network, address)
	return err
}

// Listen is ListenAndServe that also returns the bound address (useful with port 0).
func (n *Node) Listen(network, address string) (net.Addr, error) {
	if err := tcpNetwork(network); err != nil {
		return nil, err
	}
	if err := n.start(); err != nil {
		return nil, err
	}
	a := cstring(address)
	defer free(a)
	var bound [64]C.char
	var e *C.astranet_error
	if err := callErr("listen", C.astranet_listen(n.h, a, &bound[0], C.size_t(len(bound)), &e), e); err != nil {
		return nil, err
	}
	return net.ResolveTCPAddr("tcp", C.GoString(&bound[0]))
}

// Join links to the node listening at address and keeps the link up (re-dialing when
// it drops; a DNS name gets a link to each of its addresses). It returns once the
// first handshake is done, or with its error. Unlike the original, which returned at
// once and retried in the background, a first failure is reported.
func (n *Node) Join(network, address string) error {
	return n.JoinContext(context.Background(), network, address)
}

// JoinContext is Join bounded by ctx's deadline (cancellation without a deadline is
// noticed when the handshake finishes or fails).
func (n *Node) JoinContext(ctx context.Context, network, address string) error {
	if err := tcpNetwork(network); err != nil {
		return err
	}
	if err := n.start(); err != nil {
		return err
	}
	ms := C.int32_t(-1)
	if d, ok := ctx.Deadline(); ok {
		ms = C.int32_t(clampMillis(time.Until(d)))
	}
	a := cstring(address)
	defer free(a)
	var peer C.uint64_t
	var e *C.astranet_error
	// The one call that blocks: the handshake with a peer; it holds an OS thread
	// while it lasts, like a blocking connect.
	return callErr("join", C.astranet_join(n.h, a, ms, &peer, &e), e)
}

func tcpNetwork(network string) error {
	switch network {
	case "", "tcp", "tcp4", "tcp6":
		return nil
	}
	return &Error{Op: "listen", Code: CodeInvalidArg, Msg: fmt.Sprintf("links run over TCP, not %q", network)}
}

func clampMillis(d time.Duration) int64 {
	const most = 1<<31 - 1
	if d >= most*time.Millisecond {
		return most
	}
	// Rounded up: a timeout never fires before the deadline it stands for.
	return max(int64((d+time.Millisecond-1)/time.Millisecond), 1)
}

// ServiceInfo is one instance of a named service the node knows.
type ServiceInfo struct {
	Service string // the full name, environment suffix included
	Host    uint64
	Port    uint32
	Via     uint64 // the neighbour the announcement came through; 0 when local
	Reach   string // "local", "direct" or "relayed"
}

// RouteInfo is a host the node reaches, directly or through a relay.
type RouteInfo struct {
	Host   uint64
	Via    uint64
	Direct bool
}

// Services lists every service instance the node knows (local, direct, relayed).
func (n *Node) Services() []ServiceInfo {
	if n.start() != nil {
		return nil
	}
	var list *C.astranet_service_list
	var e *C.astranet_error
	if callErr("services", C.astranet_services(n.h, &list, &e), e) != nil {
		return nil
	}
	defer C.astranet_service_list_free(list)
	var items *C.astranet_service
	var count C.size_t
	if C.astranet_service_list_items(list, &items, &count) != C.ASTRANET_OK {
		return nil
	}
	out := make([]ServiceInfo, 0, int(count))
	for _, s := range unsafe.Slice(items, int(count)) {
		reach := map[C.uint32_t]string{C.ASTRANET_REACH_LOCAL: "local", C.ASTRANET_REACH_DIRECT: "direct", C.ASTRANET_REACH_RELAYED: "relayed"}[s.reach]
		out = append(out, ServiceInfo{Service: C.GoString(s.name), Host: uint64(s.addr.host), Port: uint32(s.addr.port), Via: uint64(s.via), Reach: reach})
	}
	return out
}

// Routes lists the hosts the node reaches: its neighbours, and hosts whose services a
// neighbour relays.
func (n *Node) Routes() []RouteInfo {
	if n.start() != nil {
		return nil
	}
	for capacity := 16; ; capacity *= 4 {
		routes := make([]C.astranet_route, capacity)
		var count C.size_t
		var e *C.astranet_error
		if callErr("routes", C.astranet_routes(n.h, &routes[0], C.size_t(capacity), &count, &e), e) != nil {
			return nil
		}
		if int(count) <= capacity {
			out := make([]RouteInfo, 0, int(count))
			for _, r := range routes[:count] {
				out = append(out, RouteInfo{Host: uint64(r.host), Via: uint64(r.via), Direct: r.direct != 0})
			}
			return out
		}
	}
}
