// The header compiles alone as C++ (-Wall -Wextra -Wpedantic -Werror) and links.
#include <astranet.h>
#include <cstdio>
#include <cstring>
#include <string>

int main() {
  std::string want = std::to_string(ASTRANET_VERSION_MAJOR) + "." + std::to_string(ASTRANET_VERSION_MINOR) + "." +
                     std::to_string(ASTRANET_VERSION_PATCH);
  if (want != astranet_version()) {
    std::fprintf(stderr, "FAIL: header %s, library %s\n", want.c_str(), astranet_version());
    return 1;
  }
  astranet_node_config cfg;
  if (astranet_node_config_init(&cfg) != ASTRANET_OK) return 1;
  std::printf("C++: %s\n", astranet_result_name(ASTRANET_ERR_REFUSED));
  return 0;
}
