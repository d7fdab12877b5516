/* Dial errors: refused (nobody listens), timed out (nobody accepts), no route, and the
 * same delivered through tier 1 after astranet_dial_start. */
#include "common.h"
#include <poll.h>

int main(void) {
  watchdog(60);
  pair_t p = make_pair(NULL);
  char target[ASTRANET_ADDR_STRLEN];
  astranet_stream *s = NULL;
  astranet_error *e = NULL;

  /* Refused at once: no listener on the port. */
  snprintf(target, sizeof target, "%016" PRIx64 ":4242", p.server_id);
  double t0 = now_s();
  CHECK(astranet_dial(p.client, target, NULL, 5000, &s, &e) == ASTRANET_ERR_REFUSED);
  CHECK(astranet_error_code(e) == ASTRANET_ERR_REFUSED);
  printf("refused: %s\n", astranet_error_message(e));
  astranet_error_free(e);
  e = NULL;
  CHECK(now_s() - t0 < 2 && s == NULL);

  /* Timed out: the listener never accepts. */
  astranet_listener *l;
  OK(astranet_bind(p.server, ":4243", &l, &err));
  target_of(l, target);
  t0 = now_s();
  CHECK(astranet_dial(p.client, target, NULL, 300, &s, &e) == ASTRANET_ERR_TIMED_OUT);
  double took = now_s() - t0;
  printf("timed out after %.3f s: %s\n", took, astranet_error_message(e));
  CHECK(took >= 0.29 && took < 3);
  astranet_error_free(e);
  e = NULL;

  /* No route: no link to that host. */
  EXPECT(ASTRANET_ERR_NO_ROUTE, astranet_dial(p.client, "0000000000000001:80", NULL, 1000, &s, &err));

  /* Through tier 1: the dial's error comes with the stream's first read or write. */
  int cfd;
  OK(astranet_node_fd(p.client, &cfd, &err));
  snprintf(target, sizeof target, "%016" PRIx64 ":4244", p.server_id);
  static int tag;
  OK(astranet_dial_start(p.client, target, NULL, 5000, &tag, &s, &err));
  struct pollfd pf = {cfd, POLLIN, 0};
  CHECK(poll(&pf, 1, 5000) == 1);
  astranet_event ev[4];
  size_t n = 0;
  OK(astranet_poll(p.client, ev, 4, &n, &err));
  CHECK(n == 1 && ev[0].userdata == &tag);
  CHECK(ev[0].events == (ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE));
  uint8_t buf[8];
  EXPECT(ASTRANET_ERR_REFUSED, astranet_stream_read(s, buf, sizeof buf, &n, &err));
  EXPECT(ASTRANET_ERR_REFUSED, astranet_stream_write(s, buf, sizeof buf, &n, &err));
  OK(astranet_stream_close(s));

  /* Tier 1 timed out: nobody accepts; the dial's end is reported after its timeout,
   * with both bits, and every call gives its error. */
  target_of(l, target);
  t0 = now_s();
  OK(astranet_dial_start(p.client, target, NULL, 300, &tag, &s, &err));
  EXPECT(ASTRANET_AGAIN, astranet_stream_read(s, buf, sizeof buf, &n, &err));
  astranet_addr local;
  EXPECT(ASTRANET_AGAIN, astranet_stream_local_addr(s, &local, &err));
  CHECK(poll(&pf, 1, 5000) == 1);
  OK(astranet_poll(p.client, ev, 4, &n, &err));
  took = now_s() - t0;
  CHECK(n == 1 && ev[0].userdata == &tag);
  CHECK(ev[0].events == (ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE));
  CHECK(took >= 0.29 && took < 3);
  EXPECT(ASTRANET_ERR_TIMED_OUT, astranet_stream_read(s, buf, sizeof buf, &n, &err));
  EXPECT(ASTRANET_ERR_TIMED_OUT, astranet_stream_write(s, buf, sizeof buf, &n, &err));
  EXPECT(ASTRANET_ERR_TIMED_OUT, astranet_stream_local_addr(s, &local, &err));
  OK(astranet_stream_close(s));
  /* A timeout of 0 may end the dial before astranet_dial_start returns: still one
   * event. */
  OK(astranet_dial_start(p.client, target, NULL, 0, &tag, &s, &err));
  CHECK(poll(&pf, 1, 5000) == 1);
  OK(astranet_poll(p.client, ev, 4, &n, &err));
  CHECK(n == 1 && ev[0].userdata == &tag);
  EXPECT(ASTRANET_ERR_TIMED_OUT, astranet_stream_read(s, buf, sizeof buf, &n, &err));
  OK(astranet_stream_close(s));
  /* The dial given up leaves the listener's backlog (before the next accept: else
   * that accept could take it, and the stream would be reset by the dialer). */
  astranet_stats st = {0};
  for (int i = 0; i < 200; i++) {
    OK(astranet_node_stats(p.server, &st, &err));
    if (st.pending_dials == 0)
      break;
    usleep(10000);
  }
  CHECK(st.pending_dials == 0);

  /* Tier 1 without a route: reported at once, as an event. */
  OK(astranet_dial_start(p.client, "0000000000000001:80", NULL, 5000, &tag, &s, &err));
  CHECK(poll(&pf, 1, 5000) == 1);
  OK(astranet_poll(p.client, ev, 4, &n, &err));
  CHECK(n == 1 && ev[0].userdata == &tag);
  EXPECT(ASTRANET_ERR_NO_ROUTE, astranet_stream_read(s, buf, sizeof buf, &n, &err));
  OK(astranet_stream_close(s));

  /* Blocking calls with a timeout of their own. */
  astranet_stream *c, *sv;
  target_of(l, target);
  OK(astranet_dial_start(p.client, target, NULL, 5000, NULL, &c, &err));
  OK(astranet_accept_timeout(l, 5000, &sv, &err));
  t0 = now_s();
  EXPECT(ASTRANET_ERR_TIMED_OUT, astranet_stream_read_timeout(sv, buf, sizeof buf, 200, &n, &err));
  CHECK(now_s() - t0 >= 0.19);
  EXPECT(ASTRANET_ERR_TIMED_OUT, astranet_accept_timeout(l, 100, &s, &err));
  OK(astranet_stream_close(c));
  OK(astranet_stream_close(sv));
  OK(astranet_listener_close(l));

  /* Join: refused TCP connection, and a closed node. */
  astranet_node *lone;
  OK(astranet_node_new(NULL, &lone, &err));
  EXPECT(ASTRANET_ERR_REFUSED, astranet_join(lone, "127.0.0.1:1", 2000, NULL, &err));
  OK(astranet_node_free(lone));
  free_pair(&p);
  printf("dial errors: ok\n");
  return 0;
}
