/* The C side of the benchmark (astranet-ffi/bench.sh): the transfers of
 * examples/bench_rust.rs through the C API, on tier 1 (node fd + astranet_poll, one
 * thread) or tier 2 (astranet_stream_into_fd + epoll on the socket fds, one thread).
 *
 * Two nodes in this process, one TCP link over loopback; `streams` streams each send
 * `bytes` (128 KiB writes, then shutdown) to a server that reads to end of stream.
 * Prints one line: `<tier> <streams> <bytes per stream> <MiB/s>`.
 *
 *   bench_c tier1|tier2 STREAMS BYTES */
#define _GNU_SOURCE
#include <astranet.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (128 * 1024)
#define DIE(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), exit(1))
static void check(astranet_result r, astranet_error *e, const char *what) {
  if (r != ASTRANET_OK) DIE("%s: %s %s", what, astranet_result_name(r), e ? astranet_error_message(e) : "");
}
#define OK(call, what)              \
  do {                              \
    astranet_error *e_ = NULL;      \
    check((call), e_, what);        \
  } while (0)
#define E (&e_)

enum { LISTENER, CLIENT, SERVER };
typedef struct end {
  int kind;
  astranet_stream *s;
  int fd;
  int ready;     /* client: dial finished */
  uint64_t left; /* client: bytes still to send */
  uint64_t got;  /* server: bytes received */
  int done;
} end;

static uint8_t payload[CHUNK];
static uint8_t *rbuf;
static size_t rbuf_len;
static int listener_tag = LISTENER;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Tier 1, phase 2: one event loop per node, each in its own thread (as each side of a
 * real deployment would be): the client loop writes, the server loop reads. */
typedef struct {
  astranet_node *node;
  int fd;
  int is_server;
  end *ends;
  int n;
} loop_arg;

static void drive_client(end *e) {
  size_t w;
  while (e->left > 0) {
    size_t len = e->left < CHUNK ? (size_t)e->left : CHUNK;
    astranet_result rr = astranet_stream_write(e->s, payload, len, &w, NULL);
    if (rr == ASTRANET_AGAIN) return;
    check(rr, NULL, "write");
    e->left -= w;
  }
  if (!e->done) {
    OK(astranet_stream_shutdown(e->s, E), "shutdown");
    e->done = 1;
  }
}

static int drive_server(end *e, uint8_t *buf, size_t len) {
  size_t got;
  astranet_result rr;
  if (e->done) return 0;
  while ((rr = astranet_stream_read(e->s, buf, len, &got, NULL)) == ASTRANET_OK && got > 0) e->got += got;
  if (rr == ASTRANET_OK) {
    e->done = 1;
    return 1;
  }
  if (rr != ASTRANET_AGAIN) check(rr, NULL, "read");
  return 0;
}

static void *node_loop(void *argp) {
  loop_arg *a = argp;
  int ep = epoll_create1(EPOLL_CLOEXEC), finished = 0;
  struct epoll_event ev = {.events = EPOLLIN};
  uint8_t *buf = malloc(rbuf_len);
  astranet_event *evs = malloc(1024 * sizeof *evs);
  epoll_ctl(ep, EPOLL_CTL_ADD, a->fd, &ev);
  for (int i = 0; i < a->n; i++) { /* a first call on each stream arms its events */
    if (a->is_server) finished += drive_server(&a->ends[i], buf, rbuf_len);
    else {
      drive_client(&a->ends[i]);
      finished += a->ends[i].done;
    }
  }
  while (finished < a->n) {
    struct epoll_event r[1];
    int k = epoll_wait(ep, r, 1, 10000);
    if (k <= 0) DIE("phase 2 stalled: %d of %d done", finished, a->n);
    size_t m;
    do {
      OK(astranet_poll(a->node, evs, 1024, &m, E), "poll");
      for (size_t x = 0; x < m; x++) {
        end *e = evs[x].userdata;
        if (a->is_server) finished += drive_server(e, buf, rbuf_len);
        else if (!e->done) {
          drive_client(e);
          finished += e->done;
        }
      }
    } while (m == 1024);
  }
  close(ep);
  free(buf);
  free(evs);
  return NULL;
}

/* Tier 2, phase 2: the client thread writes to its fds, the server thread reads. */
typedef struct {
  end *ends;
  int n;
} fd_arg;

