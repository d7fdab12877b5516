/* Helpers shared by the C tests: checks that abort with a message, a watchdog, two
 * nodes joined over loopback TCP, a stream to a served listener, and an open-fd
 * counter. */
#ifndef ASTRANET_TEST_COMMON_H
#define ASTRANET_TEST_COMMON_H

#define _GNU_SOURCE
#include <astranet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...)                                                                 \
  do {                                                                            \
    fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                         \
    fprintf(stderr, __VA_ARGS__);                                                 \
    fprintf(stderr, "\n");                                                        \
    exit(1);                                                                      \
  } while (0)

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) FAIL("%s", #cond);                                               \
  } while (0)

/* Expects `call` (which takes an astranet_error ** as `&err`) to return `want`. */
#define EXPECT(want, call)                                                        \
  do {                                                                            \
    astranet_error *err = NULL;                                                   \
    astranet_result got_ = (call);                                                \
    if (got_ != (want))                                                           \
      FAIL("%s returned %s, expected %s (%s)", #call, astranet_result_name(got_), \
           astranet_result_name(want), err ? astranet_error_message(err) : "");    \
    astranet_error_free(err);                                                     \
  } while (0)

#define OK(call) EXPECT(ASTRANET_OK, call)

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "FAIL: watchdog: the test ran too long\n";
  if (write(2, msg, sizeof msg - 1)) {}
  _exit(2);
}

/* Every test stops by itself after `seconds`. */
static inline void watchdog(unsigned seconds) {
  signal(SIGALRM, on_alarm);
  alarm(seconds);
}

static inline int count_open_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  CHECK(d != NULL);
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the DIR's own fd */
}

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A server node listening on loopback and a client node joined to it. */
typedef struct {
  astranet_node *server;
  astranet_node *client;
  uint64_t server_id;
} pair_t;

static inline pair_t make_pair(const astranet_node_config *cfg) {
  pair_t p;
  char bound[ASTRANET_ADDR_STRLEN];
  uint64_t id = 0;
  OK(astranet_node_new(cfg, &p.server, &err));
  OK(astranet_node_new(cfg, &p.client, &err));
  OK(astranet_listen(p.server, "127.0.0.1:0", bound, sizeof bound, &err));
  OK(astranet_join(p.client, bound, 5000, &id, &err));
  OK(astranet_node_host_id(p.server, &p.server_id, &err));
  CHECK(id == p.server_id);
  return p;
}

static inline void free_pair(pair_t *p) {
  OK(astranet_node_free(p->client));
  OK(astranet_node_free(p->server));
}

/* "host:port" of a listener, for astranet_dial. */
static inline void target_of(astranet_listener *l, char out[ASTRANET_ADDR_STRLEN]) {
  astranet_addr a;
  OK(astranet_listener_addr(l, &a, &err));
  OK(astranet_addr_format(&a, out, ASTRANET_ADDR_STRLEN));
}

/* A listener bound as `port` on the server, a thread running `serve(listener)`, and
 * the client's stream dialed to it. */
typedef struct {
  astranet_listener *listener;
  pthread_t thread;
  astranet_stream *stream;
} served_t;

static inline served_t dial_served(pair_t *p, const char *port, void *(*serve)(void *)) {
  served_t sv;
  char target[ASTRANET_ADDR_STRLEN];
  OK(astranet_bind(p->server, port, &sv.listener, &err));
  CHECK(pthread_create(&sv.thread, NULL, serve, sv.listener) == 0);
  target_of(sv.listener, target);
  OK(astranet_dial(p->client, target, NULL, 5000, &sv.stream, &err));
  return sv;
}

#endif
