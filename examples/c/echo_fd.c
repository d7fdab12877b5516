/* Echo server and client on tier 2: each stream becomes a socket fd
 * (astranet_stream_into_fd), used with plain read/write; one thread per stream.
 *
 *   echo_fd server 127.0.0.1:7000     # serve virtual port 7 over TCP :7000
 *   echo_fd client 127.0.0.1:7000     # send lines from stdin, print the echoes
 *   echo_fd                           # both in one process (used as a test)
 *
 * Build: cc echo_fd.c $(pkg-config --cflags --libs astranet) -pthread -o echo_fd */
#define _GNU_SOURCE
#include <astranet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DIE(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), exit(1))
#define OK(call, what)                                                                         \
  do {                                                                                         \
    astranet_error *err_ = NULL;                                                               \
    astranet_result r_ = (call);                                                               \
    if (r_ != ASTRANET_OK) DIE("%s: %s (%s)", what, astranet_result_name(r_), astranet_error_message(err_)); \
  } while (0)
#define E (&err_)

static int write_all(int fd, const char *p, size_t n) {
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
  int fd = (int)(intptr_t)arg;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    if (write_all(fd, buf, (size_t)n) != 0) break;
  close(fd);
  return NULL;
}

static void *serve(void *arg) {
  astranet_listener *l = arg;
  for (;;) {
    astranet_stream *s;
    int fd;
    if (astranet_accept_timeout(l, -1, &s, NULL) != ASTRANET_OK) return NULL; /* closed */
    OK(astranet_stream_into_fd(s, &fd, E), "into_fd");
    pthread_t t;
    pthread_create(&t, NULL, echo, (void *)(intptr_t)fd);
    pthread_detach(t);
  }
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "both";
  const char *addr = argc > 2 ? argv[2] : "127.0.0.1:0";
  /* Progress lines show up at once, also when the output is a pipe or a file. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  astranet_node *server = NULL, *client = NULL;
  astranet_listener *l = NULL;
  pthread_t st;
  uint64_t server_id = 0;
  char bound[ASTRANET_ADDR_STRLEN];

  if (strcmp(mode, "client") != 0) {
    OK(astranet_node_new(NULL, &server, E), "node_new");
    OK(astranet_listen(server, addr, bound, sizeof bound, E), "listen");
    OK(astranet_bind(server, ":7", &l, E), "bind");
    OK(astranet_node_host_id(server, &server_id, E), "host_id");
    printf("serving virtual port 7 of node %016" PRIx64 " on %s\n", server_id, bound);
    fflush(stdout);
    addr = bound;
    if (strcmp(mode, "server") == 0) {
      serve(l);
      return 0;
    }
    pthread_create(&st, NULL, serve, l);
  }
  OK(astranet_node_new(NULL, &client, E), "node_new");
  OK(astranet_join(client, addr, 5000, &server_id, E), "join");
  char target[ASTRANET_ADDR_STRLEN];
  astranet_addr a = {server_id, 7};
  OK(astranet_addr_format(&a, target, sizeof target), "addr_format");
  astranet_stream *s;
  int fd;
  OK(astranet_dial(client, target, NULL, 5000, &s, E), "dial");
  OK(astranet_stream_into_fd(s, &fd, E), "into_fd");

  const char *lines[] = {"hello\n", "from a plain fd\n", "bye\n"};
  char line[4096];
  int from_stdin = strcmp(mode, "client") == 0;
  for (int i = 0; from_stdin || i < 3; i++) {
    const char *msg = lines[i % 3];
    if (from_stdin) {
      if (!fgets(line, sizeof line, stdin)) break;
      msg = line;
    }
    size_t len = strlen(msg), got = 0;
    char back[4096];
    if (write_all(fd, msg, len) != 0) DIE("write");
    while (got < len) {
      ssize_t n = read(fd, back + got, len - got);
      if (n <= 0) DIE("read");
      got += (size_t)n;
    }
    if (memcmp(back, msg, len) != 0) DIE("echo differs");
    fwrite(back, 1, len, stdout);
  }
  shutdown(fd, SHUT_WR);
  char c;
  if (read(fd, &c, 1) != 0) DIE("expected end of stream");
  close(fd);
  astranet_node_free(client);
  if (l) {
    astranet_listener_close(l); /* the accept loop returns */
    pthread_join(st, NULL);
    astranet_node_free(server);
  }
  printf("echo over fds: ok\n");
  return 0;
}
