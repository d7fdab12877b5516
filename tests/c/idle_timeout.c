/* Stream idle timeouts: a quiet stream is reset (TIMED_OUT here, RESET at the peer),
 * traffic keeps one alive, the node's stream_idle_timeout_ms applies to every stream,
 * and bad handles are refused. */
#include "common.h"

static void connect_pair(pair_t *p, astranet_listener *l, astranet_stream **c, astranet_stream **s) {
  char target[ASTRANET_ADDR_STRLEN];
  target_of(l, target);
  OK(astranet_dial_start(p->client, target, NULL, 5000, NULL, c, &err));
  OK(astranet_accept_timeout(l, 5000, s, &err));
  /* Until the dial completes, setting the timeout says ASTRANET_AGAIN; one byte each
   * way waits for that. */
  uint8_t b = 0;
  size_t n = 0;
  OK(astranet_stream_write_all(*c, &b, 1, 5000, NULL, &err));
  OK(astranet_stream_read_timeout(*s, &b, 1, 5000, &n, &err));
}

int main(void) {
  watchdog(60);
  uint8_t buf[16];
  size_t n = 0;

  /* Per stream. */
  pair_t p = make_pair(NULL);
  astranet_listener *l;
  OK(astranet_bind(p.server, ":7", &l, &err));
  astranet_stream *c, *s;
  connect_pair(&p, l, &c, &s);
  OK(astranet_stream_set_idle_timeout(c, 300, &err));
  for (int i = 0; i < 8; i++) {
    OK(astranet_stream_write_all(c, (const uint8_t *)"x", 1, 5000, NULL, &err));
    OK(astranet_stream_read_timeout(s, buf, 1, 5000, &n, &err));
    usleep(100 * 1000);
  }
  double t0 = now_s();
  EXPECT(ASTRANET_ERR_TIMED_OUT, astranet_stream_read_timeout(c, buf, sizeof buf, 5000, &n, &err));
  CHECK(now_s() - t0 < 1.0);
  EXPECT(ASTRANET_ERR_RESET, astranet_stream_read_timeout(s, buf, sizeof buf, 5000, &n, &err));
  OK(astranet_stream_close(c));
  OK(astranet_stream_close(s));

  /* A negative timeout turns it off; a closed handle is refused. */
  connect_pair(&p, l, &c, &s);
  OK(astranet_stream_set_idle_timeout(c, 100, &err));
  OK(astranet_stream_set_idle_timeout(c, -1, &err));
  usleep(400 * 1000);
  OK(astranet_stream_write_all(c, (const uint8_t *)"alive", 5, 5000, NULL, &err));
  OK(astranet_stream_read_timeout(s, buf, 5, 5000, &n, &err));
  CHECK(n == 5 && memcmp(buf, "alive", 5) == 0);
  OK(astranet_stream_close(c));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_set_idle_timeout(c, 100, &err));
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_stream_set_idle_timeout(NULL, 100, &err));
  OK(astranet_stream_close(s));
  OK(astranet_listener_close(l));
  free_pair(&p);

  /* The node's default. */
  astranet_node_config cfg;
  OK(astranet_node_config_init(&cfg));
  CHECK(cfg.stream_idle_timeout_ms == 0);
  cfg.stream_idle_timeout_ms = 200;
  p = make_pair(&cfg);
  OK(astranet_bind(p.server, ":7", &l, &err));
  connect_pair(&p, l, &c, &s);
  /* Both ends have it: the first to expire resets the other. Either way the read ends
   * long before its own 3 s timeout. */
  t0 = now_s();
  astranet_result r = astranet_stream_read_timeout(s, buf, sizeof buf, 3000, &n, NULL);
  CHECK(r == ASTRANET_ERR_TIMED_OUT || r == ASTRANET_ERR_RESET);
  CHECK(now_s() - t0 < 1.5);
  OK(astranet_stream_close(c));
  OK(astranet_stream_close(s));
  OK(astranet_listener_close(l));
  free_pair(&p);
  printf("idle timeouts: ok\n");
  return 0;
}
