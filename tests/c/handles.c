/* NULL arguments, double close / double free, wrong-kind and stale handles, garbage
 * pointers, error objects, bad configurations and targets: error codes, never a crash. */
#include "common.h"

int main(void) {
  watchdog(60);
  astranet_error *e = NULL;
  astranet_node *node = NULL;

  /* Free/close functions accept NULL. */
  OK(astranet_node_free(NULL));
  OK(astranet_listener_close(NULL));
  OK(astranet_stream_close(NULL));
  OK(astranet_stream_abort(NULL));
  astranet_error_free(NULL);
  CHECK(astranet_error_code(NULL) == ASTRANET_ERR_INVALID_ARGUMENT);
  CHECK(strcmp(astranet_error_message(NULL), "") == 0);
  CHECK(strcmp(astranet_result_name(ASTRANET_ERR_TIMED_OUT), "ASTRANET_ERR_TIMED_OUT") == 0);
  CHECK(strcmp(astranet_result_name(9999), "ASTRANET_UNKNOWN") == 0);

  /* NULL where a value is needed; the error object carries code and message. */
  CHECK(astranet_node_new(NULL, NULL, &e) == ASTRANET_ERR_INVALID_ARGUMENT);
  CHECK(e != NULL && astranet_error_code(e) == ASTRANET_ERR_INVALID_ARGUMENT);
  CHECK(strstr(astranet_error_message(e), "NULL") != NULL);
  astranet_error_free(e);
  e = NULL;
  CHECK(astranet_node_config_init(NULL) == ASTRANET_ERR_INVALID_ARGUMENT);

  /* Bad configurations. */
  astranet_node_config cfg;
  OK(astranet_node_config_init(&cfg));
  CHECK(cfg.struct_size == sizeof cfg && cfg.keepalive_ms == 10000 && cfg.worker_threads == 0);
  cfg.struct_size = sizeof cfg + 8;
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_node_new(&cfg, &node, &err));
  CHECK(node == NULL);
  OK(astranet_node_config_init(&cfg));
  cfg.keepalive_ms = 0;
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_node_new(&cfg, &node, &err));
  OK(astranet_node_config_init(&cfg));
  cfg.host_id = 0x1234;
  cfg.worker_threads = 1; /* a runtime of its own */
  OK(astranet_node_new(&cfg, &node, &err));
  uint64_t id = 0;
  OK(astranet_node_host_id(node, &id, &err));
  CHECK(id == 0x1234);
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_node_host_id(node, NULL, &err));

  /* Listener and streams of the node. */
  astranet_listener *l = NULL;
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_bind(node, NULL, &l, &err));
  EXPECT(ASTRANET_ERR_INVALID_TARGET, astranet_bind(node, ":notaport", &l, &err));
  OK(astranet_bind(node, ":7", &l, &err));
  astranet_listener *l2 = NULL;
  EXPECT(ASTRANET_ERR_ADDR_IN_USE, astranet_bind(node, ":7", &l2, &err));
  CHECK(l2 == NULL);

  /* Wrong kinds: a listener as a stream or node, a node as a listener. */
  astranet_stream *s = NULL;
  size_t n = 0;
  uint8_t buf[16];
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_read((astranet_stream *)l, buf, 16, &n, &err));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_close((astranet_stream *)l));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_node_free((astranet_node *)l));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_accept((astranet_listener *)node, &s, &err));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_listener_close((astranet_listener *)node));
  /* NULL handles. */
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_stream_read(NULL, buf, 16, &n, &err));
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_accept(NULL, &s, &err));
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_dial(NULL, "0000000000000001:1", NULL, 100, &s, &err));
  /* Garbage pointers are never dereferenced. */
  int local;
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_read((astranet_stream *)&local, buf, 16, &n, &err));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_close((astranet_stream *)(uintptr_t)0xdeadbeef));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_node_free((astranet_node *)(uintptr_t)-1));

  /* Invalid dial targets. */
  EXPECT(ASTRANET_ERR_INVALID_TARGET, astranet_dial(node, "", NULL, 100, &s, &err));
  EXPECT(ASTRANET_ERR_NO_SUCH_SERVICE, astranet_dial(node, "nobody-offers-this", NULL, 100, &s, &err));
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_dial(node, "\xff\xfe", NULL, 100, &s, &err));
  CHECK(s == NULL);
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_listen(node, "127.0.0.1:0", (char *)buf, 16, &err));

  /* Double close and use after close. */
  OK(astranet_listener_close(l));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_listener_close(l));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_accept(l, &s, &err));
  /* A new listener may reuse the slot: the stale handle still does not work. */
  astranet_listener *l3;
  OK(astranet_bind(node, ":7", &l3, &err));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_accept(l, &s, &err));
  EXPECT(ASTRANET_AGAIN, astranet_accept(l3, &s, &err));
  OK(astranet_listener_close(l3));

  OK(astranet_node_free(node));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_node_free(node));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_node_host_id(node, &id, &err));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_bind(node, ":8", &l, &err));

  /* A stream of a freed node: its handle stays valid and reports the closed link. */
  pair_t p = make_pair(NULL);
  OK(astranet_bind(p.server, ":9", &l, &err));
  char target[ASTRANET_ADDR_STRLEN];
  target_of(l, target);
  OK(astranet_dial_start(p.client, target, NULL, 5000, NULL, &s, &err));
  astranet_stream *ss;
  OK(astranet_accept_timeout(l, 5000, &ss, &err));
  OK(astranet_stream_close(ss));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_close(ss));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_abort(ss));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_write(ss, buf, 1, &n, &err));
  OK(astranet_listener_close(l));
  free_pair(&p);
  astranet_result r = astranet_stream_read_timeout(s, buf, sizeof buf, 5000, &n, &e);
  CHECK(r == ASTRANET_OK || r == ASTRANET_ERR_LINK_CLOSED || r == ASTRANET_ERR_NODE_CLOSED);
  astranet_error_free(e);
  OK(astranet_stream_abort(s));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_abort(s));
  printf("handles: ok\n");
  return 0;
}
