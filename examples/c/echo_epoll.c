/* Echo server and client on tier 1: every stream is driven through one epoll on the
 * node's readiness fd, with non-blocking reads, writes and accepts.
 *
 *   echo_epoll server 127.0.0.1:7000          # serve virtual port 7 over TCP :7000
 *   echo_epoll client 127.0.0.1:7000 [streams] # open streams, echo a message on each
 *   echo_epoll                                # both in one process (used as a test)
 *
 * Build: cc echo_epoll.c $(pkg-config --cflags --libs astranet) -o echo_epoll */
#define _GNU_SOURCE
#include <astranet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define DIE(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), exit(1))

static void ok(astranet_result r, astranet_error *err, const char *what) {
  if (r != ASTRANET_OK) DIE("%s: %s (%s)", what, astranet_result_name(r), err ? astranet_error_message(err) : "");
}
#define OK(call, what)                      \
  do {                                      \
    astranet_error *err_ = NULL;            \
    astranet_result r_ = (call);            \
    ok(r_, err_, what);                     \
    astranet_error_free(err_);              \
  } while (0)
#define E (&err_)

enum { LISTENER, SERVER, CLIENT };
typedef struct conn {
  int kind;
  astranet_stream *s;
  char out[64];
  size_t out_len, out_off, in_len;
  char in[64];
} conn;

static astranet_listener *listener;
static int listener_kind = LISTENER;
static int clients_left;

/* Server side: read what is there and write it back. */
static void serve(conn *c) {
  char buf[4096];
  for (;;) {
    size_t n, w, off = 0;
    astranet_error *err = NULL;
    astranet_result r = astranet_stream_read(c->s, (uint8_t *)buf, sizeof buf, &n, &err);
    if (r == ASTRANET_AGAIN) return;
    if (r != ASTRANET_OK || n == 0) { /* end of stream or error: done with it */
      astranet_error_free(err);
      astranet_stream_close(c->s);
      free(c);
      return;
    }
    while (off < n) { /* small echoes; a real server would keep the rest for WRITABLE */
      r = astranet_stream_write(c->s, (uint8_t *)buf + off, n - off, &w, NULL);
      if (r == ASTRANET_AGAIN) continue;
      if (r != ASTRANET_OK) break;
      off += w;
    }
  }
}

static void accept_all(void) {
  astranet_stream *s;
  while (astranet_accept(listener, &s, NULL) == ASTRANET_OK) {
    conn *c = calloc(1, sizeof *c);
    c->kind = SERVER;
    c->s = s;
    OK(astranet_stream_set_userdata(s, c, E), "set_userdata");
    serve(c);
  }
}

/* Client side: write the message, read the echo, check it, close. */
static void drive(conn *c) {
  size_t n;
  while (c->out_off < c->out_len) {
    astranet_error *err = NULL;
    astranet_result r = astranet_stream_write(c->s, (uint8_t *)c->out + c->out_off, c->out_len - c->out_off, &n, &err);
    if (r == ASTRANET_AGAIN) return;
    ok(r, err, "client write");
    c->out_off += n;
  }
  while (c->in_len < c->out_len) {
    astranet_error *err = NULL;
    astranet_result r = astranet_stream_read(c->s, (uint8_t *)c->in + c->in_len, c->out_len - c->in_len, &n, &err);
    if (r == ASTRANET_AGAIN) return;
    ok(r, err, "client read");
    if (n == 0) DIE("end of stream before the echo");
    c->in_len += n;
  }
  if (memcmp(c->in, c->out, c->out_len) != 0) DIE("echo differs");
  astranet_stream_close(c->s);
  free(c);
  clients_left--;
}

static void dispatch(astranet_node *node) {
  astranet_event ev[256];
  size_t n;
  do {
    OK(astranet_poll(node, ev, 256, &n, E), "poll");
    for (size_t i = 0; i < n; i++) {
      int kind = *(int *)ev[i].userdata;
      if (kind == LISTENER) accept_all();
      else if (kind == SERVER) serve(ev[i].userdata);
      else drive(ev[i].userdata);
    }
  } while (n == 256);
}

static void add_fd(int ep, astranet_node *node) {
  int fd;
  OK(astranet_node_fd(node, &fd, E), "node_fd");
  struct epoll_event e = {.events = EPOLLIN}; /* level-triggered, as the fd is */
  e.data.ptr = node;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) DIE("epoll_ctl");
}

static void start_clients(astranet_node *node, uint64_t server, int count) {
  char target[ASTRANET_ADDR_STRLEN];
  astranet_addr a = {server, 7};
  OK(astranet_addr_format(&a, target, sizeof target), "addr_format");
  for (int i = 0; i < count; i++) {
    conn *c = calloc(1, sizeof *c);
    c->kind = CLIENT;
    c->out_len = (size_t)snprintf(c->out, sizeof c->out, "hello from stream %d", i);
    OK(astranet_dial_start(node, target, NULL, 10000, c, &c->s, E), "dial_start");
  }
  clients_left = count;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "both";
  const char *addr = argc > 2 ? argv[2] : "127.0.0.1:0";
  int count = argc > 3 ? atoi(argv[3]) : 1000;
  /* Progress lines show up at once, also when the output is a pipe or a file. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  astranet_node *server = NULL, *client = NULL;
  uint64_t server_id = 0;
  char bound[ASTRANET_ADDR_STRLEN];

  if (strcmp(mode, "client") != 0) {
    OK(astranet_node_new(NULL, &server, E), "node_new");
    OK(astranet_listen(server, addr, bound, sizeof bound, E), "listen");
    OK(astranet_bind(server, ":7", &listener, E), "bind");
    OK(astranet_listener_set_userdata(listener, &listener_kind, E), "set_userdata");
    accept_all(); /* returns ASTRANET_AGAIN: from now on ACCEPTABLE events come */
    add_fd(ep, server);
    OK(astranet_node_host_id(server, &server_id, E), "host_id");
    printf("serving virtual port 7 of node %016" PRIx64 " on %s\n", server_id, bound);
    addr = bound;
  }
  if (strcmp(mode, "server") != 0) {
    OK(astranet_node_new(NULL, &client, E), "node_new");
    OK(astranet_join(client, addr, 5000, &server_id, E), "join");
    add_fd(ep, client);
    start_clients(client, server_id, count);
  }
  while (strcmp(mode, "server") == 0 || clients_left > 0) {
    struct epoll_event ready[2];
    int k = epoll_wait(ep, ready, 2, 10000);
    if (k == 0) DIE("nothing happened for 10 s");
    for (int i = 0; i < k; i++) dispatch(ready[i].data.ptr);
  }
  printf("%d streams echoed\n", count);
  astranet_listener_close(listener);
  astranet_node_free(client);
  astranet_node_free(server);
  close(ep);
  return 0;
}
