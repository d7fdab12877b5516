/* Tier 2: streams turned into socketpair fds, used with plain read/write/shutdown. */
#include "common.h"
#include <sys/socket.h>

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void *echo(void *arg) {
  int fd = *(int *)arg;
  uint8_t buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    CHECK(n >= 0);
    if (n == 0) break;
    CHECK(write_all(fd, buf, (size_t)n) == 0);
  }
  close(fd);
  return NULL;
}

static void *writer(void *arg) {
  int fd = *(int *)arg;
  size_t total = 8 << 20;
  uint8_t *out = malloc(total);
  for (size_t i = 0; i < total; i++) out[i] = (uint8_t)(i * 31 + 7);
  CHECK(write_all(fd, out, total) == 0);
  CHECK(shutdown(fd, SHUT_WR) == 0);
  free(out);
  return NULL;
}

int main(void) {
  watchdog(60);
  pair_t p = make_pair(NULL);
  astranet_listener *l;
  OK(astranet_bind(p.server, ":7", &l, &err));
  char target[ASTRANET_ADDR_STRLEN];
  target_of(l, target);

  int before = count_open_fds();
  astranet_stream *c, *s;
  OK(astranet_dial_start(p.client, target, NULL, 5000, NULL, &c, &err));
  OK(astranet_accept_timeout(l, 5000, &s, &err));
  int sfd = -1, cfd = -1;
  OK(astranet_stream_into_fd(s, &sfd, &err));
  EXPECT(ASTRANET_ERR_BAD_HANDLE, astranet_stream_close(s)); /* consumed */
  /* The dial may still be finishing on the client side: AGAIN keeps the handle. */
  astranet_result r;
  while ((r = astranet_stream_into_fd(c, &cfd, NULL)) == ASTRANET_AGAIN) usleep(1000);
  CHECK(r == ASTRANET_OK);
  CHECK(count_open_fds() == before + 4); /* two socketpairs */

  pthread_t te, tw;
  CHECK(pthread_create(&te, NULL, echo, &sfd) == 0);
  CHECK(pthread_create(&tw, NULL, writer, &cfd) == 0);
  size_t total = 8 << 20, got = 0;
  uint8_t *in = malloc(total + 1);
  for (;;) {
    ssize_t n = read(cfd, in + got, total + 1 - got);
    if (n < 0 && errno == EINTR) continue;
    CHECK(n >= 0);
    if (n == 0) break;
    got += (size_t)n;
    CHECK(got <= total);
  }
  CHECK(got == total);
  for (size_t i = 0; i < total; i++)
    if (in[i] != (uint8_t)(i * 31 + 7)) FAIL("byte %zu differs", i);
  CHECK(pthread_join(tw, NULL) == 0);
  CHECK(pthread_join(te, NULL) == 0);
  close(cfd);
  free(in);
  OK(astranet_listener_close(l));
  free_pair(&p);
  printf("into_fd: 8 MiB echoed through two socketpairs\n");
  return 0;
}
