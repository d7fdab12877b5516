/* The C front against the original Go package, run as a real process (gopeer): a Go
 * node joins a C node; each dials the other's echo service by name, the Go side with the
 * Go idiom (write, Close(), read to EOF), the C side with a half-close.
 *   go_peer <path to gopeer> */
#include "../../c/common.h"

#include <sys/wait.h>

static pid_t go_pid;
static FILE *go_in, *go_out;

/* Starts gopeer with `args` (NULL-terminated) and waits for its "ready" line. */
static void go_start(const char *path, char *const args[]) {
  int to_go[2], from_go[2];
  CHECK(pipe(to_go) == 0 && pipe(from_go) == 0);
  go_pid = fork();
  CHECK(go_pid >= 0);
  if (go_pid == 0) {
    dup2(to_go[0], 0);
    dup2(from_go[1], 1);
    close(to_go[1]);
    close(from_go[0]);
    execv(path, args);
    _exit(127);
  }
  close(to_go[0]);
  close(from_go[1]);
  go_in = fdopen(to_go[1], "w");
  go_out = fdopen(from_go[0], "r");
  CHECK(go_in && go_out);
  char line[4096];
  while (fgets(line, sizeof line, go_out)) {
    if (strstr(line, "\"event\":\"ready\"")) return;
    if (!strstr(line, "\"event\":\"listening\"")) FAIL("gopeer: %s", line);
  }
  FAIL("gopeer exited before it was ready");
}

/* Runs one command and returns whether the Go side answered "ok":true. */
static int go_cmd(int id, const char *cmd, char *answer, size_t cap) {
  fprintf(go_in, "%d %s\n", id, cmd);
  fflush(go_in);
  char want[32];
  snprintf(want, sizeof want, "\"id\":%d,", id);
  while (fgets(answer, (int)cap, go_out)) {
    if (strstr(answer, want)) return strstr(answer, "\"ok\":true") != NULL;
  }
  FAIL("gopeer exited during `%s`", cmd);
}

static void go_stop(void) {
  fclose(go_in); /* gopeer exits when its stdin closes */
  int status;
  CHECK(waitpid(go_pid, &status, 0) == go_pid);
  fclose(go_out);
}

static void *echo_loop(void *arg) {
  astranet_listener *l = arg;
  astranet_stream *s;
  while (astranet_accept_timeout(l, -1, &s, NULL) == ASTRANET_OK) {
    static uint8_t buf[65536];
    size_t n = 0, w = 0;
    while (astranet_stream_read_timeout(s, buf, sizeof buf, 30000, &n, NULL) == ASTRANET_OK && n > 0)
      if (astranet_stream_write_all(s, buf, n, 30000, &w, NULL) != ASTRANET_OK) break;
    astranet_stream_close(s);
  }
  return NULL;
}

enum { SIZE = 300000 };
static uint8_t out[SIZE], back[SIZE + 1];

/* Writes the message and half-closes, while the main thread reads the echo (it is over a
 * window each way: the echo must be read while it is written). */
static void *send_all(void *arg) {
  astranet_stream *s = arg;
  size_t n = 0;
  OK(astranet_stream_write_all(s, out, SIZE, 30000, &n, &err));
  OK(astranet_stream_shutdown(s, &err));
  return NULL;
}

static int has_service(astranet_node *node, const char *name) {
  astranet_service_list *list;
  const astranet_service *items;
  size_t count = 0;
  int found = 0;
  OK(astranet_services(node, &list, &err));
  OK(astranet_service_list_items(list, &items, &count));
  for (size_t i = 0; i < count; i++) found |= strcmp(items[i].name, name) == 0;
  astranet_service_list_free(list);
  return found;
}

int main(int argc, char **argv) {
  watchdog(120);
  if (argc < 2) FAIL("usage: go_peer <path to gopeer>");
  astranet_node_config cfg;
  OK(astranet_node_config_init(&cfg));
  cfg.environment = "c";
  astranet_node *node;
  OK(astranet_node_new(&cfg, &node, &err));
  char bound[ASTRANET_ADDR_STRLEN];
  OK(astranet_listen(node, "127.0.0.1:0", bound, sizeof bound, &err));
  char *const args[] = {argv[1], "-env", "c", "-join", bound, NULL};
  go_start(argv[1], args);

  astranet_listener *l;
  OK(astranet_bind(node, "cecho", &l, &err));
  pthread_t t;
  CHECK(pthread_create(&t, NULL, echo_loop, l) == 0);

  /* The Go node dials the C service: write 1 MiB, Close(), read the echo to EOF. */
  char answer[4096];
  int tries = 0;
  while (!go_cmd(1, "dial-echo cecho 1048576 5 1 2 60", answer, sizeof answer)) {
    if (++tries == 20 || !strstr(answer, "not found")) FAIL("Go dial of the C echo: %s", answer);
  }

  /* The C node dials the Go service: data, half-close, the echo, then EOF. */
  if (!go_cmd(2, "serve gecho echo", answer, sizeof answer)) FAIL("%s", answer);
  for (int i = 0; i < 200 && !has_service(node, "gecho.c"); i++) usleep(50000);
  CHECK(has_service(node, "gecho.c"));
  astranet_stream *s;
  OK(astranet_dial(node, "gecho", NULL, 10000, &s, &err));
  for (size_t i = 0; i < SIZE; i++) out[i] = (uint8_t)(i * 7 + i / 251);
  size_t n = 0, got = 0;
  pthread_t writer;
  CHECK(pthread_create(&writer, NULL, send_all, s) == 0);
  for (;;) {
    OK(astranet_stream_read_timeout(s, back + got, sizeof back - got, 30000, &n, &err));
    if (n == 0) break;
    got += n;
  }
  CHECK(pthread_join(writer, NULL) == 0);
  CHECK(got == SIZE && memcmp(out, back, SIZE) == 0);
  OK(astranet_stream_close(s));

  go_stop();
  OK(astranet_listener_close(l));
  CHECK(pthread_join(t, NULL) == 0);
  OK(astranet_node_free(node));
  puts("ok: C and Go nodes echoed each other");
  return 0;
}
