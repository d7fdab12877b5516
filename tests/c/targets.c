/* The shared target table (tests/targets.tsv, read by every front): each text that
 * dial or bind must refuse is refused at once with ASTRANET_ERR_INVALID_TARGET, each
 * valid one is taken (bind: with the table's name and port). Also the error of a TCP
 * address that does not resolve. Usage: targets <path of targets.tsv> */
#include "common.h"

/* The table's escapes: \\ \t \n \xHH. Returns the length written. */
static size_t unescape(const char *s, char *out) {
  size_t n = 0;
  while (*s) {
    if (*s != '\\') {
      out[n++] = *s++;
      continue;
    }
    char e = s[1];
    if (e == 'x') {
      char hex[3] = {s[2], s[3], 0};
      out[n++] = (char)strtol(hex, NULL, 16);
      s += 4;
      continue;
    }
    out[n++] = e == 't' ? '\t' : e == 'n' ? '\n' : e;
    s += 2;
  }
  out[n] = 0;
  return n;
}

/* The row's input, repeated; `*has_nul`: an embedded NUL, which C cannot pass. */
static char *input_of(const char *text, const char *repeat, int *has_nul) {
  char one[1024];
  size_t len = unescape(text, one);
  *has_nul = strlen(one) != len;
  long times = *repeat ? strtol(repeat, NULL, 10) : 1;
  char *all = malloc(len * (size_t)times + 1);
  CHECK(all);
  for (long i = 0; i < times; i++) memcpy(all + len * (size_t)i, one, len);
  all[len * (size_t)times] = 0;
  return all;
}

static void check_dial(astranet_node *node, int line, const char *input, const char *expect) {
  astranet_stream *s = NULL;
  astranet_error *e = NULL;
  double t0 = now_s();
  astranet_result r = astranet_dial(node, input, NULL, strcmp(expect, "invalid") == 0 ? 30000 : 50, &s, &e);
  if (strcmp(expect, "invalid") == 0) {
    if (r != ASTRANET_ERR_INVALID_TARGET) FAIL("line %d: %s, expected INVALID_TARGET", line, astranet_result_name(r));
    if (strlen(astranet_error_message(e)) >= 300) FAIL("line %d: the message quotes a bounded prefix", line);
    if (now_s() - t0 > 1) FAIL("line %d: not refused at once", line);
  } else if (r == ASTRANET_OK || r == ASTRANET_ERR_INVALID_TARGET) {
    /* Valid: looked for (no such service, no route), never refused as a text. */
    FAIL("line %d: %s (%s)", line, astranet_result_name(r), e ? astranet_error_message(e) : "");
  }
  astranet_error_free(e);
}

static void check_bind(astranet_node *node, int line, const char *input, const char *expect) {
  astranet_listener *l = NULL;
  astranet_error *e = NULL;
  astranet_result r = astranet_bind(node, input, &l, &e);
  if (strcmp(expect, "invalid") == 0) {
    if (r != ASTRANET_ERR_INVALID_TARGET) FAIL("line %d: %s, expected INVALID_TARGET", line, astranet_result_name(r));
    if (strlen(astranet_error_message(e)) >= 300) FAIL("line %d: the message quotes a bounded prefix", line);
    astranet_error_free(e);
    return;
  }
  if (r != ASTRANET_OK) FAIL("line %d: %s (%s)", line, astranet_result_name(r), astranet_error_message(e));
  char name[300];
  unsigned long port;
  CHECK(sscanf(expect, "bind %299s %lu", name, &port) == 2);
  astranet_addr a;
  OK(astranet_listener_addr(l, &a, &err));
  if (port != 0 && a.port != port) FAIL("line %d: bound port %u, expected %lu", line, (unsigned)a.port, port);
  astranet_service_list *list;
  const astranet_service *items;
  size_t count;
  OK(astranet_services(node, &list, &err));
  CHECK(astranet_service_list_items(list, &items, &count) == ASTRANET_OK);
  if (strcmp(name, "-") == 0 ? count != 0 : count != 1 || strcmp(items[0].name, name) != 0)
    FAIL("line %d: %zu services, expected %s", line, count, name);
  astranet_service_list_free(list);
  CHECK(astranet_listener_close(l) == ASTRANET_OK);
}

int main(int argc, char **argv) {
  watchdog(120);
  CHECK(argc == 2);
  FILE *f = fopen(argv[1], "r");
  if (!f) FAIL("cannot open %s", argv[1]);
  astranet_node *node;
  OK(astranet_node_new(NULL, &node, &err));
  char line[4096];
  int lineno = 0, rows = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    line[strcspn(line, "\n")] = 0;
    if (line[0] == '#' || line[0] == 0) continue;
    char *cols[4];
    char *p = line;
    for (int i = 0; i < 4; i++) {
      cols[i] = p;
      p = strchr(p, '\t');
      if (i < 3) {
        if (!p) FAIL("line %d: not four columns", lineno);
        *p++ = 0;
      }
    }
    int has_nul;
    char *input = input_of(cols[1], cols[2], &has_nul);
    if (has_nul) {
      /* C strings end at NUL: the text reaches the library as its prefix. */
      free(input);
      continue;
    }
    if (strcmp(cols[0], "dial") == 0)
      check_dial(node, lineno, input, cols[3]);
    else
      check_bind(node, lineno, input, cols[3]);
    free(input);
    rows++;
  }
  fclose(f);
  CHECK(rows > 30);

  /* TCP addresses that do not resolve have their own code. */
  char bound[64];
  EXPECT(ASTRANET_ERR_RESOLVE, astranet_listen(node, "nonsense", bound, sizeof bound, &err));
  EXPECT(ASTRANET_ERR_RESOLVE, astranet_listen(node, "256.0.0.1:0", bound, sizeof bound, &err));
  uint64_t peer;
  EXPECT(ASTRANET_ERR_RESOLVE, astranet_join(node, "no-such-host.invalid:1", 5000, &peer, &err));
  OK(astranet_node_free(node));
  printf("%d rows of the target table\n", rows);
  return 0;
}
