#include <cstdio>
#include <cstring>

#include "proxy/version.h"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("slotpilot %s\n", slotpilot::proxy::Version().data());
      return 0;
    }
  }
  std::printf("slotpilot %s: a Redis Cluster sidecar proxy (data path under construction)\n",
              slotpilot::proxy::Version().data());
  return 0;
}