static void *fd_loop(void *argp) {
  fd_arg *a = argp;
  int ep = epoll_create1(EPOLL_CLOEXEC), finished = 0;
  uint8_t *buf = malloc(rbuf_len);
  for (int i = 0; i < a->n; i++) {
    struct epoll_event ev = {.events = a->ends[i].kind == CLIENT ? EPOLLOUT : EPOLLIN};
    ev.data.ptr = &a->ends[i];
    epoll_ctl(ep, EPOLL_CTL_ADD, a->ends[i].fd, &ev);
  }
  while (finished < a->n) {
    struct epoll_event r[256];
    int k = epoll_wait(ep, r, 256, 10000);
    if (k <= 0) DIE("phase 2 stalled: %d of %d done", finished, a->n);
    for (int j = 0; j < k; j++) {
      end *e = r[j].data.ptr;
      if (e->kind == CLIENT) {
        while (e->left > 0) {
          size_t len = e->left < CHUNK ? (size_t)e->left : CHUNK;
          ssize_t w = write(e->fd, payload, len);
          if (w < 0 && (errno == EAGAIN || errno == EINTR)) break;
          if (w < 0) DIE("write: %s", strerror(errno));
          e->left -= (uint64_t)w;
        }
        if (e->left == 0) {
          shutdown(e->fd, SHUT_WR);
          epoll_ctl(ep, EPOLL_CTL_DEL, e->fd, NULL);
          finished++;
        }
      } else {
        for (;;) {
          ssize_t got = read(e->fd, buf, rbuf_len);
          if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
          if (got < 0) DIE("read: %s", strerror(errno));
          if (got == 0) {
            e->done = 1;
            finished++;
            epoll_ctl(ep, EPOLL_CTL_DEL, e->fd, NULL);
            break;
          }
          e->got += (uint64_t)got;
        }
      }
    }
  }
  close(ep);
  free(buf);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 4) DIE("usage: bench_c tier1|tier2 STREAMS BYTES");
  int tier2 = strcmp(argv[1], "tier2") == 0;
  int n = atoi(argv[2]);
  uint64_t bytes = strtoull(argv[3], NULL, 10);
  rbuf_len = n == 1 ? 256 * 1024 : 16 * 1024;
  rbuf = malloc(rbuf_len);
  memset(payload, 0x5a, sizeof payload);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  astranet_node *server, *client;
  astranet_listener *l;
  char bound[ASTRANET_ADDR_STRLEN], target[ASTRANET_ADDR_STRLEN];
  uint64_t id;
  OK(astranet_node_new(NULL, &server, E), "node");
  OK(astranet_node_new(NULL, &client, E), "node");
  OK(astranet_listen(server, "127.0.0.1:0", bound, sizeof bound, E), "listen");
  OK(astranet_join(client, bound, 5000, &id, E), "join");
  OK(astranet_bind(server, ":9", &l, E), "bind");
  OK(astranet_listener_set_userdata(l, &listener_tag, E), "userdata");
  astranet_addr a = {id, 9};
  OK(astranet_addr_format(&a, target, sizeof target), "format");

  end *clients = calloc((size_t)n, sizeof *clients), *servers = calloc((size_t)n, sizeof *servers);
  int accepted = 0, connected = 0;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int fds[2];
  OK(astranet_node_fd(server, &fds[0], E), "fd");
  OK(astranet_node_fd(client, &fds[1], E), "fd");
  for (int i = 0; i < 2; i++) {
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.ptr = i == 0 ? (void *)server : (void *)client;
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }

  /* Phase 1: open every stream (not timed). */
  for (int i = 0; i < n; i++) {
    clients[i].kind = CLIENT;
    clients[i].left = bytes;
    OK(astranet_dial_start(client, target, NULL, 30000, &clients[i], &clients[i].s, E), "dial");
  }
  astranet_stream *s;
  while (astranet_accept(l, &s, NULL) == ASTRANET_OK) { /* until AGAIN: arms ACCEPTABLE */
    servers[accepted].kind = SERVER;
    servers[accepted].s = s;
    OK(astranet_stream_set_userdata(s, &servers[accepted], E), "userdata");
    accepted++;
  }
  static astranet_event evs[1024];
  while (accepted < n || connected < n) {
    struct epoll_event r[2];
    int k = epoll_wait(ep, r, 2, 10000);
    if (k <= 0) DIE("phase 1 stalled");
    for (int j = 0; j < k; j++) {
      size_t m;
      OK(astranet_poll(r[j].data.ptr, evs, 1024, &m, E), "poll");
      for (size_t x = 0; x < m; x++) {
        int kind = *(int *)evs[x].userdata;
        if (kind == LISTENER) {
          while (astranet_accept(l, &s, NULL) == ASTRANET_OK) {
            end *e = &servers[accepted++];
            e->kind = SERVER;
            e->s = s;
            OK(astranet_stream_set_userdata(s, e, E), "userdata");
          }
        } else if (kind == CLIENT) {
          end *e = evs[x].userdata;
          if (!e->ready) connected++;
          e->ready = 1;
        }
      }
    }
  }
  if (tier2) {
    for (int i = 0; i < n; i++) {
      end *es[2] = {&clients[i], &servers[i]};
      for (int j = 0; j < 2; j++) {
        OK(astranet_stream_into_fd(es[j]->s, &es[j]->fd, E), "into_fd");
        fcntl(es[j]->fd, F_SETFL, fcntl(es[j]->fd, F_GETFL) | O_NONBLOCK);
      }
    }
  }

  /* Phase 2: the timed transfer. */
  double t0 = now_s();
  uint64_t total = 0;
  if (!tier2) {
    /* The events of phase 1 are consumed; from here each node has its own loop. */
    for (int j = 0; j < 2; j++) epoll_ctl(ep, EPOLL_CTL_DEL, fds[j], NULL);
    loop_arg sa = {server, fds[0], 1, servers, n}, ca = {client, fds[1], 0, clients, n};
    pthread_t st;
    pthread_create(&st, NULL, node_loop, &sa);
    node_loop(&ca);
    pthread_join(st, NULL);
  }
  if (tier2) {
    fd_arg sa = {servers, n}, ca = {clients, n};
    pthread_t st;
    pthread_create(&st, NULL, fd_loop, &sa);
    fd_loop(&ca);
    pthread_join(st, NULL);
  }
  double secs = now_s() - t0;
  for (int i = 0; i < n; i++) total += servers[i].got;
  if (total != bytes * (uint64_t)n) DIE("received %llu bytes, expected %llu", (unsigned long long)total,
                                        (unsigned long long)(bytes * (uint64_t)n));
  printf("%s %d %llu %.1f\n", argv[1], n, (unsigned long long)bytes, (double)total / (1 << 20) / secs);

  for (int i = 0; i < n; i++) {
    if (tier2) {
      close(clients[i].fd);
      close(servers[i].fd);
    } else {
      astranet_stream_close(clients[i].s);
      astranet_stream_close(servers[i].s);
    }
  }
  astranet_listener_close(l);
  astranet_node_free(client);
  astranet_node_free(server);
  close(ep);
  free(clients);
  free(servers);
  free(rbuf);
  return 0;
}
