/* The mesh through the C API: roles and environments in the configuration, binding a
 * named service, listing services and routes, dialing by name and by hash key. */
#include "common.h"

static void *accept_echo(void *arg) {
  astranet_listener *l = arg;
  for (;;) {
    astranet_stream *s;
    if (astranet_accept_timeout(l, -1, &s, NULL) != ASTRANET_OK) return NULL; /* closed */
    uint8_t buf[64];
    size_t n = 0, w = 0;
    if (astranet_stream_read_timeout(s, buf, sizeof buf, 5000, &n, NULL) == ASTRANET_OK)
      astranet_stream_write_all(s, buf, n, 5000, &w, NULL);
    astranet_stream_close(s);
  }
}

static void roundtrip(astranet_node *node, const char *target, const char *key) {
  astranet_stream *s;
  uint8_t buf[8];
  size_t n = 0;
  OK(astranet_dial(node, target, key, 5000, &s, &err));
  OK(astranet_stream_write_all(s, (const uint8_t *)"ping", 4, 5000, &n, &err));
  OK(astranet_stream_read_timeout(s, buf, sizeof buf, 5000, &n, &err));
  CHECK(n == 4 && memcmp(buf, "ping", 4) == 0);
  OK(astranet_stream_close(s));
}

int main(void) {
  watchdog(60);
  astranet_node_config cfg;
  OK(astranet_node_config_init(&cfg));
  cfg.environment = "test.c";
  cfg.role = 7;
  astranet_node *bad;
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_node_new(&cfg, &bad, &err));
  cfg.role = ASTRANET_ROLE_SERVER;
  astranet_node *server;
  OK(astranet_node_new(&cfg, &server, &err));
  cfg.role = ASTRANET_ROLE_CLIENT;
  astranet_node *client;
  OK(astranet_node_new(&cfg, &client, &err));
  char bound[ASTRANET_ADDR_STRLEN];
  uint64_t sid = 0, cid = 0;
  OK(astranet_listen(server, "127.0.0.1:0", bound, sizeof bound, &err));
  OK(astranet_join(client, bound, 5000, &sid, &err));
  OK(astranet_node_host_id(client, &cid, &err));

  astranet_listener *l;
  OK(astranet_bind(server, "echo", &l, &err));
  pthread_t t;
  CHECK(pthread_create(&t, NULL, accept_echo, l) == 0);

  /* The server lists its own service; the client learns it from the announcement. */
  astranet_service_list *list;
  const astranet_service *items;
  size_t count = 0;
  OK(astranet_services(server, &list, &err));
  OK(astranet_service_list_items(list, &items, &count));
  CHECK(count == 1 && strcmp(items[0].name, "echo.test.c") == 0);
  CHECK(items[0].reach == ASTRANET_REACH_LOCAL && items[0].via == 0 && items[0].addr.host == sid);
  astranet_service_list_free(list);
  double t0 = now_s();
  for (;;) {
    OK(astranet_services(client, &list, &err));
    OK(astranet_service_list_items(list, &items, &count));
    int found = count == 1 && strcmp(items[0].name, "echo.test.c") == 0 && items[0].reach == ASTRANET_REACH_DIRECT &&
                items[0].via == sid;
    astranet_service_list_free(list);
    if (found) break;
    CHECK(now_s() - t0 < 5);
    usleep(10000);
  }

  astranet_route routes[4];
  OK(astranet_routes(client, routes, 4, &count, &err));
  CHECK(count == 1 && routes[0].host == sid && routes[0].via == sid && routes[0].direct == 1);
  OK(astranet_routes(client, NULL, 0, &count, &err));
  CHECK(count == 1);

  /* By name (the environment is appended), and by name with a hash key. */
  roundtrip(client, "echo", NULL);
  roundtrip(client, "echo", "user-42");
  astranet_stream *s;
  EXPECT(ASTRANET_ERR_NO_SUCH_SERVICE, astranet_dial(client, "nobody", NULL, 200, &s, &err));

  OK(astranet_listener_close(l));
  CHECK(pthread_join(t, NULL) == 0);
  OK(astranet_node_free(client));
  OK(astranet_node_free(server));
  printf("mesh: services, routes, dial by name and key: ok\n");
  return 0;
}
