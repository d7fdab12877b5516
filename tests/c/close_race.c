/* Close from another thread while a read, a write, an accept or a poll blocks: the
 * blocked call returns an error code (never a crash, never a hang). */
#include "common.h"

typedef struct {
  astranet_stream *s;
  astranet_listener *l;
  astranet_result r;
  size_t n;
} job;

static void *blocked_read(void *arg) {
  job *j = arg;
  uint8_t buf[100];
  j->r = astranet_stream_read_timeout(j->s, buf, sizeof buf, -1, &j->n, NULL);
  return NULL;
}

static void *blocked_write(void *arg) {
  job *j = arg;
  static uint8_t big[1 << 22];
  j->r = astranet_stream_write_all(j->s, big, sizeof big, -1, &j->n, NULL);
  return NULL;
}

static void *blocked_accept(void *arg) {
  job *j = arg;
  astranet_stream *s = NULL;
  j->r = astranet_accept_timeout(j->l, -1, &s, NULL);
  return NULL;
}

static void run(void *(*fn)(void *), job *j, void (*closer)(job *)) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, fn, j) == 0);
  usleep(200 * 1000); /* let it block */
  closer(j);
  CHECK(pthread_join(t, NULL) == 0);
}

static void close_stream(job *j) { OK(astranet_stream_close(j->s)); }
static void abort_stream(job *j) { OK(astranet_stream_abort(j->s)); }
static void close_listener(job *j) { OK(astranet_listener_close(j->l)); }

typedef struct {
  astranet_node *node;
  astranet_result r;
} poll_job;

static void *blocked_poll(void *arg) {
  poll_job *j = arg;
  astranet_event ev[4];
  size_t n;
  j->r = astranet_poll_wait(j->node, ev, 4, -1, &n, NULL);
  return NULL;
}

static void *free_nodes(void *arg) {
  free_pair(arg);
  return NULL;
}

int main(void) {
  watchdog(60);
  pair_t p = make_pair(NULL);
  astranet_listener *l;
  OK(astranet_bind(p.server, ":1", &l, &err));
  char target[ASTRANET_ADDR_STRLEN];
  target_of(l, target);

  for (int round = 0; round < 3; round++) {
    astranet_stream *c, *s;
    OK(astranet_dial_start(p.client, target, NULL, 5000, NULL, &c, &err));
    OK(astranet_accept_timeout(l, 5000, &s, &err));
    job j = {c, NULL, ASTRANET_OK, 0};
    double t0 = now_s();
    if (round == 0) run(blocked_read, &j, close_stream);
    if (round == 1) run(blocked_read, &j, abort_stream);
    if (round == 2) run(blocked_write, &j, close_stream); /* nobody reads: it blocks */
    if (j.r != ASTRANET_ERR_CLOSED) FAIL("round %d: %s", round, astranet_result_name(j.r));
    CHECK(now_s() - t0 < 5);
    EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_read(c, NULL, 0, &j.n, &err));
    OK(astranet_stream_close(s));
  }

  job j = {NULL, l, ASTRANET_OK, 0};
  run(blocked_accept, &j, close_listener);
  if (j.r != ASTRANET_ERR_LISTENER_CLOSED) FAIL("accept: %s", astranet_result_name(j.r));

  /* astranet_poll_wait checks its arguments before it waits. */
  astranet_event ev[4];
  size_t n;
  double t0 = now_s();
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_poll_wait(p.client, ev, 0, 3000, &n, &err));
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_poll_wait(p.client, NULL, 4, 3000, &n, &err));
  CHECK(now_s() - t0 < 1);

  /* A node freed while another thread waits in astranet_poll_wait without a limit. */
  poll_job pj = {NULL, ASTRANET_OK};
  OK(astranet_node_new(NULL, &pj.node, &err));
  pthread_t waiter;
  CHECK(pthread_create(&waiter, NULL, blocked_poll, &pj) == 0);
  usleep(200 * 1000); /* let it block */
  t0 = now_s();
  OK(astranet_node_free(pj.node));
  CHECK(pthread_join(waiter, NULL) == 0);
  if (pj.r != ASTRANET_ERR_BAD_HANDLE) FAIL("poll_wait on a freed node: %s", astranet_result_name(pj.r));
  CHECK(now_s() - t0 < 5);

  /* Freeing the nodes from another thread than the one that made them. */
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_nodes, &p) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  printf("close race: ok\n");
  return 0;
}
