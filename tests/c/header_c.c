/* The header compiles alone as C (-Wall -Wextra -Wpedantic -Werror), and its version
 * macros equal astranet_version(). */
#include <astranet.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", ASTRANET_VERSION_MAJOR, ASTRANET_VERSION_MINOR,
           ASTRANET_VERSION_PATCH);
  if (strcmp(want, astranet_version()) != 0) {
    fprintf(stderr, "FAIL: header says %s, library says %s\n", want, astranet_version());
    return 1;
  }
  printf("header and library: %s\n", astranet_version());
  return 0;
}
