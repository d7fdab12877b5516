/* The node fd contract (tier 1): readable iff events are pending, not readable after a
 * drain; events carry the user data; ASTRANET_AGAIN on accept, read and write; closing
 * a handle withdraws its events. */
#include "common.h"
#include <poll.h>

static int readable(int fd, int timeout_ms) {
  struct pollfd p = {fd, POLLIN, 0};
  int r = poll(&p, 1, timeout_ms);
  CHECK(r >= 0);
  return r > 0 && (p.revents & POLLIN);
}

static int L, C, S; /* user data tags */

/* Waits for the fd, then drains: exactly one event expected. */
static astranet_event one_event(astranet_node *node, int fd) {
  astranet_event ev[8];
  size_t n = 0;
  CHECK(readable(fd, 5000));
  OK(astranet_poll(node, ev, 8, &n, &err));
  CHECK(n == 1);
  CHECK(!readable(fd, 0));
  return ev[0];
}

int main(void) {
  watchdog(60);
  pair_t p = make_pair(NULL);
  int sfd = -1, cfd = -1;
  OK(astranet_node_fd(p.server, &sfd, &err));
  OK(astranet_node_fd(p.client, &cfd, &err));
  CHECK(sfd >= 0 && cfd >= 0 && sfd != cfd);
  CHECK(!readable(sfd, 0) && !readable(cfd, 0));

  astranet_listener *l;
  astranet_stream *cs = NULL, *ss = NULL;
  OK(astranet_bind(p.server, "", &l, &err));
  OK(astranet_listener_set_userdata(l, &L, &err));
  EXPECT(ASTRANET_AGAIN, astranet_accept(l, &ss, &err));
  CHECK(ss == NULL); /* out-parameters are written only on success */
  CHECK(!readable(sfd, 50));

  char target[ASTRANET_ADDR_STRLEN];
  target_of(l, target);
  OK(astranet_dial_start(p.client, target, NULL, 5000, &C, &cs, &err));

  astranet_event ev = one_event(p.server, sfd);
  CHECK(ev.userdata == &L && ev.events == ASTRANET_EVENT_ACCEPTABLE);
  OK(astranet_accept(l, &ss, &err));
  EXPECT(ASTRANET_AGAIN, astranet_accept(l, &ss, &err));
  OK(astranet_stream_set_userdata(ss, &S, &err));

  ev = one_event(p.client, cfd);
  CHECK(ev.userdata == &C);
  CHECK(ev.events == (ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE));

  /* Read: AGAIN, then READABLE when data arrives, then the data, then AGAIN. */
  uint8_t buf[4096];
  size_t n = 0;
  EXPECT(ASTRANET_AGAIN, astranet_stream_read(ss, buf, sizeof buf, &n, &err));
  EXPECT(ASTRANET_AGAIN, astranet_stream_read(cs, buf, sizeof buf, &n, &err));
  CHECK(!readable(sfd, 50));
  OK(astranet_stream_write(cs, (const uint8_t *)"hello", 5, &n, &err));
  CHECK(n == 5);
  ev = one_event(p.server, sfd);
  CHECK(ev.userdata == &S && ev.events == ASTRANET_EVENT_READABLE);
  OK(astranet_stream_read(ss, buf, sizeof buf, &n, &err));
  CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
  EXPECT(ASTRANET_AGAIN, astranet_stream_read(ss, buf, sizeof buf, &n, &err));

  /* Level-triggered: stays readable until drained; capacity 0 drains nothing. */
  OK(astranet_stream_write(cs, (const uint8_t *)"x", 1, &n, &err));
  CHECK(readable(sfd, 5000));
  CHECK(readable(sfd, 0) && readable(sfd, 0));
  OK(astranet_poll(p.server, NULL, 0, &n, &err));
  CHECK(n == 0 && readable(sfd, 0));
  astranet_event evs[4];
  OK(astranet_poll(p.server, evs, 4, &n, &err));
  CHECK(n == 1 && evs[0].userdata == &S);
  CHECK(!readable(sfd, 0));
  OK(astranet_poll(p.server, evs, 4, &n, &err));
  CHECK(n == 0);
  OK(astranet_stream_read(ss, buf, sizeof buf, &n, &err));
  CHECK(n == 1);

  /* Write until AGAIN (nobody reads): at least the 64 KiB window went out. */
  size_t written = 0;
  static uint8_t big[65536];
  for (;;) {
    astranet_result r = astranet_stream_write(cs, big, sizeof big, &n, NULL);
    if (r == ASTRANET_AGAIN) break;
    CHECK(r == ASTRANET_OK);
    written += n;
    CHECK(written < (64u << 20));
  }
  CHECK(written >= 60000); /* the 64 KiB window, less the few bytes not yet credited back */
  CHECK(!readable(cfd, 50)); /* no WRITABLE until the reader makes room */
  /* The server reads everything: the writer gets WRITABLE. */
  size_t drained = 0;
  while (drained < written) {
    astranet_result r = astranet_stream_read(ss, buf, sizeof buf, &n, NULL);
    if (r == ASTRANET_AGAIN) {
      CHECK(readable(sfd, 5000));
      OK(astranet_poll(p.server, evs, 4, &n, &err));
      continue;
    }
    CHECK(r == ASTRANET_OK && n > 0);
    drained += n;
  }
  ev = one_event(p.client, cfd);
  CHECK(ev.userdata == &C && (ev.events & ASTRANET_EVENT_WRITABLE));
  OK(astranet_stream_write(cs, big, 10, &n, &err));

  /* Closing a handle withdraws its pending events. */
  size_t got10 = 0;
  while (got10 < 10) {
    astranet_result r = astranet_stream_read(ss, buf, sizeof buf, &n, NULL);
    if (r == ASTRANET_AGAIN) {
      CHECK(readable(sfd, 5000));
      OK(astranet_poll(p.server, evs, 4, &n, &err));
      continue;
    }
    CHECK(r == ASTRANET_OK && n > 0);
    got10 += n;
  }
  while (readable(sfd, 0)) OK(astranet_poll(p.server, evs, 4, &n, &err));
  EXPECT(ASTRANET_AGAIN, astranet_stream_read(ss, buf, sizeof buf, &n, &err));
  OK(astranet_stream_write(cs, big, 10, &n, &err));
  CHECK(readable(sfd, 5000));
  OK(astranet_stream_close(ss));
  OK(astranet_poll(p.server, evs, 4, &n, &err));
  CHECK(n == 0);
  CHECK(!readable(sfd, 0));

  /* End of stream reads as 0 (after READABLE, if the FIN had not arrived yet). */
  if (astranet_stream_read(cs, buf, sizeof buf, &n, NULL) == ASTRANET_AGAIN) {
    ev = one_event(p.client, cfd);
    CHECK(ev.userdata == &C && (ev.events & ASTRANET_EVENT_READABLE));
    OK(astranet_stream_read(cs, buf, sizeof buf, &n, &err));
  }
  CHECK(n == 0);

  OK(astranet_stream_close(cs));
  OK(astranet_listener_close(l));
  free_pair(&p);
  printf("fd contract: ok\n");
  return 0;
}
