/* 10,000 concurrent streams driven through one epoll on the node fds (tier 1), while
 * the process's open-fd count stays constant: each client stream is dialed without
 * waiting, sends a message, and gets it echoed; all stay open until every echo is in.
 * With --read-links-in-poll, both nodes read their links inside astranet_poll (the
 * node fd is then also readable for link bytes, and a poll may return no event). */
#include "common.h"
#include <stdbool.h>
#include <sys/epoll.h>

#define N 10000
#define MSG 32

enum { LISTENER, CLIENT, SERVER };

typedef struct conn {
  int kind;
  astranet_stream *s;
  int sent;
  size_t got;
  uint8_t msg[MSG];
  uint8_t in[MSG];
} conn;

static int listener_tag = LISTENER;
static astranet_listener *lst;
static conn clients[N];
static int echoed, server_open, server_closed;

static void make_msg(conn *c, int i) {
  snprintf((char *)c->msg, MSG, "stream %05d says hello......", i);
}

static void server_event(conn *c) {
  uint8_t buf[256];
  for (;;) {
    size_t n = 0, w = 0;
    astranet_error *err = NULL;
    astranet_result r = astranet_stream_read(c->s, buf, sizeof buf, &n, &err);
    if (r == ASTRANET_AGAIN) return;
    if (r != ASTRANET_OK) FAIL("server read: %s", astranet_error_message(err));
    if (n == 0) {
      OK(astranet_stream_close(c->s));
      free(c);
      server_closed++;
      return;
    }
    /* 32 bytes always fit the window: a short echo would be a bug here. */
    OK(astranet_stream_write(c->s, buf, n, &w, &err));
    CHECK(w == n);
  }
}

static void accept_all(void) {
  for (;;) {
    astranet_stream *s;
    astranet_result r = astranet_accept(lst, &s, NULL);
    if (r == ASTRANET_AGAIN) return;
    CHECK(r == ASTRANET_OK);
    conn *c = calloc(1, sizeof *c);
    c->kind = SERVER;
    c->s = s;
    server_open++;
    OK(astranet_stream_set_userdata(s, c, &err));
    server_event(c);
  }
}

static void client_event(conn *c, uint32_t events) {
  size_t n = 0;
  (void)events;
  if (!c->sent) {
    astranet_error *err = NULL;
    astranet_result r = astranet_stream_write(c->s, c->msg, MSG, &n, &err);
    if (r == ASTRANET_AGAIN) return; /* still dialing */
    if (r != ASTRANET_OK) FAIL("client write: %s", astranet_error_message(err));
    CHECK(n == MSG);
    c->sent = 1;
  }
  while (c->got < MSG) {
    astranet_result r = astranet_stream_read(c->s, c->in + c->got, MSG - c->got, &n, NULL);
    if (r == ASTRANET_AGAIN) return;
    CHECK(r == ASTRANET_OK && n > 0);
    c->got += n;
  }
  CHECK(memcmp(c->in, c->msg, MSG) == 0);
  echoed++;
}

int main(int argc, char **argv) {
  watchdog(120);
  astranet_node_config cfg;
  OK(astranet_node_config_init(&cfg));
  bool reads = argc > 1 && strcmp(argv[1], "--read-links-in-poll") == 0;
  bool reads_and_writes = argc > 1 && strcmp(argv[1], "--links-in-poll") == 0;
  if (reads || reads_and_writes) {
    astranet_node *bad = NULL;
    cfg.read_links_in_poll = 3;
    EXPECT(ASTRANET_ERR_INVALID_ARGUMENT, astranet_node_new(&cfg, &bad, &err));
    CHECK(bad == NULL);
    cfg.read_links_in_poll = reads ? 1 : 2;
  }
  pair_t p = make_pair(&cfg);
  int sfd, cfd;
  OK(astranet_node_fd(p.server, &sfd, &err));
  OK(astranet_node_fd(p.client, &cfd, &err));
  OK(astranet_bind(p.server, ":80", &lst, &err));
  OK(astranet_listener_set_userdata(lst, &listener_tag, &err));
  EXPECT(ASTRANET_AGAIN, astranet_accept(lst, &(astranet_stream *){NULL}, &err));

  int ep = epoll_create1(EPOLL_CLOEXEC);
  CHECK(ep >= 0);
  struct epoll_event e = {.events = EPOLLIN};
  e.data.ptr = p.server;
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &e) == 0);
  e.data.ptr = p.client;
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &e) == 0);

  int fds_before = count_open_fds();
  char target[ASTRANET_ADDR_STRLEN];
  target_of(lst, target);
  double t0 = now_s();
  for (int i = 0; i < N; i++) {
    clients[i].kind = CLIENT;
    make_msg(&clients[i], i);
    OK(astranet_dial_start(p.client, target, NULL, 30000, &clients[i], &clients[i].s, &err));
  }
  CHECK(count_open_fds() == fds_before);

  static astranet_event evs[512];
  long loops = 0, events = 0;
  int max_open = 0;
  while (echoed < N) {
    struct epoll_event ready[2];
    int k = epoll_wait(ep, ready, 2, 10000);
    if (k == 0) FAIL("no event for 10 s; %d of %d echoed", echoed, N);
    CHECK(k > 0);
    for (int j = 0; j < k; j++) {
      astranet_node *node = ready[j].data.ptr;
      size_t n;
      do {
        OK(astranet_poll(node, evs, 512, &n, &err));
        events += (long)n;
        for (size_t x = 0; x < n; x++) {
          int kind = *(int *)evs[x].userdata;
          if (kind == LISTENER) accept_all();
          else if (kind == SERVER) server_event(evs[x].userdata);
          else client_event(evs[x].userdata, evs[x].events);
        }
      } while (n == 512);
    }
    if (server_open - server_closed > max_open) max_open = server_open - server_closed;
    if (++loops % 64 == 0) CHECK(count_open_fds() == fds_before);
  }
  double t1 = now_s();
  CHECK(count_open_fds() == fds_before);
  astranet_stats st;
  OK(astranet_node_stats(p.client, &st, &err));
  CHECK(st.streams >= N); /* all open at once */
  CHECK(max_open == N);

  for (int i = 0; i < N; i++) OK(astranet_stream_close(clients[i].s));
  /* The server sees every end of stream and closes its side. */
  while (server_closed < N) {
    struct epoll_event ready[2];
    int k = epoll_wait(ep, ready, 2, 10000);
    if (k == 0) FAIL("no event for 10 s; %d of %d closed", server_closed, N);
    for (int j = 0; j < k; j++) {
      size_t n;
      do {
        OK(astranet_poll(ready[j].data.ptr, evs, 512, &n, &err));
        for (size_t x = 0; x < n; x++) {
          int kind = *(int *)evs[x].userdata;
          CHECK(kind == SERVER);
          server_event(evs[x].userdata);
        }
      } while (n == 512);
    }
  }
  CHECK(count_open_fds() == fds_before);
  OK(astranet_listener_close(lst));
  close(ep);
  free_pair(&p);
  printf("10k streams: %d echoed in %.2f s, %ld events, %ld epoll rounds, %d fds throughout\n", N, t1 - t0,
         events, loops, fds_before);
  return 0;
}
