/* A child forked after the library started gets ASTRANET_ERR_FORKED, not a hang; the
 * parent carries on. */
#include "common.h"
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>

int main(void) {
  watchdog(30);
  astranet_node *node;
  OK(astranet_node_new(NULL, &node, &err));
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    alarm(10);
    uint64_t id;
    astranet_error *e = NULL;
    astranet_result r = astranet_node_host_id(node, &id, &e);
    if (r != ASTRANET_ERR_FORKED || astranet_error_code(e) != ASTRANET_ERR_FORKED) _exit(3);
    astranet_node *other;
    if (astranet_node_new(NULL, &other, NULL) != ASTRANET_ERR_FORKED) _exit(4);
    if (astranet_node_free(node) != ASTRANET_ERR_FORKED) _exit(5);
    /* astranet_attach owns its fd whatever it returns: closed here too. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) _exit(6);
    if (astranet_attach(node, sv[0], 1000, NULL, NULL) != ASTRANET_ERR_FORKED) _exit(7);
    if (fcntl(sv[0], F_GETFD) != -1 || errno != EBADF) _exit(8);
    _exit(0);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("child status %d", status);
  uint64_t id;
  OK(astranet_node_host_id(node, &id, &err));
  OK(astranet_node_free(node));
  printf("fork: the child got ASTRANET_ERR_FORKED\n");
  return 0;
}
