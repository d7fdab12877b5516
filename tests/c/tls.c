/* TLS links through the C API: two nodes of the test mesh (tests/fixtures/tls) carry
 * an echo over an authenticated link; a plaintext node and a node of another CA are
 * refused; a half-given TLS configuration is an invalid argument; an access policy
 * (TOML text) lets a peer dial one name and not another.
 * Usage: tls <folder of the fixtures> */
#include "common.h"

static char *slurp(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) FAIL("cannot open %s", path);
  static char buf[8][8192];
  static int next;
  char *out = buf[next++ % 8];
  size_t n = fread(out, 1, sizeof buf[0] - 1, f);
  out[n] = 0;
  fclose(f);
  return out;
}

static astranet_node *tls_node_with(const char *dir, const char *ca, const char *who, uint32_t allow_plaintext,
                                    const char *access) {
  astranet_node_config cfg;
  OK(astranet_node_config_init(&cfg));
  char file[64];
  cfg.tls_ca_pem = slurp(dir, ca);
  snprintf(file, sizeof file, "%s.pem", who);
  cfg.tls_cert_pem = slurp(dir, file);
  snprintf(file, sizeof file, "%s.key", who);
  cfg.tls_key_pem = slurp(dir, file);
  cfg.tls_allow_plaintext = allow_plaintext;
  cfg.handshake_timeout_ms = 2000;
  cfg.access_toml = access;
  astranet_node *n;
  OK(astranet_node_new(&cfg, &n, &err));
  return n;
}

static astranet_node *tls_node(const char *dir, const char *ca, const char *who, uint32_t allow_plaintext) {
  return tls_node_with(dir, ca, who, allow_plaintext, NULL);
}

/* An access policy on the listening node: b may dial "open", not "secret". */
static void access_policy(const char *dir) {
  static const char policy[] = "[[access]]\npeers = \"b\"\ndial = [\"open\"]\n";
  astranet_node *a = tls_node_with(dir, "ca.pem", "a", 0, policy);
  astranet_node *b = tls_node(dir, "ca.pem", "b", 0);
  char bound[64];
  uint64_t peer = 0;
  OK(astranet_listen(a, "127.0.0.1:0", bound, sizeof bound, &err));
  OK(astranet_join(b, bound, 5000, &peer, &err));
  astranet_listener *open, *secret;
  OK(astranet_bind(a, "open", &open, &err));
  OK(astranet_bind(a, "secret", &secret, &err));
  astranet_stream *c, *s;
  OK(astranet_dial_start(b, "open", NULL, 5000, NULL, &c, &err));
  OK(astranet_accept_timeout(open, 5000, &s, &err));
  OK(astranet_stream_close(s));
  OK(astranet_stream_close(c));
  astranet_error *e = NULL;
  CHECK(astranet_dial(b, "secret", NULL, 5000, &c, &e) == ASTRANET_ERR_REFUSED);
  printf("forbidden: %s\n", astranet_error_message(e));
  CHECK(strstr(astranet_error_message(e), "access policy") != NULL);
  astranet_error_free(e);
  OK(astranet_listener_close(open));
  OK(astranet_listener_close(secret));
  OK(astranet_node_free(b));
  OK(astranet_node_free(a));

  /* A policy that does not parse is an invalid argument, naming the problem. */
  astranet_node_config cfg;
  OK(astranet_node_config_init(&cfg));
  cfg.access_toml = "[[access]]\npeer = \"b\"\n";
  astranet_node *bad = NULL;
  e = NULL;
  CHECK(astranet_node_new(&cfg, &bad, &e) == ASTRANET_ERR_INVALID_ARGUMENT && bad == NULL);
  CHECK(strstr(astranet_error_message(e), "peer") != NULL);
  astranet_error_free(e);
}

int main(int argc, char **argv) {
  watchdog(60);
  CHECK(argc == 2);
  const char *dir = argv[1];
  astranet_node *a = tls_node(dir, "ca.pem", "a", 0);
  astranet_node *b = tls_node(dir, "ca.pem", "b", 0);
  uint64_t id = 0;
  OK(astranet_node_host_id(a, &id, &err));
  CHECK(id == 0xa); /* the certificate's host id */

  char bound[64];
  OK(astranet_listen(a, "127.0.0.1:0", bound, sizeof bound, &err));
  uint64_t peer = 0;
  OK(astranet_join(b, bound, 5000, &peer, &err));
  CHECK(peer == 0xa);

  astranet_listener *l;
  OK(astranet_bind(a, ":7", &l, &err));
  astranet_stream *c, *s;
  OK(astranet_dial_start(b, "000000000000000a:7", NULL, 5000, NULL, &c, &err));
  OK(astranet_accept_timeout(l, 5000, &s, &err));
  static const char msg[] = "over TLS";
  size_t n;
  OK(astranet_stream_write_all(c, (const uint8_t *)msg, sizeof msg, 5000, &n, &err));
  char got[sizeof msg];
  size_t have = 0;
  while (have < sizeof msg) {
    OK(astranet_stream_read_timeout(s, (uint8_t *)got + have, sizeof msg - have, 5000, &n, &err));
    CHECK(n > 0);
    have += n;
  }
  CHECK(memcmp(got, msg, sizeof msg) == 0);
  OK(astranet_stream_close(c));
  OK(astranet_stream_close(s));
  OK(astranet_listener_close(l));

  /* A plaintext node and a node of another CA do not get in. */
  astranet_node *plain;
  astranet_node_config pcfg;
  OK(astranet_node_config_init(&pcfg));
  pcfg.handshake_timeout_ms = 1000;
  OK(astranet_node_new(&pcfg, &plain, &err));
  astranet_error *e = NULL;
  CHECK(astranet_join(plain, bound, 5000, &peer, &e) != ASTRANET_OK);
  astranet_error_free(e);
  astranet_node *intruder = tls_node(dir, "ca.pem", "intruder", 0);
  e = NULL;
  CHECK(astranet_join(intruder, bound, 5000, &peer, &e) != ASTRANET_OK);
  astranet_error_free(e);
  size_t count = 0;
  OK(astranet_node_peers(a, NULL, 0, &count, &err));
  CHECK(count == 1);

  /* All three PEM texts or none. */
  astranet_node_config half;
  OK(astranet_node_config_init(&half));
  half.tls_ca_pem = slurp(dir, "ca.pem");
  astranet_node *bad = NULL;
  EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_node_new(&half, &bad, &err));
  CHECK(bad == NULL);

  access_policy(dir);

  OK(astranet_node_free(intruder));
  OK(astranet_node_free(plain));
  OK(astranet_node_free(b));
  OK(astranet_node_free(a));
  printf("TLS: echo over an authenticated link; plaintext and foreign CA refused\n");
  return 0;
}
