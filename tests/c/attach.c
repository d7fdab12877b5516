/* astranet_attach: a link over a socketpair between two nodes of one process carries
 * streams both ways and ends when either node goes; the library owns the fd whatever
 * the call returns; an fd that is not a stream socket, or a silent other end, fails
 * with a clear code, and the fd is closed when the call returns. */
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef struct {
  astranet_node *node;
  int fd;
  uint64_t peer;
  astranet_result r;
} attach_job;

static void *attach_thread(void *arg) {
  attach_job *j = arg;
  j->r = astranet_attach(j->node, j->fd, 5000, &j->peer, NULL);
  return NULL;
}

static void *echo_once(void *arg) {
  astranet_listener *l = arg;
  astranet_stream *s = NULL;
  uint8_t buf[64];
  size_t n = 0, w = 0;
  OK(astranet_accept_timeout(l, 5000, &s, &err));
  OK(astranet_stream_read_timeout(s, buf, sizeof buf, 5000, &n, &err));
  OK(astranet_stream_write_all(s, buf, n, 5000, &w, &err));
  OK(astranet_stream_close(s));
  return NULL;
}

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

int main(void) {
  watchdog(60);
  astranet_node *a, *b;
  uint64_t a_id, b_id;
  OK(astranet_node_new(NULL, &a, &err));
  OK(astranet_node_new(NULL, &b, &err));
  OK(astranet_node_host_id(a, &a_id, &err));
  OK(astranet_node_host_id(b, &b_id, &err));

  /* Both ends handshake at once: one in a thread. */
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  attach_job jb = {b, sv[1], 0, ASTRANET_OK};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, attach_thread, &jb) == 0);
  uint64_t peer = 0;
  OK(astranet_attach(a, sv[0], 5000, &peer, &err));
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(jb.r == ASTRANET_OK);
  CHECK(peer == b_id && jb.peer == a_id);

  /* A stream over it, each way. */
  astranet_node *ends[2][2] = {{a, b}, {b, a}};
  for (int i = 0; i < 2; i++) {
    astranet_listener *l;
    char target[ASTRANET_ADDR_STRLEN];
    OK(astranet_bind(ends[i][1], "", &l, &err));
    target_of(l, target);
    pthread_t server;
    CHECK(pthread_create(&server, NULL, echo_once, l) == 0);
    astranet_stream *s;
    OK(astranet_dial(ends[i][0], target, NULL, 5000, &s, &err));
    size_t n = 0;
    uint8_t got[5];
    OK(astranet_stream_write_all(s, (const uint8_t *)"hello", 5, 5000, &n, &err));
    OK(astranet_stream_read_timeout(s, got, sizeof got, 5000, &n, &err));
    CHECK(n == 5 && memcmp(got, "hello", 5) == 0);
    OK(astranet_stream_close(s));
    CHECK(pthread_join(server, NULL) == 0);
    OK(astranet_listener_close(l));
  }

  /* Freeing one node ends the link: the other can no longer reach it. */
  OK(astranet_node_free(b));
  char target[ASTRANET_ADDR_STRLEN];
  snprintf(target, sizeof target, "%016" PRIx64 ":1", b_id);
  astranet_stream *s = NULL;
  double until = now_s() + 10;
  astranet_result r;
  while ((r = astranet_dial(a, target, NULL, 1000, &s, NULL)) != ASTRANET_ERR_NO_ROUTE) {
    CHECK(now_s() < until);
    if (r == ASTRANET_OK) OK(astranet_stream_close(s));
    usleep(20 * 1000);
  }

  /* Not a stream socket: refused, and closed all the same. */
  int p[2];
  CHECK(pipe(p) == 0);
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_attach(a, p[0], 1000, NULL, &err));
  CHECK(!fd_is_open(p[0]));
  close(p[1]);
  int dg[2];
  CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) == 0);
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_attach(a, dg[0], 1000, NULL, &err));
  CHECK(!fd_is_open(dg[0]));
  close(dg[1]);
  /* A stream socket that is not connected, or listens: refused, and closed. */
  int unconnected = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(unconnected >= 0);
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_attach(a, unconnected, 1000, NULL, &err));
  CHECK(!fd_is_open(unconnected));
  int listening = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in loopback = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(listening, (struct sockaddr *)&loopback, sizeof loopback) == 0 && listen(listening, 1) == 0);
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_attach(a, listening, 1000, NULL, &err));
  CHECK(!fd_is_open(listening));
  /* A timeout of 0 cannot complete a handshake: refused, and closed. */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_attach(a, sv[0], 0, NULL, &err));
  CHECK(!fd_is_open(sv[0]));
  close(sv[1]);
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_attach(a, -1, 1000, NULL, &err));
  int spare = dup(2);
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_attach(NULL, spare, 1000, NULL, &err));
  CHECK(!fd_is_open(spare));

  /* A silent other end: a timeout at about the time asked. */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  double t0 = now_s();
  EXPECT(ASTRANET_ERR_TIMED_OUT, astranet_attach(a, sv[0], 300, NULL, &err));
  double took = now_s() - t0;
  CHECK(took >= 0.29 && took < 5);
  CHECK(!fd_is_open(sv[0]));
  /* The link was given up: the other end reads its HANDSHAKE, then end of file. */
  struct timeval tv = {.tv_sec = 10};
  CHECK(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  char sink[4096];
  ssize_t got;
  size_t total = 0;
  while ((got = read(sv[1], sink, sizeof sink)) > 0) total += (size_t)got;
  CHECK(got == 0 && total > 0);
  close(sv[1]);
  /* An other end that is gone: the link is closed. */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  close(sv[0]);
  EXPECT(ASTRANET_ERR_LINK_CLOSED, astranet_attach(a, sv[1], 5000, NULL, &err));
  CHECK(!fd_is_open(sv[1]));

  OK(astranet_node_free(a));
  printf("attach: ok\n");
  return 0;
}
