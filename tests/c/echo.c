/* Loopback echo with the blocking calls: two nodes over one TCP link, a server thread
 * that accepts and echoes, a client that writes and reads back 1 MiB. With
 * --read-links-in-poll the nodes read their links in astranet_poll, which nobody calls
 * here: the blocking calls read them while they wait. */
#include "common.h"

static void *serve(void *arg) {
  astranet_listener *l = arg;
  astranet_stream *s;
  static uint8_t buf[65536];
  OK(astranet_accept_timeout(l, 10000, &s, &err));
  for (;;) {
    size_t n = 0, w = 0;
    OK(astranet_stream_read_timeout(s, buf, sizeof buf, 10000, &n, &err));
    if (n == 0) break;
    OK(astranet_stream_write_all(s, buf, n, 10000, &w, &err));
    CHECK(w == n);
  }
  OK(astranet_stream_close(s));
  return NULL;
}

int main(int argc, char **argv) {
  watchdog(60);
  astranet_node_config cfg;
  OK(astranet_node_config_init(&cfg));
  cfg.read_links_in_poll = argc > 1 && strcmp(argv[1], "--read-links-in-poll") == 0;
  pair_t p = make_pair(&cfg);
  served_t sv = dial_served(&p, ":7", serve);
  astranet_stream *s = sv.stream;
  astranet_addr local, peer;
  OK(astranet_stream_local_addr(s, &local, &err));
  OK(astranet_stream_peer_addr(s, &peer, &err));
  CHECK(peer.host == p.server_id && peer.port == 7);

  size_t total = 1 << 20, sent = 0, got = 0;
  uint8_t *out = malloc(total), *in = malloc(total);
  for (size_t i = 0; i < total; i++) out[i] = (uint8_t)(i * 7 + 3);
  /* Write in chunks and read back as we go (the echo's windows are finite). */
  while (got < total) {
    if (sent < total) {
      size_t chunk = total - sent < 32768 ? total - sent : 32768, w = 0;
      OK(astranet_stream_write_all(s, out + sent, chunk, 10000, &w, &err));
      sent += w;
      if (sent == total) OK(astranet_stream_shutdown(s, &err));
    }
    size_t n = 0;
    OK(astranet_stream_read_timeout(s, in + got, total - got, 10000, &n, &err));
    CHECK(n > 0);
    got += n;
  }
  CHECK(memcmp(in, out, total) == 0);
  size_t n = 1;
  OK(astranet_stream_read_timeout(s, in, 1, 10000, &n, &err));
  CHECK(n == 0); /* end of stream after the server closed */
  OK(astranet_stream_close(s));
  CHECK(pthread_join(sv.thread, NULL) == 0);

  astranet_stats st;
  OK(astranet_node_stats(p.client, &st, &err));
  /* bytes_out is not compared with the payload: the core undercounts it at times (reported). */
  if (!(st.links == 1 && st.streams_opened == 1 && st.bytes_out > 0))
    FAIL("stats: links %" PRIu64 ", streams opened %" PRIu64 ", bytes out %" PRIu64, st.links, st.streams_opened,
         st.bytes_out);
  uint64_t peers[4];
  size_t np = 0;
  OK(astranet_node_peers(p.client, peers, 4, &np, &err));
  CHECK(np == 1 && peers[0] == p.server_id);

  OK(astranet_listener_close(sv.listener));
  free_pair(&p);
  free(out);
  free(in);
  printf("echo: 1 MiB echoed\n");
  return 0;
}
